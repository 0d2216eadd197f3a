//! The disk model: from the recorded calls, the states a disk could hold after a power
//! failure.
//!
//! The model (what "durable" means; POSIX promises no more, and ext4, xfs and btrfs
//! each give some of this freedom):
//!
//! - **Start.** What the directory held when the recorder was installed is durable.
//! - **File contents.** A file's bytes and length as of its last completed fsync (or
//!   fdatasync, treated alike) are durable. Every write and length change since then
//!   (its *pending changes*) may or may not have reached the disk:
//!   - a pending write lands whole, not at all, or torn: any subset of its 512-byte
//!     sectors lands. A sector on disk always holds the sector as the page cache held
//!     it after some write that touched it (the newest one that landed), since the
//!     kernel writes back whole pages of the current contents: an older write never
//!     lands over a newer one, and bytes an earlier write put in the same sector come
//!     along. A sector no landed write touched keeps its durable bytes (zeros past the
//!     durable length);
//!   - the length is the length the file had after some prefix of its pending changes
//!     (possibly none of them, possibly all), independently of which sectors landed:
//!     the size can be short of landed data (it is cut off) or beyond it (the gap
//!     reads as zeros). A pending truncate has happened exactly when that prefix
//!     includes it.
//! - **Directory entries.** Creating a file or directory, a rename and a removal are
//!   durable once their directory (both directories, for a rename between two) has
//!   been fsynced after them. Until then each may or may not have happened,
//!   independently of the others and of file contents, but replayed in their order: a
//!   rename happens whole or not at all, and cannot happen when the entry it moves was
//!   never made. A file whose entry is not there is gone with its contents; a removed
//!   directory takes everything under it. An fsync of a file makes only its contents
//!   durable, never its entry (ext4's fdatasync of a new file does not persist the
//!   directory entry; the model takes the strict reading for fsync too).
//!
//! A [`Cut`] picks one state among those the model allows: everything (`Kill`, what a
//! `kill -9` leaves, which must equal the real directory), nothing pending (`Durable`),
//! an in-order device that wrote everything pending up to a random call, that call
//! torn at a sector boundary and nothing after (`InOrder`), or free choices
//! (`Scattered`).
//!
//! Files are tracked as inodes, so a rename moves contents and an fsync through one
//! name covers the file under any later name. Not modelled: hard links, symlinks,
//! extended attributes, timestamps and permissions; a recursive removal is one entry
//! removal (a real one unlinks entry by entry, a crash may leave part of it).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Component, Path, PathBuf};

/// One recorded call. Paths are relative to the recorder's directory (empty for the
/// directory itself).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PowerOp {
    /// A file opened for writing with `O_CREAT`: a new, empty file when `path` did not
    /// exist; otherwise emptied when `truncate`, else unchanged.
    Create {
        /// The file.
        path: PathBuf,
        /// `O_TRUNC`.
        truncate: bool,
    },
    /// A new directory.
    CreateDir {
        /// The directory.
        path: PathBuf,
    },
    /// Bytes written at an offset.
    Write {
        /// The file.
        path: PathBuf,
        /// Where the bytes start.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// fsync or fdatasync of a file (the model treats both alike: data and length).
    Sync {
        /// The file.
        path: PathBuf,
    },
    /// The file's length set (`set_len`, a truncate).
    SetLen {
        /// The file.
        path: PathBuf,
        /// The new length.
        len: u64,
    },
    /// `from` renamed to `to`, replacing `to` if it existed.
    Rename {
        /// The old name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
    },
    /// The entry at `path` removed: a file, or a directory with everything in it.
    Remove {
        /// The entry.
        path: PathBuf,
    },
    /// fsync of a directory: its entries (creates, renames, removes) become durable.
    SyncDir {
        /// The directory.
        path: PathBuf,
    },
}

impl fmt::Display for PowerOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |p: &Path| {
            if p.as_os_str().is_empty() {
                ".".to_string()
            } else {
                p.display().to_string()
            }
        };
        match self {
            PowerOp::Create { path, truncate } => {
                let how = if *truncate { " (truncate)" } else { "" };
                write!(f, "create {}{how}", p(path))
            }
            PowerOp::CreateDir { path } => write!(f, "mkdir {}", p(path)),
            PowerOp::Write {
                path,
                offset,
                bytes,
            } => write!(
                f,
                "write {} [{offset}, {}) ({} bytes)",
                p(path),
                offset + bytes.len() as u64,
                bytes.len()
            ),
            PowerOp::Sync { path } => write!(f, "fsync {}", p(path)),
            PowerOp::SetLen { path, len } => write!(f, "set_len {} {len}", p(path)),
            PowerOp::Rename { from, to } => write!(f, "rename {} -> {}", p(from), p(to)),
            PowerOp::Remove { path } => write!(f, "remove {}", p(path)),
            PowerOp::SyncDir { path } => write!(f, "fsync dir {}", p(path)),
        }
    }
}

