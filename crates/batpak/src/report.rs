//! Evidence reports: a deterministic body, its hash, and metadata outside the hash.
//!
//! One generic type serves every kind of report. The body is plain data (sorted
//! collections, no wall-clock time, no absolute paths); its canonical encoding is the
//! compact JSON serde writes for it (fields in declaration order, no maps with
//! unordered keys), and
//!
//! ```text
//! body_hash = blake3::keyed_hash(derive_key("batpak 2026 report body v1", ""),
//!                                kind_len u16 | kind | canonical body)
//! ```

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::hash::Hash;

mod projection;
mod verification;
mod walk;

pub use projection::{
    CacheStatus, Finding, InputFrontier, ObservedFreshness, OutputHash, ProjectionRun,
    RequestedFreshness, SnapshotRef, SourceRef,
};
pub use verification::{Check, KeptHistory, Verification, VerifyFinding};
pub use walk::{ChainWalkReport, EventRef, WalkFinding};

/// A report body: plain, deterministic data with a kind name.
pub trait ReportBody: Serialize {
    /// The kind of report, part of the hashed bytes (`"projection-run"`, ...).
    const KIND: &'static str;
}

/// A report: the body, the hash of its canonical encoding, and metadata that is not
/// hashed (and may differ between otherwise identical runs).
///
/// Serde: `{"body": ..., "body_hash": "<64 hex digits>", "metadata": {...}}`.
/// Deserialising does not check the hash: call [`verify`](Report::verify).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Report<B> {
    /// The deterministic body.
    pub body: B,
    /// blake3 of the body's canonical encoding (see the module documentation).
    pub body_hash: Hash,
    /// Facts about this particular run, outside the hash.
    pub metadata: ReportMetadata,
}

/// Report metadata: not part of the body hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReportMetadata {
    /// When the report was made, Unix milliseconds.
    pub generated_at_unix_ms: u64,
    /// The batpak version that made it.
    pub library_version: String,
    /// Free-form diagnostics (error texts, timings).
    pub diagnostics: Vec<String>,
}

static BODY_KEY: LazyLock<[u8; 32]> =
    LazyLock::new(|| blake3::derive_key("batpak 2026 report body v1", &[]));

impl<B: ReportBody> Report<B> {
    /// Seals `body`: computes its hash and stamps the metadata.
    pub fn new(body: B, diagnostics: Vec<String>) -> Self {
        let body_hash = hash_body(&body);
        Report {
            body,
            body_hash,
            metadata: ReportMetadata {
                generated_at_unix_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                library_version: env!("CARGO_PKG_VERSION").to_string(),
                diagnostics,
            },
        }
    }

    /// The canonical encoding of the body: the bytes the hash covers (after the kind).
    pub fn canonical_body(&self) -> Vec<u8> {
        canonical(&self.body)
    }

    /// Whether `body_hash` matches the body.
    pub fn verify(&self) -> bool {
        hash_body(&self.body) == self.body_hash
    }
}

fn canonical<B: Serialize>(body: &B) -> Vec<u8> {
    // Serialising plain data to a Vec cannot fail; a body that could (a map with
    // non-string keys) would hash as empty, which its golden test would catch.
    serde_json::to_vec(body).unwrap_or_default()
}

fn hash_body<B: ReportBody>(body: &B) -> Hash {
    let mut h = blake3::Hasher::new_keyed(&BODY_KEY);
    let kind = B::KIND.as_bytes();
    h.update(&u16::try_from(kind.len()).unwrap_or(u16::MAX).to_le_bytes());
    h.update(kind);
    h.update(&canonical(body));
    Hash::from_bytes(*h.finalize().as_bytes())
}
