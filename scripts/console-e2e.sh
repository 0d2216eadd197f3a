#!/usr/bin/env bash
# The web console: type-check it, rebuild it from the lock file and fail when the
# committed bundle (crates/batpak-server/web/dist, embedded in the server) differs
# from the rebuild, then run its end-to-end tests in Debian's chromium against real
# `batpak serve` processes. Screenshots go to target/console-e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 ||
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1
fi
command -v chromium >/dev/null 2>&1 || { echo "!! chromium could not be installed"; exit 1; }

web=crates/batpak-server/web
(cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$web" && npx tsc --noEmit -p .)
(cd "$web" && node build.mjs)
if [ -n "$(git status --porcelain -- "$web/dist")" ]; then
  echo "!! the committed console bundle differs from a rebuild (cd $web && npm ci && node build.mjs, then commit dist/):"
  git status --porcelain -- "$web/dist"
  exit 1
fi
echo "console bundle: the committed one is the rebuild"

cargo build --quiet -p batpak-cli
artifacts="$PWD/target/console-e2e"
rm -rf "$artifacts"
(cd "$web" && BATPAK_BIN="$PWD/../../../target/debug/batpak" timeout 600 node e2e/run.mjs "$artifacts")
