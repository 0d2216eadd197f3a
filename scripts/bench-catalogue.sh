#!/usr/bin/env bash
# Catalogue and tail on a store of N events (default 1,000,000) beside the sqlite3
# shell answering the same from an events table of the same rows (indexed on entity,
# scope and kind, as the bench crate's baseline is). Wall time and peak RSS per
# command, from /usr/bin/time; each batpak command includes opening the store.
set -euo pipefail
N=${1:-1000000}
cd "$(dirname "$0")/.."
cargo build --release -q -p batpak-cli
B="$PWD/target/release/batpak"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
python3 - "$N" <<'PY'
import json, sqlite3, sys
n = int(sys.argv[1])
db = sqlite3.connect("base.db")
db.executescript("""
PRAGMA journal_mode=WAL;
CREATE TABLE events(seq INTEGER PRIMARY KEY, entity TEXT NOT NULL, scope TEXT NOT NULL,
  kind INTEGER NOT NULL, version INTEGER NOT NULL, ts INTEGER NOT NULL, payload BLOB NOT NULL);
""")
with open("lines.jsonl", "w") as out:
    rows = []
    for i in range(n):
        entity = "acct:%d" % (i % 1000)
        payload = {"cents": i, "memo": "deposit number %d" % i}
        out.write(json.dumps({"entity": entity, "scope": "bank", "kind": "1:1", "payload": payload}) + "\n")
        rows.append((i + 1, entity, "bank", 0x1001, i // 1000, i, json.dumps(payload).encode()))
    db.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?)", rows)
db.executescript("""
CREATE INDEX by_entity ON events(entity, version);
CREATE INDEX by_scope ON events(scope);
CREATE INDEX by_kind ON events(kind);
""")
db.commit()
PY
"$B" --dir store import lines.jsonl > /dev/null
t() { /usr/bin/time -f "%e s, %M KB" "$@" > /dev/null; }
for c in "tail --limit 10" "entities --limit 10" "kinds" "scopes" "count" "count --prefix acct:7"; do
    echo "batpak $c: $( { t "$B" --dir store $c; } 2>&1 )"
done
# One append each (a CLI append opens, appends, syncs and closes: a close writes the
# durable floor, not the whole checkpoint, unless a sixteenth of the store is new).
for i in 1 2 3; do
    echo "batpak append ($i): $( { echo '{"cents":1}' | t "$B" --dir store append --entity acct:1 --scope bank --kind 1:1; } 2>&1 )"
done
q() { echo "sqlite3 $1: $( { t sqlite3 base.db "$2"; } 2>&1 )"; }
for i in 1 2 3; do
    q "append ($i)" "PRAGMA synchronous=FULL; INSERT INTO events VALUES ((SELECT max(seq)+1 FROM events), 'acct:1', 'bank', 4097, 1000, 0, x'00')"
done
q "tail 10" "SELECT * FROM events ORDER BY seq DESC LIMIT 10"
q "entities 10" "SELECT entity, count(*), min(seq), max(seq), max(version) FROM events GROUP BY entity ORDER BY entity LIMIT 10"
q "kinds" "SELECT kind, count(*) FROM events GROUP BY kind"
q "scopes" "SELECT scope, count(*) FROM events GROUP BY scope"
q "count" "SELECT count(*) FROM events"
q "count acct:7" "SELECT count(*) FROM events WHERE entity = 'acct:7' OR entity LIKE 'acct:7:%'"
