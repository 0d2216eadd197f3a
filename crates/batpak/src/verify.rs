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
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::chain;
use crate::error::{Error, Result};
use crate::format::manifest::{Horizon, Manifest, MANIFEST_FILE};
use crate::format::record;
use crate::format::segment::{SegmentHeader, HEADER_LEN};
use crate::hash::Hash;
use crate::id::EventId;
use crate::index::IndexEntry;
use crate::receipt::{signature_check, AppendReceipt, ReceiptCheck, ReceiptField};
use crate::redact::{Redaction, REDACTION_KIND};
use crate::report::{Check, Report, Verification, VerifyFinding};
use crate::segment::Location;
use crate::sign::{KeyId, SignatureCheck, Signed};
use crate::store::Store;

/// Where each frame of a segment starts, following the stored lengths (not yet
/// checked: a damaged length ends the list there, and decoding that frame reports it).
fn frame_starts(bytes: &[u8], from: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = from;
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

use crate::chain::next_running;

/// A checkpoint of the whole history to keep outside the store: the running hash
/// after `sequence`, signed when the store has a key. Its signed layout and wire form:
///
/// ```text
/// offset  size  field
/// 0       16    domain        ASCII "batpak anchor v1"
/// 16      8     sequence      u64 LE
/// 24      32    running_hash
/// 56      8     unix_ms       u64 LE
/// 64      8     key_id        zero when unsigned
/// 72      64    signature     Ed25519 over bytes [0, 72); present only when signed
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The last sequence covered.
    pub sequence: u64,
    /// The running hash after it.
    pub running_hash: Hash,
    /// When the anchor was taken, Unix milliseconds.
    pub unix_ms: u64,
    /// The store's signature, when it was opened with a key.
    pub signature: Option<Signed>,
}

const ANCHOR_DOMAIN: &[u8; 16] = b"batpak anchor v1";
/// Length of an anchor's signed message (and of an unsigned anchor's wire form).
pub(crate) const ANCHOR_MESSAGE_LEN: usize = 72;

impl Anchor {
    /// Bytes of the signed message (`signed_message`).
    pub const MESSAGE_LEN: usize = ANCHOR_MESSAGE_LEN;

    /// The bytes a signature covers, naming `key_id` (zero when unsigned).
    pub fn signed_message(&self, key_id: Option<KeyId>) -> [u8; ANCHOR_MESSAGE_LEN] {
        let mut out = [0u8; ANCHOR_MESSAGE_LEN];
        out[..16].copy_from_slice(ANCHOR_DOMAIN);
        out[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        out[24..56].copy_from_slice(self.running_hash.as_bytes());
        out[56..64].copy_from_slice(&self.unix_ms.to_le_bytes());
        if let Some(id) = key_id {
            out[64..].copy_from_slice(&id.to_bytes());
        }
        out
    }

    /// The wire form: 72 bytes, plus the 64-byte signature when signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let message = self.signed_message(self.signature.map(|s| s.key_id));
        crate::sign::to_wire(&message, self.signature.as_ref())
    }

    /// Decodes the wire form. The error names what was wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (m, signature) =
            crate::sign::from_wire(bytes, ANCHOR_DOMAIN, ANCHOR_MESSAGE_LEN, "anchor")?;
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&m[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&m[24..56]);
        Ok(Anchor {
            sequence: u64_at(16),
            running_hash: Hash::from_bytes(hash),
            unix_ms: u64_at(56),
            signature,
        })
    }
}

/// The JSON form: running hash, key id and signature in hex.
#[derive(Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AnchorJson {
    sequence: u64,
    running_hash: String,
    unix_ms: u64,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

impl Serialize for Anchor {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        AnchorJson {
            sequence: self.sequence,
            running_hash: self.running_hash.to_string(),
            unix_ms: self.unix_ms,
            key_id: self.signature.map(|s| s.key_id.to_string()),
            signature: self.signature.map(|s| s.signature.to_string()),
        }
        .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Anchor {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let j = AnchorJson::deserialize(deserializer)?;
        let text = |e: Error| D::Error::custom(e.to_string());
        let signature = Signed::from_text(j.key_id, j.signature).map_err(D::Error::custom)?;
        Ok(Anchor {
            sequence: j.sequence,
            running_hash: j.running_hash.parse().map_err(text)?,
            unix_ms: j.unix_ms,
            signature,
        })
    }
}

/// What checking the history against an anchor found. Only `Holds` is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnchorCheck {
    /// The history up to the anchor's sequence is exactly the anchored one.
    Holds {
        /// The key that signed the anchor, when it was signed.
        signed_by: Option<KeyId>,
    },
    /// The anchor's signature names a key that is not configured.
    UnknownKey {
        /// The key id the anchor names.
        key_id: KeyId,
    },
    /// The anchor's signature does not verify: the anchor itself was changed.
    BadSignature {
        /// The key id the anchor names.
        key_id: KeyId,
    },
    /// The history ends before the anchored sequence.
    Truncated {
        /// The anchor's sequence.
        anchored: u64,
        /// The last sequence the store holds.
        present: u64,
    },
    /// The anchored sequence lies in the range a compaction rewrote: the events it
    /// removed were removed under recorded policies and deletions (the manifest,
    /// checked by `verify`, says which), and the running hash over them can no longer
    /// be recomputed. Anchors after the range are checked exactly (`Holds`), from the
    /// running hash the manifest recorded.
    Compacted {
        /// The anchor's sequence.
        anchored: u64,
        /// Every sequence up to it was compacted.
        compacted_through: u64,
    },
    /// The running hash after the anchored sequence differs: some event up to it was
    /// rewritten, removed, inserted or reordered.
    Rewritten {
        /// The anchor's sequence.
        anchored: u64,
        /// The running hash the store has there, in hex.
        running_hash: Hash,
    },
}