impl fmt::Debug for PowerOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The sector size of the model: a torn write lands some of its sectors.
const SECTOR: u64 = 512;

/// Which of the states the model allows a cut produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cut {
    /// Every recorded call happened, as a `kill -9` leaves the directory (the page
    /// cache survives).
    Kill,
    /// Only what was durable: no pending write, length change or entry survives.
    Durable,
    /// The device wrote pending changes in the order they were made, up to a call the
    /// seed picks, tearing that one at a sector boundary; none after it.
    InOrder(u64),
    /// Free choices (seeded): each pending entry change made or not, each pending
    /// write absent, whole or torn (any of its sectors), each file's length after any
    /// prefix of its pending changes.
    Scattered(u64),
}

impl Cut {
    /// A cut for `seed`: `seed % 4` picks `Durable`, `Kill`, `InOrder` or `Scattered`,
    /// the seed drives the choices.
    pub fn from_seed(seed: u64) -> Cut {
        match seed % 4 {
            0 => Cut::Durable,
            1 => Cut::Kill,
            2 => Cut::InOrder(seed),
            _ => Cut::Scattered(seed),
        }
    }
}

/// A materialised directory state: its files (`Some(bytes)`) and folders (`None`) by
/// relative path, and notes on what the cut chose for every pending change.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    entries: BTreeMap<PathBuf, Option<Vec<u8>>>,
    /// Files with changes no fsync covered, and the length that was durable.
    unsynced: BTreeMap<PathBuf, u64>,
    notes: Vec<String>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .entries
            .iter()
            .map(|(p, e)| match e {
                Some(bytes) => format!("{} ({} bytes)", p.display(), bytes.len()),
                None => format!("{}/", p.display()),
            })
            .collect();
        f.debug_struct("Image")
            .field("entries", &entries)
            .field("unsynced", &self.unsynced)
            .field("notes", &self.notes)
            .finish()
    }
}

impl Image {
    /// What `dir` holds now.
    pub fn of_dir(dir: &Path) -> std::io::Result<Image> {
        Ok(Image {
            entries: snapshot(dir)?,
            unsynced: BTreeMap::new(),
            notes: Vec::new(),
        })
    }

    /// Files (`Some(bytes)`) and folders (`None`) by path relative to the directory.
    pub fn entries(&self) -> &BTreeMap<PathBuf, Option<Vec<u8>>> {
        &self.entries
    }

    /// The files (in the image) with writes or length changes that no fsync covered at
    /// the cut, each with the length that was durable: bytes past it were never
    /// promised to anyone.
    pub fn unsynced(&self) -> &BTreeMap<PathBuf, u64> {
        &self.unsynced
    }

    /// What the cut chose for each pending change (empty for `Kill` and `of_dir`).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// A hash of the entries (not the notes): equal images have equal fingerprints.
    pub fn fingerprint(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        self.entries.hash(&mut h);
        h.finish()
    }

    /// Where `self` and `other` differ, one line per path.
    pub fn differences(&self, other: &Image) -> Vec<String> {
        let mut out = Vec::new();
        for (path, mine) in &self.entries {
            match (mine, other.entries.get(path)) {
                (_, None) => out.push(format!("{}: only in the first", path.display())),
                (Some(a), Some(Some(b))) if a != b => {
                    let at = a.iter().zip(b).position(|(x, y)| x != y);
                    out.push(format!(
                        "{}: {} vs {} bytes, first difference at {}",
                        path.display(),
                        a.len(),
                        b.len(),
                        at.map_or("the shorter one's end".into(), |n| n.to_string())
                    ));
                }
                (Some(_), Some(None)) | (None, Some(Some(_))) => {
                    out.push(format!(
                        "{}: a file in one, a folder in the other",
                        path.display()
                    ));
                }
                _ => {}
            }
        }
        for path in other.entries.keys() {
            if !self.entries.contains_key(path) {
                out.push(format!("{}: only in the second", path.display()));
            }
        }
        out
    }

    /// Creates `into` (it must not exist or be empty) holding the image.
    pub fn write_to(&self, into: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(into)?;
        if std::fs::read_dir(into)?.next().is_some() {
            return Err(std::io::Error::other(format!(
                "{} is not empty",
                into.display()
            )));
        }
        // Sorted by path, so every folder comes before what it holds.
        for (path, entry) in &self.entries {
            let target = into.join(path);
            match entry {
                Some(bytes) => std::fs::write(&target, bytes)?,
                None => std::fs::create_dir(&target)?,
            }
        }
        Ok(())
    }
}

type Ino = usize;

/// A change to a file's contents.
#[derive(Clone, Copy, Debug)]
enum Change<'a> {
    Write { offset: u64, bytes: &'a [u8] },
    SetLen(u64),
}

