//! Durable cursors: resume after the last commit across restarts, bound to their
//! region, at least once.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::time::Duration;

use batpak::{
    AppendOptions, Coordinate, CursorStart, Error, EventKind, RawPayload, Region, Store, SyncPolicy,
};

const KIND: EventKind = EventKind::custom(1, 1);
const SHORT: Duration = Duration::from_millis(20);

fn append(store: &Store, entity: &str) -> u64 {
    store
        .append_raw(
            &Coordinate::new(entity, "s").unwrap(),
            KIND,
            RawPayload::opaque(b"x"),
            AppendOptions::default(),
        )
        .unwrap()
        .sequence
}

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir)
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap()
}

fn drain(cursor: &mut batpak::Cursor<'_>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        let batch = cursor.next_batch(n - got.len(), SHORT).unwrap();
        if batch.is_empty() {
            break;
        }
        got.extend(batch.iter().map(|e| e.sequence));
    }
    got
}

#[test]
fn a_cursor_resumes_after_its_last_commit_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let region = Region::all().entity_prefix("order");
    let orders: Vec<u64> = {
        let store = open(dir.path());
        let mut orders = Vec::new();
        for i in 0..100 {
            orders.push(append(&store, &format!("order:{}", i % 4)));
            append(&store, "noise"); // outside the region
        }
        let mut cursor = store.cursor("mailer", region.clone()).unwrap();
        let got = drain(&mut cursor, 30);
        assert_eq!(got, orders[..30]);
        cursor.commit(orders[19]).unwrap();
        assert_eq!(cursor.committed(), orders[19]);
        drop(cursor);
        store.close().unwrap();
        orders
    };
    let store = open(dir.path());
    let mut cursor = store.cursor("mailer", region.clone()).unwrap();
    assert_eq!(cursor.committed(), orders[19]);
    // Nothing committed again; the delivered-but-uncommitted 20..30 come back.
    let got = drain(&mut cursor, 1_000);
    assert_eq!(got, orders[20..]);
    // Then live.
    let next = append(&store, "order:9");
    let batch = cursor.next_batch(10, Duration::from_secs(5)).unwrap();
    assert_eq!(
        batch.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![next]
    );
    assert!(
        cursor.next_batch(10, SHORT).unwrap().is_empty(),
        "timeout: empty"
    );
    cursor.commit(next).unwrap();
    drop(cursor);
    let mut again = store.cursor("mailer", region).unwrap();
    assert!(again.next_batch(10, SHORT).unwrap().is_empty());
}

#[test]
fn new_cursors_start_where_asked_and_existing_ones_ignore_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for _ in 0..10 {
        append(&store, "e");
    }
    let mut after = store
        .cursor_from("after", Region::all(), CursorStart::After(7))
        .unwrap();
    assert_eq!(drain(&mut after, 100), vec![8, 9, 10]);
    let mut now = store
        .cursor_from("now", Region::all(), CursorStart::Now)
        .unwrap();
    assert!(now.next_batch(10, SHORT).unwrap().is_empty());
    let eleven = append(&store, "e");
    assert_eq!(drain(&mut now, 100), vec![eleven]);
    drop(after);
    // Existing: the start is ignored, it resumes after its commit (nothing yet: 7).
    let mut after = store
        .cursor_from("after", Region::all(), CursorStart::Beginning)
        .unwrap();
    assert_eq!(after.committed(), 7);
    assert_eq!(drain(&mut after, 100), vec![8, 9, 10, 11]);
}

