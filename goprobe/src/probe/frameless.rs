//! The frameless pc ranges of every attached binary in the kernel, for the perf-event signals'
//! stacks (ebpf/goprobe-ebpf/src/perf.rs): one block of the shared `FRAMELESS` pool per binary,
//! shared by all its processes, and one `FRAMELESS_TARGETS` entry per process saying which
//! block and where the binary's Go text is loaded in it.
//!
//! Ranges are offsets from the Go text start (analysis/binary/frameless.rs), so one block
//! serves every process of a binary, PIE or not: each process' entry carries its own run-time
//! text address. Blocks are found by their content: processes whose binaries have the same
//! ranges (the same file, a copy of it, a PIE binary analysed once per process) share one.
//! When the last process of a block detaches, its space returns to the pool after
//! [`COOLING`]. A binary that does not fit (pool full, or more ranges than `MAX_FRAMELESS`)
//! gets a warning naming it, and its processes' perf samples are dropped and counted
//! (`counter::STACK_FAILED`) rather than given stacks that may miss a caller.

use std::{
    collections::{BTreeMap, HashMap},
    os::fd::{AsFd as _, AsRawFd as _},
    sync::Arc,
    time::{Duration, Instant},
};

use aya::maps::{Array, HashMap as BpfHashMap, Map};
use goprobe_common::{FramelessRange, FramelessTarget, frameless_state};
use tracing::{debug, warn};

use super::{ProbeError, Probes};
use crate::analysis::{Target, binary::frameless::Frameless};

/// How long a released block stays unused: a BPF program that looked the process up just
/// before its entry was deleted may still be searching the block (an RCU read section,
/// microseconds); reusing the space later than that can never show it another binary's ranges.
const COOLING: Duration = Duration::from_secs(1);

/// A binary's ranges, compared and hashed by the ranges alone.
#[derive(Clone, Debug)]
struct Key(Arc<Frameless>);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.ranges == other.0.ranges
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.ranges.hash(state);
    }
}

/// One binary's block of the pool and the processes using it.
#[derive(Debug)]
struct Block {
    base: u32,
    pids: std::collections::BTreeSet<u32>,
}

/// The pool's bookkeeping (user space's copy of what is where).
#[derive(Debug)]
pub(super) struct Pool {
    /// Entries in `FRAMELESS`.
    size: u32,
    /// Free space: start → length.
    free: BTreeMap<u32, u32>,
    /// Released blocks (start, length) and when, until [`COOLING`] has passed.
    cooling: Vec<(Instant, u32, u32)>,
    blocks: HashMap<Key, Block>,
    /// Each attached process' block (absent: its ranges are not loaded).
    by_pid: HashMap<u32, Key>,
    /// `FRAMELESS` mapped into this process (BPF_F_MMAPABLE): one write per block instead of
    /// one syscall per range. `None`: written with map updates.
    mmap: Option<memmap2::MmapMut>,
    /// Whether the mapping was tried.
    mapped: bool,
}

impl Pool {
    /// A pool of `size` entries, all free.
    pub(super) fn new(size: u32) -> Self {
        Self {
            size,
            free: BTreeMap::from([(0, size)]),
            cooling: Vec::new(),
            blocks: HashMap::new(),
            by_pid: HashMap::new(),
            mmap: None,
            mapped: false,
        }
    }

    /// Entries in use by loaded binaries, and the pool's size.
    pub(super) fn usage(&self) -> (u32, u32) {
        let used = self
            .blocks
            .keys()
            .map(|k| k.0.ranges.len() as u32)
            .sum::<u32>();
        (used, self.size)
    }

    /// First-fit space for `n` entries, after returning the blocks cooled long enough.
    fn allocate(&mut self, n: u32) -> Option<u32> {
        let now = Instant::now();
        let (ready, cooling): (Vec<_>, Vec<_>) = std::mem::take(&mut self.cooling)
            .into_iter()
            .partition(|(at, _, _)| now.duration_since(*at) >= COOLING);
        self.cooling = cooling;
        for (_, start, len) in ready {
            self.release(start, len);
        }
        let (&start, &len) = self.free.iter().find(|&(_, &len)| len >= n)?;
        self.free.remove(&start);
        if len > n {
            self.free.insert(start + n, len - n);
        }
        Some(start)
    }

