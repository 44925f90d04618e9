//! More than one process on the same probes (`goprobe agent`): which uprobe serves which
//! processes, detaching one process, and the process lifecycle tracepoints.

use std::{
    collections::{BTreeSet, HashMap as StdHashMap},
    os::unix::fs::MetadataExt as _,
    path::Path,
};

use aya::{
    Pod,
    maps::{HashMap, MapData, PerCpuHashMap, RingBuf},
    programs::{RawTracePoint, UProbe, uprobe::UProbeLinkId},
};
use goprobe_common::{
    AllocConfig, AllocSampleKey, AssistKey, CycleKey, GoroutineCounts, PidNs, SiteCounts, SiteKey,
    TargetConfig,
};
use tracing::{debug, warn};

use super::{ProbeError, Probes};

/// A binary file: (device, inode).
pub(super) type FileId = (u64, u64);

/// The file `path` names (following symlinks such as `/proc/<pid>/exe`); (0, 0) if it cannot be
/// read, which only costs the sharing of its probes.
pub(super) fn file_id(path: &Path) -> FileId {
    std::fs::metadata(path).map_or((0, 0), |m| (m.dev(), m.ino()))
}

/// One uprobe: a program on a file offset of a binary, for one process or (`pid` 0) for all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct LinkKey {
    pub(super) program: &'static str,
    pub(super) file: FileId,
    pub(super) file_offset: u64,
    pub(super) pid: u32,
}

/// An attached uprobe and the attached processes it serves.
#[derive(Debug)]
struct Link {
    id: UProbeLinkId,
    pids: BTreeSet<u32>,
}

/// Every uprobe attached.
#[derive(Debug, Default)]
pub(super) struct Links(StdHashMap<LinkKey, Link>);

impl Links {
    /// Marks the uprobe `key` as serving `pid` too; false when there is no such uprobe yet.
    pub(super) fn serve(&mut self, key: &LinkKey, pid: u32) -> bool {
        self.0.get_mut(key).map(|l| l.pids.insert(pid)).is_some()
    }

    pub(super) fn insert(&mut self, key: LinkKey, id: UProbeLinkId, pid: u32) {
        self.0.insert(
            key,
            Link {
                id,
                pids: BTreeSet::from([pid]),
            },
        );
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes `pid` from every uprobe; returns those that serve no process any more.
    fn release(&mut self, pid: u32) -> Vec<(&'static str, UProbeLinkId)> {
        let keys: Vec<LinkKey> = self
            .0
            .iter_mut()
            .filter_map(|(k, l)| (l.pids.remove(&pid) && l.pids.is_empty()).then(|| k.clone()))
            .collect();
        keys.into_iter()
            .filter_map(|k| self.0.remove(&k).map(|l| (k.program, l.id)))
            .collect()
    }
}

/// Removes the entries of `$map` (a `HashMap` or `PerCpuHashMap` of `$k` to `$v`) whose key
/// belongs to `$pid` by `$tgid`. A macro: the two map types share no trait for `keys`/`remove`.
macro_rules! forget {
    ($probes:ident, $ty:ident<$k:ty, $v:ty>, $map:literal, $pid:expr, $tgid:expr) => {{
        let tgid: fn(&$k) -> u32 = $tgid;
        if let Some(m) = $probes.ebpf.map_mut($map)
            && let Ok(mut m) = $ty::<_, $k, $v>::try_from(m)
        {
            let keys: Vec<$k> = m
                .keys()
                .filter_map(Result::ok)
                .filter(|k| tgid(k) == $pid)
                .collect();
            for k in keys {
                let _ = m.remove(&k);
            }
        }
    }};
}

impl Probes {
    /// Stops profiling `pid`: detaches the uprobes no other attached process uses, forgets its
    /// settings and per-stack counts in the maps, and restores what goprobe changed in it (if it
    /// still runs the same program). Returns the number of uprobes detached.
    pub fn detach(&mut self, pid: u32) -> usize {
        let released = self.links.release(pid);
        let n = released.len();
        let mut owned = Vec::with_capacity(n);
        for (program, id) in released {
            let prog: Option<&mut UProbe> = self
                .ebpf
                .program_mut(program)
                .and_then(|p| p.try_into().ok());
            match prog.map(|p| p.take_link(id)) {
                Some(Ok(link)) => owned.push(link),
                Some(Err(e)) => warn!(pid, program, "detaching: {e}"),
                None => {}
            }
        }
        self.bury(owned);
        forget!(self, HashMap<u32, TargetConfig>, "TARGETS", pid, |&k| k);
        self.forget_frameless(pid);
        forget!(self, HashMap<u32, AllocConfig>, "ALLOC_TARGETS", pid, |&k| k);
        forget!(self, PerCpuHashMap<u32, GoroutineCounts>, "GOROUTINE_COUNTS", pid, |&k| k);
        forget!(self, HashMap<SiteKey, SiteCounts>, "SITES", pid, |k| k.tgid);
        forget!(self, HashMap<AllocSampleKey, u64>, "ALLOC_SAMPLES", pid, |k| k.tgid);
        forget!(self, HashMap<AssistKey, u64>, "ASSIST_BY_STACK", pid, |k| k.tgid);
        forget!(self, HashMap<CycleKey, u64>, "ASSIST_BY_CYCLE", pid, |k| k.tgid);
        // Dropping the override restores runtime.MemProfileRate; its /proc/<pid>/mem handle
        // belongs to the old image, so after an exec the write fails instead of landing in the
        // new program.
        self.rate_overrides.retain(|o| o.pid() != pid);
        self.fault_counts.forget(pid);
        if self.links.is_empty() {
            // Nobody left to sample: the per-CPU perf events go too.
            self.close_perf();
        }
        debug!(pid, uprobes = n, "detached");
        n
    }

