//! The directory lock, across processes and within one, and read-only opens.
//!
//! Cross-process cases run this test binary again as a child: `child_hold_store` is
//! ignored by default and returns at once unless `BATPAK_LOCK_CHILD_DIR` names a
//! store. The child opens the store, prints `ready`, and holds it until its stdin is
//! closed.
//!
//! Every test holds `SERIAL` while it runs: a child spawned by one test while another
//! test has a store open would inherit that store's LOCK file description until it
//! execs and make the other test's next open fail (see the last test).

// Helpers outside `#[test]` functions panic on failure just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use batpak::{
    AppendOptions, AppendReceipt, Batch, Coordinate, Error, EventId, EventKind, EventPayload,
    RawPayload, Store,
};
use serde::{Deserialize, Serialize};

/// The store directory; its presence turns `child_hold_store` into a child process.
const ENV_DIR: &str = "BATPAK_LOCK_CHILD_DIR";
/// `write` (open writable and append one event) or `read` (open read-only).
const ENV_MODE: &str = "BATPAK_LOCK_CHILD_MODE";
const READY: &str = "ready";

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Note {
    text: String,
}

impl EventPayload for Note {
    const KIND: EventKind = EventKind::custom(1, 1);
}

fn coord() -> Coordinate {
    Coordinate::new("note:1", "tenant:lock").unwrap()
}

fn append_raw(store: &Store, byte: u8) -> batpak::Result<AppendReceipt> {
    store.append_raw(
        &coord(),
        EventKind::custom(1, 2),
        RawPayload::opaque(&[byte; 16]),
        AppendOptions::default(),
    )
}

fn assert_locked<T: std::fmt::Debug>(result: batpak::Result<T>, dir: &Path, what: &str) {
    match result {
        Err(Error::Locked { path }) => {
            assert!(path.ends_with("LOCK"), "{what}: lock path {path:?}");
            assert_eq!(path, dir.join("LOCK"), "{what}");
        }
        other => panic!("{what}: expected Error::Locked, got {other:?}"),
    }
}

fn assert_read_only<T: std::fmt::Debug>(result: batpak::Result<T>, what: &str) {
    assert!(
        matches!(result, Err(Error::ReadOnly)),
        "{what}: expected Error::ReadOnly, got {result:?}"
    );
}

// ---------------------------------------------------------------------------------
// The child process.
// ---------------------------------------------------------------------------------

#[test]
#[ignore = "child process entry, run by the lock tests"]
fn child_hold_store() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let mode = std::env::var(ENV_MODE).unwrap_or_default();
    let (store, id) = match mode.as_str() {
        "write" => {
            let store = Store::open(&dir).unwrap();
            let receipt = store
                .append(
                    &coord(),
                    &Note {
                        text: "held by the child".into(),
                    },
                )
                .unwrap();
            (store, Some(receipt.event_id))
        }
        "read" => (Store::open_read_only(&dir).unwrap(), None),
        other => panic!("{ENV_MODE}={other:?}"),
    };
    let mut out = std::io::stdout().lock();
    // The leading newline keeps the line apart from libtest's "test name ... ".
    match id {
        Some(id) => writeln!(out, "\n{READY} {id}").unwrap(),
        None => writeln!(out, "\n{READY}").unwrap(),
    }
    out.flush().unwrap();
    drop(out);
    // Hold the store until the parent closes our stdin.
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest).unwrap();
    store.close().unwrap();
}

/// A child process holding the store. Killed on drop if still running, so a failing
/// test does not leave it behind.
struct Holder {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Holder {
    /// Starts the child and waits until it holds the store. Returns the id of the
    /// event it appended (writable mode).
    fn start(dir: &Path, mode: &str) -> (Holder, Option<EventId>) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_hold_store",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, dir)
            .env(ENV_MODE, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut holder = Holder { child, lines: rx };
        let id = loop {
            let line = match holder.lines.recv_timeout(Duration::from_secs(30)) {
                Ok(line) => line,
                Err(e) => panic!(
                    "the child never got ready ({e}); status {:?}",
                    holder.child.try_wait()
                ),
            };
            if let Some(rest) = line.trim().strip_prefix(READY) {
                let rest = rest.trim();
                break (!rest.is_empty()).then(|| rest.parse::<EventId>().unwrap());
            }
        };
        (holder, id)
    }