    /// Returns `[start, start + len)` to the free space, merged with its neighbours.
    fn release(&mut self, start: u32, len: u32) {
        let (mut start, mut len) = (start, len);
        if let Some((&s, &l)) = self.free.range(..start).next_back()
            && s + l == start
        {
            self.free.remove(&s);
            start = s;
            len += l;
        }
        if let Some(l) = self.free.remove(&(start + len)) {
            len += l;
        }
        self.free.insert(start, len);
    }
}

impl Probes {
    /// Makes `target`'s frameless ranges the ones its perf samples are fixed with: its binary's
    /// block (written now unless another process of the binary has it), then its entry.
    pub(super) fn load_frameless(&mut self, target: &Target) -> Result<(), ProbeError> {
        let pid = target.process.pid;
        self.forget_frameless(pid);
        let f = &target.frameless;
        let key = Key(f.clone());
        let mut entry = FramelessTarget {
            text: f.text_start.wrapping_add(target.bias),
            text_len: f.text_len,
            state: frameless_state::UNKNOWN,
            ..FramelessTarget::default()
        };
        let base = match self.frameless.blocks.get_mut(&key) {
            Some(b) => {
                b.pids.insert(pid);
                Some(b.base)
            }
            None => self.new_block(target, &key)?,
        };
        if let Some(base) = base {
            entry.base = base;
            entry.n_ranges = f.ranges.len() as u32;
            entry.state = frameless_state::LOADED;
            self.frameless.by_pid.insert(pid, key);
        }
        let map = self
            .ebpf
            .map_mut("FRAMELESS_TARGETS")
            .ok_or(ProbeError::MissingMap {
                map: "FRAMELESS_TARGETS",
            })?;
        let mut m: BpfHashMap<_, u32, FramelessTarget> =
            BpfHashMap::try_from(map).map_err(map_err("FRAMELESS_TARGETS"))?;
        m.insert(pid, entry, 0)
            .map_err(map_err("FRAMELESS_TARGETS"))?;
        let (used, size) = self.frameless.usage();
        debug!(
            pid,
            ranges = entry.n_ranges,
            base = entry.base,
            pool_used = used,
            pool_size = size,
            "frameless ranges set"
        );
        Ok(())
    }

    /// Writes `key`'s ranges into a new block for `target`; `None` (warned) if they do not fit.
    fn new_block(&mut self, target: &Target, key: &Key) -> Result<Option<u32>, ProbeError> {
        let pid = target.process.pid;
        let exe = target.exe.display();
        let f = &key.0;
        if let Some(n) = f.too_many {
            warn!(
                pid,
                "{exe}: {n} frameless ranges, more than the {} the kernel side searches: its CPU \
                 and page-fault samples are dropped (counted as failed stacks)",
                goprobe_common::MAX_FRAMELESS
            );
            return Ok(None);
        }
        let n = f.ranges.len() as u32;
        if n == 0 {
            // Nothing to search (no function table): no space either.
            return Ok(Some(0));
        }
        let Some(base) = self.frameless.allocate(n) else {
            let (used, size) = self.frameless.usage();
            warn!(
                pid,
                "{exe}: no room for its {n} frameless ranges ({used} of {size} in use by other \
                 binaries): its CPU and page-fault samples are dropped (counted as failed stacks)"
            );
            return Ok(None);
        };
        if let Err(e) = self.write_ranges(base, &f.ranges) {
            self.frameless.release(base, n);
            return Err(e);
        }
        self.frameless.blocks.insert(
            key.clone(),
            Block {
                base,
                pids: [pid].into(),
            },
        );
        Ok(Some(base))
    }