    /// Stops counting process `pid` in the programs that select processes by pid, the per-CPU
    /// CPU and page fault samplers (`TARGETS`), keeping what was counted. For a target that
    /// exited or exec()ed: its pid may name another process before the probes are detached.
    /// The uprobes need nothing: each belongs to the task it was attached to.
    pub fn stop_counting(&mut self, pid: u32) {
        forget!(self, HashMap<u32, TargetConfig>, "TARGETS", pid, |&k| k);
    }

    /// Keeps released links until [`Self::reap`] detaches them.
    ///
    /// NB: each uprobe unregistration waits for an SRCU grace period in the kernel
    /// (kernel/events/uprobes.c, uprobe_unregister_sync), tens of milliseconds each, and
    /// registrations meanwhile wait on the same locks: measured here, attaching the 11 uprobes
    /// of a program that had just exec'd took 578 ms while its old ones were being detached,
    /// 10–30 ms otherwise. So links are detached later, on their own thread. A released uprobe
    /// stays on a binary no attached process runs; the programs skip processes not in
    /// `TARGETS` meanwhile.
    pub(super) fn bury<T: Send + 'static>(&mut self, links: Vec<T>) {
        if !links.is_empty() {
            self.graveyard
                .push((std::time::Instant::now(), Box::new(links)));
        }
    }

    /// Detaches, on a thread of their own, the links released more than `after` ago.
    pub fn reap(&mut self, after: std::time::Duration) {
        let (old, young): (Vec<_>, Vec<_>) = std::mem::take(&mut self.graveyard)
            .into_iter()
            .partition(|(at, _)| at.elapsed() >= after);
        self.graveyard = young;
        if !old.is_empty() {
            std::thread::spawn(move || drop(old));
        }
    }