impl Anchor {
    /// Checks only the signature, against `keys`: for a verifier that holds the
    /// store's public keys and a copy of its history but not the store (a replica in
    /// another engine). `Holds` (naming the key, or none when unsigned), `UnknownKey`
    /// or `BadSignature`; the history is checked with [`RunningHash`].
    pub fn check_signature(&self, keys: &[crate::sign::VerifyingKey]) -> AnchorCheck {
        let Some(signed) = &self.signature else {
            return AnchorCheck::Holds { signed_by: None };
        };
        let ring = crate::sign::Keyring::new(None, keys.to_vec());
        match ring.check(&self.signed_message(Some(signed.key_id)), signed) {
            SignatureCheck::Valid => AnchorCheck::Holds {
                signed_by: Some(signed.key_id),
            },
            SignatureCheck::UnknownKey => AnchorCheck::UnknownKey {
                key_id: signed.key_id,
            },
            SignatureCheck::Bad => AnchorCheck::BadSignature {
                key_id: signed.key_id,
            },
        }
    }
}

/// The store-wide running hash computed outside the store, from a copy of its
/// history: start at [`RunningHash::default`] (zero) and add every event in sequence
/// order; after the event at an anchor's sequence, [`value`](Self::value) equals the
/// anchor's running hash exactly when the copy holds the anchored history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunningHash {
    value: Hash,
}

impl RunningHash {
    /// A running hash that goes on from `value` (a compaction manifest's, at the end
    /// of its range).
    pub fn starting_at(value: Hash) -> RunningHash {
        RunningHash { value }
    }

    /// Adds the event at `sequence` with hash `event_hash`.
    pub fn push(&mut self, sequence: u64, event_hash: &Hash) {
        self.value = next_running(&self.value, sequence, event_hash);
    }

    /// The running hash after the events added so far.
    pub fn value(&self) -> Hash {
        self.value
    }
}

impl AnchorCheck {
    /// Whether the history holds.
    pub fn holds(&self) -> bool {
        matches!(self, AnchorCheck::Holds { .. })
    }
}

