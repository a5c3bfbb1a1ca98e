"""``stratum compress quantize|prune|distill|onnx MODEL@V --name NEW --texts FILE``.

Each command writes a new model version linked to its parent, measured against it on the held-out
texts (weights size, greedy tokens/s at batch 1 and 8, perplexity), and prints the deltas.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from stratum.cli.output import CliError, print_fields, print_json, print_note
from stratum.cli.store import cli_actor, open_database

app = typer.Typer(help="Compress a local model version into a new, measured version.", no_args_is_help=True)

ModelArg = Annotated[
    str, typer.Argument(help="The parent: NAME, NAME@VERSION or NAME:ALIAS (local weights).")
]
NameOption = Annotated[str, typer.Option("--name", help="Model name of the new version.")]
TextsOption = Annotated[
    Path,
    typer.Option("--texts", help="Held-out texts: a .txt file (one per line) or JSONL with a 'text' field."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def load_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise CliError(f"{path} does not exist")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return lines
    texts = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise CliError(f"{path.name} line {number}: not JSON ({error.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise CliError(f"{path.name} line {number}: field 'text' must be a string")
        texts.append(row["text"])
    return texts


def _run(
    model: str,
    name: str,
    texts: Path,
    *,
    variant: str,
    method: str,
    params: dict[str, Any],
    produce: Any,
    measured: bool = True,
) -> Any:
    from stratum.registry.lineage import LineageService
    from stratum.registry.service import RegistryService
    from stratum.settings import Settings
    from stratum.training.compression.service import CompressionService

    held_out = load_texts(texts)
    with open_database() as db:
        service = CompressionService(
            RegistryService(db), Settings().artifacts_dir, lineage=LineageService(db)
        )
        try:
            return service.run(
                parent_ref=model,
                name=name,
                variant=variant,
                method=method,
                params=params,
                texts=held_out,
                produce=produce,
                measured=measured,
                actor=cli_actor(),
            )
        except ValueError as error:  # a method's own refusal (bad sparsity, unsupported architecture)
            raise CliError(str(error)) from None


def _report(result: Any, as_json: bool) -> None:
    summary = {
        "version": result.version.ref,
        "parent": result.version.metadata.get("parent"),
        "before": result.before.as_dict() if result.before else None,
        "after": result.after.as_dict() if result.after else None,
        "deltas": result.deltas,
        **result.extra,
    }
    if as_json:
        print_json(summary)
        return
    print_fields({"version": summary["version"], "parent": summary["parent"], **result.extra})
    for key, value in result.deltas.items():
        print_note(f"{key}: {value:.3f}")


@app.command("quantize")
def quantize(model: ModelArg, name: NameOption, texts: TextsOption, as_json: JsonOption = False) -> None:
    """INT8 dynamic quantization of every Linear layer (fbgemm int8 kernels on CPU)."""
    from stratum.training.compression.quantize import quantize as run

    result = _run(model, name, texts, variant="quantized", method="dynamic_int8", params={}, produce=run)
    _report(result, as_json)


@app.command("prune")
def prune(
    model: ModelArg,
    name: NameOption,
    texts: TextsOption,
    sparsity: Annotated[float, typer.Option("--sparsity", help="Fraction removed, e.g. 0.5.")] = 0.5,
    method: Annotated[
        str, typer.Option("--method", help="magnitude (zeros) or structured (MLP neurons).")
    ] = "magnitude",
    as_json: JsonOption = False,
) -> None:
    """Prune to a target sparsity."""
    from stratum.training.compression.prune import prune as run

    produce = partial(_prune, run, sparsity=sparsity, method=method)
    result = _run(
        model,
        name,
        texts,
        variant="pruned",
        method=f"prune_{method}",
        params={"sparsity": sparsity},
        produce=produce,
    )
    _report(result, as_json)


def _prune(run: Any, parent: Path, target: Path, *, sparsity: float, method: str) -> Any:
    return run(parent, target, sparsity=sparsity, method=method)


@app.command("distill")
def distill(
    model: ModelArg,
    name: NameOption,
    texts: TextsOption,
    train_texts: Annotated[
        Path, typer.Option("--train-texts", help="Texts to distil on (same formats as --texts).")
    ],
    student: Annotated[
        str | None, typer.Option("--student", help="A student version (e.g. a pruned child).")
    ] = None,
    keep_every: Annotated[
        int, typer.Option("--keep-every", min=2, help="New student: keep every k-th layer.")
    ] = 2,
    steps: Annotated[int, typer.Option("--steps", min=1)] = 50,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Train a smaller (or pruned) student on the teacher's output distributions."""
    from stratum.training.compression.distill import distill as run

    training = load_texts(train_texts)
    student_dir = None
    if student is not None:
        from stratum.registry.service import RegistryService

        with open_database() as db:
            version = RegistryService(db).resolve(student)
        if not version.artifact_uri:
            raise CliError(f"{version.ref} has no local weights")
        student_dir = Path(version.artifact_uri)
    produce = partial(
        _distill, run, texts=training, student_dir=student_dir, keep_every=keep_every, steps=steps, seed=seed
    )
    params = {"student": student, "keep_every": None if student else keep_every, "steps": steps, "seed": seed}
    result = _run(model, name, texts, variant="distilled", method="distill", params=params, produce=produce)
    _report(result, as_json)


def _distill(run: Any, parent: Path, target: Path, **options: Any) -> Any:
    return run(parent, target, **options)


@app.command("onnx")
def onnx(model: ModelArg, name: NameOption, texts: TextsOption, as_json: JsonOption = False) -> None:
    """Export to ONNX; ONNX Runtime's logits must match PyTorch's within 1e-3 on the texts."""
    from stratum.training.compression.onnx_export import export_onnx

    def produce(parent: Path, target: Path) -> dict[str, Any]:
        worst = export_onnx(parent, target, samples=load_texts(texts)[:4])
        return {"onnx_max_abs_diff": worst, "format": "onnx"}

    result = _run(
        model, name, texts, variant="onnx", method="onnx_export", params={}, produce=produce, measured=False
    )
    _report(result, as_json)
