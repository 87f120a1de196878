#!/usr/bin/env bash
# Runs one im-bench scenario in one command: a fresh database on the chosen backend, the
# benchmark seed, a release server on it, the scenario (which prints its table), then cleans up.
#
#   bench/run.sh sqlite   chat --pairs 500 --rates 1000,5000,10000 --duration 10
#   bench/run.sh postgres chat --pairs 500 --rates 1000,5000,10000 --duration 10
#
# Everything after the backend goes to im-bench as it is (global options included).
# Environment: BIN (default $CARGO_TARGET_DIR/release, else target/release), PORT (7001), BENCH_USERS (20000), GROUP_SIZE (100),
# PG_URL (postgres://postgres@127.0.0.1:5432), SERVER_LOG (where the server's log is kept),
# SERVER_WRAP (a command the server runs under, e.g. "valgrind --tool=callgrind" for a profile).
# The server's rate limits on log-ins and messages are off (IM_LIMIT_*=off, unless set): one
# loopback address logs thousands of users in, and each bench user sends faster than a person.
# Build first: cargo build --release --workspace
set -euo pipefail

if [[ $# -lt 2 || ! $1 =~ ^(sqlite|postgres)$ ]]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
backend=$1
shift
bin=${BIN:-${CARGO_TARGET_DIR:-target}/release}
port=${PORT:-7001}
for tool in im-server im-bench; do
    [[ -x $bin/$tool ]] || { echo "$bin/$tool missing: cargo build --release --workspace" >&2; exit 2; }
done

if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is taken: choose another with PORT=" >&2
    exit 2
fi

work=$(mktemp -d)
server=
pg_db=
cleanup() {
    if [[ -n $server ]]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    if [[ -n $pg_db ]]; then
        psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $pg_db" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

case $backend in
    sqlite)
        export DATABASE_URL="sqlite://$work/im.db"
        ;;
    postgres)
        PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
        pg_db="im_bench_$$"
        psql -q "$PG_URL/postgres" -c "CREATE DATABASE $pg_db"
        export DATABASE_URL="$PG_URL/$pg_db"
        ;;
esac

"$bin/im-server" seed --bench-users "${BENCH_USERS:-20000}" --group-size "${GROUP_SIZE:-100}" >&2
ulimit -n 20000 2>/dev/null || echo "note: ulimit -n stays $(ulimit -n)" >&2
export IM_LIMIT_LOGIN_ADDRESS=${IM_LIMIT_LOGIN_ADDRESS:-off} IM_LIMIT_LOGIN_ACCOUNT=${IM_LIMIT_LOGIN_ACCOUNT:-off}
export IM_LIMIT_MESSAGE_SOCKET=${IM_LIMIT_MESSAGE_SOCKET:-off} IM_LIMIT_MESSAGE_USER=${IM_LIMIT_MESSAGE_USER:-off}
IM_BIND="127.0.0.1:$port" IM_PUBLIC_DIR="$work/public" RUST_LOG=${RUST_LOG:-warn} \
    IM_GENERATED_PASSWORD_FILE="$work/admin-password.txt" \
    ${SERVER_WRAP:-} "$bin/im-server" serve >"${SERVER_LOG:-$work/server.log}" 2>&1 &
server=$!
for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "${SERVER_LOG:-$work/server.log}" >&2; exit 1; }
    sleep 0.1
done
echo "backend: $backend, server pid $server" >&2
"$bin/im-bench" --url "http://127.0.0.1:$port" --server-pid "$server" "$@"
