//! The PostgreSQL sink: one schema per store, an `events` table with every stored
//! field (the exact payload bytes and a `jsonb` view when decodable), indexes for
//! entity, scope, kind, time, causation and correlation, and the sink's position in
//! the same transaction as the rows.

use batpak::proof::Anchor;
use batpak::ExportLine;
use tokio_postgres::{Client, NoTls};

use crate::sink::{Sink, SinkError};

/// Replicates into a schema of a PostgreSQL database.
pub struct PostgresSink {
    url: String,
    schema: String,
    client: Option<Client>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("schema", &self.schema)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> SinkError {
    SinkError::Unavailable(e.to_string())
}

/// PostgreSQL's reserved key words (and those reserved but allowed as function
/// names): an unquoted schema name cannot be one of them.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "binary",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "group",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "intersect",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "natural",
    "not",
    "notnull",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "overlaps",
    "placing",
    "primary",
    "references",
    "returning",
    "right",
    "select",
    "session_user",
    "similar",
    "some",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
];

/// A schema name the sink accepts: lower-case letters, digits and `_`, starting with a
/// letter, at most 48 bytes, not a reserved word (so it needs no quoting anywhere).
pub fn check_schema(schema: &str) -> Result<(), String> {
    if RESERVED.contains(&schema) {
        return Err(format!(
            "the schema {schema:?} is a reserved word of SQL; choose another name"
        ));
    }
    let ok = !schema.is_empty()
        && schema.len() <= 48
        && schema.starts_with(|c: char| c.is_ascii_lowercase())
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the schema {schema:?} must be lower-case letters, digits and _, starting with a letter, at most 48 bytes"
        ))
    }
}

impl PostgresSink {
    /// A sink of `schema` in the database at `url` (`postgres://user@host:port/db`).
    /// Connects on first use, and again after a failure.
    pub fn new(url: &str, schema: &str) -> Result<PostgresSink, String> {
        check_schema(schema)?;
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| format!("{url:?} is not a PostgreSQL connection string: {e}"))?;
        Ok(PostgresSink {
            url: url.to_string(),
            schema: schema.to_string(),
            client: None,
        })
    }

    /// The schema's tables, created when missing.
    fn ddl(&self) -> String {
        let s = &self.schema;
        format!(
            "CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.events (
                 sequence bigint PRIMARY KEY,
                 id uuid NOT NULL UNIQUE,
                 timestamp_ns bigint NOT NULL,
                 entity text NOT NULL,
                 scope text NOT NULL,
                 version bigint NOT NULL,
                 kind text NOT NULL,
                 kind_name text,
                 schema_version integer NOT NULL,
                 encoding text NOT NULL,
                 payload bytea,
                 payload_json jsonb,
                 causation uuid,
                 correlation uuid,
                 metadata jsonb NOT NULL,
                 redacted boolean NOT NULL,
                 salt text,
                 digest text,
                 idempotency text,
                 flags integer NOT NULL,
                 prev_hash text NOT NULL,
                 event_hash text NOT NULL
             );
             CREATE INDEX IF NOT EXISTS events_entity ON {s}.events (entity, version);
             CREATE INDEX IF NOT EXISTS events_scope ON {s}.events (scope, sequence);
             CREATE INDEX IF NOT EXISTS events_kind ON {s}.events (kind, sequence);
             CREATE INDEX IF NOT EXISTS events_time ON {s}.events (timestamp_ns);
             CREATE INDEX IF NOT EXISTS events_causation ON {s}.events (causation) WHERE causation IS NOT NULL;
             CREATE INDEX IF NOT EXISTS events_correlation ON {s}.events (correlation) WHERE correlation IS NOT NULL;
             CREATE TABLE IF NOT EXISTS {s}.anchors (
                 sequence bigint PRIMARY KEY,
                 running_hash text NOT NULL,
                 signed_by text,
                 anchor jsonb NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {s}.compaction (
                 generation bigint PRIMARY KEY,
                 manifest bytea NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {s}.position (
                 one boolean PRIMARY KEY DEFAULT true CHECK (one),
                 sequence bigint NOT NULL,
                 updated timestamptz NOT NULL DEFAULT now()
             );"
        )
    }

    async fn client(&mut self) -> Result<&mut Client, SinkError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        if self.client.is_none() {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
                .await
                .map_err(unavailable)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
                .batch_execute(&self.ddl())
                .await
                .map_err(unavailable)?;
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| unavailable("no connection"))
    }

    /// Forgets the connection after a failure, so the next attempt reconnects.
    fn failed(&mut self, e: tokio_postgres::Error) -> SinkError {
        self.client = None;
        unavailable(e)
    }
}

