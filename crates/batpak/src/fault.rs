//! Fault injection at the storage seam. Every file-system call of the library (segment
//! writes, reads, fsyncs and truncates; the checkpoint, cursor, snapshot, pending and
//! backup files; renames, removals, directory fsyncs; the lock) asks [`check`] first,
//! naming the operation and the path. In a normal build `check` is an empty inline
//! function. With `cfg(test)` or the `fault-injection` feature (doc-hidden, never on by
//! default) a test installs a [`FaultPlan`] for a directory and chooses which calls
//! under it fail, and how: `EIO`, `ENOSPC`, or a short write (half the bytes land,
//! then the call fails, as a torn write would).
//!
//! Plans are keyed by directory, so tests running in parallel threads of one binary
//! each fail only their own store's calls.
//!
//! Every mutating call (create, write, fsync, truncate, rename, remove, directory
//! fsync) also runs inside [`observe`], which hands a description of it ([`Mutation`])
//! to the power-loss recorder (`fault::power`) when one is installed for the
//! directory. In a normal build `observe` only runs the call. The recorder and the
//! disk model that turns its log into the state a power cut could leave are in
//! `fault/power.rs` and `fault/cut.rs`.

// Off the test and feature builds only `check` (always `Proceed`) and `guard` are used.
#![cfg_attr(
    not(any(test, feature = "fault-injection")),
    allow(dead_code, reason = "the injection half is compiled for tests only")
)]

use std::fs::File;
use std::path::Path;

// Without the feature only the crate's unit tests use the recorder, and not all of it.
#[cfg(any(test, feature = "fault-injection"))]
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
mod cut;
#[cfg(any(test, feature = "fault-injection"))]
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
mod power;

/// A file-system operation the seam can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Creating or opening a file for writing.
    Create,
    /// Writing bytes (segment appends and rewrites, small files).
    Write,
    /// fsync/fdatasync of a file.
    Sync,
    /// Cutting a file.
    Truncate,
    /// Renaming a file into place.
    Rename,
    /// fsync of a directory.
    SyncDir,
    /// Removing a file.
    Remove,
    /// Reading bytes (positional segment reads that miss the map, small files).
    Read,
    /// Taking the directory lock.
    Lock,
}

const OPS: usize = 9;

impl Op {
    fn slot(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Write => "write",
            Op::Sync => "fsync",
            Op::Truncate => "truncate",
            Op::Rename => "rename",
            Op::SyncDir => "directory fsync",
            Op::Remove => "remove",
            Op::Read => "read",
            Op::Lock => "lock",
        }
    }
}

/// How an injected call fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// `EIO`: the device reported an error.
    Eio,
    /// `ENOSPC`: the file system is full.
    Enospc,
    /// For writes: the first half of the bytes is written, then the call fails with
    /// `EIO`. Other operations fail with `EIO`.
    ShortWrite,
}

/// What the seam tells a call: go on, fail at once, or (writes) write this many bytes
/// and then fail.
#[derive(Debug)]
pub(crate) enum Verdict {
    Proceed,
    Fail(std::io::Error),
    Short(std::io::Error),
}

#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub(crate) fn check(_op: Op, _path: &Path) -> Verdict {
    Verdict::Proceed
}

#[cfg(any(test, feature = "fault-injection"))]
pub(crate) use plan::check;
#[cfg(any(test, feature = "fault-injection"))]
pub use plan::FaultPlan;

