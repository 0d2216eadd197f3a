//! Entry points for the fuzz targets in `fuzz/` and for `tests/decoder_properties.rs`
//! (feature `fuzzing`, reached as the doc-hidden `batpak::__fuzz`). Not part of the
//! public API.
//!
//! Each decoder entry takes arbitrary bytes, runs one decoder and, when it accepts
//! them, checks the round trip through the matching encoder, panicking on a
//! violation. For a canonical format that is `encode(decode(x)) == x`; where the
//! decoder ignores bytes the encoder writes as zero (reserved fields) it is
//! `decode(encode(decode(x))) == decode(x)`. Each checksummed format is then decoded a
//! second time with its checksums recomputed, so that mutations reach the fields
//! behind the checksum instead of all ending as a checksum mismatch. Every entry
//! returns whether the bytes as given decoded, so the seed corpora can be checked to
//! be valid.

use std::path::{Path, PathBuf};

use crate::chain;
use crate::coordinate::Coordinate;
use crate::dir::{
    CHECKPOINT_FILE, CURSORS_DIR, FLOOR_FILE, PENDING_FILE, SEGMENTS_DIR, SNAPSHOT_DIR,
};
use crate::error::Result;
use crate::event::RawPayload;
use crate::format::checkpoint::{self, Checkpoint};
use crate::format::cursor::CursorFile;
use crate::format::record::{self, PayloadField, RecordDraft, RecordView, FLAG_REDACTED, SALT_LEN};
use crate::format::redo::PendingRewrite;
use crate::format::segment::{self, SegmentHeader};
use crate::format::snapshot::Snapshot;
use crate::hash::hex;
use crate::kind::EventKind;
use crate::options::AppendOptions;
use crate::projection::{Freshness, Projection};
use crate::query::Region;
use crate::receipt::AppendReceipt;
use crate::store::Store;
use crate::verify::Anchor;

const CHECKSUM_LEN: usize = std::mem::size_of::<u32>();

/// One record frame (`format::record`); canonical.
pub fn record(data: &[u8]) -> bool {
    let decoded = record_round_trip(data);
    record_round_trip(&resealed_record(data));
    decoded
}

fn record_round_trip(data: &[u8]) -> bool {
    let Ok((view, len)) = record::decode(data) else {
        // Known strings never make a bad frame decode.
        assert!(
            record::decode_known(data, Some(("e", "s"))).is_err(),
            "record: decode_known accepted what decode refused"
        );
        return false;
    };
    // Known strings, right or wrong, decode to the same view.
    for known in [(view.entity, view.scope), ("e", "s")] {
        let (again, again_len) = record::decode_known(data, Some(known))
            .unwrap_or_else(|e| panic!("record: decode_known refused what decode read: {e:?}"));
        assert_eq!((&again, again_len), (&view, len), "record: decode_known");
    }
    assert!(
        len <= data.len(),
        "record: claims {len} of {} bytes",
        data.len()
    );
    assert_eq!(record::frame_len_of(&view), len, "record: frame_len_of");
    assert_eq!(
        record::implied_frame_len(data),
        Some(len),
        "record: implied length"
    );
    let _ = chain::record_hash(&view);
    assert!(
        encode_record(&view) == data[..len],
        "record: encode(decode(x)) != x for {view:?}"
    );
    true
}

/// The frame `view` was decoded from, built with the writer's encoder (and, when
/// redacted, the redaction's rewrite).
fn encode_record(view: &RecordView<'_>) -> Vec<u8> {
    let mut header = view.header.clone();
    header.flags &= !FLAG_REDACTED;
    let (salt, payload, digest) = match view.payload {
        PayloadField::Present { salt, bytes } => (*salt, bytes.to_vec(), None),
        PayloadField::Redacted { digest, len } => ([0; SALT_LEN], vec![0; len], Some(digest)),
    };
    let draft = RecordDraft {
        header,
        metadata: view.metadata,
        entity: view.entity,
        scope: view.scope,
        salt,
        payload: &payload,
    };
    let mut out = Vec::new();
    record::encode(&draft, &mut out);
    match digest {
        None => out,
        Some(digest) => match record::redacted_copy(&out, &digest) {
            Ok(redacted) => redacted,
            Err(e) => panic!("record: redacting the re-encoded frame failed: {e}"),
        },
    }
}

/// `data` with the frame checksum recomputed over what its length field covers.
fn resealed_record(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    reseal_frame(&mut out);
    out
}

