#!/usr/bin/env bash
# Run the suite: lint, then pytest with a throwaway PostgreSQL cluster and Redis server that are
# always removed (redis-server is installed first if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

ruff check src tests benchmarks
ruff format --check src tests benchmarks
lint-imports

# Every `stratum serve`, CLI run and training child the suite starts imports torch and transformers
# again: without cached bytecode each one compiles them from source (~10 s of CPU, 3x slower CLI
# runs). Some environments set PYTHONDONTWRITEBYTECODE; the first import writes the cache instead.
unset PYTHONDONTWRITEBYTECODE

bash scripts/services.sh redis ocr
# The OCR tests fail (instead of skipping) when Tesseract is missing: it was just installed.
export STRATUM_TEST_OCR=1

trap 'bash scripts/pg-test.sh stop; bash scripts/redis-test.sh stop' EXIT
PG_URL=$(bash scripts/pg-test.sh start)
export STRATUM_TEST_PG_URL="$PG_URL"
REDIS_URL=$(bash scripts/redis-test.sh start)
export STRATUM_TEST_REDIS_URL="$REDIS_URL"
export HF_HUB_OFFLINE=1

# `make test` leaves out the tests marked `extra` (second variants of heavy flows it already runs);
# `make test-slow` runs just those (TEST_MARKERS=extra).
set +e
pytest -q --timeout=600 --durations=25 -m "${TEST_MARKERS:-not extra}" tests "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
