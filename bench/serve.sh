# Sourced by the benchmark scripts: starts the server on a fresh database in a temporary directory (SQLite, or with
# BENCH_SCALED=1 a fresh PostgreSQL database and Redis on 127.0.0.1), exports BENCH_URL and BENCH_API_KEY, and stops
# everything on exit. Sets server_pid.
python=.venv/bin/python
work=$(mktemp -d /tmp/aitbc-bench.XXXXXX)
server_pid=""

stop_server() {
    local status=$?
    if [[ -n ${idle_waiters_pid:-} ]]; then
        kill -TERM "$idle_waiters_pid" 2>/dev/null || true
        wait "$idle_waiters_pid" 2>/dev/null || true
    fi
    if [[ -n $server_pid ]]; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ -n ${bench_database:-} ]]; then
        psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $bench_database WITH (FORCE)" || true
    fi
    if [[ $status -ne 0 && -f $work/gunicorn.log ]]; then
        echo "--- last lines of the server log ---" >&2
        tail -n 8 "$work/gunicorn.log" >&2
    fi
    rm -rf "$work"
}
trap stop_server EXIT

random_token() { "$python" -c 'import secrets; print(secrets.token_urlsafe(32))'; }
free_port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [[ ${BENCH_SCALED:-} == 1 ]]; then
    # Scaled mode: a fresh PostgreSQL database on 127.0.0.1 and Redis (database 12) for the cache and rate limits.
    bench_database="aitbc_bench_$("$python" -c 'import secrets; print(secrets.token_hex(6))')"
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE $bench_database"
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$bench_database" REDIS_URL=redis://127.0.0.1:6379/12
    redis-cli -n 12 flushdb >/dev/null
    mode="PostgreSQL + Redis"
else
    export DATABASE_URL="sqlite:///$work/coordinator.db"
    mode="SQLite WAL"
fi
export SECRET_KEY=$(random_token)
export API_KEYS="bench-$(random_token)"
export API_HOST=127.0.0.1
export API_PORT=${API_PORT:-$(free_port)}
export WEB_CONCURRENCY=${WEB_CONCURRENCY:-2}
export MAINTENANCE_INTERVAL_SECONDS=${MAINTENANCE_INTERVAL_SECONDS:-30}
# Everything the server writes goes to the temporary directory, not to the project's data/.
export CACHE_DIR="$work/cache"
export RECEIPT_SIGNING_KEY_FILE="$work/receipt-signing.key"
# The rate limits stay in the request path (their cost is part of a cycle) but must never answer 429 here.
export RATE_LIMIT_CLIENT=100000000/m RATE_LIMIT_MINER=100000000/m RATE_LIMIT_USER=100000000/m RATE_LIMIT_LOGIN=100000000/m
# The scripts read the key from the environment so it does not show in `ps`.
export BENCH_URL="http://$API_HOST:$API_PORT"
export BENCH_API_KEY=$API_KEYS

echo "$(date -u +%Y-%m-%dT%H:%MZ)  $(nproc) cores, $("$python" --version), $mode," \
     "gunicorn $WEB_CONCURRENCY gevent workers, git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

"$python" manage.py migrate --no-input --verbosity 0
# Only the server gets the metrics directory: gunicorn creates it, and the other commands keep metrics in memory.
PROMETHEUS_MULTIPROC_DIR="$work/prometheus" \
    .venv/bin/gunicorn -c deploy/gunicorn.conf.py aitbc_site.wsgi:application 2>"$work/gunicorn.log" &
server_pid=$!
for _ in $(seq 150); do
    curl -fsS "$BENCH_URL/health" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "$BENCH_URL/health" >/dev/null

