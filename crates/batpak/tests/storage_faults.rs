//! Failing file-system calls through the storage seam (`fault-injection` feature):
//! each failure is reported with the operation and the path, a failed segment write
//! or fsync poisons the store, and reopening loses no acknowledged event.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::io::ErrorKind;

use batpak::__fault::{Fault, FaultPlan, Op};
use batpak::{AppendOptions, Coordinate, Error, EventKind, IndexSource, RawPayload, Region, Store};

fn append(store: &Store, n: u8) -> batpak::Result<batpak::AppendReceipt> {
    store.append_raw(
        &Coordinate::new("acct:1", "s").unwrap(),
        EventKind::custom(1, 1),
        RawPayload::opaque(&[n; 32]),
        AppendOptions::default(),
    )
}

/// The I/O error at the root of `err`, with the operation batpak named.
fn io_cause(err: &Error) -> (&'static str, ErrorKind) {
    let err = match err {
        Error::Poisoned { source } => &**source,
        other => other,
    };
    match err {
        Error::Io { op, source, .. } => (op, source.kind()),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn a_full_disk_on_append_poisons_and_reopen_keeps_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(dir.path());
    let store = Store::open(dir.path()).unwrap();
    let acked: Vec<_> = (0..5).map(|n| append(&store, n).unwrap()).collect();
    plan.fail_nth(Op::Write, 1, Fault::Enospc);
    let err = append(&store, 9).unwrap_err();
    assert_eq!(
        io_cause(&err),
        ("write segment", ErrorKind::StorageFull),
        "{err}"
    );
    assert!(matches!(append(&store, 10), Err(Error::Poisoned { .. })));
    drop(store);
    plan.clear();
    let store = Store::open(dir.path()).unwrap();
    let events = store.stream("acct:1").unwrap();
    let receipts: Vec<_> = events.iter().map(|e| e.receipt()).collect();
    assert_eq!(receipts, acked);
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn a_torn_append_is_cut_at_reopen_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(dir.path());
    let store = Store::open(dir.path()).unwrap();
    let acked = append(&store, 1).unwrap();
    plan.fail_nth(Op::Write, 1, Fault::ShortWrite);
    let err = append(&store, 2).unwrap_err();
    assert_eq!(io_cause(&err).0, "write segment", "{err}");
    drop(store);
    plan.clear();
    let store = Store::open(dir.path()).unwrap();
    let cut = store
        .open_report()
        .tail_cut
        .clone()
        .expect("the torn half is cut");
    assert!(cut.bytes > 0, "{cut:?}");
    let events = store.stream("acct:1").unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].receipt(), acked);
    assert_eq!(append(&store, 3).unwrap().sequence, 2);
}

#[test]
fn a_failed_checkpoint_rename_at_close_is_reported_and_the_next_open_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(dir.path());
    let store = Store::open(dir.path()).unwrap();
    for n in 0..10 {
        append(&store, n).unwrap();
    }
    plan.fail_nth(Op::Rename, 1, Fault::Eio);
    let err = store.close().unwrap_err();
    assert_eq!(io_cause(&err).0, "rename", "{err}");
    plan.clear();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.open_report().index,
        IndexSource::Rebuilt { .. }
    ));
    assert_eq!(store.stats().unwrap().events, 10);
}

#[test]
fn an_unreadable_checkpoint_makes_open_rebuild_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in 0..10 {
        append(&store, n).unwrap();
    }
    store.close().unwrap();
    let plan = FaultPlan::install(dir.path());
    // Open reads `redact.pending` and `compaction.manifest` (absent here) first, then
    // the checkpoint.
    plan.fail_nth(Op::Read, 3, Fault::Eio);
    let store = Store::open(dir.path()).unwrap();
    match &store.open_report().index {
        IndexSource::Rebuilt { reason } => assert!(reason.contains("index.ckpt"), "{reason}"),
        other => panic!("expected a rebuild, got {other:?}"),
    }
    assert_eq!(store.stats().unwrap().events, 10);
}

#[test]
fn a_failed_cursor_commit_keeps_the_previous_position() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(dir.path());
    let store = Store::open(dir.path()).unwrap();
    for n in 0..4 {
        append(&store, n).unwrap();
    }
    let mut cursor = store.cursor("c", Region::all()).unwrap();
    let delivered = cursor
        .next_batch(10, std::time::Duration::from_secs(1))
        .unwrap();
    assert_eq!(delivered.len(), 4);
    cursor.commit(2).unwrap();
    plan.fail_nth(Op::Sync, 1, Fault::Eio);
    let err = cursor.commit(4).unwrap_err();
    assert_eq!(io_cause(&err).0, "fsync", "{err}");
    drop(cursor);
    assert_eq!(store.cursor("c", Region::all()).unwrap().committed(), 2);
}

#[test]
fn a_failed_lock_or_directory_fsync_fails_open_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(dir.path());
    plan.fail_nth(Op::Lock, 1, Fault::Eio);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("LOCK"), "{err}");
    plan.fail_nth(Op::SyncDir, 1, Fault::Eio);
    let err = Store::open(dir.path()).unwrap_err();
    assert_eq!(io_cause(&err).0, "fsync directory", "{err}");
    plan.clear();
    let store = Store::open(dir.path()).unwrap();
    append(&store, 1).unwrap();
}

/// With the `log` feature, poisoning and the open decisions are reported.
#[cfg(feature = "log")]
#[test]
fn poisoning_and_open_decisions_are_logged() {
    use std::sync::Mutex;

    struct Capture(Mutex<Vec<String>>);
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            self.0.lock().unwrap().push(record.args().to_string());
        }
        fn flush(&self) {}
    }
    static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Info);

    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(dir.path());
    let store = Store::open(dir.path()).unwrap();
    plan.fail_nth(Op::Sync, 1, Fault::Eio);
    append(&store, 1).unwrap_err();
    drop(store);
    plan.clear();
    drop(Store::open(dir.path()).unwrap());
    let dir_text = dir.path().display().to_string();
    let lines: Vec<String> = CAPTURE
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(&dir_text))
        .cloned()
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("poisoned") && l.contains("injected fsync")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("opened")), "{lines:?}");
}

#[test]
fn a_redaction_retried_after_a_failure_before_its_rewrite_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let plan = FaultPlan::install(dir.path());
    let store = Store::open(dir.path()).unwrap();
    let target = append(&store, 1).unwrap();
    // The first file created is redact.pending's temporary file: the record is
    // appended, the rewrite never starts.
    plan.fail_nth(Op::Create, 1, Fault::Enospc);
    let err = store.redact(target.event_id, "first").unwrap_err();
    assert_eq!(io_cause(&err).1, ErrorKind::StorageFull, "{err}");
    assert!(!store.get(target.event_id).unwrap().unwrap().is_redacted());
    let again = store.redact(target.event_id, "retry").unwrap();
    assert!(store.get(target.event_id).unwrap().unwrap().is_redacted());
    let records = store
        .query(&Region::all().kind(EventKind::custom(0, 3)), 0, 10)
        .unwrap();
    assert_eq!(records.len(), 1, "one redaction record");
    assert_eq!(records[0].receipt(), again);
    assert!(store.verify().unwrap().body.is_clean());
}