impl Change<'_> {
    /// The file length after this change, from `len` before it.
    fn length_after(&self, len: u64) -> u64 {
        match *self {
            Change::Write { offset, bytes } => len.max(offset + bytes.len() as u64),
            Change::SetLen(n) => n,
        }
    }

    /// The sectors whose bytes this change can alter.
    fn touches(&self, sector: u64) -> bool {
        match *self {
            Change::Write { offset, bytes } => {
                let end = offset + bytes.len() as u64;
                !bytes.is_empty() && sector >= offset / SECTOR && sector < end.div_ceil(SECTOR)
            }
            Change::SetLen(n) => sector >= n / SECTOR,
        }
    }

    /// Applies the change to `buf`, the bytes of `sector`.
    fn apply_to_sector(&self, sector: u64, buf: &mut [u8]) {
        let start = sector * SECTOR;
        match *self {
            Change::Write { offset, bytes } => {
                let end = offset + bytes.len() as u64;
                let from = offset.max(start);
                let to = end.min(start + SECTOR);
                if from < to {
                    let dst = usize::try_from(from - start).unwrap_or(0);
                    let src = usize::try_from(from - offset).unwrap_or(0);
                    let n = usize::try_from(to - from).unwrap_or(0);
                    buf[dst..dst + n].copy_from_slice(&bytes[src..src + n]);
                }
            }
            Change::SetLen(n) if n < start + SECTOR => {
                let keep = usize::try_from(n.saturating_sub(start)).unwrap_or(0);
                buf[keep..].fill(0);
            }
            Change::SetLen(_) => {}
        }
    }

    /// Applies the change to a whole file.
    fn apply(&self, file: &mut Vec<u8>) {
        match *self {
            Change::Write { offset, bytes } => {
                let offset = usize::try_from(offset).unwrap_or(usize::MAX);
                let end = offset + bytes.len();
                if file.len() < end {
                    file.resize(end, 0);
                }
                file[offset..end].copy_from_slice(bytes);
            }
            Change::SetLen(n) => file.resize(usize::try_from(n).unwrap_or(usize::MAX), 0),
        }
    }
}

#[derive(Debug)]
enum Node<'a> {
    File {
        /// The contents at install (empty for a file created since).
        base: &'a [u8],
        /// Every change, with the index of its call.
        changes: Vec<(usize, Change<'a>)>,
        /// The index of the last fsync.
        synced: Option<usize>,
    },
    Dir {
        /// The entries as the page cache has them (every call applied).
        entries: BTreeMap<OsString, Ino>,
        /// The index of the last directory fsync.
        synced: Option<usize>,
    },
}

/// A change to directory entries.
#[derive(Clone, Debug)]
enum Edit {
    Link {
        dir: Ino,
        name: OsString,
        ino: Ino,
    },
    Unlink {
        dir: Ino,
        name: OsString,
        ino: Ino,
    },
    Move {
        from: (Ino, OsString),
        to: (Ino, OsString),
        ino: Ino,
    },
}

impl Edit {
    fn dirs(&self) -> [Ino; 2] {
        match self {
            Edit::Link { dir, .. } | Edit::Unlink { dir, .. } => [*dir, *dir],
            Edit::Move { from, to, .. } => [from.0, to.0],
        }
    }

    /// Applies the edit to the disk's entries; `false` when it cannot happen there
    /// (the entry it moves or removes is not there).
    fn apply(&self, disk: &mut [BTreeMap<OsString, Ino>]) -> bool {
        match self {
            Edit::Link { dir, name, ino } => {
                disk[*dir].insert(name.clone(), *ino);
                true
            }
            Edit::Unlink { dir, name, ino } => {
                let there = disk[*dir].get(name) == Some(ino);
                if there {
                    disk[*dir].remove(name);
                }
                there
            }
            Edit::Move { from, to, ino } => {
                let there = disk[from.0].get(&from.1) == Some(ino);
                if there {
                    disk[from.0].remove(&from.1);
                    disk[to.0].insert(to.1.clone(), *ino);
                }
                there
            }
        }
    }
}

/// The page cache's view of the directory, replayed call by call.
#[derive(Debug, Default)]
struct Model<'a> {
    nodes: Vec<Node<'a>>,
    /// Directory edits with the index of their call.
    edits: Vec<(usize, Edit)>,
}

type Fail = Box<dyn Fn(&str) -> std::io::Error>;

impl<'a> Model<'a> {
    fn new(start: &'a BTreeMap<PathBuf, Option<Vec<u8>>>) -> std::io::Result<Self> {
        let mut model = Model {
            nodes: vec![Node::Dir {
                entries: BTreeMap::new(),
                synced: None,
            }],
            edits: Vec::new(),
        };
        // Sorted by path: every folder before what it holds.
        for (path, entry) in start {
            let (dir, name) = model
                .parent(path)
                .ok_or_else(|| std::io::Error::other(format!("bad start {}", path.display())))?;
            let node = match entry {
                Some(bytes) => Node::File {
                    base: bytes,
                    changes: Vec::new(),
                    synced: None,
                },
                None => Node::Dir {
                    entries: BTreeMap::new(),
                    synced: None,
                },
            };
            let ino = model.add(node);
            model.entries_mut(dir).insert(name, ino);
        }
        Ok(model)
    }

