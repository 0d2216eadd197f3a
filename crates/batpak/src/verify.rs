//! Full verification: rescan every segment and check every claim the store makes.
//!
//! For each record in sequence order: its checksum and fields, that its sequence is
//! the next one, its recomputed event hash, the link to its entity's previous event,
//! and that the index points at it. Along the way the store-wide running hash is
//! computed:
//!
//! ```text
//! running_0 = 32 zero bytes
//! running_n = blake3::keyed_hash(derive_key("batpak 2026 running hash v1", ""),
//!                                sequence_n u64 | running_{n-1} | event_hash_n)
//! ```
//!
//! An [`Anchor`] (sequence, running hash) kept outside the store detects truncation,
//! reordering or rewriting of history up to it, even when every per-entity hash was
//! recomputed.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::chain::{self, Hash};
use crate::error::{Error, Result};
use crate::format::record;
use crate::format::segment::{SegmentHeader, HEADER_LEN};
use crate::report::{Report, ReportBody};
use crate::segment::Location;
use crate::store::Store;

static RUNNING_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key("batpak 2026 running hash v1", &[]));

/// Where each frame of a segment starts, following the stored lengths (not yet
/// checked: a damaged length ends the list there, and decoding that frame reports it).
fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        out.push(at);
        match record::peek_frame_len(&bytes[at..]) {
            Some(len) if len >= record::PREFIX_LEN && at + len <= bytes.len() => at += len,
            _ => break,
        }
    }
    out
}

type Hashed<'a> = (
    usize,
    Result<(record::RecordView<'a>, usize, Hash), record::FrameError>,
);

/// Decodes the frames at `starts` and computes their event hashes, the second half on
/// another thread: the hashing is most of verification's work.
fn decode_and_hash<'a>(bytes: &'a [u8], starts: &[usize]) -> Vec<Hashed<'a>> {
    let one = |at: usize| -> Hashed<'a> {
        (
            at,
            record::decode(&bytes[at..]).map(|(view, len)| {
                let hash = chain::record_hash(&view);
                (view, len, hash)
            }),
        )
    };
    if starts.len() < 64 {
        return starts.iter().map(|&at| one(at)).collect();
    }
    let (front, back) = starts.split_at(starts.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| back.iter().map(|&at| one(at)).collect::<Vec<_>>());
        let mut out: Vec<Hashed<'a>> = front.iter().map(|&at| one(at)).collect();
        match other.join() {
            Ok(rest) => out.extend(rest),
            // A panic in the helper: do that half here instead.
            Err(_) => out.extend(back.iter().map(|&at| one(at))),
        }
        out
    })
}

/// The running hash after one more event.
fn next_running(running: &Hash, sequence: u64, event_hash: &Hash) -> Hash {
    let mut input = [0u8; 8 + 32 + 32];
    input[..8].copy_from_slice(&sequence.to_le_bytes());
    input[8..40].copy_from_slice(running.as_bytes());
    input[40..].copy_from_slice(event_hash.as_bytes());
    Hash::from_bytes(*blake3::keyed_hash(&RUNNING_KEY, &input).as_bytes())
}

/// A checkpoint of the whole history to keep outside the store: the running hash
/// after `sequence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The last sequence covered.
    pub sequence: u64,
    /// The running hash after it.
    pub running_hash: Hash,
    /// When the anchor was taken, Unix milliseconds (informational).
    pub unix_ms: u64,
}

/// The body of a verification report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Segment files read.
    pub segments: u64,
    /// Records checked.
    pub events: u64,
    /// Bytes of segment data read.
    pub bytes: u64,
    /// The last sequence checked.
    pub last_sequence: u64,
    /// The running hash after it, in hex.
    pub running_hash: String,
    /// What failed, in file order.
    pub findings: Vec<VerifyFinding>,
}

impl ReportBody for Verification {
    const KIND: &'static str = "verification";
}

impl Verification {
    /// Whether nothing failed.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// One failed check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyFinding {
    /// What failed.
    pub check: Check,
    /// The segment file name (no directory).
    pub file: String,
    /// Byte offset of the record in the file.
    pub offset: u64,
    /// The record's sequence, when it could be read.
    pub sequence: Option<u64>,
    /// The record's event id, when it could be read.
    pub event: Option<String>,
    /// Expected vs actual, in words.
    pub detail: String,
}

/// The kind of check that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The record does not decode (checksum, framing, fields). The rest of its file
    /// cannot be located and is not checked.
    Record,
    /// The sequence is not the next one.
    Sequence,
    /// The record's `prev_hash` is not its entity's previous event hash.
    ChainLink,
    /// The index disagrees with the record (location, id).
    Index,
}

impl Store {
    /// Rescans every segment and checks every record; see [`verify_with_progress`](Self::verify_with_progress).
    pub fn verify(&self) -> Result<Report<Verification>> {
        self.verify_with_progress(|_, _| {})
    }