impl Store {
    /// Checks a receipt (or one rebuilt from its wire form) against the store: the
    /// signature first, when there is one, under the configured keys; then that the
    /// event exists and every field matches the stored event, its hash recomputed.
    /// An error means the check itself could not run (for example a damaged record).
    pub fn verify_receipt(&self, receipt: &AppendReceipt) -> Result<ReceiptCheck> {
        let signed = match signature_check(self.keyring(), receipt) {
            Some(ok @ ReceiptCheck::Signed { .. }) => ok,
            Some(failure) => return Ok(failure),
            None => ReceiptCheck::Unsigned,
        };
        let Some(event) = self.get(receipt.event_id)? else {
            return Ok(ReceiptCheck::NoSuchEvent {
                event_id: receipt.event_id,
            });
        };
        let stored = event.receipt();
        let fields: [(ReceiptField, String, String); 7] = [
            (
                ReceiptField::Sequence,
                receipt.sequence.to_string(),
                stored.sequence.to_string(),
            ),
            (
                ReceiptField::Version,
                receipt.version.to_string(),
                stored.version.to_string(),
            ),
            (
                ReceiptField::Timestamp,
                receipt.timestamp_ns.to_string(),
                stored.timestamp_ns.to_string(),
            ),
            (
                ReceiptField::Kind,
                receipt.kind.to_string(),
                stored.kind.to_string(),
            ),
            (
                ReceiptField::Coordinate,
                receipt.coordinate_digest.to_string(),
                stored.coordinate_digest.to_string(),
            ),
            (
                ReceiptField::EventHash,
                receipt.event_hash.to_string(),
                stored.event_hash.to_string(),
            ),
            (
                ReceiptField::PrevHash,
                receipt.prev_hash.to_string(),
                stored.prev_hash.to_string(),
            ),
        ];
        for (field, receipt, stored) in fields {
            if receipt != stored {
                return Ok(ReceiptCheck::Mismatch {
                    field,
                    receipt,
                    stored,
                });
            }
        }
        Ok(signed)
    }
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
        let (mut body, _) = self.scan_history(u64::MAX, &mut progress)?;
        if self.writer().is_err() {
            if let Some(cut) = &self.open_report().tail_cut {
                body.findings.push(VerifyFinding {
                    check: Check::Tail,
                    file: cut
                        .path
                        .file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                    offset: cut.offset,
                    sequence: None,
                    event: None,
                    detail: format!(
                        "{} bytes after the last complete record were ignored by this read-only open ({}); a read-write open cuts them",
                        cut.bytes, cut.reason
                    ),
                });
            }
        }
        Ok(Report::new(body, Vec::new()))
    }

    /// Checks the visible events `region` selects (an entity, a sequence range, a
    /// scope, ...): each record's checksum and fields, that it is the event the index
    /// says, its recomputed hash, and its link to its entity's previous event (read
    /// from disk when it lies outside the region). Sequence density and the running
    /// hash are properties of the whole history: see [`verify`](Self::verify).
    pub fn verify_region(&self, region: &crate::query::Region) -> Result<Report<Verification>> {
        let sequences = {
            let index = self.index();
            crate::query::select(&index, region, crate::index::Sight::All, 0, usize::MAX)
        };
        let mut body = Verification::default();
        let mut segments = std::collections::BTreeSet::new();
        // Each entity's last checked (version, hash), to link the next without a read.
        let mut heads: HashMap<String, (u64, Hash)> = HashMap::new();
        for sequence in sequences {
            let Some((location, id)) = self.index_entry(sequence) else {
                continue;
            };
            let file = self.segment_name(location.segment());
            let finding = |check, detail| VerifyFinding {
                check,
                file: file.clone(),
                offset: location.offset(),
                sequence: Some(sequence),
                event: Some(id.to_string()),
                detail,
            };
            segments.insert(location.segment());
            let read = self.segments().with_record(location, |view| {
                Ok((
                    view.header.clone(),
                    view.entity.to_string(),
                    chain::record_hash(view),
                    record::frame_len_of(view),
                    matches!(view.payload, record::PayloadField::Redacted { .. }),
                ))
            });
            let (h, entity, hash, len, redacted) = match read {
                Ok(r) => r,
                Err(e) => {
                    body.findings.push(finding(Check::Record, e.to_string()));
                    continue;
                }
            };
            let indexed_version = self.version_at(sequence);
            if h.sequence != sequence || h.id != id || indexed_version != Some(h.version) {
                body.findings.push(finding(
                    Check::Index,
                    format!(
                        "the record is sequence {} id {} version {}; the index has sequence {sequence} id {id} version {indexed_version:?}",
                        h.sequence, h.id, h.version
                    ),
                ));
            }
            let horizon = self.index().horizon_of(&entity);
            let prev = match (h.version, heads.get(&entity), horizon) {
                (0, _, _) => Ok(Hash::ZERO),
                (v, Some(&(last, hash)), _) if last + 1 == v => Ok(hash),
                // The first kept event after compaction links to the horizon hash.
                (v, _, Some((first_kept, hash))) if v == first_kept => Ok(hash),
                (v, _, _) => self.hash_of_version(sequence, v - 1),
            };
            match prev {
                Ok(prev) if prev == h.prev_hash => {}
                Ok(prev) => body.findings.push(finding(
                    Check::ChainLink,
                    format!(
                        "prev_hash {} but the previous event of {entity:?} hashes to {prev}",
                        h.prev_hash
                    ),
                )),
                Err(why) => body.findings.push(finding(Check::ChainLink, why)),
            }
            heads.insert(entity, (h.version, hash));
            body.events += 1;
            body.bytes += len as u64;
            body.redacted += u64::from(redacted);
            body.last_sequence = body.last_sequence.max(sequence);
        }
        body.segments = segments.len() as u64;
        Ok(Report::new(body, Vec::new()))
    }

    /// The hash of the event at `version` of the entity of the event at `sequence`.
    fn hash_of_version(&self, sequence: u64, version: u64) -> std::result::Result<Hash, String> {
        let location = {
            let index = self.index();
            index
                .entity_event_at(sequence, version)
                .and_then(|s| index.location(s))
        };
        let location =
            location.ok_or_else(|| format!("the index has no version {version} of this entity"))?;
        self.segments()
            .with_record(location, |view| Ok(chain::record_hash(view)))
            .map_err(|e| format!("the previous event (version {version}) does not read: {e}"))
    }

    /// A segment's file name, for findings.
    fn segment_name(&self, number: u64) -> String {
        self.segments()
            .path_of(number)
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// An anchor of the history up to the newest visible event.
    pub fn anchor(&self) -> Result<Anchor> {
        self.anchor_upto(u64::MAX)
    }

    /// An anchor of the history up to `sequence` (at most the newest visible event):
    /// every segment scanned and checked, as `anchor` does.
    pub fn anchor_upto(&self, sequence: u64) -> Result<Anchor> {
        let (body, running) = self.scan_history(sequence, &mut |_, _| {})?;
        if let Some(f) = body.findings.first() {
            return Err(Error::Corrupt {
                path: self.dir().join(crate::dir::SEGMENTS_DIR).join(&f.file),
                offset: f.offset,
                detail: format!("cannot anchor a damaged history: {}", f.detail),
            });
        }
        let mut anchor = Anchor {
            sequence: body.last_sequence,
            running_hash: running,
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            signature: None,
        };
        let keys = self.keyring();
        anchor.signature = keys.sign(&anchor.signed_message(keys.signer_id()));
        Ok(anchor)
    }

    /// An anchor up to `sequence` (at most the newest visible event) that continues
    /// `previous`, an anchor this store took: only the events after it are read, so
    /// anchoring at intervals costs what was appended since. `previous` must be signed
    /// by this store's own key when the store signs (an anchor from anywhere else
    /// would have it vouch for a running hash it never computed), and the events since
    /// must all be there (a compacted range is anchored by a full scan instead).
    pub fn anchor_from(&self, previous: &Anchor, sequence: u64) -> Result<Anchor> {
        let keys = self.keyring();
        if let Some(own) = keys.signer_id() {
            let holds = previous.signature.as_ref().is_some_and(|signed| {
                signed.key_id == own
                    && matches!(
                        keys.check(&previous.signed_message(Some(own)), signed),
                        SignatureCheck::Valid
                    )
            });
            if !holds {
                return Err(Error::Malformed {
                    what: "anchor",
                    detail: format!(
                        "the anchor at sequence {} is not signed by this store's key {own}, so it cannot be continued",
                        previous.sequence
                    ),
                });
            }
        }
        let upto = sequence.min(self.frontier().visible);
        if previous.sequence > upto {
            return Err(Error::Malformed {
                what: "anchor",
                detail: format!(
                    "the anchor at sequence {} is past the sequence to anchor ({upto})",
                    previous.sequence
                ),
            });
        }
        let all = crate::query::Region::all()
            .with_store_records()
            .with_hidden();
        let mut running = RunningHash {
            value: previous.running_hash,
        };
        let mut at = previous.sequence;
        while at < upto {
            let page = self.query(&all, at, 4_096)?;
            if page.is_empty() {
                break;
            }
            for event in page.iter().take_while(|e| e.sequence <= upto) {
                if event.sequence != at + 1 {
                    // A range without its events (compacted): the segments know.
                    return self.anchor_upto(upto);
                }
                running.push(event.sequence, &event.event_hash());
                at = event.sequence;
            }
            if page.last().is_some_and(|e| e.sequence >= upto) {
                break;
            }
        }
        if at != upto {
            return self.anchor_upto(upto);
        }
        let mut anchor = Anchor {
            sequence: upto,
            running_hash: running.value(),
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            signature: None,
        };
        anchor.signature = keys.sign(&anchor.signed_message(keys.signer_id()));
        Ok(anchor)
    }

    /// Checks that the history up to `anchor.sequence` is exactly the history the
    /// anchor was taken of: its signature first (when signed, under the configured
    /// keys), then the running hash recomputed from the segments.
    pub fn verify_against(&self, anchor: &Anchor) -> Result<AnchorCheck> {
        if let Some(signed) = &anchor.signature {
            let message = anchor.signed_message(Some(signed.key_id));
            match self.keyring().check(&message, signed) {
                SignatureCheck::Valid => {}
                SignatureCheck::UnknownKey => {
                    return Ok(AnchorCheck::UnknownKey {
                        key_id: signed.key_id,
                    })
                }
                SignatureCheck::Bad => {
                    return Ok(AnchorCheck::BadSignature {
                        key_id: signed.key_id,
                    })
                }
            }
        }
        if let Some(m) = self.manifest() {
            if anchor.sequence < m.through
                || (anchor.sequence == m.through && anchor.running_hash != m.running)
            {
                return Ok(AnchorCheck::Compacted {
                    anchored: anchor.sequence,
                    compacted_through: m.through,
                });
            }
        }
        let (body, running) = self.scan_history(anchor.sequence, &mut |_, _| {})?;
        Ok(if body.last_sequence < anchor.sequence {
            AnchorCheck::Truncated {
                anchored: anchor.sequence,
                present: body.last_sequence,
            }
        } else if running != anchor.running_hash {
            AnchorCheck::Rewritten {
                anchored: anchor.sequence,
                running_hash: running,
            }
        } else {
            AnchorCheck::Holds {
                signed_by: anchor.signature.map(|s| s.key_id),
            }
        })
    }

    /// Scans records with sequence `..= upto` (and visible): the verification body and
    /// the running hash.
    fn scan_history(
        &self,
        upto: u64,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(Verification, Hash)> {
        // No redaction may run (its record appended, its target not yet erased) or
        // rewrite a frame while the mapped bytes are scanned.
        let _redaction = self.redaction_turn();
        let _rewrite = self.segments().rewrite_guard();
        let visible = self.stats()?.visible_sequence;
        let whole = upto >= visible;
        let upto = upto.min(visible);
        let files = self.segments().all();
        let total: u64 = files.iter().map(|(_, f)| f.len()).sum();
        let mut scan = HistoryScan::new(Some(self), self.manifest().map(|m| (*m).clone()));
        let mut done = 0;
        for (number, file) in files {
            let owned;
            let bytes: &[u8] = match file.mapped_from(0) {
                Some(b) => b,
                None => {
                    owned = file.read_all()?;
                    &owned
                }
            };
            let name = file
                .path()
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            scan.file(number, &name, bytes, upto);
            done += bytes.len() as u64;
            progress(done.min(total), total);
        }
        if whole {
            scan.whole_history_checks();
        }
        let HistoryScan {
            mut body, running, ..
        } = scan;
        body.running_hash = Some(running.to_string());
        Ok((body, running))
    }
}

/// Checks every segment file of the store in `dir` without opening it: for a store
/// that cannot open (a flipped byte in a backup without a checkpoint, a missing
/// segment), or to check files no process is writing. Each record's checksum and
/// fields, sequence, hash and chain link are checked as `Store::verify` does, but not
/// an index (there is none). Damage is a finding naming the file and the byte range;
/// the scan resumes at the next frame whose checksum holds, so every readable record
/// is checked and counted. An error means the files could not be listed or read.
pub fn verify_dir(dir: impl AsRef<Path>) -> Result<Report<Verification>> {
    let dir = dir.as_ref();
    let manifest = crate::open::read_manifest(dir, &crate::segment::list(dir)?)?;
    let mut scan = HistoryScan::new(None, manifest);
    crate::segment::walk_offline(dir, |f| {
        let finding = |detail: String| VerifyFinding {
            check: Check::Record,
            file: f.name.clone(),
            offset: 0,
            sequence: None,
            event: None,
            detail,
        };
        if let Some((from, to)) = f.missing_before {
            scan.body.findings.push(finding(format!(
                "segments {from} to {to} are missing: the files go from {} to {}",
                from - 1,
                f.number
            )));
            scan.lost = true;
            scan.heads.clear();
        }
        if let Some(e) = &f.bad_header {
            scan.body
                .findings
                .push(finding(format!("the segment header does not decode: {e}")));
        }
        scan.file(f.number, &f.name, &f.bytes, u64::MAX);
        Ok(())
    })?;
    scan.whole_history_checks();
    let HistoryScan {
        mut body, running, ..
    } = scan;
    body.running_hash = Some(running.to_string());
    Ok(Report::new(body, Vec::new()))
}

/// Where a record was found, for a finding about it made after the scan.
#[derive(Clone, Debug)]
struct Place {
    file: String,
    offset: u64,
    sequence: u64,
    event: EventId,
}

/// What the scan tallies to check the derived state as a whole once every record
/// was seen: posting and key counts, and redactions against erased payloads.
#[derive(Debug, Default)]
struct Derived {
    causes: u64,
    correlations: u64,
    /// The idempotency window the records give, under the writer's window rule.
    keys: Option<crate::keys::Keys>,
    /// Events whose payload is erased.
    erased: HashMap<EventId, Place>,
    /// Events a redaction record names, with that record's place.
    redaction_targets: HashMap<EventId, Place>,
}

/// The state of a scan of the whole history, file by file.
struct HistoryScan<'s> {
    /// The open store whose index and keys each record is checked against; `None`
    /// for an offline scan of a directory (`verify_dir`).
    store: Option<&'s Store>,
    body: Verification,
    running: Hash,
    /// Each entity's newest event hash seen so far.
    heads: HashMap<String, Hash>,
    /// Set once a record could not be read: the events after it in its file are
    /// lost to this scan, so a later event whose entity was not seen since cannot
    /// have its link checked, and the next file's header says where to resume.
    lost: bool,
    expected_seq: u64,
    derived: Derived,
    /// What compaction removed, when the store was compacted, and what the scan
    /// found of the compacted range: the kept hash and count, the compaction and
    /// lifecycle records seen.
    compacted: Option<Compacted>,
}