    fn add(&mut self, node: Node<'a>) -> Ino {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn entries(&self, dir: Ino) -> Option<&BTreeMap<OsString, Ino>> {
        match &self.nodes[dir] {
            Node::Dir { entries, .. } => Some(entries),
            Node::File { .. } => None,
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> &mut BTreeMap<OsString, Ino> {
        match &mut self.nodes[dir] {
            Node::Dir { entries, .. } => entries,
            // `parent` only returns folders.
            Node::File { .. } => unreachable!("entries of a file"),
        }
    }

    fn resolve(&self, path: &Path) -> Option<Ino> {
        let mut at = 0;
        for c in path.components() {
            match c {
                Component::Normal(name) => at = *self.entries(at)?.get(name)?,
                Component::CurDir => {}
                _ => return None,
            }
        }
        Some(at)
    }

    /// The folder holding `path`, and its name there.
    fn parent(&self, path: &Path) -> Option<(Ino, OsString)> {
        let name = path.file_name()?.to_os_string();
        let dir = self.resolve(path.parent()?)?;
        self.entries(dir)?;
        Some((dir, name))
    }

    fn file(&mut self, path: &Path) -> Option<&mut Node<'a>> {
        let ino = self.resolve(path)?;
        let node = &mut self.nodes[ino];
        matches!(node, Node::File { .. }).then_some(node)
    }

    /// Replays call `i`.
    fn replay(&mut self, i: usize, op: &'a PowerOp) -> std::io::Result<()> {
        let fail: Fail = {
            let text = op.to_string();
            Box::new(move |why: &str| {
                std::io::Error::other(format!(
                    "power log call {i} ({text}): {why}; the recorder missed a call"
                ))
            })
        };
        match op {
            PowerOp::Create { path, truncate } => {
                let (dir, name) = self.parent(path).ok_or_else(|| fail("no such folder"))?;
                match self.entries(dir).and_then(|e| e.get(&name)).copied() {
                    Some(ino) => match &mut self.nodes[ino] {
                        Node::File { changes, .. } => {
                            if *truncate {
                                changes.push((i, Change::SetLen(0)));
                            }
                        }
                        Node::Dir { .. } => return Err(fail("it is a folder")),
                    },
                    None => {
                        let ino = self.add(Node::File {
                            base: &[],
                            changes: Vec::new(),
                            synced: None,
                        });
                        self.link(i, dir, name, ino);
                    }
                }
            }
            PowerOp::CreateDir { path } => {
                let (dir, name) = self.parent(path).ok_or_else(|| fail("no such folder"))?;
                if self.entries(dir).and_then(|e| e.get(&name)).is_none() {
                    let ino = self.add(Node::Dir {
                        entries: BTreeMap::new(),
                        synced: None,
                    });
                    self.link(i, dir, name, ino);
                }
            }
            PowerOp::Write {
                path,
                offset,
                bytes,
            } => match self.file(path) {
                Some(Node::File { changes, .. }) => changes.push((
                    i,
                    Change::Write {
                        offset: *offset,
                        bytes,
                    },
                )),
                _ => return Err(fail("no such file")),
            },
            PowerOp::SetLen { path, len } => match self.file(path) {
                Some(Node::File { changes, .. }) => changes.push((i, Change::SetLen(*len))),
                _ => return Err(fail("no such file")),
            },
            PowerOp::Sync { path } => match self.file(path) {
                Some(Node::File { synced, .. }) => *synced = Some(i),
                _ => return Err(fail("no such file")),
            },
            PowerOp::SyncDir { path } => {
                let ino = self.resolve(path).ok_or_else(|| fail("no such folder"))?;
                match &mut self.nodes[ino] {
                    Node::Dir { synced, .. } => *synced = Some(i),
                    Node::File { .. } => return Err(fail("it is a file")),
                }
            }
            PowerOp::Rename { from, to } => {
                let (fdir, fname) = self.parent(from).ok_or_else(|| fail("no such folder"))?;
                let (tdir, tname) = self.parent(to).ok_or_else(|| fail("no such folder"))?;
                let ino = self
                    .entries(fdir)
                    .and_then(|e| e.get(&fname))
                    .copied()
                    .ok_or_else(|| fail("no such entry"))?;
                if (fdir, &fname) != (tdir, &tname) {
                    self.entries_mut(fdir).remove(&fname);
                    self.entries_mut(tdir).insert(tname.clone(), ino);
                    self.edits.push((
                        i,
                        Edit::Move {
                            from: (fdir, fname),
                            to: (tdir, tname),
                            ino,
                        },
                    ));
                }
            }
            PowerOp::Remove { path } => {
                let (dir, name) = self.parent(path).ok_or_else(|| fail("no such folder"))?;
                let ino = self
                    .entries_mut(dir)
                    .remove(&name)
                    .ok_or_else(|| fail("no such entry"))?;
                self.edits.push((i, Edit::Unlink { dir, name, ino }));
            }
        }
        Ok(())
    }

    fn link(&mut self, i: usize, dir: Ino, name: OsString, ino: Ino) {
        self.entries_mut(dir).insert(name.clone(), ino);
        self.edits.push((i, Edit::Link { dir, name, ino }));
    }

    fn dir_synced(&self, dir: Ino) -> Option<usize> {
        match &self.nodes[dir] {
            Node::Dir { synced, .. } => *synced,
            Node::File { .. } => None,
        }
    }

    /// An edit made at call `i` is durable: every folder it changes was fsynced later.
    fn durable(&self, i: usize, edit: &Edit) -> bool {
        edit.dirs()
            .iter()
            .all(|&d| self.dir_synced(d).is_some_and(|s| s > i))
    }

    /// The first call whose effect is not durable (`None`: everything is).
    fn first_pending(&self) -> Option<usize> {
        let edits = self
            .edits
            .iter()
            .filter(|(i, e)| !self.durable(*i, e))
            .map(|(i, _)| *i);
        let changes = self.nodes.iter().filter_map(|n| match n {
            Node::File {
                changes, synced, ..
            } => changes
                .iter()
                .map(|(i, _)| *i)
                .find(|i| synced.is_none_or(|s| *i > s)),
            Node::Dir { .. } => None,
        });
        edits.chain(changes).min()
    }
}

/// A small seeded generator (splitmix64), so a cut is reproducible from its seed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `true` with probability `quarters / 4`.
    fn chance(&mut self, quarters: u64) -> bool {
        self.below(4) < quarters
    }
}

