#!/usr/bin/env bash
# Run the whole suite: lint, then pytest with a throwaway PostgreSQL cluster that is always removed.
set -euo pipefail
cd "$(dirname "$0")/.."

ruff check src tests benchmarks
ruff format --check src tests benchmarks
lint-imports

PG_URL=$(bash scripts/pg-test.sh start)
trap 'bash scripts/pg-test.sh stop' EXIT
export STRATUM_TEST_PG_URL="$PG_URL"
export HF_HUB_OFFLINE=1

set +e
pytest -q --timeout=600 tests "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
