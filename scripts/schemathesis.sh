#!/usr/bin/env bash
# Property-based tests of the HTTP API against its OpenAPI contract: schemathesis
# (from PyPI) drives a live `batpak serve` on a demo store and fails on any 5xx or
# any answer that breaks the schema. Bounded by SCHEMATHESIS_EXAMPLES per operation.
set -euo pipefail
cd "$(dirname "$0")/.."

examples="${SCHEMATHESIS_EXAMPLES:-10}"
venv="${SCHEMATHESIS_VENV:-target/schemathesis-venv}"
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==4.32.5"
fi

cargo build --quiet -p batpak-cli
work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

target/debug/batpak --dir "$work/store" demo >/dev/null
target/debug/batpak --dir "$work/store" serve --addr 127.0.0.1:0 --quiet >"$work/serve.out" &
server=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
addr="$(grep -o 'http://[0-9.:]*' "$work/serve.out")"
echo "schemathesis against $addr ($examples examples per operation)"
"$venv/bin/st" run "$addr/v1/openapi.json" --url "$addr" \
  --max-examples "$examples" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance \
  --request-timeout 20 --no-color --seed 1