    /// Writes `ranges` into `FRAMELESS[base..]`.
    fn write_ranges(&mut self, base: u32, ranges: &[(u32, u32)]) -> Result<(), ProbeError> {
        let map = self
            .ebpf
            .map_mut("FRAMELESS")
            .ok_or(ProbeError::MissingMap { map: "FRAMELESS" })?;
        let pool = &mut self.frameless;
        if !pool.mapped {
            pool.mapped = true;
            pool.mmap = map_pool(map, pool.size);
        }
        if let Some(mem) = pool.mmap.as_mut() {
            let at = base as usize * size_of::<FramelessRange>();
            let len = ranges.len() * size_of::<FramelessRange>();
            if let Some(dst) = mem.get_mut(at..at + len) {
                for (d, &(start, end)) in dst
                    .chunks_exact_mut(size_of::<FramelessRange>())
                    .zip(ranges)
                {
                    // NB: the array's values as the kernel lays them out: `FramelessRange`,
                    // repr(C), two native-endian u32 (kernel/bpf/arraymap.c, elem_size 8).
                    d[..4].copy_from_slice(&start.to_ne_bytes());
                    d[4..].copy_from_slice(&end.to_ne_bytes());
                }
                return Ok(());
            }
        }
        let mut arr: Array<_, FramelessRange> =
            Array::try_from(map).map_err(map_err("FRAMELESS"))?;
        for (i, &(start, end)) in ranges.iter().enumerate() {
            arr.set(base + i as u32, FramelessRange { start, end }, 0)
                .map_err(map_err("FRAMELESS"))?;
        }
        Ok(())
    }

    /// Forgets `pid`'s frameless entry; its binary's block is released with its last process.
    pub(super) fn forget_frameless(&mut self, pid: u32) {
        if let Some(map) = self.ebpf.map_mut("FRAMELESS_TARGETS")
            && let Ok(mut m) = BpfHashMap::<_, u32, FramelessTarget>::try_from(map)
        {
            let _ = m.remove(&pid);
        }
        let pool = &mut self.frameless;
        let Some(key) = pool.by_pid.remove(&pid) else {
            return;
        };
        if let Some(b) = pool.blocks.get_mut(&key) {
            b.pids.remove(&pid);
            if b.pids.is_empty() {
                let base = b.base;
                pool.blocks.remove(&key);
                pool.cooling
                    .push((Instant::now(), base, key.0.ranges.len() as u32));
                debug!(pid, base, "frameless block released");
            }
        }
    }

    /// Frameless ranges in the pool for loaded binaries, and the pool's size (entries of 8
    /// bytes).
    pub fn frameless_usage(&self) -> (u32, u32) {
        self.frameless.usage()
    }
}

/// `FRAMELESS` (an array map of `size` entries created BPF_F_MMAPABLE) mapped writable, or
/// `None` if the kernel refuses.
fn map_pool(map: &Map, size: u32) -> Option<memmap2::MmapMut> {
    let Map::Array(data) = map else {
        return None;
    };
    let fd = data.fd().as_fd().as_raw_fd();
    let len = size as usize * size_of::<FramelessRange>();
    // SAFETY: the mapping is of a BPF array's values, which only this process writes (the BPF
    // programs read them); nothing else aliases it in this process.
    let mapped = unsafe { memmap2::MmapOptions::new().len(len).map_mut(fd) };
    mapped
        .inspect_err(|e| debug!("FRAMELESS not mappable ({e}); writing it entry by entry"))
        .ok()
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> ProbeError {
    move |source| ProbeError::Map { map, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_first_fit_and_merges_freed_space() {
        let mut p = Pool::new(100);
        assert_eq!(p.allocate(30), Some(0));
        assert_eq!(p.allocate(30), Some(30));
        assert_eq!(p.allocate(50), None);
        p.release(0, 30);
        assert_eq!(p.allocate(10), Some(0));
        p.release(30, 30);
        // 10..100 is one free block again.
        assert_eq!(p.free, BTreeMap::from([(10, 90)]));
        assert_eq!(p.allocate(90), Some(10));
        assert_eq!(p.allocate(1), None);
    }

    #[test]
    fn released_blocks_cool_before_reuse() {
        let mut p = Pool::new(10);
        assert_eq!(p.allocate(10), Some(0));
        p.cooling.push((Instant::now(), 0, 10));
        assert_eq!(p.allocate(1), None);
        p.cooling[0].0 -= COOLING;
        assert_eq!(p.allocate(1), Some(0));
    }
}
