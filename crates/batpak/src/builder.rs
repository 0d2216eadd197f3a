//! `StoreBuilder`: configures and opens a store. The composition root: it loads the
//! directory, assembles the facade, and runs the recovery steps that need the layers
//! above the store (finishing recorded redactions).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::DEFAULT_PROJECTION_CACHE;
use crate::clock::{Clock, SystemClock};
use crate::dir::DirLock;
use crate::error::{io_err, Error, Result};
use crate::open::load;
use crate::options::SyncPolicy;
use crate::sign::{Keyring, SigningKey, VerifyingKey};
use crate::store::{Store, WriterConfig, DEFAULT_SEGMENT_SIZE};

/// Configures and opens a store. Every setter names its default.
#[derive(Clone, Debug)]
pub struct StoreBuilder {
    dir: PathBuf,
    sync: SyncPolicy,
    segment_size: u64,
    allow_kind_collisions: bool,
    projection_cache: usize,
    signing_key: Option<SigningKey>,
    trusted_keys: Vec<VerifyingKey>,
    clock: Arc<dyn Clock>,
    lock_wait: Duration,
    idempotency_window: crate::options::IdempotencyWindow,
}

/// How often `open` retries a held lock within `lock_wait`.
const LOCK_RETRY: Duration = Duration::from_millis(20);

impl StoreBuilder {
    /// Default `segment_size`: 64 MiB.
    pub const DEFAULT_SEGMENT_SIZE: u64 = DEFAULT_SEGMENT_SIZE;
    /// Default `projection_cache`: 4096 states.
    pub const DEFAULT_PROJECTION_CACHE: usize = DEFAULT_PROJECTION_CACHE;

    /// How many projection states (per projection, version and entity) are cached;
    /// the least recently used is evicted beyond it. 0 disables the cache. Default:
    /// 4096 ([`DEFAULT_PROJECTION_CACHE`]).
    #[must_use]
    pub fn projection_cache(mut self, states: usize) -> Self {
        self.projection_cache = states;
        self
    }

    /// How many idempotency keys the store remembers (see [`IdempotencyWindow`]).
    /// Default: the newest 1,000,000.
    ///
    /// [`IdempotencyWindow`]: crate::IdempotencyWindow
    #[must_use]
    pub fn idempotency_window(mut self, window: crate::options::IdempotencyWindow) -> Self {
        self.idempotency_window = window;
        self
    }

    /// Where event timestamps come from. Default: [`SystemClock`]. A test passes a
    /// [`ManualClock`] to fix and step them; the store still never stamps an event
    /// earlier than the one before it.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long `open` (and `open_read_only`) waits for a directory lock another
    /// process or `Store` holds, retrying every 20 ms, before it fails with
    /// `Error::Locked`. Default: zero, fail at once.
    #[must_use]
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Takes the directory lock, waiting up to `lock_wait` while it is held.
    fn acquire(&self, shared: bool) -> Result<DirLock> {
        let deadline = Instant::now() + self.lock_wait;
        loop {
            match DirLock::acquire(&self.dir, shared) {
                Err(Error::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(LOCK_RETRY.min(deadline - Instant::now()));
                }
                other => return other,
            }
        }
    }

    /// Sign every receipt and anchor with this key. Its public half is trusted for
    /// verification. Default: none, receipts are unsigned.
    #[must_use]
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// Also accept signatures made by this key, for example the one used before a key
    /// rotation, or the writer's key in a verifying reader. May be called repeatedly.
    #[must_use]
    pub fn trust_key(mut self, key: VerifyingKey) -> Self {
        self.trusted_keys.push(key);
        self
    }

    fn keyring(&self) -> Keyring {
        Keyring::new(self.signing_key.clone(), self.trusted_keys.clone())
    }

    /// Open even when two payload types in this program claim the same kind; the
    /// collisions are listed in `OpenReport::kind_collisions` instead. Default: false,
    /// open fails with [`Error::KindCollision`] naming the kind and both types.
    #[must_use]
    pub fn allow_kind_collisions(mut self, allow: bool) -> Self {
        self.allow_kind_collisions = allow;
        self
    }

    /// Checks the program's kind registry, returning the collisions to report.
    fn check_kinds(&self) -> Result<Vec<crate::registry::KindCollision>> {
        let collisions = crate::registry::collisions();
        match collisions.first() {
            Some(c) if !self.allow_kind_collisions => Err(Error::KindCollision {
                kind: c.kind,
                types: c.types.clone(),
            }),
            _ => Ok(collisions),
        }
    }

    /// When appends reach stable storage. Default: [`SyncPolicy::Always`].
    #[must_use]
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Self {
        self.sync = policy;
        self
    }

