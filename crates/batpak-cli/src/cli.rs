//! The command line: every flag and subcommand, with their help texts.

use std::ffi::OsStr;
use std::path::PathBuf;

use batpak::proof::{SigningKey, VerifyingKey};
use batpak::{EventId, EventKind, ExpectedVersion};
use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Look into, write to and prove a batpak event store from the terminal.
///
/// The store directory is `--dir`, else `$BATPAK_DIR`, else `./batpak-data`. Reading
/// commands open the store read-only, or, while another process writes to it, as a
/// lock-free view. Every command takes `--json` for output meant for scripts. Event
/// ids are UUIDs; kinds are `C:T` (category and type id, decimal or 0x-hex).
#[derive(Debug, Parser)]
#[command(name = "batpak", version, propagate_version = true)]
pub struct Cli {
    /// The store directory [env: BATPAK_DIR] [default: ./batpak-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Print JSON instead of tables (one JSON document, or JSON Lines for event
    /// lists).
    #[arg(long, global = true)]
    pub json: bool,

    /// Ed25519 secret key (64 hex digits) to sign receipts and anchors with.
    #[arg(
        long,
        global = true,
        env = "BATPAK_SIGNING_KEY",
        value_name = "HEX",
        hide_env_values = true,
        value_parser = SecretKeyParser
    )]
    pub signing_key: Option<SigningKey>,

    /// Output form: `table` (aligned columns) or `csv` (RFC 4180, full payloads) for
    /// lists; `text`, `dot` (Graphviz), `mermaid` or `json` for `graph`; `json` is
    /// --json anywhere.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,

    /// How long a writing command waits for a store another process holds (`10s`,
    /// `500ms`) before failing with "locked". Default: fail at once.
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration_arg)]
    pub wait: Option<std::time::Duration>,

    /// An Ed25519 public key (64 hex digits) whose signatures to accept; repeatable.
    #[arg(long = "trust-key", global = true, value_name = "HEX")]
    pub trust_keys: Vec<VerifyingKey>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a realistic store (orders, payments, shipments; a reactor, a gate, a
    /// redaction) and show what batpak does with it. Leaves the store in --dir (a new
    /// temporary directory by default) for the other commands.
    Demo,
    /// One event, by id or by sequence (--seq).
    Get {
        /// The event id.
        #[arg(value_parser = event_id, required_unless_present = "seq", conflicts_with = "seq")]
        id: Option<EventId>,
        /// The event at this sequence instead.
        #[arg(long)]
        seq: Option<u64>,
    },
    /// Every event of an entity, in version order.
    Stream {
        /// The entity.
        entity: String,
    },
    /// Events matching filters, in sequence order (newest first with --reverse).
    Query {
        #[command(flatten)]
        filters: Filters,
        /// Newest first; with --before, page backwards.
        #[arg(long)]
        reverse: bool,
        /// With --reverse: only events before this sequence.
        #[arg(long, requires = "reverse")]
        before: Option<u64>,
    },
    /// Entities with their version, event count, first and last sequence and scopes,
    /// sorted by name.
    Entities {
        /// Only entities under this prefix (on `:` boundaries). The store's own
        /// entities are listed when the prefix is `batpak:`.
        #[arg(long)]
        prefix: Option<String>,
        /// Start after this entity name (for paging).
        #[arg(long)]
        after: Option<String>,
        /// At most this many entities.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Scopes with how many user events each holds.
    Scopes,
    /// Kinds with their recorded names and how many events each has.
    Kinds,
    /// How many events match the filters (counted on the index).
    Count(Filters),
    /// The newest events matching filters; with -f, keep printing new ones.
    Tail {
        #[command(flatten)]
        filters: Filters,
        /// Follow: print events as other processes append them (Ctrl-C stops).
        #[arg(short, long)]
        follow: bool,
    },
    /// Walk an entity's hash chain back from an event, checking every link.
    Walk {
        /// The event to start from.
        #[arg(value_parser = event_id)]
        id: EventId,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Follow causation links from an event back to its root cause.
    Causes {
        /// The event.
        #[arg(value_parser = event_id)]
        id: EventId,
        /// At most this many causes.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Events that name this event as their cause.
    Effects {
        /// The event.
        #[arg(value_parser = event_id)]
        id: EventId,
    },
    /// Events carrying this correlation id.
    Correlated {
        /// The correlation id (usually the id of a workflow's first event).
        #[arg(value_parser = event_id)]
        id: EventId,
    },
    /// The causal neighbourhood of an event (chain and causation edges).
    Graph {
        /// The event at the centre.
        #[arg(value_parser = event_id)]
        id: EventId,
        /// How many links away to go.
        #[arg(long, default_value_t = 2)]
        depth: usize,
    },
    /// Counts, watermarks and how the store was opened; with --sink, where each
    /// replica of it stands (position, events behind, how old the oldest missing one
    /// is).
    Stats {
        /// A sink the store is replicated into (postgres://USER@HOST:PORT/DB or
        /// nats://HOST:PORT); repeatable.
        #[arg(long = "sink", value_name = "URL")]
        sinks: Vec<String>,
        /// The copies' name: the PostgreSQL schema, or the JetStream stream.
        #[arg(long, visible_alias = "schema", default_value = "batpak")]
        name: String,
    },
    /// Make a new Ed25519 signing key: the secret (64 hex digits) goes to FILE,
    /// created with mode 0600 (never overwritten); the public key (for --trust-key)
    /// is printed. Use it with `--signing-key "$(cat FILE)"`.
    Keygen {
        /// Where to write the secret key.
        file: PathBuf,
    },
    /// Print the public half (for --trust-key) and key id of --signing-key /
    /// $BATPAK_SIGNING_KEY, or of the secret key in FILE.
    Pubkey {
        /// A file holding the secret key (as `keygen` writes it).
        file: Option<PathBuf>,
    },
    /// Append one event with a JSON payload (an argument, or standard input).
    Append(AppendArgs),
    /// Append every event of a JSON Lines file (as `export` writes, or
    /// `{"entity","scope","kind","payload"}` per line) in atomic batches of 1,000:
    /// re-appended as new events, or with --preserve as an exact replica.
    Import(ImportArgs),
    /// Check every record, hash, chain link and the index; exit code 1 on findings.
    /// With filters, check only the events they select and their links; here
    /// `--after A --limit N` selects the sequences A+1 to A+N.
    Verify {
        #[command(flatten)]
        filters: Filters,
        /// Check the segment files without opening the store (no index checks): what
        /// `verify` does by itself when the store cannot open.
        #[arg(long)]
        offline: bool,
    },
    /// Check a receipt (its JSON, an argument or standard input) against the store.
    VerifyReceipt {
        /// The receipt JSON; `-` or nothing reads standard input.
        receipt: Option<String>,
    },
    /// Print an anchor of the whole history (signed with --signing-key) to keep
    /// outside the store.
    Anchor,
    /// Check the history against an anchor (its JSON); exit code 1 unless it holds.
    VerifyAnchor {
        /// The anchor JSON; `-` or nothing reads standard input.
        anchor: Option<String>,
    },
    /// Write events matching filters as JSON Lines.
    Export {
        #[command(flatten)]
        filters: Filters,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Copy every readable event of the store (which need not open) into a new store
    /// at DEST, keeping ids, sequences and hashes up to the first loss and
    /// re-appending after it; lists every loss (and writes DEST/salvage-report.json).
    Salvage {
        /// The new store's directory (absent or empty).
        dest: PathBuf,
    },
    /// Copy the store as it is now to DIR (absent or empty), while it runs.
    Snapshot {
        /// The destination directory.
        dest: PathBuf,
    },
    /// A new store at DEST holding the history up to sequence --at (which must end a
    /// batch): same ids and hashes, sealed segments hard-linked where possible.
    Fork {
        /// The new store's directory (absent or empty).
        dest: PathBuf,
        /// The last sequence it holds.
        #[arg(long, value_name = "SEQ")]
        at: u64,
    },
    /// Erase an event's payload (its hash and chain still verify); records why.
    Redact {
        /// The event.
        #[arg(value_parser = event_id)]
        id: EventId,
        /// Why, recorded with the redaction.
        #[arg(long)]
        reason: String,
    },
    /// Retention policies: which events of an entity prefix or a scope are kept.
    /// What a policy expires is hidden from every read at once.
    Retention {
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// Remove from disk what the retention policies and deletions hide, and the bytes
    /// of redacted payloads; every kept event keeps its sequence, id and hash. Prints
    /// the bytes before and after.
    Compact,
    /// Hide every event an entity has now; with --hard, also refuse every later
    /// append to it (an entity that never had an event has its name reserved).
    /// Recorded in the journal.
    Delete {
        /// The entity.
        entity: String,
        /// A tombstone: the entity takes no more events.
        #[arg(long)]
        hard: bool,
    },
    /// The way out when an open refuses damaged or missing durable data: cut the
    /// history at a record boundary (what is cut is kept under repairs/ and the repair
    /// is recorded in the journal), or rebuild the index from the records.
    Repair {
        /// Where to cut, SEGMENT:OFFSET: the segment as its number or its file name
        /// (or path), as an open error names them, e.g. 0000000000000001.seg:466.
        #[arg(long, value_parser = cut_point, required_unless_present = "reindex", conflicts_with = "reindex", requires = "reason")]
        cut: Option<(u64, u64)>,
        /// Why, recorded with the repair.
        #[arg(long)]
        reason: Option<String>,
        /// Remove the index checkpoint and rebuild the index from the records.
        #[arg(long)]
        reindex: bool,
    },
    /// Serve the store over HTTP/JSON (`/v1`), with live streams (SSE), cursors,
    /// tokens and `/metrics`, until SIGTERM or SIGINT; then drain and close it.
    Serve(ServeArgs),
    /// Replicate the store into PostgreSQL or NATS JetStream, following new events
    /// until SIGTERM or SIGINT (a status line on stderr), resuming exactly after what
    /// the sink holds.
    Replicate(ReplicateArgs),
    /// Build and keep up a replica in --dir from a sink (the same ids, sequences and
    /// hashes), verifying every row as it is imported; `batpak serve --read-only`
    /// serves it while it follows.
    Follow {
        /// The sink: postgres://USER@HOST:PORT/DB or nats://HOST:PORT.
        #[arg(long)]
        from: String,
        /// The copy's name: its PostgreSQL schema, or its JetStream stream
        /// (BATPAK_<name>, subjects batpak.<name>.<scope>.<entity>).
        #[arg(long, visible_alias = "name", default_value = "batpak")]
        schema: String,
        /// Exit 0 once the replica holds what the sink held at the start.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Promote a replica (--dir) to take appends after its primary is lost: refused
    /// while the sink still holds events the replica does not, unless --force.
    Promote {
        /// The sink the replica followed: postgres://USER@HOST:PORT/DB or
        /// nats://HOST:PORT.
        #[arg(long)]
        from: String,
        /// The copy's name: its PostgreSQL schema, or its JetStream stream.
        #[arg(long, visible_alias = "name", default_value = "batpak")]
        schema: String,
        /// Promote even though the sink is ahead: its newer events are given up.
        #[arg(long)]
        force: bool,
    },
    /// Recheck a replica on its own: every row's or message's hash, each entity's
    /// chain, sequence density and order, and the position; exit 1 naming the first
    /// row or message that does not hold.
    VerifyReplica {
        /// The sink: postgres://USER@HOST:PORT/DB or nats://HOST:PORT.
        url: String,
        /// The copy's name: its PostgreSQL schema, or its JetStream stream.
        #[arg(long, visible_alias = "name", default_value = "batpak")]
        schema: String,
        /// An anchor file (`batpak anchor --json`) the copy must hold; repeatable.
        /// Signed anchors need the key (--trust-key or --signing-key).
        #[arg(long = "anchor", value_name = "FILE")]
        anchors: Vec<PathBuf>,
    },
    /// Manage the tokens file `batpak serve --tokens` reads.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

/// `batpak serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port; the first line printed
    /// names the one chosen).
    #[arg(long, default_value = "127.0.0.1:2113", value_name = "HOST:PORT")]
    pub addr: std::net::SocketAddr,
    /// A tokens file (`batpak token add`): every request needs a bearer token.
    /// Without one the server listens only on loopback.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Listen on a non-loopback address without tokens: anyone who reaches it may
    /// read and append.
    #[arg(long)]
    pub insecure: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Also serve the KurrentDB (EventStoreDB) client gRPC protocol here, so
    /// unmodified KurrentDB clients read and write this store (TLS with
    /// --tls-cert; with --tokens, the token is the password of basic credentials).
    #[arg(long, value_name = "HOST:PORT")]
    pub kurrentdb_addr: Option<std::net::SocketAddr>,
    /// The scope events appended through the KurrentDB protocol go to.
    #[arg(
        long,
        default_value = "kurrentdb",
        value_name = "SCOPE",
        requires = "kurrentdb_addr"
    )]
    pub kurrentdb_scope: String,
    /// Serve without appending: open the store read-only (a view while another
    /// process writes it) and refuse appends.
    #[arg(long)]
    pub read_only: bool,
    /// No request log on standard error.
    #[arg(long)]
    pub quiet: bool,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES")]
    pub max_body: usize,
    /// Most events in one page of a read.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    pub max_page: usize,
    /// Most events in one batch append.
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    pub max_batch: usize,
    /// Most live streams open at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_streams: usize,
    /// How long a request may take (`30s`).
    #[arg(long, default_value = "30s", value_parser = duration_arg, value_name = "DURATION")]
    pub request_timeout: std::time::Duration,
    /// How far (in sequences) a live stream may fall behind before it is closed with
    /// `lagged`.
    #[arg(long, default_value_t = 65_536, value_name = "SEQUENCES")]
    pub stream_lag_limit: u64,
    /// Heartbeat interval on quiet live streams (`15s`).
    #[arg(long, default_value = "15s", value_parser = duration_arg, value_name = "DURATION")]
    pub heartbeat: std::time::Duration,
}

/// `batpak replicate`.
#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// The sink: postgres://USER@HOST:PORT/DB or nats://HOST:PORT.
    #[arg(long)]
    pub to: String,
    /// The copy's name: the PostgreSQL schema it goes into, or the JetStream stream
    /// BATPAK_<name> with subjects batpak.<name>.<scope>.<entity> (created when
    /// missing).
    #[arg(long, visible_alias = "name", default_value = "batpak")]
    pub schema: String,
    /// Events per batch (one transaction each in PostgreSQL).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Exit 0 once the sink holds everything that was visible at the start.
    #[arg(long)]
    pub until_caught_up: bool,
    /// Ship an anchor of the store (signed with --signing-key) into the sink each
    /// time this many events were shipped, and on catching up; 0: none.
    #[arg(long, default_value_t = batpak_replicate::DEFAULT_ANCHOR_EVERY, value_name = "EVENTS")]
    pub anchor_every: u64,
}

/// What `batpak token` does.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Add a principal with a new token; prints the token once (the file keeps only
    /// its hash).
    Add {
        /// The tokens file (created when absent, mode 0600).
        #[arg(long, value_name = "FILE")]
        tokens: PathBuf,
        /// Who holds the token; recorded with every event it appends.
        #[arg(long)]
        principal: String,
        /// PERMISSIONS@SCOPE[/PREFIX], repeatable: `read,append@orders`,
        /// `read@orders/order-1`, `admin@*`. Permissions: read, append, admin.
        #[arg(long = "grant", required = true, value_name = "GRANT", value_parser = grant_arg)]
        grants: Vec<batpak_server::Grant>,
    },
    /// List the principals and their grants (never the tokens).
    List {
        /// The tokens file.
        #[arg(long, value_name = "FILE")]
        tokens: PathBuf,
    },
}

fn grant_arg(text: &str) -> Result<batpak_server::Grant, String> {
    use batpak_server::Permission;
    let (perms, place) = text
        .split_once('@')
        .ok_or_else(|| format!("{text:?} is not PERMISSIONS@SCOPE[/PREFIX]"))?;
    let (scope, prefix) = place.split_once('/').unwrap_or((place, ""));
    if scope.is_empty() {
        return Err(format!("{text:?} names no scope (use * for every scope)"));
    }
    let permissions = perms
        .split(',')
        .map(|p| match p.trim() {
            "read" => Ok(Permission::Read),
            "append" => Ok(Permission::Append),
            "admin" => Ok(Permission::Admin),
            other => Err(format!(
                "{other:?} is not a permission (read, append, admin)"
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(batpak_server::Grant {
        scope: scope.to_string(),
        prefix: prefix.to_string(),
        permissions,
    })
}

/// What `batpak retention` does.
#[derive(Debug, Subcommand)]
pub enum RetentionAction {
    /// Set the policy of a prefix or a scope (replacing the one it had).
    Set {
        #[command(flatten)]
        selector: SelectorArgs,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// The policies in force.
    List,
    /// Clear the policy of a prefix or a scope: what it hid and compaction has not
    /// removed is visible again.
    Clear {
        #[command(flatten)]
        selector: SelectorArgs,
    },
}

/// Which entities a policy covers: one of the three.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct SelectorArgs {
    /// Entities under this prefix (on `:` boundaries); "" is every entity.
    #[arg(long)]
    pub prefix: Option<String>,
    /// This one entity, by its exact name.
    #[arg(long)]
    pub entity: Option<String>,
    /// Events in this scope.
    #[arg(long)]
    pub scope: Option<String>,
}

/// What a policy keeps: any of the three (given several, an event is kept only
/// while each keeps it).
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct RuleArgs {
    /// Keep the newest N events of each entity.
    #[arg(long, value_name = "N")]
    pub max_count: Option<u64>,
    /// Keep events younger than this (`10m`, `7days`, ...).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub max_age: Option<std::time::Duration>,
    /// Keep versions from V on.
    #[arg(long, value_name = "V")]
    pub before_version: Option<u64>,
}

/// `SEGMENT:OFFSET`, the segment as a number or a segment file name or path.
fn cut_point(text: &str) -> Result<(u64, u64), String> {
    let (segment, offset) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not SEGMENT:OFFSET"))?;
    let offset: u64 = offset
        .parse()
        .map_err(|_| format!("offset {offset:?} is not a number"))?;
    let name = std::path::Path::new(segment)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(segment);
    let number = match name.strip_suffix(".seg") {
        Some(stem) if stem.len() == 16 => u64::from_str_radix(stem, 16).ok(),
        Some(_) => None,
        None => name.parse().ok(),
    }
    .ok_or_else(|| format!("{segment:?} is not a segment number or segment file name"))?;
    Ok((number, offset))
}

/// `append`: one event and its options.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// The entity (stream key).
    #[arg(long)]
    pub entity: String,
    /// The scope (isolation label).
    #[arg(long)]
    pub scope: String,
    /// The kind, C:T.
    #[arg(long)]
    pub kind: EventKind,
    /// Expected version of the entity: a number, `none` (no events yet), `exists` (at
    /// least one) or `any`.
    #[arg(long, default_value = "any")]
    pub expect: ExpectedVersion,
    /// The event that caused this one.
    #[arg(long, value_parser = event_id)]
    pub causation: Option<EventId>,
    /// The workflow this event belongs to.
    #[arg(long, value_parser = event_id)]
    pub correlation: Option<EventId>,
    /// Repeating an append with this key returns the first receipt.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// A metadata entry stored with the event, KEY=VALUE; may be repeated.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = meta_entry)]
    pub meta: Vec<(String, String)>,
    /// The payload as JSON; `-` or nothing reads standard input.
    pub payload: Option<String>,
}

/// What `import` reads and how it appends.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file; `-` reads standard input.
    pub file: PathBuf,
    /// Keep every event's id, sequence, timestamp and hash (into an empty store
    /// only): the result is a replica on which the source's receipts and anchors hold.
    /// Every line's hash and chain link is checked.
    #[arg(long, conflicts_with_all = ["drop_outside_causes", "source"])]
    pub preserve: bool,
    /// Re-append an event whose cause is not in the import without its cause
    /// (otherwise that is an error).
    #[arg(long)]
    pub drop_outside_causes: bool,
    /// The name recorded as each re-appended event's `batpak.source_store`
    /// metadata (default: the file's path).
    #[arg(long)]
    pub source: Option<String>,
}

/// Which events: every filter given must hold.
#[derive(Debug, Args, Clone, Default)]
pub struct Filters {
    /// Exactly this entity.
    #[arg(long, conflicts_with = "prefix")]
    pub entity: Option<String>,
    /// Entities under this prefix (on `:` boundaries).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Only this scope.
    #[arg(long)]
    pub scope: Option<String>,
    /// Only this kind, C:T.
    #[arg(long, conflicts_with = "category")]
    pub kind: Option<EventKind>,
    /// Only kinds of this category (0-15).
    #[arg(long)]
    pub category: Option<u8>,
    /// Only events after this sequence.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// At most this many events (query and export: all by default; tail: 10).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only events stamped at or after this time: RFC 3339 (`2026-12-02T10:00:00Z`)
    /// or a duration ago (`10m`, `2h`, `7days`).
    #[arg(long, value_parser = time_arg, value_name = "TIME")]
    pub since: Option<u64>,
    /// Only events stamped before this time (same forms as --since).
    #[arg(long, value_parser = time_arg, value_name = "TIME")]
    pub until: Option<u64>,
}

/// `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns, payloads cut to fit (for `graph`: indented text).
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// `graph` as indented lines for people.
    Text,
    /// `graph` for Graphviz.
    Dot,
    /// `graph` as a Mermaid flowchart.
    Mermaid,
    /// JSON, as --json.
    Json,
}

/// `--wait`: a duration such as `10s` or `500ms`.
fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 10s or 500ms ({e})"))
}

/// `--since` / `--until`: RFC 3339, or a duration before now; Unix nanoseconds.
fn time_arg(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let at = match humantime::parse_rfc3339_weak(text) {
        Ok(at) => at,
        Err(_) => {
            let ago = humantime::parse_duration(text).map_err(|e| {
                format!("{text:?} is neither an RFC 3339 time nor a duration like 10m ({e})")
            })?;
            std::time::SystemTime::now()
                .checked_sub(ago)
                .ok_or_else(|| format!("{text:?} ago is before 1970"))?
        }
    };
    let ns = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{text:?} is before 1970"))?
        .as_nanos();
    u64::try_from(ns).map_err(|_| format!("{text:?} is past the year 2554"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Indented lines for people.
    Text,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// Nodes and edges.
    Json,
}

/// An event id, with the surrounding whitespace of a pasted id ignored.
/// Parses `--meta KEY=VALUE` (the value may hold `=`; the key may not be empty).
fn meta_entry(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn event_id(text: &str) -> Result<EventId, batpak::Error> {
    text.trim().parse()
}

/// Parses `--signing-key` (and `$BATPAK_SIGNING_KEY`) into a key. Unlike clap's own
/// error for a bad value, its error does not quote the value: a mistyped secret is
/// still mostly the secret.
#[derive(Clone, Debug)]
pub struct SecretKeyParser;

impl TypedValueParser for SecretKeyParser {
    type Value = SigningKey;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<SigningKey, clap::Error> {
        let why = match value.to_str().map(str::parse::<SigningKey>) {
            Some(Ok(key)) => return Ok(key),
            Some(Err(e)) => e.to_string(),
            None => "not UTF-8".to_string(),
        };
        let flag = arg.map_or_else(|| "--signing-key".to_string(), ToString::to_string);
        Err(cmd.clone().error(
            ErrorKind::ValueValidation,
            format!("invalid value for '{flag}' (not shown: it is a secret): {why}"),
        ))
    }
}
