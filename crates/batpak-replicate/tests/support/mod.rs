//! Real engines for the tests: PostgreSQL and NATS (with JetStream) from Debian's
//! packages, started into a temporary directory on a free loopback port and stopped
//! on drop. A test whose server cannot start fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use batpak::{AppendOptions, Batch, Coordinate, EventKind, RawPayload, Store};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program as the `postgres` user when we are root (it refuses root).
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not installed ({}: {e}); apt-get install postgresql",
                root.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("no PostgreSQL server binary; apt-get install postgresql")
}

pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    running: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let _ = Command::new("chown")
            .arg("-R")
            .arg("postgres")
            .arg(dir.path())
            .status();
        let bin = postgres_bin();
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            port: free_port(),
            dir,
            bin,
            running: false,
        };
        pg.run_server();
        pg
    }

    fn run_server(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let out = as_postgres(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-o", &options, "-w", "-l"])
            .arg(self.dir.path().join("postgres.log"))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown); `restart` brings it back on the same port.
    pub fn stop(&mut self) {
        if self.running {
            let _ = as_postgres(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-m", "fast", "-w", "stop"])
                .output();
            self.running = false;
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run_server();
    }

    /// One SQL statement's output (psql, unaligned, tuples only).
    pub fn sql(&self, statement: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-At",
                "-c",
                statement,
                "postgres",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {statement}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A NATS server with JetStream, its store in a temporary directory.
pub struct Nats {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<std::process::Child>,
}

impl Nats {
    pub fn start() -> Nats {
        let mut nats = Nats {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
        };
        nats.run_server();
        nats
    }

    fn run_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .unwrap();
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("js"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("nats-server cannot start ({e}); apt-get install nats-server")
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log =
                    std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default();
                panic!("nats-server exited ({status}): {log}");
            }
            let log = std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default();
            if log.matches("Server is ready").count() > log.matches("Server Exiting").count() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not become ready: {log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM, waited for); `restart` brings it back on the same
    /// port with the same store.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run_server();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A store of `events` JSON events over seven entities (kind names, metadata,
/// causation) and a batch of one opaque event.
pub fn store_with_history(dir: &std::path::Path, events: u64) -> Arc<Store> {
    let store = Store::open(dir).unwrap();
    store.name_kind(EventKind::custom(1, 1), "Placed").unwrap();
    let mut previous = None;
    for i in 0..events {
        let coord = Coordinate::new(format!("order:{}", i % 7), "shop").unwrap();
        let mut options = AppendOptions::default().meta("n", i.to_string());
        if let Some(cause) = previous {
            if i % 3 == 0 {
                options = options.caused_by(cause);
            }
        }
        let payload = format!("{{\"i\":{i}}}");
        let r = store
            .append_raw(
                &coord,
                EventKind::custom(1, 1),
                RawPayload::json(payload.as_bytes()),
                options,
            )
            .unwrap();
        previous = Some(r.event_id);
    }
    let mut batch = Batch::new();
    let coord = Coordinate::new("blob:1", "files").unwrap();
    batch.push_raw(
        &coord,
        EventKind::custom(2, 1),
        RawPayload::opaque(&[0, 1, 255]),
        AppendOptions::default(),
    );
    store.append_batch(&batch).unwrap();
    Arc::new(store)
}

/// A runtime like the command line's.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Appends one batch of 1,500 events over five entities: longer than a follower's
/// chunk, so it must come whole.
pub fn append_long_batch(store: &Store) {
    let mut big = Batch::new();
    for i in 0..1_500 {
        big.push_raw(
            &Coordinate::new(format!("bulk:{}", i % 5), "shop").unwrap(),
            EventKind::custom(1, 3),
            RawPayload::json(format!("{{\"b\":{i}}}").as_bytes()),
            AppendOptions::default(),
        );
    }
    store.append_batch(&big).unwrap();
}

/// Asserts `replica` holds `store`'s records with the same ids, sequences, hashes and
/// payloads.
pub fn assert_same_history(store: &Store, replica: &Store) {
    let all = batpak::Region::all().with_store_records().with_hidden();
    let source_events = store.query(&all, 0, usize::MAX).unwrap();
    let replica_events = replica.query(&all, 0, usize::MAX).unwrap();
    assert_eq!(source_events.len(), replica_events.len());
    for (a, b) in source_events.iter().zip(&replica_events) {
        assert_eq!(
            (a.id, a.sequence, a.event_hash(), &a.payload),
            (b.id, b.sequence, b.event_hash(), &b.payload)
        );
    }
}

/// `store_with_history(dir, events)`, then a retention policy keeping the newest five
/// events of each `order:` entity, then a compaction that removes the rest.
pub fn compacted_store(dir: &std::path::Path, events: u64) -> Arc<Store> {
    let store = store_with_history(dir, events);
    store
        .set_retention(
            batpak::RetentionSelector::EntityPrefix("order".into()),
            batpak::RetentionRule::MaxCount(5),
        )
        .unwrap();
    let report = store.compact().unwrap();
    assert!(report.events_removed > 0, "{report:?}");
    store
}

/// `store_with_history(dir, events)` and a record of every other kind the store
/// writes: a redaction, a retention policy, a soft deletion, and an event with a
/// correlation, an idempotency key and metadata.
pub fn store_with_every_record(dir: &std::path::Path, events: u64) -> Arc<Store> {
    let store = store_with_history(dir, events);
    let first = store.get_sequence(2).unwrap().unwrap();
    store.redact(first.id, "request 1").unwrap();
    store
        .set_retention(
            batpak::RetentionSelector::EntityPrefix("order:6".into()),
            batpak::RetentionRule::MaxCount(2),
        )
        .unwrap();
    store
        .delete_entity("order:5", batpak::DeleteMode::Soft)
        .unwrap();
    store
        .append_raw(
            &Coordinate::new("invoice:1", "shop").unwrap(),
            EventKind::custom(1, 2),
            RawPayload::json(b"{\"total\":1}"),
            AppendOptions::default()
                .correlation(first.id)
                .idempotency_key("invoice-1")
                .meta("by", "test"),
        )
        .unwrap();
    store
}

/// How many events of each kind `store` holds, hidden ones and its own records
/// included, as `kind|count` lines in kind order.
pub fn kind_counts(store: &Store) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for e in store
        .query(
            &batpak::Region::all().with_store_records().with_hidden(),
            0,
            usize::MAX,
        )
        .unwrap()
    {
        *counts.entry(e.kind.to_string()).or_insert(0u64) += 1;
    }
    counts
        .into_iter()
        .map(|(k, n)| format!("{k}|{n}"))
        .collect::<Vec<_>>()
        .join("\n")
}