struct Compacted {
    manifest: Manifest,
    kept_hash: Hash,
    kept: u64,
    /// blake3 digests the `Compacted` records name.
    recorded: std::collections::HashSet<Hash>,
    /// Lifecycle records by id, decoded.
    lifecycle: HashMap<EventId, Lifecycle>,
    /// Events kept per compacted entity (for `MaxCount`).
    counts: HashMap<String, u64>,
}

enum Lifecycle {
    Retention(crate::lifecycle_records::RetentionChanged),
    Deletion(crate::lifecycle_records::EntityDeleted),
}

impl<'s> HistoryScan<'s> {
    /// A scan from the first sequence, checking the index of `store` when given.
    fn new(store: Option<&'s Store>, manifest: Option<Manifest>) -> Self {
        HistoryScan {
            store,
            body: Verification::default(),
            running: manifest.as_ref().map_or(Hash::ZERO, |m| m.running),
            compacted: manifest.map(|manifest| Compacted {
                manifest,
                kept_hash: Hash::ZERO,
                kept: 0,
                recorded: std::collections::HashSet::new(),
                lifecycle: HashMap::new(),
                counts: HashMap::new(),
            }),
            heads: HashMap::new(),
            lost: false,
            expected_seq: 1,
            derived: Derived {
                keys: store
                    .and_then(|s| s.writer().ok())
                    .map(|w| crate::keys::Keys::new(w.idempotency_window())),
                ..Derived::default()
            },
        }
    }

