//! The file-system seam: every read, write, fsync and truncate of a segment goes
//! through `SegmentFile`, so tests can make chosen calls fail.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::{io_err, Result};

/// Injected failures: each budget counts the calls that still succeed.
#[derive(Debug)]
pub(crate) struct FaultPlan {
    syncs_left: AtomicU64,
    writes_left: AtomicU64,
}

impl FaultPlan {
    /// Lets `syncs` fsyncs and `writes` writes succeed, then fails every later one.
    #[cfg(test)]
    pub(crate) fn new(syncs: u64, writes: u64) -> Arc<Self> {
        Arc::new(FaultPlan {
            syncs_left: AtomicU64::new(syncs),
            writes_left: AtomicU64::new(writes),
        })
    }

    fn take(budget: &AtomicU64) -> bool {
        budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn injected(what: &str) -> std::io::Error {
    std::io::Error::other(format!("injected {what} failure"))
}

/// One open segment file, shared by the writer and readers (positional I/O only).
#[derive(Debug)]
pub(crate) struct SegmentFile {
    file: File,
    path: PathBuf,
    faults: Option<Arc<FaultPlan>>,
}

impl SegmentFile {
    /// Creates a new file (it must not exist), writes `header` and syncs it.
    pub(crate) fn create(
        path: &Path,
        header: &[u8],
        faults: Option<Arc<FaultPlan>>,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io_err("create segment", path))?;
        let seg = SegmentFile {
            file,
            path: path.to_path_buf(),
            faults,
        };
        seg.write_at(header, 0)?;
        seg.sync()?;
        Ok(seg)
    }

    /// Opens an existing file.
    pub(crate) fn open(
        path: &Path,
        writable: bool,
        faults: Option<Arc<FaultPlan>>,
    ) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(io_err("open segment", path))?;
        Ok(SegmentFile {
            file,
            path: path.to_path_buf(),
            faults,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads as many bytes as exist at `offset`, up to `buf.len()`. Returns the count.
    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
                .map_err(io_err("read segment", &self.path))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(filled)
    }

    /// Writes all of `buf` at `offset`.
    pub(crate) fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if let Some(f) = &self.faults {
            if !FaultPlan::take(&f.writes_left) {
                return Err(io_err("write segment", &self.path)(injected("write")));
            }
        }
        self.file
            .write_all_at(buf, offset)
            .map_err(io_err("write segment", &self.path))
    }

    /// fdatasync.
    pub(crate) fn sync(&self) -> Result<()> {
        if let Some(f) = &self.faults {
            if !FaultPlan::take(&f.syncs_left) {
                return Err(io_err("fsync segment", &self.path)(injected("fsync")));
            }
        }
        self.file
            .sync_data()
            .map_err(io_err("fsync segment", &self.path))
    }

    /// The file's length.
    pub(crate) fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(io_err("stat segment", &self.path))?
            .len())
    }

    /// Cuts the file to `len` bytes and syncs.
    pub(crate) fn truncate(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(io_err("truncate segment", &self.path))?;
        self.sync()
    }

    /// Reads the whole file.
    pub(crate) fn read_all(&self) -> Result<Vec<u8>> {
        let len = usize::try_from(self.len()?).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; len];
        let n = self.read_at(&mut buf, 0)?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// fsyncs a directory so a created, renamed or removed entry survives a crash.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", path))
}
