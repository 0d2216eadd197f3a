#!/usr/bin/env bash
# Instructions per operation, counted by callgrind on the hotpath probe
# (crates/batpak-bench/src/bin/hotpath.rs), on the benchmark payload: a single append,
# a batch item (batches of 1,000), a get by id (decoded), an event of an entity read
# (visited and decoded), an event of a cold projection, and the floor that projection
# is held to (decoding the same payloads from memory). Instruction counts do not move
# with the machine's noise, so a regression shows on any day. Give a binary path to
# measure another build of the probe (an older commit's, say).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-}
if [ -z "$B" ]; then
    cargo build --release -q -p batpak-bench --bin hotpath
    B=target/release/hotpath
fi
count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$B" "$@" 2>&1 >/dev/null |
        awk '/Collected/ {print $4}'
}
per() { # per MODE N OPS_PER_N
    local base full
    base=$(count "$1" 0)
    full=$(count "$1" "$2")
    echo $(((full - base) / ($2 * $3)))
}
echo "append: $(per append 5000 1) instructions"
echo "batch item: $(per batch 20 1000) instructions"
echo "get by id: $(per get 5000 1) instructions"
echo "entity read, per event: $(per stream 500 100) instructions"
echo "cold projection, per event: $(per project 10 20000) instructions"
echo "decode floor, per event: $(per floor 10 20000) instructions"
