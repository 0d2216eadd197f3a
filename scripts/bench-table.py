#!/usr/bin/env python3
"""Prints a Markdown table of batpak against SQLite from criterion's results.

Reads target/criterion/<group>/<function>/new/estimates.json (time per iteration,
in ns: the slope estimate where criterion computed one, as its console report does,
else the mean) and benchmark.json (the throughput declared per iteration) as written
by `cargo bench -p batpak-bench`. Standard library only.

Usage: scripts/bench-table.py [CRITERION_DIR]   (default: target/criterion)
"""

import json
import os
import sys

# (group, what the ops column counts, target ratio, note on how the target is read)
WORKLOADS = [
    ("append_nosync", "events/s", 5.0, None),
    ("append_fsync", "events/s", 1.0, None),
    ("append_fsync_16_threads", "events/s", 10.0, "batpak 16 threads / batpak 1 thread"),
    ("append_batch_1000", "events/s", 10.0, None),
    ("get_random", "events/s", 5.0, None),
    ("read_entity_100", "events/s (100 per entity read)", 5.0, None),
    ("walk_1000_ancestors", "events/s (1,000 per walk, links verified)", 5.0, None),
    ("projection_100k", "events/s (cold fold of one entity's 100,000 events)", 2.0, None),
]


def load(root, group, function):
    """Events per second of one benchmark, or None if it has no results."""
    base = os.path.join(root, group, function, "new")
    try:
        with open(os.path.join(base, "estimates.json")) as f:
            estimates = json.load(f)
        with open(os.path.join(base, "benchmark.json")) as f:
            benchmark = json.load(f)
    except (OSError, ValueError):
        return None
    estimate = estimates.get("slope") or estimates["mean"]
    ns = estimate["point_estimate"]
    throughput = benchmark.get("throughput") or {}
    elements = throughput.get("Elements", 1)
    if ns <= 0:
        return None
    return elements * 1e9 / ns


def load_ms(root, group, function):
    """Milliseconds per iteration of one benchmark, or None."""
    path = os.path.join(root, group, function, "new", "estimates.json")
    try:
        with open(path) as f:
            estimates = json.load(f)
    except (OSError, ValueError):
        return None
    estimate = estimates.get("slope") or estimates["mean"]
    return estimate["point_estimate"] / 1e6


# (group, function, what, target in ms)
ABSOLUTE = [
    ("open_1m", "checkpoint", "open a closed store of 1M events from its checkpoint", 150.0),
    ("open_1m", "rebuild", "open the same store with no checkpoint (full rebuild)", 1500.0),
    ("projection_100k", "cached", "projection of 100,000 events, cached, nothing new", 0.05),
    ("projection_100k", "after_one_append", "projection after one more append (append included)", 0.1),
    ("projection_100k", "restart_with_snapshot", "first projection after restart, from a snapshot", 1.0),
]


def fmt_rate(rate):
    if rate is None:
        return "n/a"
    if rate >= 100:
        return f"{rate:,.0f}"
    return f"{rate:,.1f}"


def fmt_ratio(ratio):
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
    if not os.path.isdir(root):
        sys.exit(f"no criterion results under {root}: run `cargo bench -p batpak-bench` first")

    print("| workload | batpak (ops/s) | SQLite (ops/s) | ratio batpak/SQLite | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    notes = []
    for group, unit, target, special in WORKLOADS:
        batpak = load(root, group, "batpak")
        sqlite = load(root, group, "sqlite")
        ratio = batpak / sqlite if batpak and sqlite else None
        if special is None:
            met = ratio is not None and ratio >= target
            verdict = f">= {target:g}x: {'met' if met else 'NOT met'}"
        else:
            one = load(root, group, "batpak_1_thread")
            scale = batpak / one if batpak and one else None
            met = scale is not None and scale >= target
            verdict = (
                f"{special} = {fmt_ratio(scale)}, >= {target:g}x: "
                f"{'met' if met else 'NOT met'}"
            )
            sqlite_one = load(root, group, "sqlite_1_thread")
            notes.append(
                f"{group}: 1 thread: batpak {fmt_rate(one)} events/s, "
                f"SQLite {fmt_rate(sqlite_one)} events/s; SQLite 16/1 = "
                f"{fmt_ratio(sqlite / sqlite_one if sqlite and sqlite_one else None)}"
            )
        print(
            f"| {group} | {fmt_rate(batpak)} | {fmt_rate(sqlite)} | {fmt_ratio(ratio)} | {verdict} |"
        )
    batch = load(root, "append_batch_1000", "batpak")
    floor = load(root, "append_batch_1000", "fsync_floor")
    if batch:
        notes.append(
            f"append_batch_1000: {fmt_rate(batch)} events/s against >= 1,000,000: "
            f"{'met' if batch >= 1e6 else 'NOT met'}; writing and fdatasync-ing the same "
            f"bytes alone: {fmt_rate(floor)} events/s"
        )
    owned = load(root, "read_entity_100", "batpak_owned")
    visit = load(root, "read_entity_100", "batpak")
    if owned and visit:
        notes.append(
            f"read_entity_100: {1e6 / visit:.3f} us per event visited (target <= 0.3 us); "
            f"the owned read (`stream`) {fmt_rate(owned)} events/s, the visit "
            f"{fmt_ratio(visit / owned)} of it"
        )
    floor = load(root, "projection_100k", "decode_floor")
    cold = load(root, "projection_100k", "batpak")
    if floor and cold:
        notes.append(
            f"projection_100k: the cold fold costs {fmt_ratio(floor / cold)} of decoding the "
            f"same payloads from memory ({fmt_rate(floor)} events/s; target within 1.25x)"
        )
    print()
    print("ops/s are events per second (criterion's time per iteration,")
    print("Throughput::Elements events per iteration); read_entity_100 counts each")
    print("of the 100 events of an entity read, so entity reads/s = ops/s / 100.")
    for note in notes:
        print(f"- {note}")


def absolute(root):
    rows = [(what, load_ms(root, g, f), target) for g, f, what, target in ABSOLUTE]
    if all(ms is None for _, ms, _ in rows):
        return
    print()
    print("| measure | batpak | target |")
    print("| --- | ---: | --- |")
    for what, ms, target in rows:
        if ms is None:
            print(f"| {what} | n/a | <= {target:g} ms |")
        else:
            verdict = "met" if ms <= target else "NOT met"
            shown = f"{ms:,.1f} ms" if ms >= 1 else f"{ms * 1000:,.1f} us"
            print(f"| {what} | {shown} | <= {target:g} ms: {verdict} |")


def signing(root):
    rows = []
    for group, label in [("signing_nosync", "without fsync"), ("signing_fsync", "with fsync")]:
        unsigned = load(root, group, "unsigned")
        signed = load(root, group, "signed")
        if unsigned and signed:
            rows.append((label, unsigned, signed))
    if not rows:
        return
    print()
    print("| single appends | unsigned (events/s) | signed (events/s) | signed / unsigned |")
    print("| --- | ---: | ---: | ---: |")
    for label, unsigned, signed in rows:
        print(f"| {label} | {fmt_rate(unsigned)} | {fmt_rate(signed)} | {signed / unsigned:.2f}x |")


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
    main()
    absolute(root)
    signing(root)
