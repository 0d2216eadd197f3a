//! Redaction erases a payload from disk while every hash, link, receipt and anchor
//! still verifies; reads and projections see the marker.

#![allow(clippy::unwrap_used, reason = "test helpers abort on setup failure")]

use std::fs;
use std::path::Path;

use batpak::EventPayload as _;
use batpak::{
    AppendOptions, AppendReceipt, Coordinate, Error, EventKind, Freshness, Projection, RawPayload,
    Redaction, Region, Store,
};

use batpak::proof::{AnchorCheck, ReceiptCheck};
use serde::{Deserialize, Serialize};

const NOTE: EventKind = EventKind::custom(1, 1);

fn coord(entity: &str) -> Coordinate {
    Coordinate::new(entity, "tenant:a").unwrap()
}

fn note(store: &Store, entity: &str, text: &[u8]) -> AppendReceipt {
    store
        .append_raw(
            &coord(entity),
            NOTE,
            RawPayload::opaque(text),
            AppendOptions::default(),
        )
        .unwrap()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Whether any file under `dir` contains `needle`.
fn on_disk(dir: &Path, needle: &[u8]) -> bool {
    files(dir).iter().any(|f| {
        fs::read(f)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
    })
}

#[test]
fn redaction_erases_the_bytes_and_everything_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let secret = b"card=4111-1111-1111-1111;cvv=123";
    let short = b"pw=hunter2"; // shorter than the salt: padded, still erasable
    let before = note(&store, "customer:1", b"opened account");
    let target = note(&store, "customer:1", secret);
    let small = note(&store, "customer:2", short);
    let after = note(&store, "customer:1", b"closed account");
    let anchor = store.anchor().unwrap();
    assert!(on_disk(dir.path(), secret));

    let record = store
        .redact(target.event_id, "GDPR erasure request #42")
        .unwrap();
    store
        .redact(small.event_id, "password typed into a note")
        .unwrap();
    assert!(
        !on_disk(dir.path(), secret),
        "the secret is gone from disk on return"
    );
    assert!(!on_disk(dir.path(), short));

    // Reads say redacted rather than failing.
    let event = store.get(target.event_id).unwrap().unwrap();
    assert!(event.is_redacted());
    assert!(event.payload.is_empty());
    assert!(!store.get(before.event_id).unwrap().unwrap().is_redacted());
    #[derive(Serialize, Deserialize)]
    struct Anything {}
    impl batpak::EventPayload for Anything {
        const KIND: EventKind = NOTE;
    }
    assert!(matches!(
        event.decode::<Anything>(),
        Err(Error::Redacted { id, .. }) if id == target.event_id
    ));

    // The redaction is itself an event, on the store's redaction log in the target's
    // scope, caused by the target; the target's entity holds only its own events.
    let log = store
        .query(
            &batpak::Region::all()
                .entity("batpak:redactions")
                .with_store_records(),
            0,
            usize::MAX,
        )
        .unwrap();
    let last = log.iter().find(|e| e.id == record.event_id).unwrap();
    assert!(store
        .stream("customer:1")
        .unwrap()
        .iter()
        .all(|e| e.kind != Redaction::KIND));
    assert_eq!(last.id, record.event_id);
    assert_eq!(last.kind, Redaction::KIND);
    assert_eq!(last.causation, Some(target.event_id));
    assert_eq!(
        last.decode::<Redaction>().unwrap(),
        Redaction {
            target: target.event_id,
            reason: "GDPR erasure request #42".into()
        }
    );

    // Hashes, links, receipts and the anchor all still hold.
    assert_eq!(event.event_hash(), target.event_hash);
    let report = store.verify().unwrap();
    assert!(report.body.is_clean(), "{:?}", report.body.findings);
    for r in [before, target, small, after, record] {
        assert_eq!(store.verify_receipt(&r).unwrap(), ReceiptCheck::Unsigned);
    }
    let walk = store.walk_ancestors(record.event_id, 100).unwrap().unwrap();
    assert!(walk.broken.is_none() && walk.reached_first, "{walk:?}");
    assert_eq!(
        store.verify_against(&anchor).unwrap(),
        AnchorCheck::Holds { signed_by: None }
    );

    // Redacted stays redacted across a reopen, from the checkpoint or a rebuild.
    store.close().unwrap();
    for rebuild in [false, true] {
        if rebuild {
            fs::remove_file(dir.path().join("index.ckpt")).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert!(store.get(target.event_id).unwrap().unwrap().is_redacted());
        assert!(store.verify().unwrap().body.is_clean());
        store.close().unwrap();
    }
    assert!(!on_disk(dir.path(), secret));
}

#[test]
fn events_in_sealed_segments_are_erased_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .segment_size(4096)
        .open()
        .unwrap();
    let secret = b"the launch code is 0000-0000-0000";
    let target = note(&store, "vault", secret);
    for i in 0..100u32 {
        note(&store, "filler", &[b'f'; 100][..50 + (i as usize % 50)]);
    }
    assert!(
        store.stats().unwrap().segments > 3,
        "the target's segment is sealed"
    );
    store.redact(target.event_id, "leaked").unwrap();
    assert!(!on_disk(dir.path(), secret));
    assert!(store.verify().unwrap().body.is_clean());
}

