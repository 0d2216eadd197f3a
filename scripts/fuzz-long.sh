#!/usr/bin/env bash
# Long fuzzing runs (hours): every cargo-fuzz target in fuzz/ (or those named) for the
# given time each, one after another. The inputs found are kept in fuzz/work/<target>/
# (gitignored), so the next run continues from them; each crash, hang or out-of-memory
# input goes to fuzz/artifacts/<target>/. After a crash the target is restarted for
# the rest of its time, up to FUZZ_MAX_CRASHES (default 5) times. Writes a summary
# (executions and crashes per target) to the summary file and prints it.
# Needs the nightly toolchain; installs cargo-fuzz if it is missing.
#   scripts/fuzz-long.sh <time-per-target> [summary-file] [target...]
#   time: seconds, or with a suffix: 90s, 20m, 3h
#   summary-file: default fuzz/work/summary.txt
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  echo "usage: $0 <time-per-target: 600, 20m, 3h> [summary-file] [target...]" >&2
  exit 2
}
[ "$#" -ge 1 ] || usage
case "$1" in
  *h) per_target=$((${1%h} * 3600)) ;;
  *m) per_target=$((${1%m} * 60)) ;;
  *s) per_target=${1%s} ;;
  *[!0-9]* | "") usage ;;
  *) per_target=$1 ;;
esac
summary="${2:-fuzz/work/summary.txt}"
shift $(($# >= 2 ? 2 : 1))
max_crashes="${FUZZ_MAX_CRASHES:-5}"

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

mkdir -p fuzz/work/logs "$(dirname "$summary")"
{
  echo "# fuzz-long $(date -u +%Y-%m-%dT%H:%M:%SZ), ${per_target} s per target, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  printf '%-16s %8s %14s %8s  %s\n' target seconds executions crashes artifacts
} >"$summary"

total_crashes=0
for t in "${targets[@]}"; do
  echo "== fuzz $t (${per_target} s)"
  mkdir -p "fuzz/work/$t"
  log="fuzz/work/logs/$t.log"
  : >"$log"
  start=$(date +%s)
  execs=0
  crashes=0
  artifacts=()
  while :; do
    left=$((start + per_target - $(date +%s)))
    [ "$left" -gt 0 ] || break
    before="$(ls "fuzz/artifacts/$t" 2>/dev/null || true)"
    run_log="$(mktemp)"
    rc=0
    cargo +nightly fuzz run "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$left" -dict=fuzz/batpak.dict -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$run_log" 2>&1 || rc=$?
    cat "$run_log" >>"$log"
    n="$(awk '/stat::number_of_executed_units:/ { print $2 }' "$run_log")"
    execs=$((execs + ${n:-0}))
    rm -f "$run_log"
    [ "$rc" -ne 0 ] || break
    crashes=$((crashes + 1))
    new="$(comm -13 <(echo "$before") <(ls "fuzz/artifacts/$t" 2>/dev/null || true) | tr '\n' ' ')"
    artifacts+=("${new:-?(exit $rc, see $log)}")
    echo "crash $crashes: ${new:-exit $rc}"
    [ "$crashes" -lt "$max_crashes" ] || break
  done
  total_crashes=$((total_crashes + crashes))
  printf '%-16s %8s %14s %8s  %s\n' "$t" "$(($(date +%s) - start))" "$execs" "$crashes" \
    "${artifacts[*]:-}" >>"$summary"
done

cat "$summary"
[ "$total_crashes" -eq 0 ]