    /// Checks made once the whole history was scanned: every posting and key count
    /// against what the records hold, and every redaction against erased payloads.
    fn whole_history_checks(&mut self) {
        if self.lost {
            return; // the damage is a finding, and the tallies are incomplete
        }
        self.compaction_checks();
        let upto = self.body.last_sequence;
        let events = self.body.events;
        let d = &self.derived;
        let mut expected = Vec::new();
        if let Some(store) = self.store {
            let counts = store.index().posting_counts(upto);
            expected = vec![
                ("entity postings", counts.entity, events),
                ("scope postings", counts.scope, events),
                ("kind postings", counts.kind, events),
                ("causation postings", counts.effects, d.causes),
                ("correlation postings", counts.correlated, d.correlations),
            ];
        }
        if let (Some(store), Some(window)) = (self.store, &d.keys) {
            if let Ok(writer) = store.writer() {
                let held = writer.idempotency_snapshot();
                self.body.findings.extend(key_findings(&held, window, upto));
            }
        }
        for (what, index, records) in expected {
            if index != records {
                self.body.findings.push(VerifyFinding {
                    check: Check::Index,
                    file: "(index)".into(),
                    offset: 0,
                    sequence: None,
                    event: None,
                    detail: format!(
                        "{what}: the index has {index} up to sequence {upto}, the records {records}"
                    ),
                });
            }
        }
        let mut findings = Vec::new();
        for (target, place) in &d.redaction_targets {
            if !d.erased.contains_key(target) {
                findings.push((
                    place.clone(),
                    format!(
                    "this redaction record names event {target}, whose payload is still present"
                ),
                ));
            }
        }
        for (id, place) in &d.erased {
            if !d.redaction_targets.contains_key(id) {
                findings.push((
                    place.clone(),
                    "the payload is erased, but no redaction record names this event".into(),
                ));
            }
        }
        findings.sort_by_key(|(p, _)| p.sequence);
        for (place, detail) in findings {
            self.body.findings.push(VerifyFinding {
                check: Check::Redaction,
                file: place.file,
                offset: place.offset,
                sequence: Some(place.sequence),
                event: Some(place.event.to_string()),
                detail,
            });
        }
    }

    /// The compacted range against its manifest: the kept events (count and kept
    /// hash) are the ones the compaction kept, a `Compacted` record names the
    /// manifest, and each removed prefix was hidden by the recorded record it names.
    fn compaction_checks(&mut self) {
        let Some(c) = &self.compacted else {
            return;
        };
        let m = &c.manifest;
        let mut problems = Vec::new();
        if self.body.last_sequence >= m.through {
            if c.kept != m.kept {
                problems.push(format!(
                    "{} events are kept up to sequence {}, the manifest says {}: events were removed that no compaction removed",
                    c.kept, m.through, m.kept
                ));
            } else if c.kept_hash != m.kept_hash {
                problems.push(format!(
                    "the kept events up to sequence {} hash to {}, the manifest says {}: a kept event was changed or replaced",
                    m.through, c.kept_hash, m.kept_hash
                ));
            }
        }
        let digest = Hash::from_bytes(*blake3::hash(&m.encode()).as_bytes());
        if !c.recorded.contains(&digest) {
            problems.push(format!(
                "no compaction record names the manifest (blake3 {digest}): it was not written by a compaction of this history"
            ));
        }
        for h in &m.horizons {
            if let Some(why) = unexplained(h, m.at_ms, c) {
                problems.push(format!(
                    "versions 0 to {} of {:?} were removed, but {why}",
                    h.first_kept - 1,
                    h.entity
                ));
            }
        }
        for detail in problems {
            self.body.findings.push(VerifyFinding {
                check: Check::Compaction,
                file: MANIFEST_FILE.into(),
                offset: 0,
                sequence: None,
                event: None,
                detail,
            });
        }
        self.body.horizons = m
            .horizons
            .iter()
            .map(|h| crate::report::KeptHistory {
                entity: h.entity.clone(),
                first_version: h.first_kept,
                removed_by: h.cause.map(|id| id.to_string()),
            })
            .collect();
    }