    /// Attaches the process lifecycle tracepoints (`sched:sched_process_exec`, every exec;
    /// `sched:sched_process_exit`, attached processes) and returns the ring buffer they fill
    /// with [`goprobe_common::LifecycleEvent`]s.
    pub fn watch_lifecycle(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        for (program, event) in [
            ("process_exec", "sched_process_exec"),
            ("process_exit", "sched_process_exit"),
        ] {
            let prog: &mut RawTracePoint = self
                .ebpf
                .program_mut(program)
                .ok_or(ProbeError::MissingProgram { program })?
                .try_into()
                .map_err(|source| ProbeError::LoadProgram { program, source })?;
            prog.load()
                .map_err(|source| ProbeError::LoadProgram { program, source })?;
            prog.attach(event)
                .map_err(|source| ProbeError::Tracepoint { event, source })?;
        }
        let map = self
            .ebpf
            .take_map("LIFECYCLE")
            .ok_or(ProbeError::MissingMap { map: "LIFECYCLE" })?;
        RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            map: "LIFECYCLE",
            source,
        })
    }

    /// Makes the programs number processes in goprobe's own pid namespace when that is not the
    /// initial one (a container, a sidecar sharing its pod's processes), so that the pids in
    /// the maps are the ones /proc shows here.
    pub(super) fn set_pid_namespace(&mut self) -> Result<(), ProbeError> {
        // NB: PROC_PID_INIT_INO, the inode of the initial pid namespace
        // (include/linux/proc_ns.h).
        const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;
        let Ok(meta) = std::fs::metadata("/proc/self/ns/pid") else {
            return Ok(());
        };
        if meta.ino() == INIT_PID_NS_INO {
            return Ok(());
        }
        let map_err = |source| ProbeError::Map {
            map: "PID_NS",
            source,
        };
        let map = self
            .ebpf
            .map_mut("PID_NS")
            .ok_or(ProbeError::MissingMap { map: "PID_NS" })?;
        let mut arr: aya::maps::Array<_, PidNs> =
            aya::maps::Array::try_from(map).map_err(map_err)?;
        let ns = PidNs {
            dev: meta.dev(),
            ino: meta.ino(),
        };
        arr.set(0, ns, 0).map_err(map_err)?;
        debug!(?ns, "numbering processes in goprobe's pid namespace");
        Ok(())
    }

    /// Attaches one uprobe to this process' own executable, at its entry point, and detaches
    /// it: whether the kernel lets this process open uprobe events (`goprobe agent --check`).
    pub fn try_uprobe(&mut self) -> Result<(), ProbeError> {
        use object::Object as _;
        let program = "gc_start_entry";
        let exe = std::path::PathBuf::from("/proc/self/exe");
        let data = std::fs::read(&exe).map_err(ProbeError::OwnExe)?;
        let entry = object::File::parse(&*data).map_or(0, |f| f.entry());
        let offset = crate::analysis::binary::elf::ElfInfo::parse(&data, &[])
            .ok()
            .and_then(|e| e.file_offset(entry))
            .unwrap_or(0);
        let prog = self.uprobe(program)?;
        let pid = std::process::id();
        let scope = aya::programs::uprobe::UProbeScope::OneProcess(
            std::num::NonZeroU32::new(pid).unwrap_or(std::num::NonZeroU32::MIN),
        );
        let id = prog
            .attach(offset, &exe, scope)
            .map_err(|source| ProbeError::Attach {
                program,
                symbol: "the entry point of goprobe itself",
                offset,
                pid,
                source,
            })?;
        let _ = prog.detach(id);
        Ok(())
    }

    /// Lifecycle events dropped in the kernel (ring buffer full).
    pub fn lost_lifecycle_events(&self) -> u64 {
        self.counter(goprobe_common::counter::LIFECYCLE_FULL)
    }
}

/// Per-CPU maps read at one time, by map name: when, and their [`Rows`].
pub(super) type Snapshots =
    std::cell::RefCell<StdHashMap<&'static str, (std::time::Instant, Box<dyn std::any::Any>)>>;

/// Per-process rows of one per-stack map, read at one time.
pub(super) type Rows<K, V> = StdHashMap<u32, Vec<(K, V)>>;

impl Probes {
    /// The entries of per-stack hash map `map` that belong to process `pid` (by `tgid`). With [`super::Scope::Shared`] the whole map is read once and served
    /// from memory for [`SNAPSHOT_AGE`]: a refresh of every target then reads it once, not once
    /// per target (200 targets × thousands of entries × two syscalls each, every few seconds).
    pub(super) fn rows<K: Pod + 'static, V: Pod + 'static>(
        &self,
        map: &'static str,
        pid: u32,
        tgid: fn(&K) -> u32,
    ) -> Vec<(K, V)> {
        let read = |only: Option<u32>| -> Rows<K, V> {
            let mut rows: Rows<K, V> = StdHashMap::new();
            let Some(m) = self.ebpf.map(map) else {
                return rows;
            };
            let Ok(m) = HashMap::<_, K, V>::try_from(m) else {
                return rows;
            };
            for (k, v) in m.iter().filter_map(Result::ok) {
                let t = tgid(&k);
                if only.is_none_or(|p| p == t) {
                    rows.entry(t).or_default().push((k, v));
                }
            }
            rows
        };
        if self.scope != super::Scope::Shared && !self.rotation.on {
            return read(Some(pid)).remove(&pid).unwrap_or_default();
        }
        let mut cache = self.snapshots.borrow_mut();
        // Rows taken ([`Probes::take`]) are served as taken, until the next take.
        let taken = self.rotation.on && TAKEN_MAPS.contains(&map);
        let stale = !taken
            && cache
                .get(map)
                .is_none_or(|(at, _)| at.elapsed() >= SNAPSHOT_AGE);
        if stale {
            cache.insert(map, (std::time::Instant::now(), Box::new(read(None))));
        }
        cache
            .get(map)
            .and_then(|(_, rows)| rows.downcast_ref::<Rows<K, V>>())
            .and_then(|rows| rows.get(&pid))
            .cloned()
            .unwrap_or_default()
    }
}

/// The maps whose rows [`Probes::take`] takes.
const TAKEN_MAPS: [&str; 3] = ["SITES", "ALLOC_SAMPLES", "ASSIST_BY_STACK"];

/// How long one read of a per-stack map serves the targets' refreshes (agent mode).
const SNAPSHOT_AGE: std::time::Duration = std::time::Duration::from_millis(500);
