"""Datasets: import, validate, version (immutable, content-addressed Parquet), transform, review.

For other domains (jobs, training, evals) the whole API is ``DatasetService``::

    from stratum.data import DatasetService, DatasetVersion

    datasets = DatasetService(db, settings)          # db: stratum.storage.Database
    version = datasets.get("support-zh@3")           # or "support-zh" (latest), "support-zh@latest",
                                                     # "support-zh@<hash prefix>", "org/proj/support-zh@3";
                                                     # get(name, project="org/proj") scopes a bare name
    version.format        # "chat" | "instruction" | "preference"
    version.ref           # "support-zh@3" ("org/proj/support-zh@3" for a project's dataset): record this
    version.content_hash  # sha256 of the normalised rows
    version.row_count     # number of rows
    version.splits        # {"train": 80, "validation": 10, "test": 10} after a split step, else {}
    rows = datasets.load_rows(version)                 # list[dict]
    train = datasets.load_rows(version, split="train") # only rows whose "split" is "train"
    table = datasets.load_table(version)               # pyarrow.Table (the stored Parquet file)
    rows = datasets.rows("support-zh@3", split="train") # get + load_rows in one call

Row shapes (``stratum.data.formats``):

    chat          {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content": str}, ...]}
    instruction   {"instruction": str, "input": str, "output": str}
    preference    {"prompt": str, "chosen": str, "rejected": str}

plus, when a step added them, ``split`` ("train"|"validation"|"test"), ``synthetic`` (bool, rows made
by augmentation), ``label`` (str) and ``confidence`` (float). A missing dataset or version raises
``stratum.errors.NotFound``; a malformed ref raises ``InvalidRequest``.

Versions never change: every import, transform step (``stratum.data.transforms``) and review commit
creates a new version that records its parent and the transform (name, params) with a report.
"""

from stratum.data.schemas import DatasetPublic, DatasetVersion, StepReport, Transform
from stratum.data.service import DatasetService, InvalidRows, parse_ref

__all__ = [
    "DatasetPublic",
    "DatasetService",
    "DatasetVersion",
    "InvalidRows",
    "StepReport",
    "Transform",
    "parse_ref",
]