/// A connection for reading the copy in `schema` (verify, follow, promote).
pub(crate) async fn connect(url: &str, schema: &str) -> Result<Client, String> {
    check_schema(schema)?;
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The sink's recorded position (0 when it holds nothing yet).
pub(crate) async fn sink_position(client: &Client, schema: &str) -> Result<u64, String> {
    let row = client
        .query_opt(&format!("SELECT sequence FROM {schema}.position"), &[])
        .await
        .map_err(|e| format!("{schema}.position: {e}"))?;
    Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
}

/// The anchors the copy in `schema` keeps, in sequence order (none in a schema made
/// before anchors were shipped).
pub(crate) async fn copy_anchors(client: &Client, schema: &str) -> Result<Vec<Anchor>, String> {
    let exists: bool = client
        .query_one(
            &format!("SELECT to_regclass('{schema}.anchors') IS NOT NULL"),
            &[],
        )
        .await
        .map_err(|e| format!("{schema}.anchors: {e}"))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!("SELECT sequence, anchor::text FROM {schema}.anchors ORDER BY sequence"),
            &[],
        )
        .await
        .map_err(|e| format!("{schema}.anchors: {e}"))?;
    rows.iter()
        .map(|r| {
            let text: String = r.get(1);
            serde_json::from_str(&text).map_err(|e| {
                format!(
                    "{schema}.anchors row at sequence {}: not an anchor: {e}",
                    r.get::<_, i64>(0)
                )
            })
        })
        .collect()
}

/// The newest compaction manifest the copy in `schema` keeps, decoded.
pub(crate) async fn copy_compaction(
    client: &Client,
    schema: &str,
) -> Result<Option<batpak::proof::CompactionProof>, String> {
    let exists: bool = client
        .query_one(
            &format!("SELECT to_regclass('{schema}.compaction') IS NOT NULL"),
            &[],
        )
        .await
        .map_err(|e| format!("{schema}.compaction: {e}"))?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt(
            &format!("SELECT generation, manifest FROM {schema}.compaction ORDER BY generation DESC LIMIT 1"),
            &[],
        )
        .await
        .map_err(|e| format!("{schema}.compaction: {e}"))?;
    row.map(|r| {
        let bytes: Vec<u8> = r.get(1);
        batpak::proof::CompactionProof::from_manifest(&bytes)
            .map_err(|e| format!("{schema}.compaction generation {}: {e}", r.get::<_, i64>(0)))
    })
    .transpose()
}

