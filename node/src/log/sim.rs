//! In-memory storage for the log simulator (`node/tests/log_sim.rs`), compiled only with
//! the `sim` feature (node's own dev-dependency enables it): [`SimStorage`] is a whole
//! filesystem of byte vectors behind the [`Storage`](super::Storage) seam, so the real
//! `PartitionLog` runs over it on a glommio executor.
//!
//! Model. Every file has a *volatile* image (what reads see) and a *durable* one (what
//! survives power loss); `fdatasync` copies the volatile image to the durable one, and a
//! write to an O_DSYNC file is durable when it completes. Names are volatile too: a
//! created, renamed or removed name becomes durable only when its directory is synced.
//! Power loss ([`SimStorage::power_loss`]) puts every file and name back to its durable
//! image, except that each not-yet-synced change is, by a seeded draw, kept, kept torn at
//! any byte, or lost (disks reorder and tear writes). Handles opened before the power
//! loss fail with EIO afterwards (their process is gone).
//!
//! Faults, all drawn from the seed: EIO on the Nth fault-eligible operation (open, read,
//! write, fdatasync, truncate, rename, remove, directory sync), optionally with a torn
//! prefix written first when that operation is a write; latency: every operation
//! completes after 0..=`latency_yields_max` executor yields, so interleavings vary with
//! the seed and stay deterministic on glommio's FIFO single-thread executor. No
//! wall-clock time is read here. Preallocation and size queries draw nothing (the log
//! sizes its reservations by wall-clock heuristics; keeping them out of the random stream
//! keeps a seed's faults reproducible); a preallocation that extends a file extends its
//! durable image with zeros too (a crash then leaves a zero tail that recovery must cut).
//!
//! Directories are created durable at once (the log's partition directory is made by
//! its caller before the log exists) and a directory listing is volatile.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Faults a [`SimStorage`] injects (besides power loss, which its owner calls).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The fault-eligible operation (counted from 1 over the storage's life) that fails
    /// with EIO; `None`: no EIO.
    pub eio_at_op: Option<u64>,
    /// When the failing operation is a write: a seeded prefix of it lands first (torn).
    pub eio_write_torn: bool,
    /// Every operation waits 0..=this many executor yields before it completes.
    pub latency_yields_max: u32,
    /// Per mille of un-synced changes a power loss keeps whole; as many again are kept torn.
    pub keep_unsynced_per_mille: u32,
}

/// What kind of operation a fault-eligible call is (for the trace and for EIO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Open,
    Read,
    Write,
    Fdatasync,
    Truncate,
    Rename,
    Remove,
    SyncDir,
}

/// Counts of what the storage did; the simulator asserts some are non-zero.
#[derive(Clone, Copy, Debug, Default)]
pub struct SimStats {
    pub ops: u64,
    pub eio_injected: u64,
    pub torn_writes_injected: u64,
    pub power_losses: u64,
    pub unsynced_kept: u64,
    pub unsynced_torn: u64,
    pub unsynced_lost: u64,
    /// Injected fdatasync failures of a `.log` file that had un-synced non-zero bytes
    /// (appended data, not zero-ahead's zeros): the log must refuse further writes.
    pub data_sync_eio: u64,
}

/// The in-memory filesystem; cheap to clone (one shared instance).
#[derive(Clone)]
pub struct SimStorage(Rc<RefCell<Fs>>);

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SimStorage({:?})", self.0.borrow().stats)
    }
}

struct Fs {
    rng: ChaCha8Rng,
    faults: Faults,
    /// Bumped by every power loss: older handles are dead.
    generation: u64,
    next_ino: u64,
    nodes: HashMap<u64, Node>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    free_bytes: u64,
    stats: SimStats,
    trace: Option<Vec<String>>,
}

#[derive(Default)]
struct Node {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Changes since the last fdatasync, in order.
    unsynced: Vec<Change>,
}

