#!/usr/bin/env bash
# kill -9 on a file system that really loses unsynced data (root only).
#
# A store lives on ext4 on a loop device. A writer appends events with the CLI, one
# process per append (so every append also exercises open and close), logging each
# receipt it was given to a file outside the file system. At a random moment the
# writer is frozen (SIGSTOP) and the loop device's backing image is copied: the copy
# holds only what ext4 had written to the device, not the page cache, which is what a
# power cut leaves. The backing image lives on XFS and is copied with a reflink, which
# is atomic against the loop device's concurrent writes (a plain copy races ext4's
# background journal writes and can capture a state no disk could hold). The copy is then mounted (ext4 replays its journal), and the store
# on it must open, verify clean, and hold every event whose receipt was printed.
#
# Usage: scripts/powercut-ext4.sh [ROUNDS] (default 10). Prints one line per round
# and a summary; exits 1 on the first round that loses an acknowledged event.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-10}"
if [ "$(id -u)" != 0 ]; then
  echo "needs root (mount, losetup)" >&2
  exit 2
fi
cargo build --quiet --release -p batpak-cli
bin="$PWD/target/release/batpak"
command -v mkfs.xfs >/dev/null || apt-get install -y -q xfsprogs >/dev/null
shm="$(mktemp -d /dev/shm/batpak-powercut.XXXXXX)"
work="$shm/xfs"
mnt="$shm/mnt"
after="$shm/after"
mkdir -p "$work" "$mnt" "$after"
cleanup() {
  umount "$mnt" 2>/dev/null || true
  umount "$after" 2>/dev/null || true
  umount "$work" 2>/dev/null || true
  losetup -D 2>/dev/null || true
  rm -rf "$shm"
}
trap cleanup EXIT
truncate -s 1G "$shm/xfs.img"
mkfs.xfs -q -m reflink=1 "$shm/xfs.img"
mount -o loop "$shm/xfs.img" "$work"

total_acked=0
total_found=0
for round in $(seq 1 "$rounds"); do
  rm -f "$work/disk.img"
  truncate -s 128M "$work/disk.img"
  mkfs.ext4 -q -F "$work/disk.img"
  dev="$(losetup -f --show "$work/disk.img")"
  mount "$dev" "$mnt"
  : >"$work/acks"
  (
    i=0
    while true; do
      "$bin" --dir "$mnt/store" --json append --entity "e:$((i % 7))" --scope s \
        --kind 1:1 "{\"round\":$round,\"i\":$i}" >>"$work/acks" 2>/dev/null || true
      i=$((i + 1))
    done
  ) &
  writer=$!
  sleep "$(python3 -c "import random; print(round(random.uniform(1.0, 4.0), 2))")"
  # Freeze the writer loop first (so it forks no more), then the append process it
  # started, then take the device. Only receipts printed before the copy count: an
  # append process forked just before the freeze may still finish during it.
  kill -STOP "$writer"
  pkill -STOP -P "$writer" 2>/dev/null || true
  cp "$work/acks" "$work/acks.at-cut"
  rm -f "$work/cut.img"
  cp --reflink=always "$work/disk.img" "$work/cut.img"
  pkill -KILL -P "$writer" 2>/dev/null || true
  kill -KILL "$writer" 2>/dev/null || true
  wait "$writer" 2>/dev/null || true
  umount "$mnt"
  losetup -d "$dev"

  cut_dev="$(losetup -f --show "$work/cut.img")"
  mount "$cut_dev" "$after"
  mv "$work/acks.at-cut" "$work/acks"
  acked="$(grep -c '"event_id"' "$work/acks" || true)"
  if [ ! -d "$after/store/segments" ]; then
    found=0
    status="no store yet"
  else
    if ! "$bin" --dir "$after/store" verify >"$work/verify" 2>&1; then
      keep="target/powercut-failure-$round"
      rm -rf "$keep" && mkdir -p "$keep"
      cp --sparse=always "$work/cut.img" "$work/acks" "$work/verify" "$keep/"
      echo "round $round: verify failed after the power cut (kept in $keep):" >&2
      cat "$work/verify" >&2
      exit 1
    fi
    status="$(tail -1 "$work/verify")"
    "$bin" --dir "$after/store" export >"$work/export" 2>/dev/null
    found="$(wc -l <"$work/export")"
    missing=""
    for id in $(grep '"event_id"' "$work/acks" | sed 's/.*"event_id": "\([^"]*\)".*/\1/'); do
      grep -q "\"id\":\"$id\"" "$work/export" || missing="$missing $id"
    done
    if [ -n "$missing" ]; then
      keep="target/powercut-failure-$round"
      rm -rf "$keep" && mkdir -p "$keep"
      cp --sparse=always "$work/cut.img" "$work/acks" "$work/export" "$keep/"
      echo "round $round: acknowledged events lost:$missing (of $acked); image, acks and export kept in $keep" >&2
      exit 1
    fi
  fi
  echo "round $round: $acked acknowledged, $found in the store after the cut; $status"
  total_acked=$((total_acked + acked))
  total_found=$((total_found + found))
  umount "$after"
  losetup -d "$cut_dev"
done
echo "powercut-ext4: $rounds rounds, $total_acked acknowledged events, $total_found found, none lost"