/// Recomputes the checksum of the frame at the start of `frame`; returns the frame
/// length when it fits in `frame`.
fn reseal_frame(frame: &mut [u8]) -> Option<usize> {
    let len = record::peek_frame_len(frame)?;
    if len < record::PREFIX_LEN || len > frame.len() {
        return None;
    }
    let crc = crc32c::crc32c(&frame[record::LEN_OFFSET..len]);
    frame[record::CRC_OFFSET..record::LEN_OFFSET].copy_from_slice(&crc.to_le_bytes());
    Some(len)
}

/// A segment file header (`format::segment`). Reserved bytes are ignored on decode.
pub fn segment_header(data: &[u8]) -> bool {
    let decoded = segment_header_round_trip(data);
    let mut sealed = data.to_vec();
    reseal_segment_header(&mut sealed);
    segment_header_round_trip(&sealed);
    decoded
}

fn segment_header_round_trip(data: &[u8]) -> bool {
    let Ok(header) = SegmentHeader::decode(data) else {
        return false;
    };
    assert_eq!(
        SegmentHeader::decode(&header.encode()),
        Ok(header),
        "segment header: decode(encode(h)) != h"
    );
    true
}

fn reseal_segment_header(data: &mut [u8]) {
    if data.len() >= segment::HEADER_LEN {
        let crc = crc32c::crc32c(&data[..segment::CRC_OFFSET]);
        data[segment::CRC_OFFSET..segment::HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }
}

/// An index checkpoint (`format::checkpoint`). Reserved bytes are ignored on decode.
pub fn checkpoint(data: &[u8]) -> bool {
    let decoded = checkpoint_round_trip(data);
    let mut sealed = data.to_vec();
    reseal_checkpoint(&mut sealed);
    checkpoint_round_trip(&sealed);
    decoded
}

fn checkpoint_round_trip(data: &[u8]) -> bool {
    let Ok(c) = Checkpoint::decode(data) else {
        return false;
    };
    let again = Checkpoint::decode(&c.encode());
    assert!(
        again.as_ref() == Ok(&c),
        "checkpoint: decode(encode(c)) != c: {again:?}"
    );
    true
}

/// Sets the body length and both checksums to match the bytes present.
fn reseal_checkpoint(data: &mut [u8]) {
    if data.len() < checkpoint::HEADER_LEN {
        return;
    }
    let (header, body) = data.split_at_mut(checkpoint::HEADER_LEN);
    header[checkpoint::BODY_LEN_OFFSET..checkpoint::BODY_CRC_OFFSET]
        .copy_from_slice(&(body.len() as u64).to_le_bytes());
    header[checkpoint::BODY_CRC_OFFSET..checkpoint::HEADER_CRC_OFFSET]
        .copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let crc = crc32c::crc32c(&header[..checkpoint::HEADER_CRC_OFFSET]);
    header[checkpoint::HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
}

/// A durable cursor's file (`format::cursor`); canonical.
pub fn cursor(data: &[u8]) -> bool {
    let decoded = cursor_round_trip(data);
    cursor_round_trip(&resealed(data));
    decoded
}

fn cursor_round_trip(data: &[u8]) -> bool {
    let Ok(file) = CursorFile::decode(data) else {
        return false;
    };
    assert!(
        file.encode() == data,
        "cursor: encode(decode(x)) != x for {file:?}"
    );
    true
}

/// A sealed small file (cursor, pending redaction) with its checksum recomputed.
fn resealed(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    if out.len() >= CHECKSUM_LEN {
        crate::format::seal(&mut out);
    }
    out
}

/// A projection snapshot (`format::snapshot`). Reserved bytes, and the state bytes of
/// a snapshot without state, are ignored on decode.
pub fn snapshot(data: &[u8]) -> bool {
    let decoded = snapshot_round_trip(data);
    let mut sealed = data.to_vec();
    reseal_snapshot(&mut sealed);
    snapshot_round_trip(&sealed);
    decoded
}

fn snapshot_round_trip(data: &[u8]) -> bool {
    let Ok(s) = Snapshot::decode(data) else {
        return false;
    };
    let again = Snapshot::decode(&s.encode());
    assert!(
        again.as_ref() == Ok(&s),
        "snapshot: decode(encode(s)) != s: {again:?}"
    );
    true
}

fn reseal_snapshot(data: &mut [u8]) {
    if let Some(end) = data.len().checked_sub(CHECKSUM_LEN) {
        let crc = crc32c::crc32c(&data[..end]);
        data[end..].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The pending-redaction file (`format::redo`); canonical.
pub fn redo(data: &[u8]) -> bool {
    let decoded = redo_round_trip(data);
    redo_round_trip(&resealed(data));
    decoded
}

fn redo_round_trip(data: &[u8]) -> bool {
    let Ok(p) = PendingRewrite::decode(data) else {
        return false;
    };
    assert!(p.encode() == data, "redo: encode(decode(x)) != x for {p:?}");
    true
}

/// A receipt's wire form (`AppendReceipt::from_bytes`); canonical. An accepted
/// receipt must also survive its JSON form.
pub fn receipt_wire(data: &[u8]) -> bool {
    let Ok(r) = AppendReceipt::from_bytes(data) else {
        return false;
    };
    assert!(
        r.to_bytes() == data,
        "receipt: to_bytes(from_bytes(x)) != x for {r:?}"
    );
    receipt_json_round_trip(&r);
    true
}

/// A receipt's JSON form. An accepted receipt must also survive its wire form.
pub fn receipt_json(data: &[u8]) -> bool {
    let Ok(r) = serde_json::from_slice::<AppendReceipt>(data) else {
        return false;
    };
    receipt_json_round_trip(&r);
    let wire = AppendReceipt::from_bytes(&r.to_bytes());
    assert!(
        wire.as_ref().ok() == Some(&r),
        "receipt: from_bytes(to_bytes(r)) != r: {wire:?}"
    );
    true
}

fn receipt_json_round_trip(r: &AppendReceipt) {
    let json = serde_json::to_string(r).unwrap_or_default();
    let again = serde_json::from_str::<AppendReceipt>(&json);
    assert!(
        again.as_ref().ok() == Some(r),
        "receipt: JSON {json} decodes as {again:?}"
    );
}

/// An anchor's wire form (`Anchor::from_bytes`); canonical. An accepted anchor must
/// also survive its JSON form.
pub fn anchor_wire(data: &[u8]) -> bool {
    let Ok(a) = Anchor::from_bytes(data) else {
        return false;
    };
    assert!(
        a.to_bytes() == data,
        "anchor: to_bytes(from_bytes(x)) != x for {a:?}"
    );
    anchor_json_round_trip(&a);
    true
}

/// An anchor's JSON form. An accepted anchor must also survive its wire form.
pub fn anchor_json(data: &[u8]) -> bool {
    let Ok(a) = serde_json::from_slice::<Anchor>(data) else {
        return false;
    };
    anchor_json_round_trip(&a);
    let wire = Anchor::from_bytes(&a.to_bytes());
    assert!(
        wire.as_ref().ok() == Some(&a),
        "anchor: from_bytes(to_bytes(a)) != a: {wire:?}"
    );
    true
}

fn anchor_json_round_trip(a: &Anchor) {
    let json = serde_json::to_string(a).unwrap_or_default();
    let again = serde_json::from_str::<Anchor>(&json);
    assert!(
        again.as_ref().ok() == Some(a),
        "anchor: JSON {json} decodes as {again:?}"
    );
}

/// The pending-redaction file for a rewrite of the frame at `offset` of segment
/// `segment`: what the seed generator needs to build a store mid-redaction.
pub fn pending_rewrite(segment: u64, offset: u64, frame: &[u8]) -> Vec<u8> {
    PendingRewrite {
        segment,
        offset,
        frame: frame.to_vec(),
    }
    .encode()
}

/// A file of a store directory, as packed into an `open_dir` input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirFile {
    /// `segments/<number>.seg`.
    Segment(u8),
    /// `index.ckpt`.
    Checkpoint,
    /// The file of the cursor [`CURSOR`].
    Cursor,
    /// `redact.pending`.
    Pending,
    /// The snapshot of projection [`Count`] over entity [`ENTITY`].
    Snapshot,
    /// `durable.floor`.
    Floor,
}

/// The cursor `open_dir` opens.
pub const CURSOR: &str = "fuzz";
/// The entity `open_dir` projects.
pub const ENTITY: &str = "e";

/// `open_dir` input flag: recompute every checksum (segment headers, frames, checkpoint,
/// cursor, pending redaction, snapshot) before writing the files.
pub const RESEAL: u8 = 1;

const KIND_SEGMENT: u8 = 0;
const KIND_CHECKPOINT: u8 = 1;
const KIND_CURSOR: u8 = 2;
const KIND_PENDING: u8 = 3;
const KIND_SNAPSHOT: u8 = 4;
const KIND_FLOOR: u8 = 5;
const KINDS: u8 = 6;

/// Packs files into an `open_dir` input:
///
/// ```text
/// flags u8 (RESEAL), then per file: kind u8, length u32 LE, bytes
/// kind (mod 6): 0 segment (its first byte is the segment number), 1 index.ckpt,
///               2 cursor file, 3 redact.pending, 4 projection snapshot,
///               5 durable.floor
/// ```
///
/// A length past the end of the input takes what remains.
pub fn pack_dir(flags: u8, files: &[(DirFile, &[u8])]) -> Vec<u8> {
    let mut out = vec![flags];
    for &(file, bytes) in files {
        let (kind, number) = match file {
            DirFile::Segment(n) => (KIND_SEGMENT, Some(n)),
            DirFile::Checkpoint => (KIND_CHECKPOINT, None),
            DirFile::Cursor => (KIND_CURSOR, None),
            DirFile::Pending => (KIND_PENDING, None),
            DirFile::Snapshot => (KIND_SNAPSHOT, None),
            DirFile::Floor => (KIND_FLOOR, None),
        };
        let len = bytes.len() + usize::from(number.is_some());
        out.push(kind);
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        out.extend(number);
        out.extend_from_slice(bytes);
    }
    out
}

/// The files of a store directory that `open_dir` can recreate, packed (`pack_dir`).
pub fn pack_store_dir(dir: &Path, flags: u8) -> std::io::Result<Vec<u8>> {
    let mut files: Vec<(DirFile, Vec<u8>)> = Vec::new();
    for entry in std::fs::read_dir(dir.join(SEGMENTS_DIR))? {
        let path = entry?.path();
        let number = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .and_then(|n| u8::try_from(n).ok());
        if let Some(n) = number {
            files.push((DirFile::Segment(n), std::fs::read(&path)?));
        }
    }
    files.sort_by_key(|(f, _)| match f {
        DirFile::Segment(n) => *n,
        _ => 0,
    });
    for file in [
        DirFile::Checkpoint,
        DirFile::Cursor,
        DirFile::Pending,
        DirFile::Snapshot,
        DirFile::Floor,
    ] {
        match std::fs::read(path_of(dir, file)) {
            Ok(bytes) => files.push((file, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let borrowed: Vec<(DirFile, &[u8])> = files.iter().map(|(f, b)| (*f, b.as_slice())).collect();
    Ok(pack_dir(flags, &borrowed))
}

/// Splits an `open_dir` input into its files (the inverse of `pack_dir`, for any bytes).
fn unpack_dir(data: &[u8]) -> (u8, Vec<(DirFile, Vec<u8>)>) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let mut files = Vec::new();
    while let Some((&kind, after)) = rest.split_first() {
        let mut len = [0u8; 4];
        let n = after.len().min(len.len());
        len[..n].copy_from_slice(&after[..n]);
        let after = &after[n..];
        let len = (u32::from_le_bytes(len) as usize).min(after.len());
        let (bytes, next) = after.split_at(len);
        rest = next;
        let file = match kind % KINDS {
            KIND_SEGMENT => match bytes.split_first() {
                Some((&number, body)) => (DirFile::Segment(number), body.to_vec()),
                None => continue,
            },
            KIND_CHECKPOINT => (DirFile::Checkpoint, bytes.to_vec()),
            KIND_CURSOR => (DirFile::Cursor, bytes.to_vec()),
            KIND_PENDING => (DirFile::Pending, bytes.to_vec()),
            KIND_FLOOR => (DirFile::Floor, bytes.to_vec()),
            _ => (DirFile::Snapshot, bytes.to_vec()),
        };
        files.push(file);
    }
    (flags, files)
}

fn path_of(dir: &Path, file: DirFile) -> PathBuf {
    match file {
        DirFile::Segment(n) => crate::segment::segment_path(dir, u64::from(n)),
        DirFile::Checkpoint => dir.join(CHECKPOINT_FILE),
        DirFile::Floor => dir.join(FLOOR_FILE),
        DirFile::Cursor => dir
            .join(CURSORS_DIR)
            .join(format!("{}.cursor", hex::encode(CURSOR.as_bytes()))),
        DirFile::Pending => dir.join(PENDING_FILE),
        DirFile::Snapshot => dir
            .join(SNAPSHOT_DIR)
            .join(format!(
                "{}.v{}",
                hex::encode(Count::NAME.as_bytes()),
                Count::VERSION
            ))
            .join(format!("{}.snap", hex::encode(ENTITY.as_bytes()))),
    }
}

/// Recomputes every checksum of a file, leaving its lengths and fields as they are.
fn reseal(file: DirFile, bytes: &mut [u8]) {
    match file {
        DirFile::Segment(_) => {
            reseal_segment_header(bytes);
            let mut at = segment::HEADER_LEN;
            while let Some(len) = bytes.get_mut(at..).and_then(reseal_frame) {
                at += len;
            }
        }
        DirFile::Checkpoint => reseal_checkpoint(bytes),
        DirFile::Cursor | DirFile::Pending | DirFile::Floor => {
            if bytes.len() >= CHECKSUM_LEN {
                crate::format::seal(bytes);
            }
        }
        DirFile::Snapshot => reseal_snapshot(bytes),
    }
}

/// Counts an entity's events; its snapshot is the count, u64 LE.
#[derive(Clone, Debug, Default)]
pub struct Count(pub u64);

impl Projection for Count {
    const NAME: &'static str = "fuzz-count";
    const PERSIST: bool = true;

    fn apply(&mut self, _event: &crate::EventView<'_>) -> Result<()> {
        // A fuzzed snapshot may start the count anywhere.
        self.0 = self.0.wrapping_add(1);
        Ok(())
    }

    fn to_snapshot(&self) -> Option<Vec<u8>> {
        Some(self.0.to_le_bytes().to_vec())
    }

    fn from_snapshot(bytes: &[u8]) -> Option<Self> {
        Some(Count(u64::from_le_bytes(bytes.try_into().ok()?)))
    }
}

/// Writes the files of an `open_dir` input (`pack_dir`) into `dir`, which must be
/// empty, then opens the store read-only, as a view and for writing and reads what
/// opens. Any `Err` is fine; a panic is a bug. Checks that a read-only open and a view
/// change no file, and that an event appended and closed is there on reopen. Returns
/// whether the store opened for writing.
pub fn open_dir(dir: &Path, data: &[u8]) -> bool {
    let (flags, files) = unpack_dir(data);
    for (file, mut bytes) in files {
        if flags & RESEAL != 0 {
            reseal(file, &mut bytes);
        }
        let path = path_of(dir, file);
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, &bytes));
        if let Err(e) = written {
            panic!("open_dir: cannot write {}: {e}", path.display());
        }
    }

    let before = dir_contents(dir);
    if let Ok(store) = Store::open_read_only(dir) {
        read_everything(&store);
        drop(store);
    }
    if let Ok(view) = Store::builder(dir).open_view() {
        read_everything(&view);
        drop(view);
    }
    assert!(
        dir_contents(dir) == before,
        "open_dir: a read-only open or a view changed the directory"
    );

    let Ok(store) = Store::open(dir) else {
        return false;
    };
    read_everything(&store);
    exercise_writer(&store);
    let appended = Coordinate::new(ENTITY, "fuzz").and_then(|c| {
        store.append_raw(
            &c,
            EventKind::custom(1, 1),
            RawPayload::opaque(b"after fuzz"),
            AppendOptions::default(),
        )
    });
    let closed = store.close();
    if let (Ok(receipt), Ok(())) = (appended, closed) {
        let reopened = Store::open_read_only(dir);
        let found = reopened.as_ref().map(|s| s.get(receipt.event_id));
        assert!(
            matches!(found, Ok(Ok(Some(_)))),
            "open_dir: an event appended and closed is gone on reopen: {:?}",
            found.map(|f| f.map(|e| e.map(|e| e.sequence)))
        );
    }
    true
}

/// Every public read over the whole store; errors are fine.
fn read_everything(store: &Store) {
    let _ = store.stats();
    let mut after = 0;
    while let Ok(page) = store.query(&Region::all(), after, 64) {
        let Some(last) = page.last() else { break };
        assert!(
            last.sequence > after,
            "query: page does not advance past {after}"
        );
        after = last.sequence;
        for e in &page {
            let _ = e.event_hash();
            let _ = store.get(e.id);
            let _ = store.effects(e.id);
            if let Some(c) = e.correlation {
                let _ = store.correlated(c);
            }
            let _ = store.verify_receipt(&e.receipt());
        }
    }
    let _ = store.stream(ENTITY);
    let _ = store.project::<Count>(ENTITY, Freshness::Consistent);
    let _ = store.verify();
    if let Ok(anchor) = store.anchor() {
        let _ = store.verify_against(&anchor);
    }
}

/// What only a writer does with the files: resume a cursor, redact the first event.
fn exercise_writer(store: &Store) {
    if let Ok(mut c) = store.cursor(CURSOR, Region::all()) {
        if let Ok(batch) = c.next_batch(16, std::time::Duration::ZERO) {
            if let Some(last) = batch.last() {
                let _ = c.commit(last.sequence);
            }
        }
    }
    if let Ok(first) = store.query(&Region::all(), 0, 1) {
        if let Some(e) = first.first() {
            let _ = store.redact(e.id, "fuzz");
        }
    }
}

/// Every file under `dir` with its bytes, sorted by path.
fn dir_contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}