    /// Closes the child's stdin and waits for it to close the store and exit.
    fn release(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().unwrap();
        // Drain, so a failure message would show in a panic below.
        let rest: Vec<String> = self.lines.try_iter().collect();
        assert!(status.success(), "child exited with {status}: {rest:?}");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------

/// A writer in another process keeps out both writers and readers; once it exits a
/// reader gets in, sees its event, cannot write, and keeps writers out in turn.
#[test]
fn writer_in_another_process_holds_the_directory() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    let (holder, id) = Holder::start(dir, "write");
    let id = id.expect("the writing child prints its event id");
    assert_locked(Store::open(dir), dir, "writable open while a child writes");
    assert_locked(
        Store::open_read_only(dir),
        dir,
        "read-only open while a child writes",
    );
    // Still locked on a second try: a refused open leaves nothing behind.
    assert_locked(Store::open(dir), dir, "second writable open");
    holder.release();

    let reader = Store::open_read_only(dir).unwrap();
    let event = reader.get(id).unwrap().expect("the child's event");
    assert_eq!(
        event.decode::<Note>().unwrap(),
        Note {
            text: "held by the child".into()
        }
    );
    assert_eq!(reader.stream("note:1").unwrap().len(), 1);
    assert_read_only(append_raw(&reader, 1), "append_raw on a read-only store");
    assert_read_only(
        reader.append(&coord(), &Note { text: "x".into() }),
        "append on a read-only store",
    );
    let mut batch = Batch::new();
    batch.push_raw(
        &coord(),
        EventKind::custom(1, 2),
        RawPayload::opaque(b"x"),
        AppendOptions::default(),
    );
    assert_read_only(
        reader.append_batch(&batch),
        "append_batch on a read-only store",
    );
    assert_read_only(reader.sync(), "sync on a read-only store");
    // Readers share the directory; a writer is kept out while any reader is open.
    let second_reader = Store::open_read_only(dir).unwrap();
    assert_eq!(second_reader.stats().unwrap().events, 1);
    assert_locked(
        Store::open(dir),
        dir,
        "writable open while a reader is open",
    );
    reader.close().unwrap();
    assert_locked(
        Store::open(dir),
        dir,
        "writable open while the second reader is open",
    );
    second_reader.close().unwrap();

    let writer = Store::open(dir).unwrap();
    assert_eq!(writer.get(id).unwrap().unwrap(), event);
    let receipt = append_raw(&writer, 2).unwrap();
    assert_eq!(receipt.version, 1);
    writer.close().unwrap();
}

/// A reader in another process keeps writers out but lets readers in.
#[test]
fn reader_in_another_process_keeps_writers_out() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let store = Store::open(dir).unwrap();
    let receipt = append_raw(&store, 7).unwrap();
    store.close().unwrap();

    let (holder, _) = Holder::start(dir, "read");
    assert_locked(Store::open(dir), dir, "writable open while a child reads");
    let reader = Store::open_read_only(dir).unwrap();
    assert_eq!(
        reader.get(receipt.event_id).unwrap().unwrap().receipt(),
        receipt
    );
    reader.close().unwrap();
    holder.release();

    let store = Store::open(dir).unwrap();
    append_raw(&store, 8).unwrap();
    store.close().unwrap();
}

#[test]
fn second_writable_open_in_one_process_is_locked() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let first = Store::open(dir).unwrap();
    append_raw(&first, 1).unwrap();
    assert_locked(Store::open(dir), dir, "second open in the same process");
    assert_locked(
        Store::open_read_only(dir),
        dir,
        "read-only open next to a writer in the same process",
    );
    // The refused opens did not disturb the first store.
    append_raw(&first, 2).unwrap();
    first.close().unwrap();

    // Closing releases the lock; so does dropping.
    let second = Store::open(dir).unwrap();
    assert_eq!(second.stream("note:1").unwrap().len(), 2);
    drop(second);
    let third = Store::open(dir).unwrap();
    assert_eq!(third.stats().unwrap().events, 2);
    third.close().unwrap();
}

