//! The power-loss recorder: the ordered log of every mutating file-system call the
//! library makes under one directory, with the bytes written, and the directory's
//! contents when it was installed (the starting durable state).
//!
//! A test installs a [`PowerLog`] for a store directory, runs a workload, and then asks
//! for the state a disk could hold had the power failed right after the first `at`
//! recorded calls ([`PowerLog::power_cut`], or [`PowerLog::image`] with a chosen
//! [`Cut`]). The disk model is in `fault/cut.rs`.
//!
//! Each call runs while the log's lock is held, so the recorded order is the order in
//! which the calls happened, across threads. A call that fails is not recorded (it is
//! taken not to have happened); injected failures stop a call before it runs. Files
//! are named by path: the library never writes through a descriptor after renaming or
//! removing its path (a temporary file is renamed after its last fsync), so the path
//! at the time of a call names the file the call changes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Seek;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::cut::{self, read_tree, Cut, Image, PowerOp};
use super::{Mutation, Op, Registry};

/// Records every mutating call under one directory. Install it with
/// [`PowerLog::install`]; it records while the returned `Arc` is alive.
pub struct PowerLog {
    dir: PathBuf,
    state: Mutex<Recording>,
}

impl fmt::Debug for PowerLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PowerLog")
            .field("dir", &self.dir)
            .field("ops", &self.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Recording {
    /// The directory's files (`Some(bytes)`) and folders (`None`) at install.
    start: BTreeMap<PathBuf, Option<Vec<u8>>>,
    ops: Vec<PowerOp>,
    /// Calls that are performed but not recorded, as if the library skipped them.
    forget: Vec<(Op, PathBuf)>,
    /// Why the log cannot be modelled, if it cannot.
    unsupported: Option<String>,
}

static LOGS: Registry<PowerLog> = Registry::new();

impl PowerLog {
    /// Starts recording every mutating call under `dir`, and takes the directory's
    /// current contents (none when it does not exist yet) as the durable start.
    pub fn install(dir: impl AsRef<Path>) -> std::io::Result<Arc<PowerLog>> {
        let dir = dir.as_ref().to_path_buf();
        let mut start = BTreeMap::new();
        let mut unsupported = None;
        if dir.exists() {
            read_tree(&dir, Path::new(""), &mut start, &mut unsupported)?;
        }
        let log = Arc::new(PowerLog {
            dir,
            state: Mutex::new(Recording {
                start,
                unsupported,
                ..Recording::default()
            }),
        });
        LOGS.add(&log);
        Ok(log)
    }

    /// The directory recorded.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many calls have been recorded.
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.state).ops.len()
    }

    /// Nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the recorded calls.
    pub fn ops(&self) -> Vec<PowerOp> {
        crate::sync::lock(&self.state).ops.clone()
    }

    /// From now on, calls of `op` on paths under `under` are still performed but not
    /// recorded, as if the library had skipped them: with `Op::Sync` or `Op::SyncDir`
    /// this turns the model's durability checks on a missing fsync (a test of the
    /// test, never of the library).
    pub fn forget(&self, op: Op, under: impl AsRef<Path>) {
        crate::sync::lock(&self.state)
            .forget
            .push((op, under.as_ref().to_path_buf()));
    }

    /// The state a disk could hold if the power failed right after the first `at`
    /// recorded calls, chosen by `cut`. Errors: `at` past the log, or a log the model
    /// cannot follow (a call on a path it does not know: a mutation the recorder did
    /// not see).
    pub fn image(&self, at: usize, cut: Cut) -> std::io::Result<Image> {
        let state = crate::sync::lock(&self.state);
        if let Some(why) = &state.unsupported {
            return Err(std::io::Error::other(format!(
                "the power log of {} cannot be modelled: {why}",
                self.dir.display()
            )));
        }
        if at > state.ops.len() {
            return Err(std::io::Error::other(format!(
                "cut after {at} calls, but {} were recorded",
                state.ops.len()
            )));
        }
        cut::materialise(&state.start, &state.ops[..at], cut)
    }

    /// Writes to `into` (a directory that does not exist or is empty) a state the disk
    /// could hold after a power failure right after the first `at` calls; `seed`
    /// chooses the way of landing ([`Cut::from_seed`]) and every random choice.
    pub fn power_cut(&self, at: usize, seed: u64, into: &Path) -> std::io::Result<Image> {
        let image = self.image(at, Cut::from_seed(seed))?;
        image.write_to(into)?;
        Ok(image)
    }

    /// Writes to `into` what the directory held right after the first `at` calls, as
    /// a `kill -9` leaves it: every call happened, nothing was lost. After the last
    /// call this must equal the real directory byte for byte.
    pub fn process_kill(&self, at: usize, into: &Path) -> std::io::Result<Image> {
        let image = self.image(at, Cut::Kill)?;
        image.write_to(into)?;
        Ok(image)
    }

    /// A process killed right after the first `at` calls and restarted, with the
    /// power still on: writes the `kill -9` state to `into` (as
    /// [`process_kill`](Self::process_kill)) and returns a log recording the calls
    /// under `into` that continues this one. Whatever the first `at` calls left
    /// unsynced is still only in the page cache, so a cut of the new log can still
    /// lose it.
    pub fn resume(&self, at: usize, into: &Path) -> std::io::Result<Arc<PowerLog>> {
        self.process_kill(at, into)?;
        let state = crate::sync::lock(&self.state);
        let log = Arc::new(PowerLog {
            dir: into.to_path_buf(),
            state: Mutex::new(Recording {
                start: state.start.clone(),
                ops: state.ops[..at].to_vec(),
                forget: state
                    .forget
                    .iter()
                    .map(|(op, under)| {
                        let rebased = under.strip_prefix(&self.dir).map(|r| into.join(r));
                        (*op, rebased.unwrap_or_else(|_| under.clone()))
                    })
                    .collect(),
                unsupported: state.unsupported.clone(),
            }),
        });
        LOGS.add(&log);
        Ok(log)
    }

    fn relative(&self, path: &Path) -> Option<PathBuf> {
        path.strip_prefix(&self.dir).ok().map(Path::to_path_buf)
    }

    /// Runs `call` under the log's lock and records `what` if it succeeds.
    fn record<T>(
        &self,
        what: Mutation<'_>,
        call: impl FnOnce() -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        let mut state = crate::sync::lock(&self.state);
        let forgotten = what.paths().iter().flatten().any(|p| {
            state
                .forget
                .iter()
                .any(|(op, under)| *op == what.op() && p.starts_with(under))
        });
        // What must be looked at before the call: the directories it will create, the
        // position it will write at.
        let missing: Vec<PathBuf> = match what {
            Mutation::CreateDirs { path } => path
                .ancestors()
                .take_while(|a| a.starts_with(&self.dir) && *a != self.dir && !a.exists())
                .map(Path::to_path_buf)
                .collect(),
            _ => Vec::new(),
        };
        let position = match what {
            Mutation::Write { mut file, .. } => Some(file.stream_position()),
            _ => None,
        };
        let result = call()?;
        if forgotten {
            return Ok(result);
        }
        let rel = |p: &Path| self.relative(p);
        let ops: Vec<PowerOp> = match what {
            Mutation::Create { path, truncate } => rel(path)
                .map(|path| PowerOp::Create { path, truncate })
                .into_iter()
                .collect(),
            Mutation::CreateDirs { .. } => missing
                .iter()
                .rev()
                .filter_map(|p| rel(p))
                .map(|path| PowerOp::CreateDir { path })
                .collect(),
            Mutation::WriteAt {
                path,
                offset,
                bytes,
            } => rel(path)
                .map(|path| PowerOp::Write {
                    path,
                    offset,
                    bytes: bytes.to_vec(),
                })
                .into_iter()
                .collect(),
            Mutation::Write { path, bytes, .. } => match position {
                Some(Ok(offset)) => rel(path)
                    .map(|path| PowerOp::Write {
                        path,
                        offset,
                        bytes: bytes.to_vec(),
                    })
                    .into_iter()
                    .collect(),
                Some(Err(e)) => {
                    state.unsupported = Some(format!(
                        "the position of a write to {} is unknown: {e}",
                        path.display()
                    ));
                    Vec::new()
                }
                None => Vec::new(),
            },
            Mutation::Sync { path } => rel(path)
                .map(|path| PowerOp::Sync { path })
                .into_iter()
                .collect(),
            Mutation::SetLen { path, len } => rel(path)
                .map(|path| PowerOp::SetLen { path, len })
                .into_iter()
                .collect(),
            Mutation::Rename { from, to } => match (rel(from), rel(to)) {
                (Some(from), Some(to)) => vec![PowerOp::Rename { from, to }],
                // Moved out: as far as this directory knows, removed.
                (Some(path), None) => vec![PowerOp::Remove { path }],
                (None, Some(to)) => {
                    state.unsupported = Some(format!(
                        "{} was renamed in from outside the directory",
                        to.display()
                    ));
                    Vec::new()
                }
                (None, None) => Vec::new(),
            },
            Mutation::Remove { path } => rel(path)
                .map(|path| PowerOp::Remove { path })
                .into_iter()
                .collect(),
            Mutation::SyncDir { path } => rel(path)
                .map(|path| PowerOp::SyncDir { path })
                .into_iter()
                .collect(),
        };
        state.ops.extend(ops);
        Ok(result)
    }
}

/// Runs the mutating `call`, recording it (described by `what`) in the log installed
/// for its directory, if any.
pub(crate) fn observe<'a, T>(
    what: impl FnOnce() -> Mutation<'a>,
    call: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    if LOGS.is_empty() {
        return call();
    }
    let what = what();
    let under = |log: &PowerLog| {
        what.paths()
            .iter()
            .flatten()
            .any(|p| p.starts_with(&log.dir))
    };
    match LOGS.find(under) {
        Some(log) => log.record(what, call),
        None => call(),
    }
}
