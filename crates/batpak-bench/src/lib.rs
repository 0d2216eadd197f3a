//! Shared pieces of the batpak benchmarks: the payload every workload appends, and a
//! SQLite journal that does the same work as batpak's append path (a per-entity blake3
//! hash chain, a random 16-byte id, a MessagePack payload) so the two can be compared
//! in the same run on the same machine.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use batpak::EventPayload;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

/// Any failure of the baseline: SQLite, encoding or decoding.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
/// Result of the baseline's operations.
pub type Result<T> = std::result::Result<T, BenchError>;

/// Appends are spread round-robin over this many entities.
pub const ENTITIES: usize = 1_000;
/// The scope of every benchmark event.
pub const SCOPE: &str = "tenant:acme";

/// The name of entity number `i` (`order:{i}`).
pub mod nats;
pub mod postgres;
pub mod timing;

pub fn entity_name(i: usize) -> String {
    format!("order:{i}")
}

/// The benchmark payload: about 50 bytes of MessagePack with named fields.
#[derive(Serialize, Deserialize, EventPayload, Clone, Debug, PartialEq, Eq)]
#[batpak(category = 1, type_id = 1)]
pub struct OrderPlaced {
    /// Stock-keeping unit, `SKU-nnnn`.
    pub sku: String,
    /// Units ordered, 1 to 9.
    pub qty: u32,
    /// Unit price, 1,000 to 9,999 cents.
    pub price_cents: u64,
    /// Customer reference, `c-nnnnn`.
    pub customer: String,
}

impl OrderPlaced {
    /// A deterministic sample; every `i` encodes to the same length.
    pub fn sample(i: u64) -> Self {
        OrderPlaced {
            sku: format!("SKU-{:04}", i % 10_000),
            qty: (i % 9) as u32 + 1,
            price_cents: 1_000 + i % 9_000,
            customer: format!("c-{:05}", i % 100_000),
        }
    }
}

/// Cheap time-ordered ids, as batpak's are: 48 bits of Unix milliseconds, then 80 bits
/// of blake3 in keyed mode over a counter (no syscall per id). Time order keeps the
/// `UNIQUE` id index's inserts at its right edge, as a user's UUIDv7 keys would; fully
/// random ids dirtied one index page per row and made each batch commit write
/// megabytes of WAL.
#[derive(Debug)]
pub struct IdSource {
    key: [u8; 32],
    counter: u64,
}

impl IdSource {
    /// Keys the generator from the clock (ids need to be unique, not secret, here).
    pub fn new() -> Self {
        let key = *blake3::hash(&now_ns().to_le_bytes()).as_bytes();
        IdSource { key, counter: 0 }
    }

    /// The next 16-byte id.
    pub fn next_id(&mut self) -> [u8; 16] {
        self.counter += 1;
        let block = blake3::keyed_hash(&self.key, &self.counter.to_le_bytes());
        let mut id = [0u8; 16];
        id[..6].copy_from_slice(&(now_ns() / 1_000_000).to_be_bytes()[2..]);
        id[6..].copy_from_slice(&block.as_bytes()[..10]);
        id
    }
}

impl Default for IdSource {
    fn default() -> Self {
        IdSource::new()
    }
}

/// A `/proc/self/status` field (`VmRSS:`, `VmHWM:`, `RssAnon:`...) in bytes, 0 when
/// unavailable.
pub fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Unix nanoseconds.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// SQLite's `synchronous` setting for a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronous {
    /// `synchronous=OFF`: no fsync at all (compare with `SyncPolicy::Never`).
    Off,
    /// `synchronous=FULL`: the WAL is fsynced at every commit (compare with
    /// `SyncPolicy::Always`).
    Full,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Full => "FULL",
        }
    }
}

