#!/usr/bin/env bash
# Instructions per append, per point read and per 100-event entity read, counted by
# callgrind on the hotpath probe (crates/batpak-bench/src/bin/hotpath.rs). Give a
# binary path to measure another build of the probe (an older commit's, say).
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
a0=$(count append 0); a1=$(count append 5000)
g0=$(count get 0); g1=$(count get 5000); s1=$(count stream 500)
echo "append: $(( (a1 - a0) / 5000 )) instructions"
echo "get by id: $(( (g1 - g0) / 5000 )) instructions"
echo "stream of 100: $(( (s1 - g0) / 500 )) instructions"
