#!/usr/bin/env bash
# Export and import throughput and peak memory at N events (default 1,000,000), with
# the release build of the `batpak` tool. Prints wall time and peak RSS per step and
# checks that export | import --preserve | export is byte-identical.
set -euo pipefail
N=${1:-1000000}
cd "$(dirname "$0")/.."
cargo build --release -q -p batpak-cli
B="$PWD/target/release/batpak"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
python3 - "$N" > hand.jsonl <<'PY'
import sys
n = int(sys.argv[1])
w = sys.stdout.write
for i in range(n):
    w('{"entity":"acct:%d","scope":"bank","kind":"1:1","payload":{"cents":%d,"memo":"deposit number %d"}}\n' % (i % 1000, i, i))
PY
step() { echo "== $1"; shift; /usr/bin/time -f "%e s, peak RSS %M KB" "$@"; }
step "import $N hand-written lines (re-append)" "$B" --dir src import hand.jsonl
step "export" "$B" --dir src export -o export.jsonl
ls -l export.jsonl
step "import --preserve" "$B" --dir replica import --preserve export.jsonl
step "import of the export (re-append)" "$B" --dir again import export.jsonl
"$B" --dir replica export -o again.jsonl
cmp export.jsonl again.jsonl && echo "export | import --preserve | export: byte-identical"