#[test]
fn redaction_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = note(&store, "e", b"some data here");
    let unknown = {
        let mut b = r.event_id.to_bytes();
        b[0] ^= 0x40;
        batpak::EventId::from_bytes(b)
    };
    assert!(matches!(
        store.redact(unknown, "x"),
        Err(Error::NoSuchEvent { id }) if id == unknown
    ));
    let record = store.redact(r.event_id, "first").unwrap();
    let again = store.redact(r.event_id, "second");
    assert!(
        matches!(&again, Err(Error::CannotRedact { reason, .. }) if reason.contains("already")),
        "{again:?}"
    );
    assert!(matches!(
        store.redact(record.event_id, "hide the evidence"),
        Err(Error::CannotRedact { .. })
    ));
    assert_eq!(
        store
            .query(&batpak::Region::all().with_store_records(), 0, usize::MAX)
            .unwrap()
            .len(),
        2,
        "refusals write nothing"
    );
    store.close().unwrap();
    let reader = Store::open_read_only(dir.path()).unwrap();
    assert!(matches!(
        reader.redact(r.event_id, "x"),
        Err(Error::ReadOnly)
    ));
}

#[derive(Clone, Default, Debug, PartialEq, Serialize, Deserialize)]
struct Notes(Vec<String>);

impl Projection for Notes {
    const NAME: &'static str = "notes";
    const KINDS: &'static [EventKind] = &[NOTE];
    const PERSIST: bool = true;

    fn apply(&mut self, event: &batpak::EventView<'_>) -> batpak::Result<()> {
        self.0.push(if event.is_redacted() {
            "<redacted>".into()
        } else {
            String::from_utf8_lossy(event.payload()).into_owned()
        });
        Ok(())
    }

    fn to_snapshot(&self) -> Option<Vec<u8>> {
        serde_json::to_vec(&self.0).ok()
    }

    fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok().map(Notes)
    }
}

#[test]
fn projections_drop_cached_states_and_snapshots_and_see_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"SSN 078-05-1120 in a note";
    let target = {
        let store = Store::open(dir.path()).unwrap();
        note(&store, "patient:9", b"admitted");
        let target = note(&store, "patient:9", secret);
        let state = store
            .project::<Notes>("patient:9", Freshness::Consistent)
            .unwrap();
        assert_eq!(state.unwrap().0[1].as_bytes(), secret);
        store.close().unwrap(); // writes the snapshot
        target
    };
    assert!(on_disk(dir.path(), secret), "the snapshot holds the secret");

    let store = Store::open(dir.path()).unwrap();
    // Cached in memory too, from the snapshot.
    store
        .project::<Notes>("patient:9", Freshness::Consistent)
        .unwrap();
    store.redact(target.event_id, "wrong patient").unwrap();
    assert!(
        !on_disk(dir.path(), secret),
        "snapshots of the entity are removed"
    );
    let state = store
        .project::<Notes>("patient:9", Freshness::Consistent)
        .unwrap()
        .unwrap();
    assert_eq!(state.0, vec!["admitted".to_string(), "<redacted>".into()]);
    store.close().unwrap();
    assert!(
        !on_disk(dir.path(), secret),
        "the new snapshot holds only the marker"
    );
}

#[test]
fn a_retry_of_a_redacted_append_returns_the_original_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let secret = b"api_key=sk_live_0123456789abcdef";
    let append = || {
        store.append_raw(
            &coord("config"),
            NOTE,
            RawPayload::opaque(secret),
            AppendOptions::default().idempotency_key("upload-7"),
        )
    };
    let original = append().unwrap();
    store.redact(original.event_id, "secret pasted").unwrap();
    // The client never saw the first receipt and retries: the secret must not be
    // written again, and the retry is answered with the original receipt.
    let retry = append().unwrap();
    assert_eq!(retry, original);
    assert!(!on_disk(dir.path(), secret));
    assert_eq!(
        store
            .query(&batpak::Region::all().with_store_records(), 0, usize::MAX)
            .unwrap()
            .len(),
        2,
        "the event and its redaction"
    );
}

#[test]
fn a_copy_erases_what_its_source_erased_when_the_record_reaches_it() {
    let source_dir = tempfile::tempdir().unwrap();
    let copy_dir = tempfile::tempdir().unwrap();
    let source = Store::open(source_dir.path()).unwrap();
    let copy = Store::open(copy_dir.path()).unwrap();
    let secret = b"card 4111-1111-1111-1111";
    let target = note(&source, "user:1", secret);
    note(&source, "user:1", b"later");
    let all = Region::all().with_store_records().with_hidden();
    let first = source.query(&all, 0, usize::MAX).unwrap();
    copy.import_preserved(&first).unwrap();
    assert!(on_disk(copy_dir.path(), secret), "the copy holds it before");
    // The source erases it; the redaction record reaches the copy later.
    source.redact(target.event_id, "request 12").unwrap();
    let after = first.last().unwrap().sequence;
    let records = source.query(&all, after, usize::MAX).unwrap();
    copy.import_preserved(&records).unwrap();
    let erased = copy.get(target.event_id).unwrap().unwrap();
    assert!(erased.is_redacted());
    assert_eq!(
        erased.event_hash(),
        source.get(target.event_id).unwrap().unwrap().event_hash()
    );
    assert!(
        !on_disk(copy_dir.path(), secret),
        "erased from the copy's files"
    );
    assert!(copy.verify().unwrap().body.is_clean());
    assert_eq!(
        copy.anchor().unwrap().running_hash,
        source.anchor().unwrap().running_hash
    );
    // The copy reopens with it erased, and the same record again changes nothing.
    drop(copy);
    let copy = Store::open(copy_dir.path()).unwrap();
    assert!(copy.get(target.event_id).unwrap().unwrap().is_redacted());
    assert!(
        copy.import_preserved(&records).is_err(),
        "it does not continue the copy"
    );
}
