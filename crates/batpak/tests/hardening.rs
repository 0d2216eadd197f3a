//! Hostile directory contents: small files that are not regular files, a LOCK file
//! removed or replaced under a running writer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers abort on setup failure"
)]

use std::path::Path;
use std::process::Command;

use batpak::{AppendOptions, Coordinate, Error, EventKind, IndexSource, RawPayload, Region, Store};

fn append(store: &Store, n: u8) -> batpak::Result<batpak::AppendReceipt> {
    store.append_raw(
        &Coordinate::new("e", "s").unwrap(),
        EventKind::custom(1, 1),
        RawPayload::opaque(&[n; 300]),
        AppendOptions::default(),
    )
}

fn closed_store(dir: &Path) {
    let store = Store::open(dir).unwrap();
    for n in 0..5 {
        append(&store, n).unwrap();
    }
    store.close().unwrap();
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Open in a thread, so a hang fails the test instead of blocking it forever.
fn open_within_seconds(dir: &Path) -> batpak::Result<Store> {
    let dir = dir.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Store::open(&dir));
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("open hung on a non-regular file")
}

#[test]
fn a_fifo_checkpoint_is_not_waited_on_and_the_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path());
    let ckpt = dir.path().join("index.ckpt");
    std::fs::remove_file(&ckpt).unwrap();
    mkfifo(&ckpt);
    let store = open_within_seconds(dir.path()).unwrap();
    match &store.open_report().index {
        IndexSource::Rebuilt { reason } => {
            assert!(reason.contains("not a regular file"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.stats().unwrap().events, 5);
    // Close replaces the FIFO with a real checkpoint.
    store.close().unwrap();
    assert!(std::fs::metadata(&ckpt).unwrap().is_file());
}

#[test]
fn a_checkpoint_linked_to_dev_zero_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path());
    let ckpt = dir.path().join("index.ckpt");
    std::fs::remove_file(&ckpt).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &ckpt).unwrap();
    let store = open_within_seconds(dir.path()).unwrap();
    assert!(matches!(
        store.open_report().index,
        IndexSource::Rebuilt { .. }
    ));
    assert_eq!(store.stats().unwrap().events, 5);
}

#[test]
fn a_fifo_cursor_or_segment_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    closed_store(dir.path());
    {
        let store = Store::open(dir.path()).unwrap();
        drop(store.cursor("c", Region::all()).unwrap());
    }
    let cursor = std::fs::read_dir(dir.path().join("cursors"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&cursor).unwrap();
    mkfifo(&cursor);
    let store = open_within_seconds(dir.path()).unwrap();
    match store.cursor("c", Region::all()) {
        Err(Error::Io { path, source, .. }) => {
            assert_eq!(path, cursor);
            assert!(
                source.to_string().contains("not a regular file"),
                "{source}"
            );
        }
        other => panic!("{other:?}"),
    }
    drop(store);
    let fake = dir.path().join("segments").join("0000000000000002.seg");
    mkfifo(&fake);
    match open_within_seconds(dir.path()) {
        Err(Error::Corrupt { path, detail, .. }) => {
            assert_eq!(path, fake);
            assert!(detail.contains("not a regular file"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_replaced_lock_file_poisons_the_writer_at_its_next_rotation_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .segment_size(4096)
        .open()
        .unwrap();
    append(&store, 1).unwrap();
    // Someone deletes LOCK and makes a new one: a second process could now lock it.
    let lock = dir.path().join("LOCK");
    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, b"").unwrap();
    let mut refused = None;
    for n in 0..40 {
        if let Err(e) = append(&store, n) {
            refused = Some(e);
            break;
        }
    }
    let err = refused.expect("a rotation happened and was refused");
    assert!(err.to_string().contains("LOCK file was replaced"), "{err}");
    assert!(matches!(append(&store, 99), Err(Error::Poisoned { .. })));
    assert!(store.close().is_err());
}

#[test]
fn a_removed_lock_file_is_noticed_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    append(&store, 1).unwrap();
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    let err = store.close().unwrap_err();
    assert!(err.to_string().contains("LOCK file was removed"), "{err}");
}
