//! Backups taken while appends go on are complete, consistent stores with the same
//! history; refusals leave nothing behind.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::sync::atomic::{AtomicBool, Ordering};

use batpak::{AppendOptions, Coordinate, Error, EventKind, RawPayload, Region, Store, SyncPolicy};

use batpak::proof::AnchorCheck;

fn append(store: &Store, i: u32) -> u64 {
    store
        .append_raw(
            &Coordinate::new(format!("e:{}", i % 5), "s").unwrap(),
            EventKind::custom(1, 1),
            RawPayload::opaque(&[i as u8; 100]),
            AppendOptions::default(),
        )
        .unwrap()
        .sequence
}

#[test]
fn a_backup_taken_during_appends_is_a_consistent_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let store = Store::builder(&src)
        .segment_size(8 * 1024)
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    for i in 0..300 {
        append(&store, i);
    }
    let secret = append(&store, 999);
    let secret_id = store
        .query(&Region::all().sequences(secret..=secret), 0, 1)
        .unwrap()[0]
        .id;
    store.redact(secret_id, "before the backup").unwrap();
    store.cursor("c", Region::all()).unwrap().commit(0).unwrap();
    let stop = AtomicBool::new(false);
    let backup = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 1000;
            while !stop.load(Ordering::SeqCst) {
                append(&store, i);
                i += 1;
            }
        });
        let backup = store.backup(tmp.path().join("copy")).unwrap();
        stop.store(true, Ordering::SeqCst);
        backup
    });
    assert!(backup.events > 300 && backup.segments > 3, "{backup:?}");
    let anchor_at_backup = {
        // The source's history up to the backup's last event, as an anchor.
        let copy = Store::open_read_only(&backup.dir).unwrap();
        let a = copy.anchor().unwrap();
        assert_eq!(a.sequence, backup.events);
        a
    };
    assert_eq!(
        store.verify_against(&anchor_at_backup).unwrap(),
        AnchorCheck::Holds { signed_by: None },
        "the copy's history is the source's"
    );
    store.close().unwrap();

    let copy = Store::open(&backup.dir).unwrap();
    assert!(copy.verify().unwrap().body.is_clean());
    assert_eq!(copy.stats().unwrap().events, backup.events);
    assert!(copy.get(secret_id).unwrap().unwrap().is_redacted());
    // Cursor files come along.
    assert!(copy.cursor("c", Region::all()).is_ok());
    // The copy is a store of its own: it takes appends.
    append(&copy, 5);
    assert!(!tmp.path().read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("partial")));
}

#[test]
fn a_backup_refuses_a_destination_in_use_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("src")).unwrap();
    append(&store, 1);
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("x"), b"keep me").unwrap();
    match store.backup(&busy) {
        Err(Error::InvalidConfig { reason }) => assert!(reason.contains("not empty"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(busy.join("x")).unwrap(), b"keep me");
    // An empty directory is fine, and so is an empty store.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(store.backup(&empty).unwrap().events, 1);
    let blank = Store::open(tmp.path().join("blank")).unwrap();
    let b = blank.backup(tmp.path().join("blank-copy")).unwrap();
    assert_eq!((b.events, b.segments), (0, 0));
    assert_eq!(Store::open(&b.dir).unwrap().stats().unwrap().events, 0);
}

/// A backup carries an index checkpoint of exactly what it copied: it opens without a
/// rebuild, and the idempotency keys of the copied events hold on it.
#[test]
fn a_backup_opens_from_its_checkpoint_and_keeps_idempotency_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let store = Store::builder(&src).segment_size(8 * 1024).open().unwrap();
    for i in 0..200 {
        append(&store, i);
    }
    let c = Coordinate::new("keyed", "s").unwrap();
    let original = store
        .append_raw(
            &c,
            EventKind::custom(1, 1),
            RawPayload::json(b"{}"),
            AppendOptions::default().idempotency_key("once"),
        )
        .unwrap();
    let backup = store.backup(tmp.path().join("copy")).unwrap();
    // Appends after the backup rotate further; the copy's checkpoint lists none of it.
    for i in 200..400 {
        append(&store, i);
    }
    store.close().unwrap();
    let copy = Store::open(&backup.dir).unwrap();
    assert_eq!(
        copy.open_report().index,
        batpak::IndexSource::Checkpoint {
            events: backup.events
        },
        "{:?}",
        copy.open_report()
    );
    let retry = copy
        .append_raw(
            &c,
            EventKind::custom(1, 1),
            RawPayload::json(b"{}"),
            AppendOptions::default().idempotency_key("once"),
        )
        .unwrap();
    assert_eq!(retry, original);
    assert!(copy.verify().unwrap().body.is_clean());
}