/// What a SQLite append returns, like batpak's `AppendReceipt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteReceipt {
    /// The row's `seq` (rowid), the store-wide position.
    pub sequence: i64,
    /// The 16-byte id.
    pub id: [u8; 16],
    /// Position within the entity, from 0.
    pub version: i64,
    /// The event's chain hash.
    pub hash: [u8; 32],
}

/// A row read back, like batpak's `StoredEvent`: every column, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteEvent {
    /// Store-wide position.
    pub sequence: i64,
    /// The 16-byte id.
    pub id: [u8; 16],
    /// The entity.
    pub entity: String,
    /// The scope.
    pub scope: String,
    /// Position within the entity.
    pub version: i64,
    /// `EventKind` bits.
    pub kind: u16,
    /// Unix nanoseconds.
    pub timestamp_ns: i64,
    /// MessagePack payload.
    pub payload: Vec<u8>,
    /// The entity's previous event hash, zero for the first.
    pub prev_hash: [u8; 32],
    /// This event's hash.
    pub hash: [u8; 32],
}

impl SqliteEvent {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(SqliteEvent {
            sequence: row.get(0)?,
            id: row.get(1)?,
            entity: row.get(2)?,
            scope: row.get(3)?,
            version: row.get(4)?,
            kind: row.get(5)?,
            timestamp_ns: row.get(6)?,
            payload: row.get(7)?,
            prev_hash: row.get(8)?,
            hash: row.get(9)?,
        })
    }

    /// Decodes the payload, checking the kind first (as `StoredEvent::decode` does).
    pub fn decode(&self) -> Result<OrderPlaced> {
        if self.kind != OrderPlaced::KIND.bits() {
            return Err(format!("stored kind {} is not OrderPlaced", self.kind).into());
        }
        Ok(rmp_serde::from_slice(&self.payload)?)
    }
}

/// The baseline's chain hash of one row.
fn chain_hash(
    prev_hash: &[u8; 32],
    entity: &str,
    scope: &str,
    version: i64,
    kind: u16,
    ts: i64,
    payload: &[u8],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(prev_hash);
    for text in [entity, scope] {
        h.update(&(text.len() as u16).to_le_bytes());
        h.update(text.as_bytes());
    }
    h.update(&version.to_le_bytes());
    h.update(&kind.to_le_bytes());
    h.update(&ts.to_le_bytes());
    h.update(payload);
    *h.finalize().as_bytes()
}

/// The newest event of an entity.
#[derive(Clone, Copy, Debug)]
struct Head {
    version: i64,
    hash: [u8; 32],
}