/// Everything under `dir`, relative, sorted (for "nothing was created" checks).
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            out.push(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

#[test]
fn read_only_open_of_a_missing_directory_is_an_io_error_and_creates_nothing() {
    let _serial = serial();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("no-store-here");
    match Store::open_read_only(&dir) {
        Err(Error::Io { .. }) => {}
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert!(!dir.exists(), "read-only open created the directory");
    assert!(tree(parent.path()).is_empty());
}

/// `open_read_only` promises to change nothing on disk, but on an existing directory
/// that holds no store it leaves a `LOCK` file behind.
#[test]
fn read_only_open_of_an_empty_directory_is_an_io_error_and_creates_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    match Store::open_read_only(dir.path()) {
        Err(Error::Io { .. }) => {}
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert_eq!(
        tree(dir.path()),
        Vec::<PathBuf>::new(),
        "read-only open of a directory without a store created files"
    );
}

fn only_segment(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "expected one segment: {files:?}");
    files.into_iter().next().unwrap()
}

/// A read-only open reports a torn tail without cutting it; the next writable open
/// cuts exactly that.
#[test]
fn read_only_open_reports_a_torn_tail_and_leaves_it() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let store = Store::open(dir).unwrap();
    let receipts: Vec<AppendReceipt> = (0..4).map(|i| append_raw(&store, i).unwrap()).collect();
    store.close().unwrap();

    let segment = only_segment(dir);
    let clean_len = fs::metadata(&segment).unwrap().len();
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[0x55; 37]).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let torn = fs::read(&segment).unwrap();
    assert_eq!(torn.len() as u64, clean_len + 37);

    let check_events = |store: &Store| {
        let stored: Vec<AppendReceipt> = store
            .stream("note:1")
            .unwrap()
            .iter()
            .map(|e| e.receipt())
            .collect();
        assert_eq!(stored, receipts);
    };

    for attempt in 0..2 {
        let reader = Store::open_read_only(dir).unwrap();
        let cut = reader
            .open_report()
            .tail_cut
            .clone()
            .unwrap_or_else(|| panic!("attempt {attempt}: the torn tail was not reported"));
        assert_eq!(cut.path, segment);
        assert_eq!(cut.offset, clean_len);
        assert_eq!(cut.bytes, 37);
        assert_eq!(cut.records, 0);
        assert_eq!(reader.open_report().events, 4);
        check_events(&reader);
        assert_eq!(
            fs::read(&segment).unwrap(),
            torn,
            "attempt {attempt}: the read-only open changed the file"
        );
        assert_read_only(append_raw(&reader, 9), "append on a read-only store");
        reader.close().unwrap();
        assert_eq!(
            fs::read(&segment).unwrap(),
            torn,
            "closing changed the file"
        );
    }

    let writer = Store::open(dir).unwrap();
    let cut = writer.open_report().tail_cut.clone().expect("cut reported");
    assert_eq!((cut.offset, cut.bytes, cut.records), (clean_len, 37, 0));
    assert_eq!(fs::metadata(&segment).unwrap().len(), clean_len);
    assert_eq!(fs::read(&segment).unwrap(), torn[..clean_len as usize]);
    check_events(&writer);
    let fifth = append_raw(&writer, 4).unwrap();
    assert_eq!((fifth.sequence, fifth.version), (5, 4));
    writer.close().unwrap();

    let reader = Store::open_read_only(dir).unwrap();
    assert_eq!(reader.open_report().tail_cut, None);
    assert_eq!(reader.stats().unwrap().events, 5);
    reader.close().unwrap();
}

/// Closing a store and reopening it at once fails with `Error::Locked` when another
/// thread of the process spawns a child in between: the child inherits the LOCK file
/// description until it execs, and an flock lock belongs to the description, so the
/// closed store's lock outlives it. Nothing holds the directory, yet the error says
/// "locked by another writer".
#[test]
fn reopen_is_not_locked_by_a_child_spawned_meanwhile() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap().close().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spawner = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let exe = std::env::current_exe().unwrap();
            let mut spawned = 0u32;
            while !stop.load(Ordering::Relaxed) {
                Command::new(&exe)
                    .args(["--list", "--exact", "child_hold_store"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                spawned += 1;
            }
            spawned
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut reopens, mut locked) = (0u32, 0u32);
    while Instant::now() < deadline && reopens < 2000 {
        match Store::open(dir.path()) {
            Ok(store) => store.close().unwrap(),
            Err(Error::Locked { .. }) => locked += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
        reopens += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let spawned = spawner.join().unwrap();
    assert_eq!(
        locked, 0,
        "{locked} of {reopens} reopens failed with Error::Locked while {spawned} \
         child processes were spawned, although every earlier store was closed"
    );
}

/// `lock_wait` waits for a held lock and takes it once it is released; without it,
/// or past it, the open fails with `Error::Locked` naming the lock file.
#[test]
fn an_open_waits_for_a_held_lock_as_long_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let held = batpak::Store::open(dir.path()).unwrap();
    let started = std::time::Instant::now();
    match batpak::Store::builder(dir.path())
        .lock_wait(std::time::Duration::from_millis(150))
        .open()
    {
        Err(batpak::Error::Locked { path }) => assert!(path.ends_with("LOCK")),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    let path = dir.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        batpak::Store::builder(&path)
            .lock_wait(std::time::Duration::from_secs(20))
            .open()
            .map(|s| s.frontier().visible)
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    held.close().unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), 0);
}
