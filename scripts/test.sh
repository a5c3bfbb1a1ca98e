#!/usr/bin/env bash
# Run the whole suite: lint, then pytest with a throwaway PostgreSQL cluster and Redis server that are
# always removed (redis-server is installed first if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

ruff check src tests benchmarks
ruff format --check src tests benchmarks
lint-imports

bash scripts/services.sh redis

trap 'bash scripts/pg-test.sh stop; bash scripts/redis-test.sh stop' EXIT
PG_URL=$(bash scripts/pg-test.sh start)
export STRATUM_TEST_PG_URL="$PG_URL"
REDIS_URL=$(bash scripts/redis-test.sh start)
export STRATUM_TEST_REDIS_URL="$REDIS_URL"
export HF_HUB_OFFLINE=1

set +e
pytest -q --timeout=600 --durations=25 tests "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
