//! Salvage of damaged stores: every readable event comes over (with its identity up
//! to the first loss), and the report names each loss and nothing else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use batpak::proof::AnchorCheck;
use batpak::{
    AppendOptions, Batch, Coordinate, EventKind, RawPayload, Region, SalvageReport, Store,
    SyncPolicy, SALVAGED_FROM_KEY, SALVAGE_REPORT_FILE,
};

const EVENTS: u32 = 300;

/// 300 events over several segments: singles, and batches of three every tenth;
/// every event after the first of its entity caused by the one before it.
fn build(dir: &Path) {
    let store = Store::builder(dir)
        .segment_size(16 * 1024)
        .sync_policy(SyncPolicy::Never)
        .open()
        .unwrap();
    let mut last: Vec<Option<batpak::EventId>> = vec![None; 4];
    let mut i = 0u32;
    while i < EVENTS {
        let e = (i % 4) as usize;
        let c = Coordinate::new(format!("e:{e}"), "s").unwrap();
        let mut options = AppendOptions::default().meta("n", i.to_string());
        if let Some(cause) = last[e] {
            options = options.caused_by(cause);
        }
        if i.is_multiple_of(10) && i + 3 <= EVENTS {
            let mut batch = Batch::new();
            for j in 0..3 {
                batch.push_raw(
                    &c,
                    EventKind::custom(1, 1),
                    RawPayload::opaque(&[(i + j) as u8; 100]),
                    if j == 0 {
                        options.clone()
                    } else {
                        AppendOptions::default().meta("n", (i + j).to_string())
                    },
                );
            }
            let receipts = store.append_batch(&batch).unwrap();
            last[e] = receipts.last().map(|r| r.event_id);
            i += 3;
        } else {
            let r = store
                .append_raw(
                    &c,
                    EventKind::custom(1, 1),
                    RawPayload::opaque(&[i as u8; 100]),
                    options,
                )
                .unwrap();
            last[e] = Some(r.event_id);
            i += 1;
        }
    }
    store.close().unwrap();
}

fn all(store: &Store) -> Vec<batpak::StoredEvent> {
    store.query(&Region::all(), 0, usize::MAX).unwrap()
}

#[test]
fn a_sound_store_is_salvaged_whole_as_a_replica() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build(&src);
    let source = Store::open_read_only(&src).unwrap();
    let anchor = source.anchor().unwrap();
    let events = all(&source);
    drop(source);
    let dst = dir.path().join("dst");
    let report = Store::salvage(&src, &dst).unwrap();
    assert!(report.is_complete(), "{:?}", report.losses);
    assert_eq!(
        (report.preserved, report.reappended),
        (u64::from(EVENTS), 0)
    );
    let copy = Store::open(&dst).unwrap();
    assert_eq!(all(&copy), events);
    assert!(matches!(
        copy.verify_against(&anchor).unwrap(),
        AnchorCheck::Holds { .. }
    ));
    let written: SalvageReport =
        serde_json::from_slice(&std::fs::read(dst.join(SALVAGE_REPORT_FILE)).unwrap()).unwrap();
    assert_eq!(written, report);
    // The destination must be new.
    assert!(Store::salvage(&src, &dst).is_err());
}