    /// Checks the records of one segment file through sequence `upto`. A record that
    /// does not decode is a finding naming the damaged bytes; the scan resumes at the
    /// next frame whose checksum holds, so damage hides only what it covers.
    fn file(&mut self, number: u64, name: &str, bytes: &[u8], upto: u64) {
        self.body.segments += 1;
        if self.lost {
            if let Ok(header) = SegmentHeader::decode(bytes) {
                self.expected_seq = header.first_sequence;
            }
        }
        let mut start = HEADER_LEN;
        let mut end = HEADER_LEN.min(bytes.len());
        'runs: loop {
            // Decode and hash a run of records on both cores, then check them in order.
            let hashed = decode_and_hash(bytes, &frame_starts(bytes, start));
            for (offset, item) in hashed {
                if self.expected_seq > upto {
                    break 'runs;
                }
                match item {
                    Ok((view, len, hash)) => {
                        if view.header.sequence > upto {
                            break 'runs;
                        }
                        self.record(number, name, offset, &view, hash);
                        end = offset + len;
                    }
                    Err(e) => {
                        let resume = record::next_frame(bytes, offset + 1);
                        let next_seq = resume
                            .and_then(|at| record::decode(&bytes[at..]).ok())
                            .map(|(view, _)| view.header.sequence);
                        let lost = match (resume, next_seq) {
                            (Some(at), Some(next)) => format!(
                                "; the {} bytes to offset {at} cannot be read (events {} to {} are in them, if the sequence is unbroken); the scan resumes there",
                                at - offset,
                                self.expected_seq,
                                next.saturating_sub(1)
                            ),
                            _ => format!(
                                "; the {} bytes to the end of the file cannot be read",
                                bytes.len() - offset
                            ),
                        };
                        self.body.findings.push(VerifyFinding {
                            check: Check::Record,
                            file: name.to_string(),
                            offset: offset as u64,
                            sequence: None,
                            event: None,
                            detail: format!("{e}{lost}"),
                        });
                        // The predecessor of any later event may be in the lost bytes.
                        self.lost = true;
                        self.heads.clear();
                        match (resume, next_seq) {
                            (Some(at), Some(next)) => {
                                self.expected_seq = next;
                                start = at;
                                end = at;
                                continue 'runs;
                            }
                            _ => {
                                end = bytes.len();
                                break 'runs;
                            }
                        }
                    }
                }
            }
            break;
        }
        self.body.bytes += end.min(bytes.len()) as u64;
    }

    /// Checks one decoded record: its sequence, its chain link, the index entry.
    fn record(
        &mut self,
        number: u64,
        name: &str,
        offset: usize,
        view: &record::RecordView<'_>,
        hash: Hash,
    ) {
        let h = &view.header;
        let mut finding = |check, detail| {
            self.body.findings.push(VerifyFinding {
                check,
                file: name.to_string(),
                offset: offset as u64,
                sequence: Some(h.sequence),
                event: Some(h.id.to_string()),
                detail,
            });
        };
        let expected_seq = self.expected_seq;
        let through = self.compacted.as_ref().map_or(0, |c| c.manifest.through);
        // Compaction may leave gaps up to the end of its range (counted at the end).
        let explained = crate::format::manifest::explains_gap(expected_seq, h.sequence, through);
        if h.sequence != expected_seq && !explained {
            finding(
                Check::Sequence,
                format!("sequence {} where {expected_seq} was expected", h.sequence),
            );
        }
        let known = self.heads.get(view.entity).copied();
        // An entity compaction removed a prefix of starts after its horizon.
        let horizon = match known {
            Some(_) => None,
            None => self
                .compacted
                .as_ref()
                .and_then(|c| c.manifest.horizon(view.entity))
                .map(|h| (h.first_kept, h.hash)),
        };
        let prev = known
            .or(horizon.map(|(_, hash)| hash))
            .unwrap_or(Hash::ZERO);
        if (known.is_some() || !self.lost) && h.prev_hash != prev {
            finding(
                Check::ChainLink,
                format!(
                    "prev_hash {} but the previous event of {:?} hashes to {prev}",
                    h.prev_hash, view.entity
                ),
            );
        }
        if let Some((first_kept, _)) = horizon {
            if h.version != first_kept && !self.lost {
                finding(
                    Check::Compaction,
                    format!(
                        "the kept history of {:?} starts at version {}, the manifest says {first_kept}",
                        view.entity, h.version
                    ),
                );
            }
        }
        let entry = IndexEntry::of_record(view, Location::new(number, offset as u64));
        let disagreements = self
            .store
            .map_or_else(Vec::new, |store| store.index().check_entry(&entry));
        for detail in disagreements {
            finding(Check::Index, detail);
        }
        let place = || Place {
            file: name.to_string(),
            offset: offset as u64,
            sequence: h.sequence,
            event: h.id,
        };
        let d = &mut self.derived;
        d.causes += u64::from(h.causation.is_some());
        d.correlations += u64::from(h.correlation.is_some());
        if let (Some(key), Some(keys)) = (h.idempotency, d.keys.as_mut()) {
            keys.insert(key, h.sequence, h.id.unix_millis());
        }
        match &view.payload {
            record::PayloadField::Redacted { .. } => {
                d.erased.insert(h.id, place());
            }
            record::PayloadField::Present { bytes, .. } if h.kind == REDACTION_KIND => {
                match rmp_serde::from_slice::<Redaction>(bytes) {
                    Ok(r) => {
                        d.redaction_targets.insert(r.target, place());
                    }
                    Err(e) => finding(
                        Check::Redaction,
                        format!("the redaction record does not decode: {e}"),
                    ),
                }
            }
            record::PayloadField::Present { .. } => {}
        }
        match self.heads.get_mut(view.entity) {
            Some(head) => *head = hash,
            None => {
                self.heads.insert(view.entity.to_string(), hash);
            }
        }
        match self.compacted.as_mut() {
            Some(c) if h.sequence <= c.manifest.through => {
                c.kept_hash = crate::chain::next_kept(&c.kept_hash, h.sequence, &hash);
                c.kept += 1;
            }
            _ => self.running = next_running(&self.running, h.sequence, &hash),
        }
        if let (Some(c), record::PayloadField::Present { bytes, .. }) =
            (self.compacted.as_mut(), &view.payload)
        {
            note_compaction_record(c, h, bytes);
        }
        if let Some(c) = self.compacted.as_mut() {
            if c.manifest.horizon(view.entity).is_some() {
                *c.counts.entry(view.entity.to_string()).or_default() += 1;
            }
        }
        self.body.events += 1;
        if matches!(view.payload, record::PayloadField::Redacted { .. }) {
            self.body.redacted += 1;
        }
        self.body.last_sequence = h.sequence;
        // A record claiming the last possible sequence was already a finding if wrong.
        self.expected_seq = h.sequence.saturating_add(1);
    }
}

