#!/usr/bin/env bash
# Waiting benchmarks (bench/waiting.py): 2,000 idle long-polls, dispatch latency to waiting miners, and stream relay,
# against the embedded default (gunicorn, WEB_CONCURRENCY gevent workers, fresh SQLite database), or with
# BENCH_SCALED=1 against PostgreSQL + Redis on 127.0.0.1.
#
#   bench/waiting.sh [idle|dispatch|streams ...]      default: all three, in that order
#
# Exits non-zero if a scenario fails (a failed request, a job never handed out, a chunk lost or out of order).
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/serve.sh
export BENCH_SERVER_PID=$server_pid

scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(idle dispatch streams)
status=0
for scenario in "${scenarios[@]}"; do
    echo "== waiting.py $scenario"
    "$python" bench/waiting.py "$scenario" || status=1
done
exit $status