/// How the cut in progress decides.
#[derive(Debug)]
enum Chooser {
    Kill,
    Durable,
    /// Pending changes of calls before `point` landed, the one at `point` is torn.
    InOrder {
        point: usize,
        rng: Rng,
    },
    /// Each free choice is made with probability `quarters / 4`.
    Scattered {
        rng: Rng,
        quarters: u64,
    },
}

/// What became of one pending write.
#[derive(Debug, PartialEq, Eq)]
enum Landed {
    Whole,
    Absent,
    /// These of its sectors (file sector numbers) landed.
    Torn(Vec<u64>),
}

/// The state the disk could hold after the calls `ops` (the first ones recorded),
/// starting from `start`, as `cut` picks it.
pub(super) fn materialise(
    start: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    ops: &[PowerOp],
    cut: Cut,
) -> std::io::Result<Image> {
    let mut model = Model::new(start)?;
    // The disk's entries start as the directory's at install.
    let mut disk: Vec<BTreeMap<OsString, Ino>> = model
        .nodes
        .iter()
        .map(|node| match node {
            Node::Dir { entries, .. } => entries.clone(),
            Node::File { .. } => BTreeMap::new(),
        })
        .collect();
    for (i, op) in ops.iter().enumerate() {
        model.replay(i, op)?;
    }
    disk.resize(model.nodes.len(), BTreeMap::new());
    let mut chooser = match cut {
        Cut::Kill => Chooser::Kill,
        Cut::Durable => Chooser::Durable,
        Cut::InOrder(seed) => {
            let mut rng = Rng(seed);
            let first = model.first_pending().unwrap_or(ops.len());
            let span = (ops.len() - first) as u64 + 1;
            let point = first + usize::try_from(rng.below(span)).unwrap_or(0);
            Chooser::InOrder { point, rng }
        }
        Cut::Scattered(seed) => {
            let mut rng = Rng(seed);
            let quarters = 1 + rng.below(3);
            Chooser::Scattered { rng, quarters }
        }
    };
    let mut notes = Vec::new();
    if let Chooser::InOrder { point, .. } = &chooser {
        notes.push(format!(
            "in order: pending changes of calls before {point} landed, call {point} torn"
        ));
    }

    // Then every edit that is durable or chosen, in order.
    for (i, edit) in &model.edits {
        let durable = model.durable(*i, edit);
        let made = durable
            || match &mut chooser {
                Chooser::Kill => true,
                Chooser::Durable => false,
                Chooser::InOrder { point, .. } => *i < *point,
                Chooser::Scattered { rng, quarters } => rng.chance(*quarters),
            };
        if made {
            let happened = edit.apply(&mut disk);
            if !durable && !matches!(chooser, Chooser::Kill) {
                notes.push(format!(
                    "call {i} ({}): {}",
                    ops[*i],
                    if happened {
                        "made"
                    } else {
                        "could not be made (the entry it changes was never made)"
                    }
                ));
            }
        } else {
            notes.push(format!("call {i} ({}): not made", ops[*i]));
        }
    }

    // Walk the disk's tree from the top; write each reachable file's contents.
    let mut entries = BTreeMap::new();
    let mut unsynced = BTreeMap::new();
    let mut stack: Vec<(Ino, PathBuf)> = vec![(0, PathBuf::new())];
    let mut seen = vec![false; model.nodes.len()];
    while let Some((dir, path)) = stack.pop() {
        if std::mem::replace(&mut seen[dir], true) {
            continue; // a loop only inconsistent choices could build
        }
        for (name, &ino) in &disk[dir] {
            let child = path.join(name);
            match &model.nodes[ino] {
                Node::Dir { .. } => {
                    entries.insert(child.clone(), None);
                    stack.push((ino, child));
                }
                Node::File {
                    base,
                    changes,
                    synced,
                } => {
                    let (bytes, durable) =
                        contents(base, changes, *synced, &mut chooser, &child, &mut notes);
                    if let Some(len) = durable {
                        unsynced.insert(child.clone(), len);
                    }
                    entries.insert(child, Some(bytes));
                }
            }
        }
    }
    Ok(Image {
        entries,
        unsynced,
        notes,
    })
}