/// Where the writer's idempotency keys (`held`) disagree with the records (`records`,
/// every key they hold through sequence `upto`, under the writer's window): a key
/// held for a sequence whose record does not carry it, or more keys than the window
/// allows. A key the writer forgot is not a finding: a checkpoint keeps only the
/// window it was written with, so a reopen with a larger window remembers fewer
/// keys than the records hold, by design.
fn key_findings(
    held: &[([u8; 16], u64)],
    records: &crate::keys::Keys,
    upto: u64,
) -> Vec<VerifyFinding> {
    let finding = |detail: String| VerifyFinding {
        check: Check::Index,
        file: "(index)".into(),
        offset: 0,
        sequence: None,
        event: None,
        detail,
    };
    let mut out = Vec::new();
    let limit = records.window().keys;
    if held.len() > limit {
        out.push(finding(format!(
            "idempotency keys: the store holds {}, over its window of {limit}",
            held.len()
        )));
    }
    for &(key, seq) in held.iter().filter(|&&(_, seq)| seq <= upto) {
        if records.get(&key) != Some(seq) {
            out.push(finding(format!(
                "idempotency key {}: the store holds sequence {seq}, the records {:?}",
                crate::hash::hex::encode(&key),
                records.get(&key)
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SigningKey;

    /// A removed prefix under a combined rule is explained when one part alone
    /// explains it, and named with every part's reason when none does; an entity
    /// policy explains only its own entity.
    #[test]
    fn a_combined_rule_explains_a_removal_by_any_one_part() {
        use crate::retention::{RetentionLimits, RetentionRule, RetentionSelector};
        let cause = EventId::from_u128(7);
        let mut compacted = Compacted {
            manifest: Manifest {
                store_id: [0; 16],
                generation: 1,
                through: 10,
                at_ms: 0,
                running: Hash::ZERO,
                kept_hash: Hash::ZERO,
                kept: 0,
                segments: Vec::new(),
                horizons: Vec::new(),
            },
            kept_hash: Hash::ZERO,
            kept: 0,
            recorded: std::collections::HashSet::new(),
            lifecycle: HashMap::new(),
            counts: HashMap::from([("e".to_string(), 3)]),
        };
        compacted.lifecycle.insert(
            cause,
            Lifecycle::Retention(crate::lifecycle_records::RetentionChanged {
                selector: RetentionSelector::Entity("e".into()),
                rule: Some(RetentionRule::Combined(
                    RetentionLimits::new().max_count(3).before_version(2),
                )),
            }),
        );
        let horizon = |entity: &str, first_kept| Horizon {
            entity: entity.into(),
            first_kept,
            hash: Hash::ZERO,
            last_removed: EventId::from_u128(1),
            cause: Some(cause),
        };
        // Versions 0 and 1: the version part explains it.
        assert_eq!(unexplained(&horizon("e", 2), 0, &compacted), None);
        // Up to version 4 with three kept: the count part explains it.
        assert_eq!(unexplained(&horizon("e", 5), 0, &compacted), None);
        // With two kept, neither does, and both say why.
        compacted.counts.insert("e".into(), 2);
        let why = unexplained(&horizon("e", 5), 0, &compacted).unwrap();
        assert!(why.contains("keeps the newest 3"), "{why}");
        assert!(why.contains("keeps versions from 2"), "{why}");
        // Another entity is not covered by an entity policy.
        let why = unexplained(&horizon("e:1", 2), 0, &compacted).unwrap();
        assert!(why.contains("covers entity \"e\""), "{why}");
    }

    /// The verification body's canonical JSON and hash, cross-checked with Python.
    #[test]
    fn verification_report_golden_bytes() {
        let body = Verification {
            segments: 2,
            events: 10,
            bytes: 4096,
            last_sequence: 10,
            running_hash: None,
            redacted: 1,
            findings: vec![VerifyFinding {
                check: Check::ChainLink,
                file: "0000000000000001.seg".into(),
                offset: 364,
                sequence: Some(7),
                event: Some("0190a3f2-0000-7000-8000-000000000007".into()),
                detail: "prev_hash differs".into(),
            }],
            horizons: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap_or_default(),
            concat!(
                r#"{"segments":2,"events":10,"bytes":4096,"last_sequence":10,"running_hash":null,"#,
                r#""redacted":1,"findings":[{"check":"chain_link","file":"0000000000000001.seg","#,
                r#""offset":364,"sequence":7,"event":"0190a3f2-0000-7000-8000-000000000007","#,
                r#""detail":"prev_hash differs"}]}"#
            )
        );
        assert_eq!(
            Report::new(body, Vec::new()).body_hash.to_string(),
            "928ecff61c6df5381045b427ce708466f94ea7cf43240bd90a1be9d6251c09b4"
        );
    }

    /// The anchor layout and its signature, cross-checked with Python's `blake3` and
    /// `cryptography`.
    #[test]
    fn anchor_golden_bytes() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut anchor = Anchor {
            sequence: 1000,
            running_hash: Hash::from_bytes([0xAB; 32]),
            unix_ms: 1_700_000_000_000,
            signature: None,
        };
        let message = anchor.signed_message(Some(key.key_id()));
        assert_eq!(
            crate::hash::hex::encode(&message),
            "62617470616b20616e63686f72207631e803000000000000\
             abababababababababababababababababababababababababababababababab\
             0068e5cf8b010000d53d694e268603a6"
        );
        anchor.signature = Some(Signed {
            key_id: key.key_id(),
            signature: key.sign(&message),
        });
        let wire = anchor.to_bytes();
        assert_eq!(
            crate::hash::hex::encode(&wire[ANCHOR_MESSAGE_LEN..]),
            "bc5ef8ffc0324e92e8a31b4379fe6864e1055d341608b594c6588f317fa85fb1\
             e72e98ca43adde179dd6bb722cbdcd10c2b0022b2fb5a3ec73be17674731c303"
        );
        assert_eq!(Anchor::from_bytes(&wire).ok(), Some(anchor));
        let json = serde_json::to_string(&anchor).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Anchor>(&json).ok(), Some(anchor));
        let unsigned = Anchor {
            signature: None,
            ..anchor
        };
        assert_eq!(unsigned.to_bytes().len(), ANCHOR_MESSAGE_LEN);
        assert_eq!(
            Anchor::from_bytes(&unsigned.to_bytes()).ok(),
            Some(unsigned)
        );
        for bad_len in [0, 71, 73, 135, 137] {
            let mut b = wire.clone();
            b.resize(bad_len, 0);
            assert!(matches!(
                Anchor::from_bytes(&b),
                Err(Error::Malformed { what: "anchor", .. })
            ));
        }
        let mut stray = unsigned.to_bytes();
        stray[70] = 1;
        assert!(Anchor::from_bytes(&stray).is_err());
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn anchor_decoding_never_panics_and_round_trips(
            bytes in prop_oneof![
                proptest::collection::vec(any::<u8>(), ANCHOR_MESSAGE_LEN - 16),
                proptest::collection::vec(any::<u8>(), ANCHOR_MESSAGE_LEN + 64 - 16),
                proptest::collection::vec(any::<u8>(), 0..160),
            ],
        ) {
            let _ = Anchor::from_bytes(&bytes);
            let mut framed = ANCHOR_DOMAIN.to_vec();
            framed.extend_from_slice(&bytes);
            if let Ok(a) = Anchor::from_bytes(&framed) {
                prop_assert_eq!(a.to_bytes(), framed);
            }
        }
    }
}

/// Keeps what the compaction checks need from a store record: the manifest digests
/// of `Compacted` records, and every lifecycle record by id.
fn note_compaction_record(c: &mut Compacted, h: &record::RecordHeader, bytes: &[u8]) {
    use crate::lifecycle_records::{COMPACTED_KIND, DELETION_KIND, RETENTION_KIND};
    if h.kind == COMPACTED_KIND {
        if let Ok(r) = rmp_serde::from_slice::<crate::lifecycle_records::Compacted>(bytes) {
            c.recorded.insert(r.manifest);
        }
    } else if h.kind == RETENTION_KIND {
        if let Ok(r) = rmp_serde::from_slice(bytes) {
            c.lifecycle.insert(h.id, Lifecycle::Retention(r));
        }
    } else if h.kind == DELETION_KIND {
        if let Ok(r) = rmp_serde::from_slice(bytes) {
            c.lifecycle.insert(h.id, Lifecycle::Deletion(r));
        }
    }
}

/// Why the record a horizon names does not explain the removed prefix, if it does
/// not: it is missing, names another entity, or its rule keeps what was removed.
fn unexplained(h: &Horizon, at_ms: u64, c: &Compacted) -> Option<String> {
    use crate::retention::{DeleteMode, RetentionRule, RetentionSelector};
    let Some(cause) = h.cause else {
        // The one built-in rule: a reactor's superseded position records.
        if h.entity
            .starts_with(crate::delivery::reactor::REACTOR_ENTITY_PREFIX)
        {
            return None;
        }
        return Some("no recorded policy or deletion is named".into());
    };
    let Some(record) = c.lifecycle.get(&cause) else {
        return Some(format!(
            "the record named ({cause}) is not a retention or deletion record of this store"
        ));
    };
    match record {
        Lifecycle::Deletion(d) if d.entity != h.entity => Some(format!(
            "the deletion named ({cause}) deleted {:?}",
            d.entity
        )),
        Lifecycle::Deletion(d)
            if d.mode == DeleteMode::Soft && h.first_kept > d.version.map_or(0, |v| v + 1) =>
        {
            Some(match d.version {
                Some(v) => format!("the deletion named ({cause}) hid versions only through {v}"),
                None => format!("the deletion named ({cause}) hid no versions"),
            })
        }
        Lifecycle::Deletion(_) => None,
        Lifecycle::Retention(r) => {
            match &r.selector {
                RetentionSelector::EntityPrefix(p)
                    if !p.is_empty() && !crate::coordinate::prefix_matches(p, &h.entity) =>
                {
                    return Some(format!("the policy named ({cause}) covers prefix {p:?}"));
                }
                RetentionSelector::Entity(e) if *e != h.entity => {
                    return Some(format!("the policy named ({cause}) covers entity {e:?}"));
                }
                _ => {}
            }
            match r.rule {
                None => Some(format!("the record named ({cause}) cleared a policy")),
                // Explained when one part alone explains it (the furthest part
                // removed the whole prefix): unexplained only if every part is.
                Some(RetentionRule::Combined(limits)) => limits
                    .rules()
                    .map(|part| rule_unexplained(h, at_ms, c, cause, part))
                    .collect::<Option<Vec<String>>>()
                    .map(|why| why.join("; ")),
                Some(rule) => rule_unexplained(h, at_ms, c, cause, rule),
            }
        }
    }
}

/// Why one simple rule does not explain the removed prefix, if it does not.
fn rule_unexplained(
    h: &Horizon,
    at_ms: u64,
    c: &Compacted,
    cause: EventId,
    rule: crate::retention::RetentionRule,
) -> Option<String> {
    use crate::retention::RetentionRule;
    match rule {
        RetentionRule::BeforeVersion(v) if h.first_kept > v => Some(format!(
            "the policy named ({cause}) keeps versions from {v}"
        )),
        RetentionRule::MaxCount(n) if c.counts.get(&h.entity).copied().unwrap_or(0) < n => {
            Some(format!(
                "the policy named ({cause}) keeps the newest {n}, and fewer are left"
            ))
        }
        RetentionRule::MaxAge(age)
            if h.last_removed.unix_millis()
                >= at_ms.saturating_sub(RetentionRule::age_ms(age)) =>
        {
            Some(format!(
                "the policy named ({cause}) keeps events younger than {} ms, and the last removed one was not older",
                RetentionRule::age_ms(age)
            ))
        }
        _ => None,
    }
}
