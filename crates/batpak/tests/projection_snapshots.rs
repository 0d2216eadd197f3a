//! Persisted projection snapshots: a restarted process resumes from them instead of
//! refolding history; damaged, other-version and ahead-of-the-store snapshots are
//! ignored and reported, never trusted.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use batpak::{Coordinate, EventKind, EventPayload, Freshness, Projection, Store};

use batpak::report::Finding;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, EventPayload)]
#[batpak(category = 5, type_id = 1)]
struct Tick {
    n: u64,
}

static APPLIED: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
struct Total {
    sum: u64,
    count: u64,
}

impl Projection for Total {
    const NAME: &'static str = "total";
    const VERSION: u32 = 1;
    const KINDS: &'static [EventKind] = &[Tick::KIND];
    const PERSIST: bool = true;

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        APPLIED.fetch_add(1, Ordering::SeqCst);
        self.sum += event.decode::<Tick>()?.n;
        self.count += 1;
        Ok(())
    }

    fn to_snapshot(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(self).ok()
    }

    fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The same projection under version 2: its snapshots live elsewhere.
#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
struct TotalV2(Total);

impl Projection for TotalV2 {
    const NAME: &'static str = "total";
    const VERSION: u32 = 2;
    const KINDS: &'static [EventKind] = &[Tick::KIND];
    const PERSIST: bool = true;

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        self.0.apply(event)
    }

    fn to_snapshot(&self) -> Option<Vec<u8>> {
        self.0.to_snapshot()
    }

    fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        Total::from_snapshot(bytes).map(TotalV2)
    }
}

fn fill(dir: &Path, n: u64) {
    let store = Store::open(dir).unwrap();
    let c = Coordinate::new("meter:1", "s").unwrap();
    for i in 0..n {
        store.append(&c, &Tick { n: i }).unwrap();
    }
    store
        .project::<Total>("meter:1", Freshness::Consistent)
        .unwrap();
    store.close().unwrap();
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in fs::read_dir(dir.join("projections")).unwrap() {
        for f in fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

// One test function: APPLIED is process-wide, so the steps run in order.
#[test]
fn snapshots_resume_and_bad_ones_are_ignored_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 500);
    let files = snapshot_files(dir.path());
    assert_eq!(files.len(), 1, "one snapshot written at close");

    // Restart: resume from the snapshot, nothing refolded.
    let store = Store::open(dir.path()).unwrap();
    APPLIED.store(0, Ordering::SeqCst);
    let (state, report) = store
        .project_with_report::<Total>("meter:1", Freshness::Consistent)
        .unwrap();
    assert_eq!(
        state,
        Some(Total {
            sum: (0..500).sum(),
            count: 500
        })
    );
    assert_eq!(APPLIED.load(Ordering::SeqCst), 0, "resumed, not refolded");
    let used = report.body.snapshot.clone().unwrap();
    // 500 ticks after the record of their kind's name at sequence 1.
    assert_eq!(used.sequence, 501);
    assert_eq!(
        used.blake3,
        blake3::hash(&fs::read(&files[0]).unwrap())
            .to_hex()
            .to_string()
    );
    // Then incremental as usual.
    store
        .append(&Coordinate::new("meter:1", "s").unwrap(), &Tick { n: 1000 })
        .unwrap();
    let state = store
        .project::<Total>("meter:1", Freshness::Consistent)
        .unwrap()
        .unwrap();
    assert_eq!((state.count, APPLIED.load(Ordering::SeqCst)), (501, 1));
    store.close().unwrap();

    // A damaged snapshot: ignored, reported, and the state refolded correctly.
    let file = snapshot_files(dir.path()).remove(0);
    let mut bytes = fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x08;
    fs::write(&file, &bytes).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    let (state, report) = store
        .project_with_report::<Total>("meter:1", Freshness::Consistent)
        .unwrap();
    assert_eq!(state.unwrap().count, 501);
    assert_eq!(report.body.snapshot, None);
    assert!(report.body.findings.contains(&Finding::SnapshotIgnored));
    assert!(
        report.metadata.diagnostics[0].contains("checksum"),
        "{:?}",
        report.metadata.diagnostics
    );
    drop(store);

    // Another version's snapshot in this version's place: ignored.
    let store = Store::open(dir.path()).unwrap();
    store
        .project::<Total>("meter:1", Freshness::Consistent)
        .unwrap();
    store
        .project::<TotalV2>("meter:1", Freshness::Consistent)
        .unwrap();
    drop(store); // drop writes snapshots like close
    let files = snapshot_files(dir.path());
    assert_eq!(files.len(), 2);
    let (v1, v2): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|p| p.to_string_lossy().contains(".v1"));
    fs::copy(v1[0], v2[0]).unwrap();
    let store = Store::open_read_only(dir.path()).unwrap();
    let (state, report) = store
        .project_with_report::<TotalV2>("meter:1", Freshness::Consistent)
        .unwrap();
    assert_eq!(state.unwrap().0.count, 501);
    assert!(
        report.metadata.diagnostics[0].contains("version"),
        "{:?}",
        report.metadata.diagnostics
    );
    drop(store);

    // A snapshot ahead of the store (from a longer history): ignored.
    let short = tempfile::tempdir().unwrap();
    fill(short.path(), 10);
    let theirs = snapshot_files(short.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains(".v1"))
        .unwrap();
    let ours = snapshot_files(dir.path())
        .into_iter()
        .find(|p| p.to_string_lossy().contains(".v1"))
        .unwrap();
    fs::copy(&ours, &theirs).unwrap();
    let store = Store::open_read_only(short.path()).unwrap();
    let (state, report) = store
        .project_with_report::<Total>("meter:1", Freshness::Consistent)
        .unwrap();
    assert_eq!(state.unwrap().count, 10);
    assert!(report.body.findings.contains(&Finding::SnapshotIgnored));
    assert!(
        report.metadata.diagnostics[0].contains("does not hold"),
        "{:?}",
        report.metadata.diagnostics
    );
}
