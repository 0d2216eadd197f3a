//! Durable cursors: a named position in a region that survives restarts. Delivery is
//! a subscription that never lags; `commit` persists the position atomically (temp
//! file, fsync, rename, directory fsync). At least once: a reopened cursor resumes
//! after its last commit, so nothing committed is delivered again and nothing
//! uncommitted is lost.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::delivery::{RecvError, Subscription};
use crate::dir::{replace_file, sync_dir};
use crate::error::{io_err, Error, Result};
use crate::event::StoredEvent;
use crate::format::cursor::CursorFile;
use crate::query::Region;
use crate::store::Store;

use crate::dir::CURSORS_DIR;
/// Longest cursor (and reactor) name, in bytes: its file name is the name in hex,
/// which must stay under the usual 255-byte limit.
pub(crate) const MAX_CURSOR_NAME: usize = 120;

/// Where a new cursor starts. A cursor that exists resumes after its last commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CursorStart {
    /// Deliver from the first event.
    #[default]
    Beginning,
    /// Deliver the events after this sequence.
    After(u64),
    /// Deliver only events appended from now on.
    Now,
}

/// A durable cursor. See [`Store::cursor`].
pub struct Cursor<'s> {
    store: &'s Store,
    name: String,
    region: Region,
    subscription: Subscription<'s>,
    committed: u64,
    rewound_from: Option<u64>,
}

impl fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("name", &self.name)
            .field("region", &self.region)
            .field("committed", &self.committed)
            .field("rewound_from", &self.rewound_from)
            .field("delivered", &self.subscription.position())
            .finish()
    }
}

impl Store {
    /// Opens the durable cursor `name` over `region`, creating it at the beginning of
    /// the log if it does not exist. See [`cursor_from`](Self::cursor_from).
    pub fn cursor(&self, name: &str, region: Region) -> Result<Cursor<'_>> {
        self.cursor_from(name, region, CursorStart::Beginning)
    }

    /// Opens the durable cursor `name` over `region`. An existing cursor resumes after
    /// its last commit (and `start` is ignored); it must have been created with the
    /// same region (`Error::CursorRegionMismatch` otherwise). A new one starts at
    /// `start` and is persisted at once; `CursorStart::After(n)` past the newest
    /// visible event is refused (`Error::InvalidConfig`). One handle per name at a
    /// time (`Error::CursorInUse`). Needs a writable store.
    ///
    /// A stored position past the newest visible event (a crash under
    /// `SyncPolicy::Never` or `Interval` lost events the cursor had committed, and
    /// their sequences will be reused by new events) is wound back to the newest
    /// event, persisted, logged, and reported by [`Cursor::rewound_from`], so the new
    /// events are delivered rather than skipped.
    pub fn cursor_from(
        &self,
        name: &str,
        region: Region,
        start: CursorStart,
    ) -> Result<Cursor<'_>> {
        self.writer()?;
        check_name(name)?;
        if !self.claim_cursor_name(name) {
            return Err(Error::CursorInUse {
                name: name.to_string(),
            });
        }
        match self.load_cursor(name, &region, start) {
            Ok((committed, rewound_from)) => Ok(Cursor {
                store: self,
                name: name.to_string(),
                // Positioned at the commit itself: `subscribe_from(committed + 1)`
                // would overflow for a commit of u64::MAX.
                subscription: Subscription::new(self, region.clone(), committed)
                    .lag_limit(u64::MAX),
                region,
                committed,
                rewound_from,
            }),
            Err(e) => {
                self.release_cursor(name);
                Err(e)
            }
        }
    }

    /// The committed position of an existing cursor (wound back to the newest visible
    /// event if past it, with the stored position), or of a new one at `start`.
    fn load_cursor(
        &self,
        name: &str,
        region: &Region,
        start: CursorStart,
    ) -> Result<(u64, Option<u64>)> {
        let visible = self.visible_sequence();
        let path = cursor_path(self, name);
        match crate::dir::fs::read(&path) {
            Ok(bytes) => {
                let file = CursorFile::decode(&bytes).map_err(|detail| Error::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    detail,
                })?;
                let requested = region.canonical();
                if file.region != requested || file.name != name {
                    return Err(Error::CursorRegionMismatch {
                        name: name.to_string(),
                        stored: file.region,
                        requested,
                    });
                }
                if file.committed > visible {
                    log_warn!(
                        "cursor {name:?} was at sequence {}, past the newest event {visible} (events it saw were lost in a crash); wound back to {visible}",
                        file.committed
                    );
                    write_cursor(self, name, region, visible)?;
                    return Ok((visible, Some(file.committed)));
                }
                Ok((file.committed, None))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let committed = match start {
                    CursorStart::Beginning => 0,
                    CursorStart::After(sequence) if sequence > visible => {
                        return Err(Error::InvalidConfig {
                            reason: format!(
                                "cursor {name:?} cannot start after sequence {sequence}: the newest visible event is {visible}"
                            ),
                        })
                    }
                    CursorStart::After(sequence) => sequence,
                    CursorStart::Now => visible,
                };
                let dir = self.dir().join(CURSORS_DIR);
                if !dir.is_dir() {
                    crate::dir::fs::create_dir_all(&dir)
                        .map_err(io_err("create directory", &dir))?;
                    sync_dir(self.dir())?;
                }
                write_cursor(self, name, region, committed)?;
                Ok((committed, None))
            }
            Err(e) => Err(io_err("read cursor", &path)(e)),
        }
    }

    fn release_cursor(&self, name: &str) {
        self.release_cursor_name(name);
    }
}

