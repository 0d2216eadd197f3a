//! The store directory: the name of every file and folder in it, the directory lock,
//! and the atomic file replacement and directory fsync every small file uses.
//!
//! ```text
//! <dir>/LOCK                   exclusive (writer) or shared (read-only) flock
//! <dir>/segments/<16 hex>.seg  the journal
//! <dir>/index.ckpt             index checkpoint (optional; rebuildable)
//! <dir>/durable.floor          durable segment lengths of a close without a checkpoint
//! <dir>/LIVE                   the visible sequence, for followers in other processes
//! <dir>/cursors/<hex>.cursor   durable cursor positions
//! <dir>/projections/...        projection snapshots (optional; rebuildable)
//! <dir>/redact.pending         an in-place rewrite in progress
//! ```
//!
//! The lock: one writer, or any number of read-only opens, per store. Two layers, because an flock alone is not enough:
//! - An in-process registry of open directories answers at once for a second `Store`
//!   in the same process (flock would also refuse it, but only by accident of
//!   separate open file descriptions).
//! - `flock` on `<dir>/LOCK` keeps other processes out. A child process forked by any
//!   thread of ours briefly shares our LOCK descriptor (until it execs and the
//!   close-on-exec flag drops it), so a close followed by an immediate reopen can find
//!   the lock still held. Since the registry already rules out this process, a
//!   refusal is retried for a short while before it is reported as `Error::Locked`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{io_err, Error, Result};
use crate::fault::{self, Mutation, Op};

/// The lock file.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The folder of segment files.
pub(crate) const SEGMENTS_DIR: &str = "segments";
/// The index checkpoint.
pub(crate) const CHECKPOINT_FILE: &str = "index.ckpt";
/// The durable floor a close without a checkpoint leaves (see `format::floor`).
pub(crate) const FLOOR_FILE: &str = "durable.floor";
/// The folder of durable cursor files.
pub(crate) const CURSORS_DIR: &str = "cursors";
/// The folder of projection snapshots.
pub(crate) const SNAPSHOT_DIR: &str = "projections";
/// The pending-redaction file (see `format::redo`).
pub(crate) const PENDING_FILE: &str = "redact.pending";
/// Where a shared segment's own copy is written before it replaces the link
/// (`unshare`); a leftover is removed by the next writable open.
pub(crate) const UNSHARE_FILE: &str = "unshare.partial";
/// How long a refused flock is retried (see the module comment).
const FORK_GRACE: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Writer,
    Readers(usize),
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Holder>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Holder>>> = OnceLock::new();
    OPEN.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A held directory lock; released on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    key: PathBuf,
    shared: bool,
    /// `None` for a read-only open of a store that has no LOCK file (nothing is created).
    _file: Option<File>,
    identity: Option<LockIdentity>,
}

/// The device and inode of the LOCK file a writer holds, to notice it being removed
/// or replaced (after which a second writer could take a lock on the new file).
#[derive(Clone, Debug)]
pub(crate) struct LockIdentity {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl LockIdentity {
    fn of(file: &File, path: &Path) -> Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().map_err(io_err("stat lock file", path))?;
        Ok(LockIdentity {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Fails when the path no longer names the file whose lock is held.
    pub(crate) fn check(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        if now.as_ref().ok() == Some(&(self.dev, self.ino)) {
            return Ok(());
        }
        let what = match now {
            Ok(_) => "was replaced by another file",
            Err(_) => "was removed",
        };
        Err(Error::Io {
            op: "check the directory lock",
            path: self.path.clone(),
            source: std::io::Error::other(format!(
                "the LOCK file {what} while this store held it, so another writer may have opened the store; writes are refused"
            )),
        })
    }
}

impl DirLock {
    /// Takes the lock for a writer (`shared == false`) or a read-only open. A writer
    /// creates `LOCK` if needed; a read-only open never creates anything.
    pub(crate) fn acquire(dir: &Path, shared: bool) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let key = dir
            .canonicalize()
            .map_err(io_err("resolve directory", dir))?;
        register(&key, shared, &path)?;
        let locked = lock_file(&path, shared).and_then(|file| {
            let identity = match (&file, shared) {
                (Some(f), false) => {
                    // Replaced between the open and the flock: that lock guards nothing.
                    let identity = LockIdentity::of(f, &path)?;
                    identity.check()?;
                    Some(identity)
                }
                _ => None,
            };
            Ok((file, identity))
        });
        match locked {
            Ok((file, identity)) => Ok(DirLock {
                key,
                shared,
                _file: file,
                identity,
            }),
            Err(e) => {
                unregister(&key, shared);
                Err(e)
            }
        }
    }

    /// What a writer checks before it trusts the lock again (rotation, checkpoint).
    pub(crate) fn identity(&self) -> Option<LockIdentity> {
        self.identity.clone()
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        unregister(&self.key, self.shared);
    }
}

fn register(key: &Path, shared: bool, lock_path: &Path) -> Result<()> {
    let mut open = crate::sync::lock(registry());
    let next = match (open.get(key).copied(), shared) {
        (None, false) => Holder::Writer,
        (None, true) => Holder::Readers(1),
        (Some(Holder::Readers(n)), true) => Holder::Readers(n + 1),
        (Some(_), _) => {
            return Err(Error::Locked {
                path: lock_path.to_path_buf(),
            })
        }
    };
    open.insert(key.to_path_buf(), next);
    Ok(())
}

fn unregister(key: &Path, shared: bool) {
    let mut open = crate::sync::lock(registry());
    match open.get(key).copied() {
        Some(Holder::Readers(n)) if shared && n > 1 => {
            open.insert(key.to_path_buf(), Holder::Readers(n - 1));
        }
        Some(_) => {
            open.remove(key);
        }
        None => {}
    }
}

fn lock_file(path: &Path, shared: bool) -> Result<Option<File>> {
    fault::guard(Op::Lock, path, || Ok(())).map_err(io_err("open lock file", path))?;
    let file = if shared {
        match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open lock file", path)(e)),
        }
    } else {
        let create = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
        };
        fault::observe(
            || Mutation::Create {
                path,
                truncate: false,
            },
            create,
        )
        .map_err(io_err("open lock file", path))?
    };
    let started = Instant::now();
    loop {
        let taken = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match taken {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) if started.elapsed() < FORK_GRACE => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io_err("lock", path)(e)),
        }
    }
}