/// A row ready to insert.
#[derive(Debug)]
struct Prepared {
    id: [u8; 16],
    version: i64,
    ts: i64,
    payload: Vec<u8>,
    prev_hash: [u8; 32],
    hash: [u8; 32],
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    entity TEXT NOT NULL,
    scope TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    payload BLOB NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_entity_version ON events (entity, version);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
";

const AFTER: &str = "SELECT seq, id, entity, scope, version, kind, ts, payload, prev_hash, \
    hash FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2";
const SAVE_POSITION: &str =
    "INSERT INTO cursors (name, position) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET position = ?2";
const INSERT: &str = "INSERT INTO events (id, entity, scope, version, kind, ts, payload, \
    prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const HEAD: &str =
    "SELECT version, hash FROM events WHERE entity = ?1 ORDER BY version DESC LIMIT 1";
const BY_ID: &str = "SELECT seq, id, entity, scope, version, kind, ts, payload, prev_hash, \
    hash FROM events WHERE id = ?1";
const BY_ENTITY_VERSION: &str = "SELECT seq, id, entity, scope, version, kind, ts, payload, \
    prev_hash, hash FROM events WHERE entity = ?1 AND version = ?2";
const PAYLOADS_BY_ENTITY: &str =
    "SELECT kind, payload FROM events WHERE entity = ?1 ORDER BY version";
const BY_ENTITY: &str = "SELECT seq, id, entity, scope, version, kind, ts, payload, \
    prev_hash, hash FROM events WHERE entity = ?1 ORDER BY version";

/// The SQLite baseline: one `events` table in WAL mode, appends that link the same
/// kind of per-entity blake3 chain batpak links, with a cache of entity heads.
///
/// The head cache is per connection: two journals on the same file must append to
/// disjoint entities.
#[derive(Debug)]
pub struct SqliteJournal {
    conn: Connection,
    heads: HashMap<String, Head>,
    ids: IdSource,
    last_ts: u64,
}

impl SqliteJournal {
    /// Opens (or creates) the database at `path` in WAL mode with this `synchronous`.
    pub fn open(path: &Path, synchronous: Synchronous) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(60))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("journal_mode is {mode}, not wal").into());
        }
        conn.pragma_update(None, "synchronous", synchronous.pragma())?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteJournal {
            conn,
            heads: HashMap::new(),
            ids: IdSource::new(),
            last_ts: 0,
        })
    }

    /// The entity's head: from the cache, or from the table on a miss.
    fn head(&mut self, entity: &str) -> Result<Option<Head>> {
        if let Some(h) = self.heads.get(entity) {
            return Ok(Some(*h));
        }
        let found = self
            .conn
            .prepare_cached(HEAD)?
            .query_row(params![entity], |r| {
                Ok(Head {
                    version: r.get(0)?,
                    hash: r.get(1)?,
                })
            })
            .optional()?;
        if let Some(h) = found {
            self.heads.insert(entity.to_owned(), h);
        }
        Ok(found)
    }

    /// Assigns id, timestamp and version, encodes the payload and links the chain.
    fn prepare(
        &mut self,
        prior: Option<Head>,
        entity: &str,
        scope: &str,
        payload: &OrderPlaced,
    ) -> Result<Prepared> {
        let version = prior.map_or(0, |h| h.version + 1);
        let prev_hash = prior.map_or([0; 32], |h| h.hash);
        let ts = now_ns().max(self.last_ts);
        self.last_ts = ts;
        let bytes = rmp_serde::to_vec_named(payload)?;
        let ts = i64::try_from(ts)?;
        let kind = OrderPlaced::KIND.bits();
        let hash = chain_hash(&prev_hash, entity, scope, version, kind, ts, &bytes);
        Ok(Prepared {
            id: self.ids.next_id(),
            version,
            ts,
            payload: bytes,
            prev_hash,
            hash,
        })
    }

    /// Appends one event in its own (autocommit) transaction.
    pub fn append(
        &mut self,
        entity: &str,
        scope: &str,
        payload: &OrderPlaced,
    ) -> Result<SqliteReceipt> {
        let prior = self.head(entity)?;
        let row = self.prepare(prior, entity, scope, payload)?;
        let sequence = insert(&self.conn, entity, scope, &row)?;
        self.set_head(entity, &row);
        Ok(receipt(sequence, &row))
    }

    /// Appends every item in one transaction: all or none.
    pub fn append_batch(
        &mut self,
        scope: &str,
        items: &[(&str, &OrderPlaced)],
    ) -> Result<Vec<SqliteReceipt>> {
        // Heads as the batch moves them; the cache changes only after the commit.
        let mut staged: HashMap<&str, Head> = HashMap::new();
        let mut rows = Vec::with_capacity(items.len());
        for &(entity, payload) in items {
            let prior = match staged.get(entity) {
                Some(h) => Some(*h),
                None => self.head(entity)?,
            };
            let row = self.prepare(prior, entity, scope, payload)?;
            staged.insert(
                entity,
                Head {
                    version: row.version,
                    hash: row.hash,
                },
            );
            rows.push(row);
        }
        let tx = self.conn.unchecked_transaction()?;
        let mut receipts = Vec::with_capacity(rows.len());
        {
            // One prepared statement for the whole batch.
            let mut stmt = tx.prepare_cached(INSERT)?;
            for (&(entity, _), row) in items.iter().zip(&rows) {
                stmt.execute(insert_params(entity, scope, row))?;
                receipts.push(receipt(tx.last_insert_rowid(), row));
            }
        }
        tx.commit()?;
        for (entity, head) in staged {
            self.heads.insert(entity.to_owned(), head);
        }
        Ok(receipts)
    }

    fn set_head(&mut self, entity: &str, row: &Prepared) {
        let head = Head {
            version: row.version,
            hash: row.hash,
        };
        match self.heads.get_mut(entity) {
            Some(h) => *h = head,
            None => {
                self.heads.insert(entity.to_owned(), head);
            }
        }
    }

    /// The event with this id.
    pub fn get(&self, id: &[u8; 16]) -> Result<Option<SqliteEvent>> {
        Ok(self
            .conn
            .prepare_cached(BY_ID)?
            .query_row(params![id], SqliteEvent::from_row)
            .optional()?)
    }

    /// Calls `f` with the kind and payload of each event of `entity` in version order,
    /// the payload borrowed from SQLite's row (only the two columns a fold needs are
    /// read): the lean read a user folding a stream would write.
    pub fn fold_payloads(
        &self,
        entity: &str,
        mut f: impl FnMut(u16, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(PAYLOADS_BY_ENTITY)?;
        let mut rows = stmt.query(params![entity])?;
        while let Some(row) = rows.next()? {
            let kind: u16 = row.get(0)?;
            f(kind, row.get_ref(1)?.as_blob()?)?;
        }
        Ok(())
    }

    /// Every event of `entity`, in version order.
    pub fn stream(&self, entity: &str) -> Result<Vec<SqliteEvent>> {
        let mut stmt = self.conn.prepare_cached(BY_ENTITY)?;
        let rows = stmt.query_map(params![entity], SqliteEvent::from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The event `id` and up to `limit - 1` earlier events of its entity, newest first:
    /// one indexed lookup per step (entity, version - 1), each row's hash recomputed and
    /// checked against its successor's `prev_hash`, as batpak's walk does.
    pub fn walk_ancestors(&self, id: &[u8; 16], limit: usize) -> Result<Vec<SqliteEvent>> {
        let mut out = Vec::new();
        let Some(mut current) = self.get(id)? else {
            return Ok(out);
        };
        let mut stmt = self.conn.prepare_cached(BY_ENTITY_VERSION)?;
        loop {
            let computed = chain_hash(
                &current.prev_hash,
                &current.entity,
                &current.scope,
                current.version,
                current.kind,
                current.timestamp_ns,
                &current.payload,
            );
            if computed != current.hash {
                return Err(format!("hash mismatch at version {}", current.version).into());
            }
            let (entity, version, prev) =
                (current.entity.clone(), current.version, current.prev_hash);
            out.push(current);
            if out.len() >= limit || version == 0 {
                return Ok(out);
            }
            current = stmt
                .query_row(params![entity, version - 1], SqliteEvent::from_row)
                .optional()?
                .ok_or("missing predecessor")?;
            if current.hash != prev {
                return Err(format!("broken link below version {version}").into());
            }
        }
    }

    /// Up to `limit` events after sequence `after`, in order: what a polling
    /// subscriber or a cursor reads.
    pub fn read_after(&self, after: i64, limit: usize) -> Result<Vec<SqliteEvent>> {
        let mut stmt = self.conn.prepare_cached(AFTER)?;
        let rows = stmt.query_map(params![after, i64::try_from(limit)?], SqliteEvent::from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Saves a named position (its own transaction, with the journal's `synchronous`).
    pub fn save_position(&self, name: &str, position: i64) -> Result<()> {
        self.conn
            .prepare_cached(SAVE_POSITION)?
            .execute(params![name, position])?;
        Ok(())
    }

    /// Appends one event and saves a named position in one transaction: a reaction
    /// committed with its reactor's position.
    pub fn append_with_position(
        &mut self,
        entity: &str,
        scope: &str,
        payload: &OrderPlaced,
        name: &str,
        position: i64,
    ) -> Result<SqliteReceipt> {
        let prior = self.head(entity)?;
        let row = self.prepare(prior, entity, scope, payload)?;
        let tx = self.conn.unchecked_transaction()?;
        let sequence = insert(&tx, entity, scope, &row)?;
        tx.prepare_cached(SAVE_POSITION)?
            .execute(params![name, position])?;
        tx.commit()?;
        self.set_head(entity, &row);
        Ok(receipt(sequence, &row))
    }

    /// Number of rows.
    pub fn count(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))?)
    }
}

fn insert(conn: &Connection, entity: &str, scope: &str, row: &Prepared) -> Result<i64> {
    conn.prepare_cached(INSERT)?
        .execute(insert_params(entity, scope, row))?;
    Ok(conn.last_insert_rowid())
}

/// The parameters of `INSERT` for one row.
fn insert_params<'a>(
    entity: &'a str,
    scope: &'a str,
    row: &'a Prepared,
) -> impl rusqlite::Params + 'a {
    (
        row.id,
        entity,
        scope,
        row.version,
        OrderPlaced::KIND.bits(),
        row.ts,
        row.payload.as_slice(),
        row.prev_hash,
        row.hash,
    )
}

