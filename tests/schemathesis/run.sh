#!/usr/bin/env bash
# Fuzzes the REST API against its own OpenAPI document (GET /api/openapi.json) with schemathesis:
# a demo server on a fresh SQLite database, then one run as the demo user `user` and one as
# `admin`. Fails on any finding: a 5xx, a status the document does not list, or an answer that
# breaks the document's schema, content type or headers.
#
# Usage: tests/schemathesis/run.sh            (builds the debug binary if needed)
#        IM_SERVER_BIN=path/to/im-server tests/schemathesis/run.sh
#        IM_FUZZ_EXAMPLES=100 tests/schemathesis/run.sh   (more cases per operation)
#        IM_FUZZ_REPORT_DIR=dir tests/schemathesis/run.sh  (keep JUnit and HAR reports there)
#        IM_FUZZ_DATABASE_URL=postgres://.../empty_db tests/schemathesis/run.sh   (another database;
#          it must be empty, the demo data only goes into an empty one)
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE="$PWD/tests/schemathesis"

SCHEMATHESIS_VERSION=4.32.5
VENV="$HOME/.cache/im-server/schemathesis-$SCHEMATHESIS_VERSION"
EXAMPLES="${IM_FUZZ_EXAMPLES:-25}"
# A hard bound on each run, well inside the whole step's five minutes.
RUN_TIMEOUT="${IM_FUZZ_TIMEOUT:-120}"

step() { echo "==> schemathesis: $*"; }

if [ ! -x "$VENV/bin/schemathesis" ]; then
  step "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/im-server/target}"
BIN="${IM_SERVER_BIN:-$CARGO_TARGET_DIR/debug/im-server}"
if [ -z "${IM_SERVER_BIN:-}" ]; then
  cargo build --quiet --bin im-server
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

# Rate limits on log-in and sign-up off: the fuzzer signs up and logs in hundreds of times, and
# would otherwise measure nothing but 429s. (The upload allowance keeps its default: the fuzzer
# sends far less than 64 MiB.) The 429 answers are tested in tests/rate_limits.rs.
step "starting the server on $BASE (log: $WORK/server.log)"
DATABASE_URL="${IM_FUZZ_DATABASE_URL:-sqlite://$WORK/im.db}" \
IM_BIND="127.0.0.1:$PORT" \
IM_PUBLIC_DIR="$WORK/public" \
IM_GENERATED_PASSWORD_FILE="$WORK/admin-password.txt" \
IM_LIMIT_LOGIN_ADDRESS=off IM_LIMIT_LOGIN_ACCOUNT=off IM_LIMIT_SIGNUP_ADDRESS=off \
RUST_LOG="${RUST_LOG:-warn}" \
  "$BIN" serve --demo >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do
  curl -sf "$BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; echo "the server did not start" >&2; exit 1; }
  sleep 0.2
done

# The IM_SESS cookie of a demo account.
session_of() {
  local jar="$WORK/jar-$1"
  curl -sf -c "$jar" -H 'content-type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"123456\"}" "$BASE/api/v1/login" >/dev/null
  awk '$6 == "IM_SESS" { print $7 }' "$jar"
}

fuzz() {
  local identity="$1"; shift
  local session
  session="$(session_of "$identity")"
  [ -n "$session" ] || { echo "could not log in as $identity" >&2; exit 1; }
  step "as $identity"
  local reports=()
  if [ -n "${IM_FUZZ_REPORT_DIR:-}" ]; then
    reports=(--report junit,har --report-dir "$(realpath -m "$IM_FUZZ_REPORT_DIR")/$identity")
  fi
  local status=0
  # From the scratch folder: schemathesis keeps a cache (.schemathesis/) where it runs.
  (cd "$WORK" && IM_FUZZ_SESSION="$session" PYTHONPATH="$HERE" SCHEMATHESIS_HOOKS=hooks \
    timeout --signal=INT "$RUN_TIMEOUT" \
    "$VENV/bin/schemathesis" --config-file "$HERE/schemathesis.toml" --no-color run "$BASE/api/openapi.json" \
      --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
      --phases examples,coverage,fuzzing \
      --max-examples "$EXAMPLES" \
      --max-redirects 0 \
      --workers 2 \
      --generation-database none \
      --suppress-health-check all \
      ${reports[@]+"${reports[@]}"} \
      "$@") || status=$?
  if [ "$status" -ne 0 ]; then
    [ "$status" -eq 124 ] && echo "schemathesis did not finish within ${RUN_TIMEOUT} s" >&2
    # A 5xx's cause is in the server's log, never in its answer.
    echo "---- the server's log (last 40 lines) ----" >&2
    tail -n 40 "$WORK/server.log" >&2
    exit "$status"
  fi
}

# `user` first: the admin's run may ban, mute, re-role or delete every other account, `user`
# included (and tests/schemathesis/hooks.py keeps it from ending its own session). Log-out ends
# the fuzzer's session, so it is fuzzed last, on its own, as `admin`, the one account the runs
# cannot take away.
fuzz user --exclude-path /api/v1/logout
fuzz admin --exclude-path /api/v1/logout
fuzz admin --include-path /api/v1/logout
step "no findings"
