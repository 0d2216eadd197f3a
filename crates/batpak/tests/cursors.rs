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

/// Found by fuzzing a cursor file: a committed position of `u64::MAX` (from the file,
/// or `CursorStart::After(u64::MAX)`) overflowed computing where delivery resumes,
/// a panic in debug builds and a redelivery from the beginning in release builds.
#[test]
fn a_cursor_at_the_last_possible_sequence_delivers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, "e");
    let mut end = store
        .cursor_from("end", Region::all(), CursorStart::After(u64::MAX))
        .unwrap();
    assert_eq!((end.committed(), end.position()), (u64::MAX, u64::MAX));
    assert!(end.next_batch(10, SHORT).unwrap().is_empty());
    end.commit(u64::MAX).unwrap();
    drop(end);
    // Reopened from its file.
    let mut end = store.cursor("end", Region::all()).unwrap();
    assert_eq!(end.committed(), u64::MAX);
    append(&store, "e");
    assert!(end.next_batch(10, SHORT).unwrap().is_empty());
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