    /// Size at which the active segment is closed and a new one started.
    /// Default: 64 MiB ([`DEFAULT_SEGMENT_SIZE`]). At least 4 KiB.
    #[must_use]
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Checks the configuration without touching the directory: the errors `open`
    /// would give for it ([`Error::InvalidConfig`] naming the setting).
    pub fn validate(&self) -> Result<()> {
        if self.segment_size < 4096 || self.segment_size > crate::segment::MAX_OFFSET {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "segment_size {} must be between 4096 and {}",
                    self.segment_size,
                    crate::segment::MAX_OFFSET
                ),
            });
        }
        match self.sync {
            SyncPolicy::EveryN(0) => Err(Error::InvalidConfig {
                reason: "SyncPolicy::EveryN(0): n must be at least 1".into(),
            }),
            SyncPolicy::Interval(d) if d.is_zero() => Err(Error::InvalidConfig {
                reason: "SyncPolicy::Interval(0): the interval must be positive".into(),
            }),
            _ => Ok(()),
        }
    }

    /// Opens (or creates) the store for reading and writing, taking the directory lock.
    pub fn open(self) -> Result<Store> {
        self.validate()?;
        let collisions = self.check_kinds()?;
        crate::dir::fs::create_dir_all(&self.dir).map_err(io_err("create directory", &self.dir))?;
        let lock = self.acquire(false)?;
        let mut loaded = load(&self.dir, false, self.segment_size)?;
        loaded.report.kind_collisions = collisions;
        let writer = WriterConfig {
            sync: self.sync,
            segment_size: self.segment_size,
            clock: Arc::clone(&self.clock),
            idempotency_window: self.idempotency_window,
        };
        let keys = self.keyring();
        let mut store = Store::assemble(
            self.dir,
            loaded,
            Some(writer),
            keys,
            (self.projection_cache, Arc::clone(&self.clock)),
            Some(lock),
        )?;
        let swept = store.finish_recorded_redactions()?;
        store.add_redactions_finished(swept);
        log_open(&store);
        Ok(store)
    }

    /// Opens an existing store for reading only. Fails with [`Error::Locked`] while a
    /// writer holds the directory; holds a shared lock so no writer opens meanwhile.
    /// Nothing on disk is changed: a torn tail is reported and ignored, not cut.
    pub fn open_read_only(self) -> Result<Store> {
        self.open_reader(true)
    }

    /// Opens a read-only view of the store as it is now, taking no lock, so it works
    /// while another process writes to it (the `batpak` tool reads live stores this
    /// way). The view does not see later appends; the writer's unfinished tail is
    /// ignored like a torn one. It may include events the writer has written but not
    /// yet made durable (and so not yet acknowledged). A read that races a redaction
    /// in the other process may fail with `Error::Corrupt`; reopening the view reads
    /// the record again.
    pub fn open_view(self) -> Result<Store> {
        self.open_reader(false)
    }

    fn open_reader(self, lock: bool) -> Result<Store> {
        let segments = self.dir.join(crate::dir::SEGMENTS_DIR);
        if !segments.is_dir() {
            return Err(Error::Io {
                op: "open store read-only",
                path: segments,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no segments directory"),
            });
        }
        let collisions = self.check_kinds()?;
        let lock = if lock {
            Some(self.acquire(true)?)
        } else {
            None
        };
        let mut loaded = load(&self.dir, true, 0)?;
        loaded.report.kind_collisions = collisions;
        let keys = self.keyring();
        Store::assemble(
            self.dir,
            loaded,
            None,
            keys,
            (self.projection_cache, Arc::clone(&self.clock)),
            lock,
        )
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` with default settings.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::builder(dir).open()
    }

    /// A builder for a store in `dir`.
    pub fn builder(dir: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder {
            dir: dir.as_ref().to_path_buf(),
            sync: SyncPolicy::default(),
            segment_size: DEFAULT_SEGMENT_SIZE,
            allow_kind_collisions: false,
            projection_cache: DEFAULT_PROJECTION_CACHE,
            signing_key: None,
            trusted_keys: Vec::new(),
            clock: Arc::new(SystemClock),
            lock_wait: Duration::ZERO,
            idempotency_window: crate::options::IdempotencyWindow::default(),
        }
    }

    /// Opens an existing store read-only (see [`StoreBuilder::open_read_only`]).
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Store> {
        Store::builder(dir).open_read_only()
    }
}

/// Reports what open decided: where the index came from, what was cut or finished.
fn log_open(store: &Store) {
    let report = store.open_report();
    let dir = store.dir().display();
    match &report.index {
        crate::open::IndexSource::Checkpoint { events } => {
            log_info!(
                "opened {dir}: checkpoint of {events} events, {} scanned",
                report.scanned_events
            );
        }
        crate::open::IndexSource::Rebuilt { reason } => {
            log_info!(
                "opened {dir}: index rebuilt from {} events ({reason})",
                report.events
            );
        }
    }
    if let Some(cut) = &report.tail_cut {
        log_warn!(
            "opened {dir}: cut a torn tail of {} bytes from {} at offset {} ({})",
            cut.bytes,
            cut.path.display(),
            cut.offset,
            cut.reason
        );
    }
    if report.redactions_finished > 0 {
        log_info!(
            "opened {dir}: finished {} interrupted redactions",
            report.redactions_finished
        );
    }
}
