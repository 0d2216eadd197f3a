#!/usr/bin/env bash
# The soak binary (crates/batpak-bench/src/bin/soak.rs): writers, readers, a
# subscriber, a durable cursor, a reactor, redactions, backups, anchors and
# close/reopen cycles against one store, every invariant checked as it runs. Exits
# with the binary's code (1 on the first violation). The output is also kept in
# target/soak-<date>.log.
#   scripts/soak.sh [minutes] [more soak flags: --seed S --sync always|never|interval --dir D]
# The long kill -9 and model runs are scripts/soak-crash.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
shift || true
mkdir -p target
log="target/soak-$(date +%Y-%m-%d-%H%M%S).log"
cargo build --release -p batpak-bench --bin soak
echo "== soak for ${minutes} min, log in ${log}"
cargo run --release --quiet -p batpak-bench --bin soak -- --minutes "$minutes" "$@" 2>&1 | tee "$log"