/// A mutating file-system call, as the power-loss recorder sees it. Built (by the
/// closure given to [`observe`]) only when a recorder is installed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mutation<'a> {
    /// Opening `path` for writing, creating it when it is missing; `truncate` empties
    /// an existing file (`File::create`), otherwise it is left as it is.
    Create { path: &'a Path, truncate: bool },
    /// `create_dir_all(path)`: every missing directory on the way is created.
    CreateDirs { path: &'a Path },
    /// A positional write of `bytes` at `offset`.
    WriteAt {
        path: &'a Path,
        offset: u64,
        bytes: &'a [u8],
    },
    /// A write of `bytes` at the current position of `file` (opened at `path`).
    Write {
        path: &'a Path,
        file: &'a File,
        bytes: &'a [u8],
    },
    /// fsync or fdatasync of the file at `path`.
    Sync { path: &'a Path },
    /// Setting the length of the file at `path`.
    SetLen { path: &'a Path, len: u64 },
    /// Renaming `from` to `to`, replacing `to`.
    Rename { from: &'a Path, to: &'a Path },
    /// Removing the entry at `path`: a file, or a directory with everything in it.
    Remove { path: &'a Path },
    /// fsync of the directory at `path`.
    SyncDir { path: &'a Path },
}

impl Mutation<'_> {
    /// The operation of the fault seam this call is.
    fn op(&self) -> Op {
        match self {
            Mutation::Create { .. } | Mutation::CreateDirs { .. } => Op::Create,
            Mutation::WriteAt { .. } | Mutation::Write { .. } => Op::Write,
            Mutation::Sync { .. } => Op::Sync,
            Mutation::SetLen { .. } => Op::Truncate,
            Mutation::Rename { .. } => Op::Rename,
            Mutation::Remove { .. } => Op::Remove,
            Mutation::SyncDir { .. } => Op::SyncDir,
        }
    }

    /// The paths the call changes (a rename has two).
    fn paths(&self) -> [Option<&Path>; 2] {
        match *self {
            Mutation::Create { path, .. }
            | Mutation::CreateDirs { path }
            | Mutation::WriteAt { path, .. }
            | Mutation::Write { path, .. }
            | Mutation::Sync { path }
            | Mutation::SetLen { path, .. }
            | Mutation::Remove { path }
            | Mutation::SyncDir { path } => [Some(path), None],
            Mutation::Rename { from, to } => [Some(from), Some(to)],
        }
    }
}

/// Runs the mutating `call`, first describing it (`what`) to the power-loss recorder
/// installed for its directory, if any. In a normal build this is `call()`.
#[cfg(not(any(test, feature = "fault-injection")))]
#[inline(always)]
pub(crate) fn observe<'a, T>(
    _what: impl FnOnce() -> Mutation<'a>,
    call: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    call()
}

#[cfg(feature = "fault-injection")]
pub use cut::{Cut, Image, PowerOp};
#[cfg(any(test, feature = "fault-injection"))]
pub(crate) use power::observe;
#[cfg(feature = "fault-injection")]
pub use power::PowerLog;

/// Runs `call` unless the seam fails `op` on `path` first; a short write is left to
/// the caller (see [`check`]), so here it fails like `EIO`.
pub(crate) fn guard<T>(
    op: Op,
    path: &Path,
    call: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    match check(op, path) {
        Verdict::Proceed => call(),
        Verdict::Fail(e) | Verdict::Short(e) => Err(e),
    }
}

fn injected(op: Op, fault: Fault) -> std::io::Error {
    let code = match fault {
        Fault::Enospc => 28,
        Fault::Eio | Fault::ShortWrite => 5,
    };
    let os = std::io::Error::from_raw_os_error(code);
    std::io::Error::new(os.kind(), format!("injected {} failure: {os}", op.name()))
}

#[cfg(any(test, feature = "fault-injection"))]
use registry::Registry;

#[cfg(any(test, feature = "fault-injection"))]
mod registry {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, RwLock, Weak};

    /// The installed plans or recorders of one kind, each for a directory; an entry
    /// lives while the test holds its `Arc`.
    pub(super) struct Registry<T> {
        /// Entries ever installed and maybe alive; 0 lets every call skip the lock.
        count: AtomicUsize,
        entries: RwLock<Vec<Weak<T>>>,
    }

    impl<T> Registry<T> {
        pub(super) const fn new() -> Self {
            Registry {
                count: AtomicUsize::new(0),
                entries: RwLock::new(Vec::new()),
            }
        }

        pub(super) fn add(&self, entry: &Arc<T>) {
            let mut entries = crate::sync::write(&self.entries);
            entries.retain(|e| e.strong_count() > 0);
            entries.push(Arc::downgrade(entry));
            self.count.store(entries.len(), Ordering::Release);
        }

        /// Nothing was ever installed: calls need not describe themselves.
        pub(super) fn is_empty(&self) -> bool {
            self.count.load(Ordering::Acquire) == 0
        }

        /// The first live entry `matches` accepts.
        pub(super) fn find(&self, matches: impl Fn(&T) -> bool) -> Option<Arc<T>> {
            if self.is_empty() {
                return None;
            }
            crate::sync::read(&self.entries)
                .iter()
                .filter_map(Weak::upgrade)
                .find(|e| matches(e))
        }
    }
}

#[cfg(any(test, feature = "fault-injection"))]
mod plan {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex};

    use super::{injected, Fault, Op, Registry, Verdict, OPS};

    /// Which calls under one directory fail. Install it with
    /// [`FaultPlan::install`]; it applies while the returned `Arc` is alive.
    #[derive(Debug)]
    pub struct FaultPlan {
        dir: PathBuf,
        calls: [AtomicU64; OPS],
        rules: Mutex<Vec<Rule>>,
        hold: Mutex<bool>,
        released: Condvar,
    }

    #[derive(Clone, Copy, Debug)]
    struct Rule {
        op: Op,
        /// The call number (counting every call of `op` since install) that fails first.
        at: u64,
        /// Every later call fails too.
        sticky: bool,
        fault: Fault,
    }

    static PLANS: Registry<FaultPlan> = Registry::new();

    impl FaultPlan {
        /// Installs an empty plan for every path under `dir`.
        pub fn install(dir: impl AsRef<Path>) -> Arc<FaultPlan> {
            let plan = Arc::new(FaultPlan {
                dir: dir.as_ref().to_path_buf(),
                calls: std::array::from_fn(|_| AtomicU64::new(0)),
                rules: Mutex::new(Vec::new()),
                hold: Mutex::new(false),
                released: Condvar::new(),
            });
            PLANS.add(&plan);
            plan
        }

        /// The `n`-th call of `op` from now (1 is the next one) fails with `fault`.
        pub fn fail_nth(&self, op: Op, n: u64, fault: Fault) {
            self.add(op, n, false, fault);
        }

        /// The next `n` calls of `op` succeed; every later one fails with `fault`.
        pub fn fail_after(&self, op: Op, n: u64, fault: Fault) {
            self.add(op, n + 1, true, fault);
        }

        /// Removes every rule; later calls succeed.
        pub fn clear(&self) {
            crate::sync::lock(&self.rules).clear();
        }

        /// How many calls of `op` under the directory the seam has seen.
        pub fn calls(&self, op: Op) -> u64 {
            self.calls[op.slot()].load(Ordering::SeqCst)
        }

        /// From now on every fsync under the directory blocks until `release_syncs`.
        pub fn hold_syncs(&self) {
            *crate::sync::lock(&self.hold) = true;
        }

        /// Lets held and later fsyncs proceed.
        pub fn release_syncs(&self) {
            *crate::sync::lock(&self.hold) = false;
            self.released.notify_all();
        }

        fn add(&self, op: Op, n: u64, sticky: bool, fault: Fault) {
            let at = self.calls(op) + n.max(1);
            crate::sync::lock(&self.rules).push(Rule {
                op,
                at,
                sticky,
                fault,
            });
        }

        fn verdict(&self, op: Op) -> Verdict {
            if op == Op::Sync {
                let mut held = crate::sync::lock(&self.hold);
                while *held {
                    held = self.released.wait(held).unwrap_or_else(|p| p.into_inner());
                }
            }
            let n = self.calls[op.slot()].fetch_add(1, Ordering::SeqCst) + 1;
            let rules = crate::sync::lock(&self.rules);
            let hit = rules
                .iter()
                .find(|r| r.op == op && (n == r.at || (r.sticky && n > r.at)));
            match hit {
                None => Verdict::Proceed,
                Some(r) if r.fault == Fault::ShortWrite && op == Op::Write => {
                    Verdict::Short(injected(op, r.fault))
                }
                Some(r) => Verdict::Fail(injected(op, r.fault)),
            }
        }
    }

    /// What the plan installed for a directory holding `path` says of this call.
    pub(crate) fn check(op: Op, path: &Path) -> Verdict {
        match PLANS.find(|p| path.starts_with(&p.dir)) {
            Some(plan) => plan.verdict(op),
            None => Verdict::Proceed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fail_the_chosen_calls_of_the_chosen_directory_only() {
        let plan = FaultPlan::install("/fault-test/a");
        plan.fail_nth(Op::Sync, 2, Fault::Eio);
        plan.fail_after(Op::Write, 1, Fault::Enospc);
        let a = Path::new("/fault-test/a/segments/1.seg");
        let b = Path::new("/fault-test/b/segments/1.seg");
        assert!(matches!(check(Op::Sync, a), Verdict::Proceed));
        match check(Op::Sync, a) {
            Verdict::Fail(e) => assert!(e.to_string().contains("injected fsync"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(check(Op::Sync, a), Verdict::Proceed));
        assert!(matches!(check(Op::Sync, b), Verdict::Proceed));
        assert!(matches!(check(Op::Write, a), Verdict::Proceed));
        for _ in 0..3 {
            match check(Op::Write, a) {
                Verdict::Fail(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(plan.calls(Op::Write), 4);
        plan.clear();
        assert!(matches!(check(Op::Write, a), Verdict::Proceed));
        plan.fail_nth(Op::Write, 1, Fault::ShortWrite);
        assert!(matches!(check(Op::Write, a), Verdict::Short(_)));
        drop(plan);
        assert!(matches!(check(Op::Write, a), Verdict::Proceed));
    }
}
