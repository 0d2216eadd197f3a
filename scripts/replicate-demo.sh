#!/usr/bin/env bash
# Replication, end to end on this machine: a demo store, a PostgreSQL server and a
# NATS server with JetStream of its own (Debian's, in a temporary directory on free
# ports), `batpak replicate` into each, `batpak verify-replica`, and followers that
# rebuild the store from each copy.
# Everything it starts it stops; the directories are left for a look.
#
#   bash scripts/replicate-demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

pgbin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort | tail -1)"
[ -x "$pgbin/postgres" ] || { echo "PostgreSQL is not installed: apt-get install postgresql"; exit 1; }
command -v nats-server >/dev/null || { echo "NATS is not installed: apt-get install nats-server"; exit 1; }
cargo build --quiet --release -p batpak-cli
batpak="$PWD/target/release/batpak"

work="$(mktemp -d /tmp/batpak-replicate-demo.XXXXXX)"
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$work/pg" && [ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg/data" -A trust -U postgres --no-sync >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1" -w -l "$work/pg/log" start >/dev/null
nport="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
nats-server -js -a 127.0.0.1 -p "$nport" -sd "$work/nats" >"$work/nats.log" 2>&1 &
nats_pid=$!
trap 'kill $nats_pid 2>/dev/null; as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null' EXIT
url="postgres://postgres@127.0.0.1:$port/postgres"
nats="nats://127.0.0.1:$nport"
for _ in $(seq 100); do grep -q "Server is ready" "$work/nats.log" && break; sleep 0.1; done

echo "== a demo store"
"$batpak" --dir "$work/store" demo >/dev/null
"$batpak" --dir "$work/store" stats | head -3
echo "== batpak replicate --to $url --schema shop --until-caught-up"
"$batpak" --dir "$work/store" replicate --to "$url" --schema shop --until-caught-up
"$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -At -c \
  "SELECT scope, count(*) FROM shop.events GROUP BY scope ORDER BY scope" postgres
echo "== batpak verify-replica (with an anchor of the store)"
"$batpak" --dir "$work/store" anchor --json > "$work/anchor.json"
"$batpak" verify-replica "$url" --schema shop --anchor "$work/anchor.json"
echo "== batpak follow: a replica rebuilt from the copy"
"$batpak" --dir "$work/replica" follow --from "$url" --schema shop --until-caught-up
"$batpak" --dir "$work/replica" verify | tail -1
"$batpak" --dir "$work/replica" verify-anchor < "$work/anchor.json"
echo "== the same into NATS JetStream: replicate, verify-replica, follow"
"$batpak" --dir "$work/store" replicate --to "$nats" --name shop --until-caught-up
"$batpak" verify-replica "$nats" --name shop --anchor "$work/anchor.json"
"$batpak" --dir "$work/replica-nats" follow --from "$nats" --name shop --until-caught-up
"$batpak" --dir "$work/replica-nats" verify-anchor < "$work/anchor.json"
echo "(the store, the replicas and the servers' data are in $work)"
