//! `Store::events` walks any number of events in bounded memory: measured with a
//! counting allocator, a walk over 200,000 events holds about one page of them at a
//! time, while `query` of the same region holds them all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use batpak::{AppendOptions, Batch, Coordinate, EventKind, RawPayload, Region, Store, SyncPolicy};

/// The system allocator, counting the bytes in use and their high-water mark.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[expect(
    unsafe_code,
    reason = "a global allocator is an unsafe trait; this one only forwards to System and counts"
)]
// SAFETY: every call forwards to `System` with the caller's layout and pointer, so
// `System`'s guarantees hold; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by each test: the counters are process-wide, so the tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The peak heap above what was in use when `f` started.
fn peak_during(f: impl FnOnce()) -> usize {
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed) - base
}

/// A store (no fsync) of `n` events of `payload`, round-robin over `entities`.
fn filled(n: usize, entities: usize, payload: &[u8]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    for first in (0..n).step_by(10_000) {
        let mut batch = Batch::new();
        for i in first..(first + 10_000).min(n) {
            let c = Coordinate::new(format!("e:{}", i % entities), "s").unwrap();
            batch.push_raw(
                &c,
                EventKind::custom(1, 1),
                RawPayload::opaque(payload),
                AppendOptions::default(),
            );
        }
        store.append_batch(&batch).unwrap();
    }
    (dir, store)
}

#[test]
fn a_walk_over_200000_events_holds_one_page() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    const N: usize = 200_000;
    let payload = [7u8; 100];
    let (_dir, store) = filled(N, 100, &payload);
    let region = Region::all();
    let mut walked = 0usize;
    let streaming = peak_during(|| {
        for event in store.events(&region, 0) {
            walked += event.unwrap().payload.len();
        }
    });
    assert_eq!(walked, N * payload.len());
    let mut held = 0usize;
    let buffered = peak_during(|| {
        held = store.query(&region, 0, usize::MAX).unwrap().len();
    });
    assert_eq!(held, N);
    eprintln!("peak heap: walk {streaming} bytes, query {buffered} bytes");
    // One page of 1,024 events is a few hundred KiB; the whole region is tens of MiB.
    assert!(streaming < 4 << 20, "the walk peaked at {streaming} bytes");
    assert!(
        buffered > 10 * streaming,
        "query {buffered} vs walk {streaming} bytes"
    );
}

#[test]
fn a_close_writes_its_checkpoint_without_copies_of_the_whole_file() {
    let _turn = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (dir, store) = filled(200_000, 1000, &[7u8; 20]);
    let ckpt = dir.path().join("index.ckpt");
    let peak = peak_during(|| store.close().unwrap());
    let file = std::fs::metadata(&ckpt).unwrap().len() as usize;
    eprintln!("peak heap at close: {peak} bytes for a checkpoint of {file} bytes");
    // The columns exported once (freed one by one as they are written) and the file's
    // bytes, allocated once: about twice the file. A body encoded apart and copied
    // into the file, grown past its estimate, held four times it.
    assert!(
        peak < 2 * file + file / 10,
        "the close peaked at {peak} bytes for a checkpoint of {file}"
    );
}