enum Change {
    Write { pos: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Node {
    fn apply(data: &mut Vec<u8>, change: &Change, keep: usize) {
        match change {
            Change::Write { pos, bytes } => {
                let pos = *pos as usize;
                let end = pos + keep;
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[pos..end].copy_from_slice(&bytes[..keep]);
            }
            Change::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

/// One open file of a [`SimStorage`].
pub struct SimFile {
    fs: SimStorage,
    ino: u64,
    generation: u64,
    path: PathBuf,
    dsync: bool,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl SimStorage {
    /// An empty filesystem whose faults and power-loss choices come from `seed`.
    pub fn new(seed: u64, faults: Faults) -> SimStorage {
        SimStorage(Rc::new(RefCell::new(Fs {
            rng: ChaCha8Rng::seed_from_u64(seed),
            faults,
            generation: 0,
            next_ino: 1,
            nodes: HashMap::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            dirs: BTreeSet::new(),
            free_bytes: u64::MAX / 2,
            stats: SimStats::default(),
            trace: None,
        })))
    }

    /// Records every operation into a trace ([`SimStorage::take_trace`]).
    pub fn enable_trace(&self) {
        self.0.borrow_mut().trace = Some(Vec::new());
    }

    /// The operations recorded since the last call.
    pub fn take_trace(&self) -> Vec<String> {
        self.0.borrow_mut().trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Replaces the fault plan (the operation count goes on).
    pub fn set_faults(&self, faults: Faults) {
        self.0.borrow_mut().faults = faults;
    }

    /// Operations so far (the count `Faults::eio_at_op` refers to).
    pub fn ops(&self) -> u64 {
        self.0.borrow().stats.ops
    }

    pub fn stats(&self) -> SimStats {
        self.0.borrow().stats
    }

    /// What `statvfs` reports as available.
    pub fn set_free_bytes(&self, bytes: u64) {
        self.0.borrow_mut().free_bytes = bytes;
    }

    /// Power loss: every file and name goes back to its durable image, except for the
    /// un-synced changes a seeded draw keeps (whole or torn). Every open handle dies.
    pub fn power_loss(&self) {
        let mut fs = self.0.borrow_mut();
        let fs = &mut *fs;
        fs.generation += 1;
        fs.stats.power_losses += 1;
        fs.names = fs.durable_names.clone();
        let live: BTreeSet<u64> = fs.names.values().copied().collect();
        fs.nodes.retain(|ino, _| live.contains(ino));
        let keep_pm = fs.faults.keep_unsynced_per_mille.min(500);
        let mut inos: Vec<u64> = fs.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let node = fs.nodes.get_mut(&ino).expect("listed above");
            let mut image = std::mem::take(&mut node.durable);
            for change in std::mem::take(&mut node.unsynced) {
                let draw = fs.rng.gen_range(0..1000u32);
                let full = match &change {
                    Change::Write { bytes, .. } => bytes.len(),
                    Change::SetLen(_) => 0,
                };
                if draw < keep_pm {
                    fs.stats.unsynced_kept += 1;
                    Node::apply(&mut image, &change, full);
                } else if draw < 2 * keep_pm && full > 0 {
                    fs.stats.unsynced_torn += 1;
                    let keep = fs.rng.gen_range(0..full);
                    Node::apply(&mut image, &change, keep);
                } else {
                    fs.stats.unsynced_lost += 1;
                }
            }
            node.data = image.clone();
            node.durable = image;
        }
        if let Some(t) = fs.trace.as_mut() {
            t.push(format!("power loss (generation {})", fs.generation));
        }
    }

    /// Every file name as the running system sees it (durable or not), for checkers.
    pub fn file_names(&self) -> Vec<PathBuf> {
        self.0.borrow().names.keys().cloned().collect()
    }

    /// The durable image of the file named `path` (durably), for checkers.
    pub fn durable_file(&self, path: &Path) -> Option<Vec<u8>> {
        let fs = self.0.borrow();
        let ino = fs.durable_names.get(path)?;
        Some(fs.nodes.get(ino)?.durable.clone())
    }

    /// Counts the operation, draws its latency and whether it fails; waits the latency.
    /// `Err` when the fault plan fails it. Every fault-eligible operation starts here.
    async fn begin(&self, op: Op, path: &Path) -> io::Result<()> {
        let (yields, fail) = {
            let mut fs = self.0.borrow_mut();
            fs.stats.ops += 1;
            let n = fs.stats.ops;
            let max = fs.faults.latency_yields_max;
            let yields = if max == 0 { 0 } else { fs.rng.gen_range(0..=max) };
            let fail = fs.faults.eio_at_op == Some(n);
            if fail {
                fs.stats.eio_injected += 1;
            }
            if let Some(t) = fs.trace.as_mut() {
                t.push(format!("#{n} {op:?} {}{}", path.display(), if fail { " -> EIO" } else { "" }));
            }
            (yields, fail)
        };
        for _ in 0..yields {
            futures_lite::future::yield_now().await;
        }
        if fail {
            Err(eio())
        } else {
            Ok(())
        }
    }

    pub(crate) async fn open(&self, path: &Path, create: bool, truncate: bool, dsync: bool) -> io::Result<SimFile> {
        self.begin(Op::Open, path).await?;
        let mut fs = self.0.borrow_mut();
        let parent = path.parent().unwrap_or(Path::new("/"));
        if !fs.dirs.contains(parent) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let ino = match fs.names.get(path) {
            Some(&ino) => ino,
            None if create => {
                let ino = fs.next_ino;
                fs.next_ino += 1;
                fs.nodes.insert(ino, Node::default());
                fs.names.insert(path.to_owned(), ino);
                ino
            }
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        if truncate {
            let node = fs.nodes.get_mut(&ino).expect("a named inode exists");
            node.data.clear();
            node.unsynced.push(Change::SetLen(0));
        }
        Ok(SimFile { fs: self.clone(), ino, generation: fs.generation, path: path.to_owned(), dsync })
    }

    pub(crate) fn create_dir_all(&self, dir: &Path) {
        let mut fs = self.0.borrow_mut();
        for d in dir.ancestors() {
            fs.dirs.insert(d.to_owned());
        }
    }

    /// Names (file names only) in `dir`, sorted.
    pub(crate) fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let fs = self.0.borrow();
        if !fs.dirs.contains(dir) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let names = fs.names.keys().filter(|p| p.parent() == Some(dir));
        Ok(names.filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect())
    }

    pub(crate) fn file_len(&self, path: &Path) -> io::Result<u64> {
        let fs = self.0.borrow();
        let ino = fs.names.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(fs.nodes[ino].data.len() as u64)
    }

    pub(crate) async fn read_whole(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.begin(Op::Read, path).await?;
        let fs = self.0.borrow();
        let ino = fs.names.get(path).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(fs.nodes[ino].data.clone())
    }

    pub(crate) async fn remove(&self, path: &Path) -> io::Result<()> {
        self.begin(Op::Remove, path).await?;
        match self.0.borrow_mut().names.remove(path) {
            Some(_) => Ok(()),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Removes `dir` and every name under it (volatile until a sync, which the log's
    /// delete does not do: as on a real filesystem, a crash may bring them back).
    pub(crate) fn remove_dir_all(&self, dir: &Path) {
        let mut fs = self.0.borrow_mut();
        fs.names.retain(|p, _| !p.starts_with(dir));
    }

    pub(crate) async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.begin(Op::Rename, from).await?;
        let mut fs = self.0.borrow_mut();
        let ino = fs.names.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        fs.names.insert(to.to_owned(), ino);
        Ok(())
    }

    /// Makes the names in `dir` durable as they are now.
    pub(crate) async fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.begin(Op::SyncDir, dir).await?;
        let mut fs = self.0.borrow_mut();
        let fs = &mut *fs;
        fs.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, ino) in fs.names.iter().filter(|(p, _)| p.parent() == Some(dir)) {
            fs.durable_names.insert(p.clone(), *ino);
        }
        Ok(())
    }

    pub(crate) fn free_bytes(&self) -> u64 {
        self.0.borrow().free_bytes
    }
}

impl SimFile {
    /// Fails with EIO when the handle outlived a power loss.
    fn check_alive(&self) -> io::Result<()> {
        if self.fs.0.borrow().generation == self.generation {
            Ok(())
        } else {
            Err(eio())
        }
    }

    async fn begin(&self, op: Op) -> io::Result<()> {
        self.check_alive()?;
        self.fs.begin(op, &self.path).await?;
        self.check_alive()
    }

    fn with_node<T>(&self, f: impl FnOnce(&mut Node) -> T) -> T {
        let mut fs = self.fs.0.borrow_mut();
        f(fs.nodes.get_mut(&self.ino).expect("a live handle's inode exists"))
    }

    pub(crate) async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.begin(Op::Read).await?;
        Ok(self.with_node(|n| {
            let from = (pos as usize).min(n.data.len());
            let to = (from + len).min(n.data.len());
            n.data[from..to].to_vec()
        }))
    }

    /// Writes all of `bytes` at `pos`, or (injected EIO) possibly a torn prefix and fails.
    pub(crate) async fn write_at(&self, pos: u64, bytes: &[u8]) -> io::Result<()> {
        match self.begin(Op::Write).await {
            Ok(()) => {
                self.land(pos, bytes);
                Ok(())
            }
            Err(e) => {
                let torn = {
                    let mut fs = self.fs.0.borrow_mut();
                    let torn = fs.faults.eio_write_torn && !bytes.is_empty() && self.check_alive_in(&fs);
                    if torn {
                        fs.stats.torn_writes_injected += 1;
                        Some(fs.rng.gen_range(0..bytes.len()))
                    } else {
                        None
                    }
                };
                if let Some(keep) = torn {
                    self.land(pos, &bytes[..keep]);
                }
                Err(e)
            }
        }
    }

    fn check_alive_in(&self, fs: &Fs) -> bool {
        fs.generation == self.generation
    }

    fn land(&self, pos: u64, bytes: &[u8]) {
        let dsync = self.dsync;
        self.with_node(|n| {
            let change = Change::Write { pos, bytes: bytes.to_vec() };
            Node::apply(&mut n.data, &change, bytes.len());
            if dsync {
                // An O_DSYNC write's completion makes its data and the size it needs durable;
                // modelled as an fdatasync of the whole file (an earlier un-synced truncate
                // must not cut it off at a power loss).
                n.durable = n.data.clone();
                n.unsynced.clear();
            } else {
                n.unsynced.push(change);
            }
        });
    }

    /// Makes the file's data (and size) durable. A failure makes nothing durable.
    pub(crate) async fn fdatasync(&self) -> io::Result<()> {
        if let Err(e) = self.begin(Op::Fdatasync).await {
            let is_log = self.path.extension().is_some_and(|x| x == "log");
            let has_data = || {
                self.with_node(|n| {
                    n.unsynced.iter().any(|c| matches!(c, Change::Write { bytes, .. } if bytes.iter().any(|&b| b != 0)))
                })
            };
            if is_log && self.check_alive().is_ok() && has_data() {
                self.fs.0.borrow_mut().stats.data_sync_eio += 1;
            }
            return Err(e);
        }
        self.with_node(|n| {
            n.durable = n.data.clone();
            n.unsynced.clear();
        });
        Ok(())
    }

    pub(crate) async fn truncate(&self, len: u64) -> io::Result<()> {
        self.begin(Op::Truncate).await?;
        self.with_node(|n| {
            n.data.resize(len as usize, 0);
            n.unsynced.push(Change::SetLen(len));
        });
        Ok(())
    }

    pub(crate) fn file_size(&self) -> io::Result<u64> {
        self.check_alive()?;
        Ok(self.with_node(|n| n.data.len() as u64))
    }

    /// Reserves up to `len`; unless `keep_size`, extends the file (and its durable image)
    /// with zeros. Draws nothing from the seed (see the module docs).
    pub(crate) fn preallocate(&self, len: u64, keep_size: bool) -> io::Result<()> {
        self.check_alive()?;
        if !keep_size {
            self.with_node(|n| {
                let len = len as usize;
                if n.data.len() < len {
                    n.data.resize(len, 0);
                }
                if n.durable.len() < len {
                    n.durable.resize(len, 0);
                }
            });
        }
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether writes are durable on completion (O_DSYNC).
    pub(crate) fn is_dsync(&self) -> bool {
        self.dsync
    }
}