impl Cursor<'_> {
    /// The longest cursor name, in bytes (its file name is the name in hex).
    pub const MAX_NAME: usize = MAX_CURSOR_NAME;

    /// The cursor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The last committed sequence (0: nothing committed).
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The stored position this cursor was wound back from, when it was past the
    /// newest visible event at open (see [`Store::cursor_from`]).
    pub fn rewound_from(&self) -> Option<u64> {
        self.rewound_from
    }

    /// The last sequence delivered by this handle.
    pub fn position(&self) -> u64 {
        self.subscription.position()
    }

    /// Every event up to this sequence is delivered by this handle or is not the
    /// region's (see [`Subscription::passed`]). Commit it after handling a batch to
    /// record progress over events the region leaves out, such as store records.
    pub fn passed(&self) -> u64 {
        self.subscription.passed()
    }

    /// Up to `max` next events, waiting at most `timeout` for the first; empty when
    /// none arrived in time.
    pub fn next_batch(&mut self, max: usize, timeout: Duration) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        match self.subscription.recv_timeout(timeout) {
            Ok(e) => out.push(e),
            Err(RecvError::Failed(e)) => return Err(e),
            Err(_) => return Ok(out),
        }
        while out.len() < max {
            match self.subscription.try_recv() {
                Ok(e) => out.push(e),
                Err(RecvError::Failed(e)) => return Err(e),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    /// Persists `sequence` as processed: after a restart the cursor resumes after it.
    /// It may not go back, nor past [`passed`](Self::passed), what this handle
    /// delivered or found not to be the region's (`Error::InvalidCommit`).
    pub fn commit(&mut self, sequence: u64) -> Result<()> {
        let invalid = |reason: String| Error::InvalidCommit {
            name: self.name.clone(),
            sequence,
            reason,
        };
        if sequence < self.committed {
            return Err(invalid(format!(
                "it is before the last commit, {}",
                self.committed
            )));
        }
        if sequence > self.passed() {
            return Err(invalid(format!(
                "it is past the last delivered sequence, {}",
                self.passed()
            )));
        }
        if sequence == self.committed {
            return Ok(());
        }
        write_cursor(self.store, &self.name, &self.region, sequence)?;
        self.committed = sequence;
        Ok(())
    }
}

impl Drop for Cursor<'_> {
    fn drop(&mut self) {
        self.store.release_cursor(&self.name);
    }
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > MAX_CURSOR_NAME {
        Some(format!("is {} bytes, over {MAX_CURSOR_NAME}", name.len()))
    } else if name.chars().any(char::is_control) {
        Some("contains a control character".to_string())
    } else {
        None
    };
    match problem {
        Some(p) => Err(Error::InvalidConfig {
            reason: format!("cursor name {name:?} {p}"),
        }),
        None => Ok(()),
    }
}

fn cursor_file_name(name: &str) -> String {
    format!("{}.cursor", crate::hash::hex::encode(name.as_bytes()))
}

fn cursor_path(store: &Store, name: &str) -> PathBuf {
    store.dir().join(CURSORS_DIR).join(cursor_file_name(name))
}

fn write_cursor(store: &Store, name: &str, region: &Region, committed: u64) -> Result<()> {
    let file = CursorFile {
        committed,
        region: region.canonical(),
        name: name.to_string(),
    };
    replace_file(
        &store.dir().join(CURSORS_DIR),
        &cursor_file_name(name),
        &file.encode(),
    )
}