/// Sequences travel as `bigint`: a store's sequences stay far below 2^63.
fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Sink for PostgresSink {
    fn describe(&self) -> String {
        let target = self.url.split('@').next_back().unwrap_or(&self.url);
        format!("postgres://{target} schema {}", self.schema)
    }

    async fn position(&mut self) -> Result<u64, SinkError> {
        let sql = format!("SELECT sequence FROM {}.position", self.schema);
        let client = self.client().await?;
        match client.query_opt(&sql, &[]).await {
            Ok(row) => Ok(row.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64)),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn ship(
        &mut self,
        events: &[ExportLine],
        erased: &[ExportLine],
        through: u64,
    ) -> Result<(), SinkError> {
        let schema = self.schema.clone();
        let columns = Columns::of(events);
        let client = self.client().await?;
        let result = async {
            let tx = client.transaction().await?;
            // Rows it already holds are left as they are (an at-least-once retry);
            // that they are the same events is checked below.
            let inserted = tx.execute(
                &format!(
                    "INSERT INTO {schema}.events (sequence, id, timestamp_ns, entity, scope, version, kind,
                         kind_name, schema_version, encoding, payload, payload_json, causation, correlation,
                         metadata, redacted, salt, digest, idempotency, flags, prev_hash, event_hash)
                     SELECT s, i::uuid, t, e, sc, v, k, kn, sv, enc, p, pj, c::uuid, co::uuid, m, r, sa, d, id, f, ph, eh
                     FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bigint[],
                                 $7::text[], $8::text[], $9::int[], $10::text[], $11::bytea[], $12::jsonb[],
                                 $13::text[], $14::text[], $15::jsonb[], $16::bool[], $17::text[], $18::text[],
                                 $19::text[], $20::int[], $21::text[], $22::text[])
                         AS u(s, i, t, e, sc, v, k, kn, sv, enc, p, pj, c, co, m, r, sa, d, id, f, ph, eh)
                     ON CONFLICT (sequence) DO NOTHING"
                ),
                &[
                    &columns.sequence, &columns.id, &columns.timestamp_ns, &columns.entity,
                    &columns.scope, &columns.version, &columns.kind, &columns.kind_name,
                    &columns.schema_version, &columns.encoding, &columns.payload,
                    &columns.payload_json, &columns.causation, &columns.correlation,
                    &columns.metadata, &columns.redacted, &columns.salt, &columns.digest,
                    &columns.idempotency, &columns.flags, &columns.prev_hash, &columns.event_hash,
                ],
            )
            .await?;
            // Only when some rows were there already (a retry after a crash) is it
            // checked that they are the same events.
            let differing: i64 = if inserted == events.len() as u64 {
                0
            } else {
                tx.query_one(
                    &format!(
                        "SELECT count(*) FROM {schema}.events e
                         JOIN UNNEST($1::bigint[], $2::text[]) AS u(s, eh) ON e.sequence = u.s
                         WHERE e.event_hash <> u.eh"
                    ),
                    &[&columns.sequence, &columns.event_hash],
                )
                .await?
                .get(0)
            };
            if differing > 0 {
                tx.rollback().await?;
                return Ok(Some(differing));
            }
            // A redaction erases the payload downstream too; what verification needs
            // (the hash inputs, the salted digest) stays.
            for line in erased {
                tx.execute(
                    &format!(
                        "UPDATE {schema}.events SET payload = NULL, payload_json = NULL, salt = NULL,
                             redacted = true, digest = $3
                         WHERE sequence = $1 AND event_hash = $2"
                    ),
                    &[
                        &big(line.sequence.unwrap_or(0)),
                        &line.event_hash.map(|h| h.to_string()).unwrap_or_default(),
                        &line.digest.map(|d| d.to_string()),
                    ],
                )
                .await?;
            }
            tx.execute(
                &format!(
                    "INSERT INTO {schema}.position (one, sequence) VALUES (true, $1)
                     ON CONFLICT (one) DO UPDATE SET sequence = GREATEST({schema}.position.sequence, EXCLUDED.sequence), updated = now()"
                ),
                &[&big(through)],
            )
            .await?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>(None)
        }
        .await;
        match result {
            Ok(None) => Ok(()),
            Ok(Some(n)) => Err(SinkError::Diverged(format!(
                "{n} rows of {} hold other events at the sequences being shipped (a copy of another store?)",
                self.describe()
            ))),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn compaction(&mut self, generation: u64, manifest: &[u8]) -> Result<(), SinkError> {
        let sql = format!(
            "INSERT INTO {}.compaction (generation, manifest) VALUES ($1, $2)
             ON CONFLICT (generation) DO NOTHING",
            self.schema
        );
        let client = self.client().await?;
        match client.execute(&sql, &[&big(generation), &manifest]).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }

    async fn anchor(&mut self, anchor: &Anchor) -> Result<(), SinkError> {
        let sql = format!(
            "INSERT INTO {}.anchors (sequence, running_hash, signed_by, anchor)
             VALUES ($1, $2, $3, $4::text::jsonb) ON CONFLICT (sequence) DO NOTHING",
            self.schema
        );
        let json = serde_json::to_string(anchor).map_err(unavailable)?;
        let signed_by = anchor.signature.map(|s| s.key_id.to_string());
        let client = self.client().await?;
        match client
            .execute(
                &sql,
                &[
                    &big(anchor.sequence),
                    &anchor.running_hash.to_string(),
                    &signed_by,
                    &json,
                ],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }
}

/// A batch as column arrays, for one `UNNEST` insert.
#[derive(Default)]
struct Columns {
    sequence: Vec<i64>,
    id: Vec<String>,
    timestamp_ns: Vec<i64>,
    entity: Vec<String>,
    scope: Vec<String>,
    version: Vec<i64>,
    kind: Vec<String>,
    kind_name: Vec<Option<String>>,
    schema_version: Vec<i32>,
    encoding: Vec<String>,
    payload: Vec<Option<Vec<u8>>>,
    payload_json: Vec<Option<serde_json::Value>>,
    causation: Vec<Option<String>>,
    correlation: Vec<Option<String>>,
    metadata: Vec<serde_json::Value>,
    redacted: Vec<bool>,
    salt: Vec<Option<String>>,
    digest: Vec<Option<String>>,
    idempotency: Vec<Option<String>>,
    flags: Vec<i32>,
    prev_hash: Vec<String>,
    event_hash: Vec<String>,
}

impl Columns {
    fn of(events: &[ExportLine]) -> Columns {
        let mut c = Columns::default();
        for e in events {
            c.sequence.push(big(e.sequence.unwrap_or(0)));
            c.id.push(e.id.map(|i| i.to_string()).unwrap_or_default());
            c.timestamp_ns.push(big(e.timestamp_ns.unwrap_or(0)));
            c.entity.push(e.entity.clone());
            c.scope.push(e.scope.clone());
            c.version.push(big(e.version.unwrap_or(0)));
            c.kind.push(e.kind.to_string());
            c.kind_name.push(e.kind_name.clone());
            c.schema_version
                .push(i32::from(e.schema_version.unwrap_or(1)));
            c.encoding.push(
                e.encoding
                    .and_then(|enc| serde_json::to_value(enc).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            );
            c.payload
                .push(e.payload_bytes().ok().map(|(_, bytes)| bytes));
            c.payload_json.push(e.payload.clone());
            c.causation.push(e.causation.map(|i| i.to_string()));
            c.correlation.push(e.correlation.map(|i| i.to_string()));
            c.metadata
                .push(serde_json::to_value(&e.metadata).unwrap_or(serde_json::Value::Null));
            c.redacted.push(e.redacted);
            c.salt.push(e.salt.clone());
            c.digest.push(e.digest.map(|d| d.to_string()));
            c.idempotency.push(e.idempotency.clone());
            c.flags.push(i32::from(e.flags.unwrap_or(0)));
            c.prev_hash
                .push(e.prev_hash.map(|h| h.to_string()).unwrap_or_default());
            c.event_hash
                .push(e.event_hash.map(|h| h.to_string()).unwrap_or_default());
        }
        c
    }
}