    /// Rescans every segment up to the newest visible event and checks each record's
    /// checksum and fields, sequence, recomputed hash, chain link and index entry,
    /// computing the running hash. `progress(done, total)` is called with bytes after
    /// each segment. Damage is reported as findings (file, offset, event), not as an
    /// error; an error means verification itself could not run.
    pub fn verify_with_progress(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Report<Verification>> {
        let (body, _) = self.scan_history(u64::MAX, &mut progress)?;
        Ok(Report::new(body, Vec::new()))
    }

    /// An anchor of the history up to the newest visible event.
    pub fn anchor(&self) -> Result<Anchor> {
        let (body, running) = self.scan_history(u64::MAX, &mut |_, _| {})?;
        if let Some(f) = body.findings.first() {
            return Err(Error::Corrupt {
                path: self.dir().join(crate::segment::SEGMENTS_DIR).join(&f.file),
                offset: f.offset,
                detail: format!("cannot anchor a damaged history: {}", f.detail),
            });
        }
        Ok(Anchor {
            sequence: body.last_sequence,
            running_hash: running,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })
    }

    /// Whether the history up to `anchor.sequence` is exactly the history the anchor
    /// was taken of. `Ok(false)` when it was truncated, reordered or rewritten.
    pub fn verify_against(&self, anchor: &Anchor) -> Result<bool> {
        let (body, running) = self.scan_history(anchor.sequence, &mut |_, _| {})?;
        Ok(body.last_sequence == anchor.sequence && running == anchor.running_hash)
    }

    /// Scans records with sequence `..= upto` (and visible): the verification body and
    /// the running hash.
    fn scan_history(
        &self,
        upto: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(Verification, Hash)> {
        let mut body = Verification {
            segments: 0,
            events: 0,
            bytes: 0,
            last_sequence: 0,
            running_hash: String::new(),
            findings: Vec::new(),
        };
        let visible = self.stats()?.visible_sequence;
        let upto = upto.min(visible);
        let files = self.segments().all();
        let total: u64 = files.iter().map(|(_, f)| f.len()).sum();
        let mut running = Hash::ZERO;
        let mut heads: HashMap<String, Hash> = HashMap::new();
        // Set once a record could not be read: the events after it in its file are
        // lost to this scan, so a later event whose entity was not seen since cannot
        // have its link checked, and the next file's header says where to resume.
        let mut lost = false;
        let mut expected_seq = 1;
        let mut done = 0;
        'files: for (number, file) in files {
            let name = file
                .path()
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let owned;
            let bytes: &[u8] = match file.mapped_from(0) {
                Some(b) => b,
                None => {
                    owned = file.read_all()?;
                    &owned
                }
            };
            body.segments += 1;
            if lost {
                if let Ok(header) = SegmentHeader::decode(bytes) {
                    expected_seq = header.first_sequence;
                }
            }
            // Decode and hash the file's records on both cores, then check them in order.
            let hashed = decode_and_hash(bytes, &frame_starts(bytes));
            let mut at = HEADER_LEN;
            for (offset, item) in hashed {
                if expected_seq > upto {
                    break;
                }
                let finding = |check, sequence, event: Option<String>, detail| VerifyFinding {
                    check,
                    file: name.clone(),
                    offset: offset as u64,
                    sequence,
                    event,
                    detail,
                };
                let (view, len, hash) = match item {
                    Ok(ok) => ok,
                    Err(e) => {
                        body.findings
                            .push(finding(Check::Record, None, None, e.to_string()));
                        done += bytes.len() as u64;
                        lost = true;
                        heads.clear();
                        continue 'files;
                    }
                };
                let h = &view.header;
                let id = || Some(h.id.to_string());
                if h.sequence != expected_seq {
                    body.findings.push(finding(
                        Check::Sequence,
                        Some(h.sequence),
                        id(),
                        format!("sequence {} where {expected_seq} was expected", h.sequence),
                    ));
                }
                let known = heads.get(view.entity).copied();
                let prev = known.unwrap_or(Hash::ZERO);
                if (known.is_some() || !lost) && h.prev_hash != prev {
                    body.findings.push(finding(
                        Check::ChainLink,
                        Some(h.sequence),
                        id(),
                        format!(
                            "prev_hash {} but the previous event of {:?} hashes to {prev}",
                            h.prev_hash, view.entity
                        ),
                    ));
                }
                let indexed = self.index_entry(h.sequence);
                if indexed != Some((Location::new(number, offset as u64), h.id)) {
                    body.findings.push(finding(
                        Check::Index,
                        Some(h.sequence),
                        id(),
                        format!("the index has {indexed:?} for this sequence"),
                    ));
                }
                match heads.get_mut(view.entity) {
                    Some(head) => *head = hash,
                    None => {
                        heads.insert(view.entity.to_string(), hash);
                    }
                }
                running = next_running(&running, h.sequence, &hash);
                body.events += 1;
                body.last_sequence = h.sequence;
                expected_seq = h.sequence + 1;
                at = offset + len;
            }
            body.bytes += at.min(bytes.len()) as u64;
            done += bytes.len() as u64;
            progress(done.min(total), total);
        }
        body.running_hash = running.to_string();
        Ok((body, running))
    }
}
