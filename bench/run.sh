#!/usr/bin/env bash
# Benchmark the embedded default: gunicorn (WEB_CONCURRENCY gevent workers) on a fresh SQLite
# database in a temporary directory, then load.py and queue_depth.py against it, then stop the server.
#
#   bench/run.sh [load.py options]                e.g.  WEB_CONCURRENCY=2 bench/run.sh --jobs 5000
#   BENCH_IDLE_WAITERS=2000 bench/run.sh          the same with 2,000 miners of another job type long-polling
#   BENCH_SCALED=1 bench/run.sh                   on PostgreSQL + Redis instead
#
# Exits non-zero if either script fails (a job handed out twice or lost, a failed request, poll p99 ratio over 2).
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/serve.sh

if [[ ${BENCH_IDLE_WAITERS:-0} -gt 0 ]]; then
    # Miners of a job type no client submits, long-polling all through the run: what they cost the job cycle.
    "$python" bench/waiting.py idle --waiters "$BENCH_IDLE_WAITERS" --hold >"$work/idle-waiters.log" 2>&1 &
    idle_waiters_pid=$!
    for _ in $(seq 300); do grep -q "^waiting" "$work/idle-waiters.log" && break; sleep 0.2; done
    echo "== $BENCH_IDLE_WAITERS idle waiters connected: $(grep "^waiting" "$work/idle-waiters.log")"
fi

status=0
echo "== load.py"
"$python" bench/load.py --server-pid "$server_pid" "$@" || status=1
echo "== queue_depth.py"
"$python" bench/queue_depth.py || status=1
exit $status
