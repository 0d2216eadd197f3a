//! A view follows a store another process writes: a subscription on it delivers every
//! event the writer appends, in order, none twice, across segment rotations and the
//! writer's restart; `refresh` brings reads and the catalogue up to date.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use batpak::{
    AppendOptions, Batch, Coordinate, EventKind, EventPayload, RawPayload, Region, Store,
    SyncPolicy,
};

const KIND: EventKind = EventKind::custom(1, 1);

#[derive(serde::Serialize, serde::Deserialize)]
struct Named {
    n: u64,
}

impl EventPayload for Named {
    const KIND: EventKind = EventKind::custom(2, 1);
    const NAME: &'static str = "follow.Named";
}
const ENV_DIR: &str = "BATPAK_FOLLOW_DIR";
const ENV_COUNT: &str = "BATPAK_FOLLOW_COUNT";
/// Small segments, so the writer rotates many times while it is followed.
const SEGMENT: u64 = 16 * 1024;

fn writer(dir: &Path) -> Store {
    Store::builder(dir)
        .segment_size(SEGMENT)
        .sync_policy(SyncPolicy::Always)
        .open()
        .unwrap()
}

/// Appends `n` events numbered from `from`, alone and in batches of three, each
/// payload holding its number and the time it was appended.
fn append_numbered(store: &Store, from: u64, n: u64) {
    let mut i = from;
    while i < from + n {
        let c = Coordinate::new(format!("e:{}", i % 7), "s").unwrap();
        let stamp = |i: u64| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            format!("{i} {now}")
        };
        if i.is_multiple_of(5) && i + 3 <= from + n {
            let mut batch = Batch::new();
            for j in i..i + 3 {
                let text = stamp(j);
                batch.push_raw(
                    &c,
                    KIND,
                    RawPayload::opaque(text.as_bytes()),
                    AppendOptions::default(),
                );
            }
            store.append_batch(&batch).unwrap();
            i += 3;
        } else {
            let text = stamp(i);
            store
                .append_raw(
                    &c,
                    KIND,
                    RawPayload::opaque(text.as_bytes()),
                    AppendOptions::default(),
                )
                .unwrap();
            i += 1;
        }
    }
}

/// The number and append time in a payload.
fn numbered(payload: &[u8]) -> (u64, u128) {
    let text = std::str::from_utf8(payload).unwrap();
    let (n, at) = text.split_once(' ').unwrap();
    (n.parse().unwrap(), at.parse().unwrap())
}

/// Collects `want` events from a subscription on a view of `dir`, from the start.
fn follow(dir: &Path, want: u64, within: Duration) -> Vec<(u64, u64, u128)> {
    let view = Store::builder(dir).open_view().unwrap();
    let mut live = view.subscribe_from(Region::all(), 0).lag_limit(u64::MAX);
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while (got.len() as u64) < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = live
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("after {} events: {e:?}", got.len()));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let (n, at) = numbered(&e.payload);
        got.push((e.sequence, n, now.saturating_sub(at)));
    }
    got
}

fn check_in_order(got: &[(u64, u64, u128)], want: u64) {
    let numbers: Vec<u64> = got.iter().map(|g| g.1).collect();
    assert_eq!(
        numbers,
        (0..want).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "sequences increase"
    );
}

#[test]
fn a_view_follows_a_writer_across_rotations_and_its_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = writer(dir.path());
    append_numbered(&store, 0, 50);
    let path = dir.path().to_path_buf();
    let follower = std::thread::spawn(move || follow(&path, 1_500, Duration::from_secs(60)));
    append_numbered(&store, 50, 700);
    store.close().unwrap();
    // The writer restarts and goes on.
    let store = writer(dir.path());
    append_numbered(&store, 750, 750);
    let got = follower.join().unwrap();
    check_in_order(&got, 1_500);
    assert!(
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count()
            > 5,
        "the writer rotated while followed"
    );

    // A view's reads and catalogue catch up on refresh.
    let view = Store::builder(dir.path()).open_view().unwrap();
    let before = view.count(&Region::all()).unwrap();
    append_numbered(&store, 1_500, 10);
    assert_eq!(view.count(&Region::all()).unwrap(), before);
    assert_eq!(view.refresh().unwrap(), 10);
    assert_eq!(view.count(&Region::all()).unwrap(), before + 10);
    assert_eq!(view.refresh().unwrap(), 0);
    assert_eq!(view.entity_version("e:0"), store.entity_version("e:0"));
    // A kind the writer names after the view opened is named on the view too.
    store
        .append(&Coordinate::new("typed", "s").unwrap(), &Named { n: 1 })
        .unwrap();
    assert_eq!(view.kind_name(Named::KIND), None);
    assert_eq!(view.refresh().unwrap(), 2, "the name record and the event");
    assert_eq!(view.kind_name(Named::KIND).as_deref(), Some("follow.Named"));
}

/// The writer in its own process: run by the test below, with the store directory
/// and how many events to append in the environment.
#[test]
#[ignore = "child process of a_follower_sees_every_event_a_writer_process_appends"]
fn child_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let n: u64 = std::env::var(ENV_COUNT).unwrap().parse().unwrap();
    let store = writer(Path::new(&dir));
    let have = store.count(&Region::all()).unwrap();
    append_numbered(&store, have, n);
    store.close().unwrap();
}

fn run_writer_process(dir: &Path, n: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_writer", "--test-threads=1"])
        .env(ENV_DIR, dir)
        .env(ENV_COUNT, n.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

#[test]
fn a_follower_sees_every_event_a_writer_process_appends() {
    let dir = tempfile::tempdir().unwrap();
    // The store exists before the follower opens its view.
    writer(dir.path()).close().unwrap();
    let path = dir.path().to_path_buf();
    let follower = std::thread::spawn(move || follow(&path, 2_000, Duration::from_secs(60)));
    for _ in 0..2 {
        // Two writer processes one after the other: a restart between them.
        let status = run_writer_process(dir.path(), 1_000).wait().unwrap();
        assert!(status.success());
    }
    let got = follower.join().unwrap();
    check_in_order(&got, 2_000);
    let mut lags: Vec<u128> = got.iter().map(|g| g.2).collect();
    lags.sort_unstable();
    let pct = |p: usize| lags[(lags.len() - 1) * p / 100] as f64 / 1e6;
    eprintln!(
        "follow latency, writer append to follower delivery: p50 {:.2} ms, p99 {:.2} ms",
        pct(50),
        pct(99)
    );
}
