"""Recording which version served each response: the batched ``ResponseLog`` vs one write per response.

The gateway must remember (response id → version, project, key, status, latency) for every
response, for feedback attribution and canary health. The baseline is the obvious design: one
INSERT transaction per response on the request path. Stratum's ``ResponseLog.remember`` only appends
to memory; a background task writes everything pending in one transaction per second. This script
measures, on the same SQLite store, the time the request path pays per response in both designs,
plus the cost of the batched flush itself (paid off the request path).

Run: ``python benchmarks/served_log_bench.py [N]``. The machine is shared: numbers are taken under
whatever contention there is, and each design runs three rounds (ABABAB) to show the spread.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from stratum.registry.responses import ResponseLog, ServedResponse
from stratum.registry.tables import ServedResponseRow
from stratum.storage import Database


def _entry(i: int) -> ServedResponse:
    return ServedResponse(
        request_id=f"req-{i}",
        model="bot",
        version_ref="bot@2",
        status=200,
        latency_ms=12.5,
        response_id=f"chatcmpl-{i:024d}",
        deployment="bot",
        key_id="key",
        org_id="org",
        project_id="proj",
    )


def per_response(db: Database, n: int, offset: int) -> float:
    started = time.perf_counter()
    for i in range(offset, offset + n):
        row = _entry(i).__dict__
        with db.session() as session:
            session.execute(insert(ServedResponseRow), [row])
    return (time.perf_counter() - started) / n


def batched(db: Database, n: int, offset: int) -> tuple[float, float]:
    log = ResponseLog(db)
    started = time.perf_counter()
    for i in range(offset, offset + n):
        log.remember(_entry(i))
    on_path = (time.perf_counter() - started) / n
    started = time.perf_counter()
    assert log.flush() == n
    return on_path, time.perf_counter() - started


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.migrate()
        baseline, ours, flushes = [], [], []
        offset = 0
        for _ in range(3):
            baseline.append(per_response(db, n, offset))
            offset += n
            on_path, flush = batched(db, n, offset)
            ours.append(on_path)
            flushes.append(flush)
            offset += n
        db.dispose()
    us = 1e6
    print(f"{n} responses per round, 3 rounds, SQLite (WAL), shared 2-core machine\n")
    print(f"{'design':<44} {'request path / response':>24} {'spread':>18}")
    print(
        f"{'baseline: one INSERT transaction each':<44} {statistics.median(baseline) * us:>21.1f} µs"
        f" {min(baseline) * us:>8.1f}-{max(baseline) * us:.1f} µs"
    )
    print(
        f"{'ResponseLog.remember (batched)':<44} {statistics.median(ours) * us:>21.2f} µs"
        f" {min(ours) * us:>8.2f}-{max(ours) * us:.2f} µs"
    )
    print(
        f"{'  + its flush, off the request path':<44} {statistics.median(flushes) / n * us:>21.1f} µs"
        f"   ({statistics.median(flushes) * 1000:.0f} ms per {n})"
    )
    print(f"\nrequest-path speed-up: {statistics.median(baseline) / statistics.median(ours):.0f}x")


if __name__ == "__main__":
    main()
