#!/usr/bin/env bash
# Bounded fuzzing for CI: builds every cargo-fuzz target in fuzz/ once, then runs each
# for FUZZ_SECONDS (default 30) from its committed seeds (fuzz/corpus/<target>/).
# Fails if any target crashes, hangs (10 s on one input) or runs out of memory; the
# input that did it is left in fuzz/artifacts/<target>/. New inputs the fuzzer finds
# go to a temporary directory, so the checkout is not changed otherwise.
# Needs the nightly toolchain; installs cargo-fuzz if it is missing.
#   scripts/fuzz-smoke.sh [target...]   (default: every target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

echo "== cargo fuzz build (${#targets[@]} targets)"
cargo +nightly fuzz build

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  echo "== fuzz $t (${seconds} s)"
  mkdir -p "$work/$t"
  log="$work/$t.log"
  if cargo +nightly fuzz run "$t" "$work/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -dict=fuzz/batpak.dict -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    runs="$(awk '/stat::number_of_executed_units:/ { print $2 }' "$log")"
    echo "ok: ${runs:-?} inputs"
  else
    tail -n 40 "$log"
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz smoke: ${#failed[@]} target(s) failed: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets, ${seconds} s each, no crash"