/// Replaces `dir/name` with `bytes` atomically: write a temporary file, fsync it,
/// rename it over the old one, fsync the directory.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    // A name of its own per call, so two replacements of one file (two rotations'
    // checkpoints) never write the same temporary file; short, since `name` may
    // already be near the file-name limit (a 120-byte cursor name in hex).
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}-{n}.tmp", std::process::id()));
    let target = dir.join(name);
    let written = fs::create(&tmp)
        .map_err(io_err("create", &tmp))
        .and_then(|mut f| {
            fs::write_all(&mut f, &tmp, bytes).map_err(io_err("write", &tmp))?;
            fs::sync_all(&f, &tmp).map_err(io_err("fsync", &tmp))
        })
        .and_then(|()| fs::rename(&tmp, &target).map_err(io_err("rename", &target)));
    if written.is_err() {
        let _ = fs::remove_leftover(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// The directory under the store that keeps what repairs and tail cuts removed.
pub(crate) const REPAIRS_DIR: &str = "repairs";

/// A new, durable `repairs/<unix ms>/` directory under `dir`.
pub(crate) fn new_repair_dir(dir: &Path) -> Result<PathBuf> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let parent = dir.join(REPAIRS_DIR);
    let mut keep = parent.join(ms.to_string());
    let mut n = 1;
    while keep.exists() {
        keep = parent.join(format!("{ms}-{n}"));
        n += 1;
    }
    fs::create_dir_all(&keep).map_err(io_err("create directory", &keep))?;
    sync_dir(&parent)?;
    sync_dir(dir)?;
    Ok(keep)
}

/// Writes `bytes` to a new file `path` and makes it and its directory durable.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::create(path).map_err(io_err("create", path))?;
    fs::write_all(&mut file, path, bytes).map_err(io_err("write", path))?;
    fs::sync_all(&file, path).map_err(io_err("fsync", path))?;
    sync_dir(path.parent().unwrap_or(path))
}

/// fsyncs a directory so a created, renamed or removed entry survives a crash.
/// Gives the segment at `path` (in `store`'s `segments/`) an inode of its own when
/// another name links it (a fork shares sealed segments by hard link), so an in-place
/// rewrite here never reaches the other store: its bytes are copied to
/// `unshare.partial`, fsynced, renamed over it, and both directories fsynced. Returns
/// whether it did. Either name holds the same bytes at every moment, so a crash in
/// between leaves the store as it was.
pub(crate) fn unshare(store: &Path, path: &Path) -> Result<bool> {
    if !fs::is_shared(path).map_err(io_err("stat segment", path))? {
        return Ok(false);
    }
    let tmp = store.join(UNSHARE_FILE);
    let _ = fs::remove_leftover(&tmp);
    let bytes = fs::read(path).map_err(io_err("read segment", path))?;
    let mut copy = fs::create(&tmp).map_err(io_err("create", &tmp))?;
    fs::write_all(&mut copy, &tmp, &bytes).map_err(io_err("write", &tmp))?;
    fs::sync_all(&copy, &tmp).map_err(io_err("fsync", &tmp))?;
    drop(copy);
    fs::rename(&tmp, path).map_err(io_err("rename segment copy into place", path))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    sync_dir(store)?;
    Ok(true)
}

pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    fault::guard(Op::SyncDir, path, || {
        fault::observe(
            || Mutation::SyncDir { path },
            || File::open(path).and_then(|d| d.sync_all()),
        )
    })
    .map_err(io_err("fsync directory", path))
}

/// The file-system calls for every small file and folder of the store (segments have
/// `SegmentFile`), each asking the fault seam first and telling the power-loss
/// recorder (`fault::observe`) what it changes. Same signatures as `std::fs`.
pub(crate) mod fs {
    use std::fs::File;
    use std::io::Write;
    use std::path::Path;

    use crate::fault::{self, Mutation, Op, Verdict};

    /// Reads a whole small file. Only a regular file is opened (a FIFO would block
    /// the open, a device like `/dev/zero` would be read until memory runs out), and
    /// only the bytes its size promises are read.
    pub(crate) fn read(path: impl AsRef<Path>) -> std::io::Result<Vec<u8>> {
        let path = path.as_ref();
        fault::guard(Op::Read, path, || {
            let meta = std::fs::metadata(path)?;
            if !meta.is_file() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("not a regular file ({:?})", meta.file_type()),
                ));
            }
            let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            std::io::Read::read_to_end(
                &mut std::io::Read::take(File::open(path)?, meta.len()),
                &mut bytes,
            )?;
            Ok(bytes)
        })
    }

    pub(crate) fn create(path: impl AsRef<Path>) -> std::io::Result<File> {
        let path = path.as_ref();
        fault::guard(Op::Create, path, || {
            fault::observe(
                || Mutation::Create {
                    path,
                    truncate: true,
                },
                || File::create(path),
            )
        })
    }

    pub(crate) fn create_dir_all(path: impl AsRef<Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        fault::guard(Op::Create, path, || {
            fault::observe(
                || Mutation::CreateDirs { path },
                || std::fs::create_dir_all(path),
            )
        })
    }

    pub(crate) fn remove_file(path: impl AsRef<Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        fault::guard(Op::Remove, path, || {
            fault::observe(|| Mutation::Remove { path }, || std::fs::remove_file(path))
        })
    }

    /// Removes what a failed call left behind (a temporary file, a partial backup):
    /// a file, or a folder with everything in it. Best effort, so not a fault point.
    pub(crate) fn remove_leftover(path: &Path) -> std::io::Result<()> {
        fault::observe(
            || Mutation::Remove { path },
            || {
                if path.is_dir() {
                    std::fs::remove_dir_all(path)
                } else {
                    std::fs::remove_file(path)
                }
            },
        )
    }

    /// Removes an empty folder. Not a fault point.
    pub(crate) fn remove_dir(path: &Path) -> std::io::Result<()> {
        fault::observe(|| Mutation::Remove { path }, || std::fs::remove_dir(path))
    }

    pub(crate) fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
        fault::guard(Op::Rename, to, || {
            fault::observe(
                || Mutation::Rename { from, to },
                || std::fs::rename(from, to),
            )
        })
    }

    /// Writes all of `bytes` to `file` (at `path`); a short write lands half of them.
    pub(crate) fn write_all(file: &mut File, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let file: &File = file;
        let write = |bytes: &[u8]| {
            fault::observe(
                || Mutation::Write { path, file, bytes },
                || {
                    let mut file = file;
                    file.write_all(bytes)
                },
            )
        };
        match fault::check(Op::Write, path) {
            Verdict::Proceed => write(bytes),
            Verdict::Fail(e) => Err(e),
            Verdict::Short(e) => {
                write(&bytes[..bytes.len() / 2])?;
                Err(e)
            }
        }
    }

    /// A second name for the file `from` (a fork shares its sealed segments). A
    /// fault point (`Op::Create` on `to`); the power-loss model does not know links,
    /// so only forks, written outside any store, make them.
    pub(crate) fn hard_link(from: &Path, to: &Path) -> std::io::Result<()> {
        fault::guard(Op::Create, to, || std::fs::hard_link(from, to))
    }

    /// Whether another name links the file at `path` (its link count is over one).
    pub(crate) fn is_shared(path: &Path) -> std::io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        fault::guard(Op::Read, path, || Ok(std::fs::metadata(path)?.nlink() > 1))
    }

    pub(crate) fn sync_all(file: &File, path: &Path) -> std::io::Result<()> {
        fault::guard(Op::Sync, path, || {
            fault::observe(|| Mutation::Sync { path }, || file.sync_all())
        })
    }
}
