"""The price table (per model, per 1,000 input and output tokens) and the cost of a request.

Money is ``Decimal`` end to end, quantised to the 6 decimal places the database stores, so sums in
reports are exact. Prices are looked up by the model name recorded on the usage record (the name
the client asked for).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from stratum.errors import InvalidRequest, NotFound
from stratum.governance import audit
from stratum.governance.tables import PriceRow
from stratum.storage import Database, utcnow

# The database column is NUMERIC(18, 6): costs and prices are kept to a millionth of the currency.
MONEY_PLACES = Decimal("0.000001")
_PER = Decimal(1000)


class Price(BaseModel):
    """A model's price per 1,000 input (prompt) and output (completion) tokens."""

    model: str = Field(min_length=1, max_length=160)
    input_per_1k: Decimal = Field(ge=0)
    output_per_1k: Decimal = Field(ge=0)


def cost(price: Price, *, prompt_tokens: int, completion_tokens: int) -> Decimal:
    raw = (price.input_per_1k * prompt_tokens + price.output_per_1k * completion_tokens) / _PER
    return raw.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)


def _public(row: PriceRow) -> Price:
    return Price(model=row.model, input_per_1k=row.input_per_1k, output_per_1k=row.output_per_1k)


def prices_for(session: Session, models: Iterable[str]) -> dict[str, Price]:
    """The prices of ``models`` that have one (inside the caller's transaction)."""
    wanted = set(models)
    if not wanted:
        return {}
    rows = session.execute(select(PriceRow).where(PriceRow.model.in_(wanted))).scalars()
    return {row.model: _public(row) for row in rows}


class PriceService:
    """Serves: ``stratum prices set|list`` and ``/admin/v1/prices`` (usage records read prices directly)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def set_price(self, price: Price, *, actor: str = audit.LOCAL_ACTOR) -> Price:
        """Create or replace a model's price; requests recorded from now on are costed with it."""
        if price.input_per_1k != price.input_per_1k.quantize(MONEY_PLACES) or (
            price.output_per_1k != price.output_per_1k.quantize(MONEY_PLACES)
        ):
            raise InvalidRequest("prices have at most 6 decimal places", param="price")
        with self._db.session() as session:
            row = session.get(PriceRow, price.model)
            if row is None:
                row = PriceRow(model=price.model)
                session.add(row)
            row.input_per_1k, row.output_per_1k, row.updated_at = (
                price.input_per_1k,
                price.output_per_1k,
                utcnow(),
            )
            audit.append(
                session, actor=actor, action="price.set", target=price.model, detail=price.model_dump()
            )
        return price

    def list_prices(self) -> list[Price]:
        with self._db.session(write=False) as session:
            return [
                _public(row) for row in session.execute(select(PriceRow).order_by(PriceRow.model)).scalars()
            ]

    def find(self, model: str) -> Price | None:
        """The model's price, or None (the gateway's cost reservation; a model without one costs 0)."""
        with self._db.session(write=False) as session:
            row = session.get(PriceRow, model[:160])
            return _public(row) if row is not None else None

    def get_price(self, model: str) -> Price:
        with self._db.session(write=False) as session:
            row = session.get(PriceRow, model)
            if row is None:
                raise NotFound(f"No price for model {model!r}.", param="model")
            return _public(row)