#[test]
fn misuse_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for _ in 0..5 {
        append(&store, "e");
    }
    let mut c = store.cursor("c", Region::all().entity("e")).unwrap();
    assert!(matches!(
        store.cursor("c", Region::all().entity("e")),
        Err(Error::CursorInUse { .. })
    ));
    assert_eq!(drain(&mut c, 3), vec![1, 2, 3]);
    match c.commit(4) {
        Err(Error::InvalidCommit {
            sequence: 4,
            reason,
            ..
        }) => {
            assert!(reason.contains("past the last delivered"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    c.commit(3).unwrap();
    assert!(matches!(c.commit(2), Err(Error::InvalidCommit { .. })));
    drop(c);
    match store.cursor("c", Region::all().entity("f")) {
        Err(Error::CursorRegionMismatch {
            name,
            stored,
            requested,
        }) => {
            assert_eq!(name, "c");
            assert!(stored.contains("\"e\"") && requested.contains("\"f\""));
        }
        other => panic!("{other:?}"),
    }
    // The refused open released the name.
    assert!(store.cursor("c", Region::all().entity("e")).is_ok());
    // The longest name works (its file name is the name in hex).
    let longest = "n".repeat(batpak::Cursor::MAX_NAME);
    drop(store.cursor(&longest, Region::all()).unwrap());
    for bad in ["", "a\nb", &"x".repeat(batpak::Cursor::MAX_NAME + 1)] {
        assert!(matches!(
            store.cursor(bad, Region::all()),
            Err(Error::InvalidConfig { .. })
        ));
    }
    // A damaged cursor file is named.
    let file = std::fs::read_dir(dir.path().join("cursors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "cursor"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let name = String::from_utf8(
        (0..file.file_stem().unwrap().len() / 2)
            .map(|i| {
                u8::from_str_radix(
                    &file.file_stem().unwrap().to_str().unwrap()[2 * i..2 * i + 2],
                    16,
                )
                .unwrap()
            })
            .collect(),
    )
    .unwrap();
    match store.cursor(&name, Region::all()) {
        Err(Error::Corrupt { path, .. }) => assert_eq!(path, file),
        other => panic!("{other:?}"),
    }
    store.close().unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert!(matches!(
        reader.cursor("r", Region::all()),
        Err(Error::ReadOnly)
    ));
}

#[test]
fn a_cursor_past_the_end_is_wound_back_and_reported() {
    // Store `a` got 20 events and a cursor committed at 20; store `b` (the same
    // cursor file, 5 events) is what a crash that lost events 6..=20 would leave.
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    {
        let store = open(a.path());
        for _ in 0..20 {
            append(&store, "x");
        }
        let mut cursor = store.cursor("c", Region::all()).unwrap();
        assert_eq!(drain(&mut cursor, 20).len(), 20);
        cursor.commit(20).unwrap();
        let store_b = open(b.path());
        for _ in 0..5 {
            append(&store_b, "x");
        }
    }
    let name = std::fs::read_dir(a.path().join("cursors"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    std::fs::create_dir_all(b.path().join("cursors")).unwrap();
    std::fs::copy(
        a.path().join("cursors").join(&name),
        b.path().join("cursors").join(&name),
    )
    .unwrap();
    let store = open(b.path());
    let mut cursor = store.cursor("c", Region::all()).unwrap();
    assert_eq!(cursor.rewound_from(), Some(20));
    assert_eq!(cursor.committed(), 5);
    // The next events reuse sequences 6.. and are delivered, not skipped.
    assert_eq!(append(&store, "x"), 6);
    assert_eq!(drain(&mut cursor, 1), vec![6]);
    cursor.commit(6).unwrap();
    drop(cursor);
    let cursor = store.cursor("c", Region::all()).unwrap();
    assert_eq!((cursor.committed(), cursor.rewound_from()), (6, None));
}

/// `After(u64::MAX)` used to overflow where delivery resumes (found by fuzzing: a
/// panic in debug builds, a redelivery from the beginning in release builds); a
/// start past the end is now refused, and a stored position past it wound back.
#[test]
fn a_new_cursor_cannot_start_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for _ in 0..3 {
        append(&store, "x");
    }
    for start in [4, 1000, u64::MAX] {
        match store.cursor_from("c", Region::all(), CursorStart::After(start)) {
            Err(Error::InvalidConfig { reason }) => {
                assert!(
                    reason.contains(&format!("after sequence {start}")),
                    "{reason}"
                );
                assert!(reason.contains("newest visible event is 3"), "{reason}");
            }
            other => panic!("After({start}): {other:?}"),
        }
    }
    let mut cursor = store
        .cursor_from("c", Region::all(), CursorStart::After(3))
        .unwrap();
    assert_eq!(append(&store, "x"), 4);
    assert_eq!(drain(&mut cursor, 1), vec![4]);
}

/// A cursor's `passed` moves past events its region leaves out (here the store's
/// redaction record and another entity's events), so a consumer can commit up to the
/// frontier and a restarted cursor does not scan them again; `position` stays at the
/// last delivered event.
#[test]
fn a_cursor_passes_events_its_region_leaves_out_and_can_commit_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = append(&store, "e");
    let second = append(&store, "e");
    for _ in 0..3 {
        append(&store, "other");
    }
    let target = store.query(&Region::all().entity("e"), 0, 1).unwrap()[0].id;
    store.redact(target, "test").unwrap(); // a store record, hidden from Region::all()
    let frontier = store.frontier().visible;
    assert_eq!(frontier, second + 4);

    let mut c = store.cursor("sparse", Region::all().entity("e")).unwrap();
    assert_eq!(drain(&mut c, 10), vec![first, second]);
    assert_eq!(c.position(), second);
    assert_eq!(
        c.passed(),
        frontier,
        "nothing after `second` is the region's"
    );
    c.commit(c.passed()).unwrap();
    drop(c);
    let mut c = store.cursor("sparse", Region::all().entity("e")).unwrap();
    assert_eq!(c.committed(), frontier);
    assert!(drain(&mut c, 10).is_empty());
    let next = append(&store, "e");
    assert_eq!(drain(&mut c, 10), vec![next]);

    // A subscription over every user event passes the hidden redaction record too.
    let mut all = store.subscribe_from(Region::all(), 0);
    let mut seen = 0;
    while all.try_recv().is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 6, "five user events and the one appended since");
    assert_eq!(all.passed(), store.frontier().visible);
}