#[test]
fn a_flipped_byte_loses_one_batch_and_the_rest_comes_over() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build(&src);
    let files = support::segments(&src);
    let mut bytes = std::fs::read(&files[1]).unwrap();
    bytes[2_000] ^= 0x40;
    std::fs::write(&files[1], &bytes).unwrap();
    std::fs::remove_file(src.join("index.ckpt")).unwrap();
    assert!(
        Store::open_read_only(&src).is_err(),
        "the source cannot open"
    );

    let dst = dir.path().join("dst");
    let report = Store::salvage(&src, &dst).unwrap();
    let seg_name = files[1].file_name().unwrap().to_string_lossy().into_owned();
    // The damaged bytes, plus any event of the same batch before them, and nothing
    // else but dropped causes of later events.
    let unread: Vec<_> = report
        .losses
        .iter()
        .filter(|l| l.sequence.is_none())
        .collect();
    assert_eq!(unread.len(), 1, "{:?}", report.losses);
    assert_eq!(unread[0].file, seg_name);
    assert!(unread[0].offset <= 2_000 && unread[0].why.contains("cannot be read"));
    let lost_events = report
        .losses
        .iter()
        .filter(|l| l.sequence.is_some() && !l.why.contains("re-appended without it"))
        .count() as u64;
    assert!(
        lost_events <= 2,
        "at most the rest of one batch: {:?}",
        report.losses
    );
    let gone = 1 + lost_events;
    assert_eq!(
        report.preserved + report.reappended + gone,
        u64::from(EVENTS)
    );
    assert!(report.preserved > 0 && report.reappended > 0);

    let copy = Store::open(&dst).unwrap();
    assert!(copy.verify().unwrap().body.is_clean());
    let copied = all(&copy);
    assert_eq!(copied.len() as u64, report.preserved + report.reappended);
    // Before the loss: the same ids; after it: new ids naming the original.
    let source_ids: Vec<String> = {
        let mut lines = Vec::new();
        for l in &copied {
            if let Some(orig) = l.metadata.get(SALVAGED_FROM_KEY) {
                lines.push(orig.to_string());
            }
        }
        lines
    };
    assert_eq!(source_ids.len() as u64, report.reappended);
    // Payload bytes and metadata survive both ways.
    for e in &copied {
        let n: u32 = e.metadata.get("n").unwrap().parse().unwrap();
        assert_eq!(e.payload, vec![n as u8; 100]);
    }
    // The first re-appended event's cause was in the lost bytes or preserved: either
    // it names a cause in the copy or the report says it was dropped.
    let first_new = copied
        .iter()
        .find(|e| e.metadata.get(SALVAGED_FROM_KEY).is_some())
        .unwrap();
    if let Some(cause) = first_new.causation {
        assert!(copied.iter().any(|e| e.id == cause));
    }
}

#[test]
fn a_missing_segment_is_reported_and_the_later_ones_come_over() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build(&src);
    let files = support::segments(&src);
    let total = {
        let store = Store::open_read_only(&src).unwrap();
        let n = all(&store).len();
        drop(store);
        n
    };
    std::fs::remove_file(&files[1]).unwrap();
    let dst = dir.path().join("dst");
    let report = Store::salvage(&src, &dst).unwrap();
    assert!(
        report.losses.iter().any(|l| l.why.contains("missing")),
        "{:?}",
        report.losses
    );
    assert!(report.preserved > 0 && report.reappended > 0);
    assert!(((report.preserved + report.reappended) as usize) < total);
    assert!(Store::open(&dst).unwrap().verify().unwrap().body.is_clean());
}

#[test]
fn a_torn_middle_and_a_damaged_header_are_each_reported_and_nothing_else_lost() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build(&src);
    let files = support::segments(&src);
    // A damaged header of the third segment: named, but its records come over.
    let mut third = std::fs::read(&files[2]).unwrap();
    third[1] ^= 0x40;
    std::fs::write(&files[2], &third).unwrap();
    let dst = dir.path().join("header");
    let report = Store::salvage(&src, &dst).unwrap();
    assert_eq!(report.losses.len(), 1, "{:?}", report.losses);
    assert!(report.losses[0].why.contains("header"));
    assert_eq!(report.losses[0].offset, 0);
    assert_eq!(
        report.preserved,
        u64::from(EVENTS),
        "every record still comes over"
    );

    // A torn middle: 1,000 zero bytes in the first segment.
    let mut first = std::fs::read(&files[0]).unwrap();
    first[3_000..4_000].fill(0);
    std::fs::write(&files[0], &first).unwrap();
    let dst = dir.path().join("torn");
    let report = Store::salvage(&src, &dst).unwrap();
    let unread: Vec<_> = report
        .losses
        .iter()
        .filter(|l| l.why.contains("cannot be read"))
        .collect();
    assert_eq!(unread.len(), 1, "{:?}", report.losses);
    assert!(unread[0].offset <= 3_000);
    // The records in the zeroed bytes (about ten of 130 bytes) and the rest of their
    // batch are all that is missing.
    let carried = report.preserved + report.reappended;
    assert!(
        carried >= u64::from(EVENTS) - 14 && carried < u64::from(EVENTS),
        "{report:?}"
    );
    assert!(Store::open(&dst).unwrap().verify().unwrap().body.is_clean());
}