/// The bytes of one file the disk holds, as `chooser` decides its pending changes,
/// and its durable length when it had pending changes.
fn contents(
    base: &[u8],
    changes: &[(usize, Change<'_>)],
    synced: Option<usize>,
    chooser: &mut Chooser,
    path: &Path,
    notes: &mut Vec<String>,
) -> (Vec<u8>, Option<u64>) {
    let is_durable = |i: usize| synced.is_some_and(|s| i < s);
    let mut durable = base.to_vec();
    let mut pending: Vec<(usize, Change<'_>)> = Vec::new();
    for &(i, change) in changes {
        if is_durable(i) {
            change.apply(&mut durable);
        } else {
            pending.push((i, change));
        }
    }
    if pending.is_empty() {
        return (durable, None);
    }
    // lengths[k]: the length after the first k pending changes.
    let mut lengths = vec![durable.len() as u64];
    for (_, change) in &pending {
        let last = lengths[lengths.len() - 1];
        lengths.push(change.length_after(last));
    }
    let n = pending.len();
    // For each pending change: did it land (and which sectors); and the length.
    let mut landed: Vec<Landed> = Vec::with_capacity(n);
    let length = match chooser {
        Chooser::Kill => {
            landed.resize_with(n, || Landed::Whole);
            lengths[n]
        }
        Chooser::Durable => {
            landed.resize_with(n, || Landed::Absent);
            lengths[0]
        }
        Chooser::InOrder { point, rng } => {
            let before = pending.iter().filter(|(i, _)| *i < *point).count();
            let mut length = lengths[before];
            for (k, (i, change)) in pending.iter().enumerate() {
                landed.push(if *i < *point {
                    Landed::Whole
                } else if *i > *point {
                    Landed::Absent
                } else {
                    match *change {
                        Change::Write { offset, bytes } => {
                            // A prefix of its sectors; the length covers what landed.
                            let first = offset / SECTOR;
                            let end = (offset + bytes.len() as u64).div_ceil(SECTOR);
                            let count = rng.below(end - first + 1);
                            let landed_end = ((first + count) * SECTOR).min(lengths[k + 1]);
                            length = length.max(landed_end);
                            Landed::Torn((first..first + count).collect())
                        }
                        Change::SetLen(_) if rng.chance(2) => {
                            length = lengths[k + 1];
                            Landed::Whole
                        }
                        Change::SetLen(_) => Landed::Absent,
                    }
                });
            }
            length
        }
        Chooser::Scattered { rng, quarters } => {
            // The length comes from a prefix of the changes; a truncate landed when
            // that prefix holds it.
            let k = usize::try_from(rng.below(n as u64 + 1)).unwrap_or(0);
            for (pos, (_, change)) in pending.iter().enumerate() {
                landed.push(match *change {
                    Change::SetLen(_) if pos < k => Landed::Whole,
                    Change::SetLen(_) => Landed::Absent,
                    Change::Write { offset, bytes } => match rng.below(3) {
                        0 => Landed::Absent,
                        1 => Landed::Whole,
                        _ => {
                            let first = offset / SECTOR;
                            let end = (offset + bytes.len() as u64).div_ceil(SECTOR);
                            let sectors: Vec<u64> =
                                (first..end).filter(|_| rng.chance(*quarters)).collect();
                            Landed::Torn(sectors)
                        }
                    },
                });
            }
            lengths[k]
        }
    };
    if !matches!(chooser, Chooser::Kill) {
        let what: Vec<String> = pending
            .iter()
            .zip(&landed)
            .map(|((i, _), l)| match l {
                Landed::Whole => format!("{i} whole"),
                Landed::Absent => format!("{i} absent"),
                Landed::Torn(s) => format!("{i} torn (sectors {s:?} landed)"),
            })
            .collect();
        notes.push(format!(
            "{}: length {length} (durable {}, every change {}); pending calls {}",
            path.display(),
            lengths[0],
            lengths[n],
            what.join(", ")
        ));
    }
    (build(&durable, &pending, &landed, length), Some(lengths[0]))
}

/// The file: each sector as the page cache held it after the newest landed change
/// that touched it (its durable bytes if none), cut to `length`.
fn build(
    durable: &[u8],
    pending: &[(usize, Change<'_>)],
    landed: &[Landed],
    length: u64,
) -> Vec<u8> {
    let len = usize::try_from(length).unwrap_or(usize::MAX);
    let mut out = vec![0u8; len];
    let sector_len = usize::try_from(SECTOR).unwrap_or(512);
    for (s, chunk) in out.chunks_mut(sector_len).enumerate() {
        let sector = s as u64;
        let newest = (0..pending.len()).rev().find(|&k| {
            let change = pending[k].1;
            change.touches(sector)
                && match &landed[k] {
                    Landed::Whole => true,
                    Landed::Absent => false,
                    Landed::Torn(sectors) => sectors.contains(&sector),
                }
        });
        let mut buf = vec![0u8; sector_len];
        let start = s * sector_len;
        if start < durable.len() {
            let end = durable.len().min(start + sector_len);
            buf[..end - start].copy_from_slice(&durable[start..end]);
        }
        if let Some(k) = newest {
            for (_, change) in &pending[..=k] {
                change.apply_to_sector(sector, &mut buf);
            }
        }
        chunk.copy_from_slice(&buf[..chunk.len()]);
    }
    out
}

/// Adds the files and folders under `root/rel` to `out`.
pub(super) fn read_tree(
    root: &Path,
    rel: &Path,
    out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>,
    unsupported: &mut Option<String>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let path = rel.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            out.insert(path.clone(), None);
            read_tree(root, &path, out, unsupported)?;
        } else if kind.is_file() {
            out.insert(path.clone(), Some(std::fs::read(root.join(&path))?));
        } else {
            *unsupported = Some(format!("{} is neither file nor directory", path.display()));
        }
    }
    Ok(())
}

/// The files (`Some(bytes)`) and folders (`None`) under `dir`, by relative path.
fn snapshot(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, Option<Vec<u8>>>> {
    let mut out = BTreeMap::new();
    let mut unsupported = None;
    read_tree(dir, Path::new(""), &mut out, &mut unsupported)?;
    // The live mark is written through a shared map, outside the seam, and is a hint
    // for followers that no open reads: not part of what a crash must preserve.
    out.remove(Path::new(crate::live::LIVE_FILE));
    match unsupported {
        Some(why) => Err(std::io::Error::other(why)),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    fn create(path: &str) -> PowerOp {
        PowerOp::Create {
            path: p(path),
            truncate: true,
        }
    }

    fn write(path: &str, offset: u64, bytes: &[u8]) -> PowerOp {
        PowerOp::Write {
            path: p(path),
            offset,
            bytes: bytes.to_vec(),
        }
    }

    fn sync(path: &str) -> PowerOp {
        PowerOp::Sync { path: p(path) }
    }

    fn sync_dir(path: &str) -> PowerOp {
        PowerOp::SyncDir { path: p(path) }
    }

    fn file(image: &Image, path: &str) -> Option<Vec<u8>> {
        image.entries().get(&p(path)).cloned().flatten()
    }

    fn start(files: &[(&str, &[u8])]) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        files
            .iter()
            .map(|(path, bytes)| (p(path), Some(bytes.to_vec())))
            .collect()
    }

    /// Every cut the seeds pick, after all of `ops`.
    fn cuts(start: &BTreeMap<PathBuf, Option<Vec<u8>>>, ops: &[PowerOp]) -> Vec<Image> {
        (0..400)
            .map(|seed| materialise(start, ops, Cut::from_seed(seed)).unwrap())
            .collect()
    }

    #[test]
    fn a_new_file_lives_only_once_its_folder_is_synced_and_holds_only_synced_bytes() {
        let ops = [create("a"), write("a", 0, b"hello"), sync("a")];
        let none = BTreeMap::new();
        assert_eq!(
            file(&materialise(&none, &ops, Cut::Kill).unwrap(), "a").unwrap(),
            b"hello"
        );
        // fsync of the file does not make its entry durable.
        assert!(file(&materialise(&none, &ops, Cut::Durable).unwrap(), "a").is_none());
        let images = cuts(&none, &ops);
        assert!(images.iter().any(|i| file(i, "a").is_none()));
        assert!(images.iter().any(|i| file(i, "a").is_some()));
        let mut ops = ops.to_vec();
        ops.push(sync_dir(""));
        ops.push(write("a", 5, b" world"));
        for image in cuts(&none, &ops) {
            let bytes = file(&image, "a").expect("the entry is durable");
            assert!(
                [&b"hello"[..], b"hello world", b"hello\0\0\0\0\0\0"].contains(&&bytes[..]),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_torn_write_lands_whole_sectors_of_the_new_or_the_old_bytes() {
        let old = vec![1u8; 1024];
        let start = start(&[("f", &old)]);
        let new = vec![2u8; 1536];
        let ops = [write("f", 0, &new)];
        let mut shapes = std::collections::BTreeSet::new();
        for image in cuts(&start, &ops) {
            let bytes = file(&image, "f").unwrap();
            assert!(
                bytes.len() == 1024 || bytes.len() == 1536,
                "{}",
                bytes.len()
            );
            let shape: Vec<u8> = bytes
                .chunks(512)
                .map(|s| {
                    assert!(s.iter().all(|&b| b == s[0]), "a sector is never mixed");
                    s[0]
                })
                .collect();
            shapes.insert(shape);
        }
        // Old and new sectors mix, and a new last sector may be cut by the length.
        assert!(shapes.contains(&vec![2, 1]), "{shapes:?}");
        assert!(shapes.contains(&vec![1, 2, 2]), "{shapes:?}");
        assert!(
            shapes.contains(&vec![1, 1, 0]),
            "the size ran ahead: {shapes:?}"
        );
    }

    #[test]
    fn an_older_write_never_lands_over_a_newer_one_in_the_same_sector() {
        let start = start(&[("f", &[0u8; 512])]);
        let ops = [write("f", 0, &[1u8; 512]), write("f", 100, &[2u8; 10])];
        let mut after_second = [1u8; 512];
        after_second[100..110].fill(2);
        for image in cuts(&start, &ops) {
            let bytes = file(&image, "f").unwrap();
            assert!(
                bytes == [0u8; 512] || bytes == [1u8; 512] || bytes == after_second,
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_rename_is_whole_or_absent_until_the_folder_is_synced() {
        let start = start(&[("t", b"old")]);
        let mut ops = vec![
            create(".tmp"),
            write(".tmp", 0, b"new"),
            sync(".tmp"),
            PowerOp::Rename {
                from: p(".tmp"),
                to: p("t"),
            },
        ];
        let images = cuts(&start, &ops);
        for image in &images {
            let t = file(image, "t").unwrap();
            assert!(t == b"old" || t == b"new", "{t:?}");
            if t == b"new" {
                assert!(file(image, ".tmp").is_none(), "a rename moves the entry");
            }
        }
        assert!(images.iter().any(|i| file(i, "t").unwrap() == b"new"));
        assert!(images.iter().any(|i| file(i, "t").unwrap() == b"old"));
        ops.push(sync_dir(""));
        for image in cuts(&start, &ops) {
            assert_eq!(file(&image, "t").unwrap(), b"new");
            assert_eq!(image.entries().len(), 1);
        }
    }

    #[test]
    fn a_pending_truncate_may_or_may_not_have_happened_and_removals_need_a_folder_sync() {
        let start = start(&[("d", b""), ("d/f", &[7u8; 600])]);
        let mut start = start;
        start.insert(p("d"), None);
        let ops = [
            PowerOp::SetLen {
                path: p("d/f"),
                len: 100,
            },
            PowerOp::Remove { path: p("d/f") },
        ];
        let images = cuts(&start, &ops);
        let lengths: std::collections::BTreeSet<_> = images
            .iter()
            .filter_map(|i| file(i, "d/f").map(|f| f.len()))
            .collect();
        assert_eq!(lengths, [100, 600].into_iter().collect());
        assert!(images.iter().any(|i| file(i, "d/f").is_none()));
        let mut ops = ops.to_vec();
        ops.push(sync_dir("d"));
        for image in cuts(&start, &ops) {
            assert!(file(&image, "d/f").is_none());
            assert_eq!(image.entries().get(&p("d")), Some(&None));
        }
    }

    #[test]
    fn a_folder_that_never_became_durable_takes_its_files_with_it() {
        let ops = [
            PowerOp::CreateDir { path: p("s") },
            create("s/1"),
            write("s/1", 0, b"x"),
            sync("s/1"),
            sync_dir("s"),
        ];
        let none = BTreeMap::new();
        let durable = materialise(&none, &ops, Cut::Durable).unwrap();
        assert!(durable.entries().is_empty(), "{durable:?}");
        let mut ops = ops.to_vec();
        ops.push(sync_dir(""));
        let durable = materialise(&none, &ops, Cut::Durable).unwrap();
        assert_eq!(file(&durable, "s/1").unwrap(), b"x");
    }

    #[test]
    fn a_call_on_an_unknown_file_says_the_recorder_missed_something() {
        let err = materialise(&BTreeMap::new(), &[write("nope", 0, b"x")], Cut::Kill).unwrap_err();
        assert!(err.to_string().contains("missed a call"), "{err}");
    }
}
