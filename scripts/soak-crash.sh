#!/usr/bin/env bash
# Long runs that do not belong in the test suite: many kill -9 rounds and many model
# cases. The suite runs short bounded versions of the same tests.
#   scripts/soak-crash.sh [minutes-per-part]   (default 5)
# scripts/soak.sh runs the soak binary (every part of the store at once) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-5}"
secs=$((minutes * 60))

echo "== kill -9 crash rounds (${minutes} min per variant)"
BATPAK_KILL9_ROUNDS=100000 BATPAK_KILL9_BUDGET_SECS="$secs" \
  cargo test --release -p batpak --test crash_kill9 -- --nocapture --test-threads=1 2>&1 \
  | grep -E "rounds in|; cut [0-9]|test result|panicked" | tail -n 40

echo "== kill -9 during redactions (${minutes} min)"
BATPAK_REDACT_KILL9_ROUNDS=100000 BATPAK_REDACT_KILL9_BUDGET_SECS="$secs" \
  cargo test --release -p batpak --test redaction_kill9 -- --nocapture 2>&1 \
  | grep -E "rounds,|test result|panicked" | tail -n 5

echo "== kill -9 during transactions (${minutes} min)"
BATPAK_TX_KILL9_ROUNDS=100000 BATPAK_TX_KILL9_BUDGET_SECS="$secs" \
  cargo test --release -p batpak --test transactions survive -- --nocapture 2>&1 \
  | grep -E "rounds,|test result|panicked" | tail -n 5

echo "== kill -9 during reactor runs (${minutes} min)"
BATPAK_REACTOR_KILL9_ROUNDS=100000 BATPAK_REACTOR_KILL9_BUDGET_SECS="$secs" \
  cargo test --release -p batpak --test reactors kill9 -- --nocapture 2>&1 \
  | grep -E "rounds,|test result|panicked" | tail -n 5

echo "== model-based property test"
MODEL_CASES=$((2000 * minutes)) \
  cargo test --release -p batpak --test model -- --test-threads=2 2>&1 | tail -n 5
