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

// Off the test and feature builds only `check` (always `Proceed`) and `guard` are used.
#![cfg_attr(
    not(any(test, feature = "fault-injection")),
    allow(dead_code, reason = "the injection half is compiled for tests only")
)]

use std::path::Path;

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
mod plan {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};

    use super::{injected, Fault, Op, Verdict, OPS};

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

    static INSTALLED: AtomicUsize = AtomicUsize::new(0);
    static PLANS: RwLock<Vec<Weak<FaultPlan>>> = RwLock::new(Vec::new());

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
            let mut plans = crate::sync::write(&PLANS);
            plans.retain(|p| p.strong_count() > 0);
            plans.push(Arc::downgrade(&plan));
            INSTALLED.store(plans.len(), Ordering::Release);
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
        if INSTALLED.load(Ordering::Acquire) == 0 {
            return Verdict::Proceed;
        }
        let plan = crate::sync::read(&PLANS)
            .iter()
            .filter_map(Weak::upgrade)
            .find(|p| path.starts_with(&p.dir));
        match plan {
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