fn receipt(sequence: i64, row: &Prepared) -> SqliteReceipt {
    SqliteReceipt {
        sequence,
        id: row.id,
        version: row.version,
        hash: row.hash,
    }
}

/// A cheap deterministic PRNG (xorshift64*) for picking read targets.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeds the generator; a zero seed is replaced.
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n` (slightly biased; fine for picking targets).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_about_fifty_bytes() {
        for i in [0, 1, 42, 999, 123_456] {
            let bytes = OrderPlaced::sample(i).encode().unwrap();
            assert_eq!(bytes.len(), 51, "{i}");
        }
    }

    #[test]
    fn sqlite_journal_round_trips_and_chains() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = SqliteJournal::open(&dir.path().join("e.db"), Synchronous::Off).unwrap();
        let a = j.append("order:1", SCOPE, &OrderPlaced::sample(1)).unwrap();
        let b = j.append("order:1", SCOPE, &OrderPlaced::sample(2)).unwrap();
        let c = j
            .append_batch(
                SCOPE,
                &[
                    ("order:1", &OrderPlaced::sample(3)),
                    ("order:2", &OrderPlaced::sample(4)),
                ],
            )
            .unwrap();
        assert_eq!(
            (a.version, b.version, c[0].version, c[1].version),
            (0, 1, 2, 0)
        );
        let events = j.stream("order:1").unwrap();
        assert_eq!(events.len(), 3);
        let mut folded = Vec::new();
        j.fold_payloads("order:1", |kind, bytes| {
            assert_eq!(kind, OrderPlaced::KIND.bits());
            folded.push(rmp_serde::from_slice::<OrderPlaced>(bytes)?);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            folded,
            events
                .iter()
                .map(|e| e.decode().unwrap())
                .collect::<Vec<_>>()
        );
        assert_eq!(events[1].prev_hash, a.hash);
        assert_eq!(events[2].prev_hash, b.hash);
        let got = j.get(&c[1].id).unwrap().unwrap();
        assert_eq!(got.decode().unwrap(), OrderPlaced::sample(4));
        assert_eq!(j.count().unwrap(), 4);
        drop(j);
        // A fresh connection finds the head in the table.
        let mut j = SqliteJournal::open(&dir.path().join("e.db"), Synchronous::Off).unwrap();
        let d = j.append("order:1", SCOPE, &OrderPlaced::sample(5)).unwrap();
        assert_eq!(d.version, 3);
        assert_eq!(j.stream("order:1").unwrap()[3].prev_hash, c[0].hash);
    }
}
