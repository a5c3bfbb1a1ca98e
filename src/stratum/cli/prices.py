"""``stratum prices set|list``: the per-model price table used to cost usage records."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

import typer

from stratum.cli.output import CliError, print_json, print_table
from stratum.cli.store import cli_actor, price_service

app = typer.Typer(help="Model prices per 1,000 input and output tokens.", no_args_is_help=True)


def _money(value: str, option: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise CliError(f"{option} takes a decimal amount, got {value!r}", exit_code=2) from exc
    if not amount.is_finite() or amount < 0:
        raise CliError(f"{option} must be a non-negative amount, got {value!r}", exit_code=2)
    return amount


@app.command("set")
def set_price(
    model: Annotated[str, typer.Argument(help="The model name as clients request it.")],
    input_per_1k: Annotated[str, typer.Option("--input", help="Price per 1,000 prompt tokens.")],
    output_per_1k: Annotated[str, typer.Option("--output", help="Price per 1,000 completion tokens.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Set (or replace) a model's price; requests recorded from now on are costed with it."""
    from stratum.governance.prices import Price

    price = Price(
        model=model,
        input_per_1k=_money(input_per_1k, "--input"),
        output_per_1k=_money(output_per_1k, "--output"),
    )
    with price_service() as service:
        saved = service.set_price(price, actor=cli_actor())
    if as_json:
        print_json(saved.model_dump(mode="json"))
    else:
        typer.echo(
            f"price of {saved.model}: input {saved.input_per_1k} / output {saved.output_per_1k} per 1k tokens"
        )


@app.command("list")
def list_prices(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show the price table."""
    with price_service() as service:
        prices = service.list_prices()
    if as_json:
        print_json([price.model_dump(mode="json") for price in prices])
        return
    print_table(
        [price.model_dump() for price in prices],
        ("model", "input_per_1k", "output_per_1k"),
        title="prices per 1k tokens",
        empty="no prices set",
    )
