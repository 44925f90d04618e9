//! The processes `goprobe agent` profiles: finding them (a /proc scan, then exec events),
//! attaching, routing each GC event to its process, refreshing metrics, and detaching on exit,
//! exec or shutdown.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    rc::Rc,
    time::Instant,
};

use tracing::{debug, info, warn};

use super::{
    Candidate, Config, meta,
    os::is_go,
    pprof::PprofDir,
    select,
    snapshot::{Recorder, Snapshots},
};
use crate::{
    analysis::Target,
    clock::{self, Clock},
    export::{
        Exporter, FinalPush,
        resource::{self, ProcessInfo},
    },
    output::pprof,
    probe::{Options, Probes},
    session::{Session, SharedNamer},
    signal::StackNamer,
    text,
};

/// How long a process that just exec'd may take to set its runtime up before it is attached
/// anyway.
///
/// NB: the runtime fills `runtime.gomaxprocs` in schedinit → procresize, after it applied
/// `disableMemoryProfiling` to `MemProfileRate` (src/runtime/proc.go, Go 1.19–1.27); attaching
/// after that keeps the heap-profile sampler choice right. It takes well under a millisecond.
const RUNTIME_SETUP_MAX_MS: u128 = 200;

/// How long one metrics refresh may keep the event loop (see [`Fleet::refresh`]).
const REFRESH_BUDGET: std::time::Duration = std::time::Duration::from_millis(50);

/// Binaries whose analysis is kept for their next process (each a few hundred KiB).
const ANALYSES_KEPT: usize = 64;

/// Binaries remembered as not Go (or not profilable) before the set starts over.
const NOT_GO_KEPT: usize = 4096;

/// Takes after which a stack no take asked a namer for is forgotten by it: longer than the
/// kernel keeps an unreferenced stack (`probe::rotate`), so a row counted on a stack the kernel
/// just deleted is still named.
const NAMER_KEEPS_TAKES: u64 = 4;

/// One profiled process: its session, and what tells it apart from a process that reuses its
/// pid.
pub struct Running {
    start_ticks: u64,
    pub session: Session,
    binary: BinaryKey,
    /// Its pause-triggered snapshots' state; `None` with snapshots off.
    recorder: Option<Recorder>,
}

/// A binary file: device, inode, modification time.
type BinaryKey = (u64, u64, i64);

/// A process that exec'd a Go program, analysed, waiting for its runtime to be set up.
struct Pending {
    target: Target,
    binary: BinaryKey,
    start_ticks: u64,
    attributes: Vec<(&'static str, String)>,
    since: Instant,
    exec_ktime_ns: Option<u64>,
}

/// Every process the agent knows.
pub struct Fleet {
    pub probes: Probes,
    pub options: Options,
    config: Config,
    pub exporter: Exporter,
    /// Unix time of attaches and profile windows.
    clock: Clock,
    own_ns: Option<u64>,
    pub running: HashMap<u32, Running>,
    pending: Vec<Pending>,
    /// Binaries (device, inode) known not to be Go, or not profilable.
    not_go: HashSet<(u64, u64)>,
    /// The analysis of each binary (device, inode, modification time) seen, for the next
    /// process that runs it ([`Target::for_process`]).
    analyses: HashMap<BinaryKey, Target>,
    /// The stack namer of each non-PIE binary with profiled processes: its processes share one
    /// symbolizer and one name cache.
    namers: HashMap<BinaryKey, SharedNamer>,
    /// The process whose metrics [`Self::refresh`] updated last.
    refreshed_last: u32,
    /// Processes not profiled, by reason (logged when the agent stops).
    pub skipped: HashMap<&'static str, u64>,
    /// Pause-triggered snapshots; `None` when off.
    pub snapshots: Option<Snapshots>,
}

impl Fleet {
    pub fn new(probes: Probes, options: Options, config: Config, exporter: Exporter) -> Self {
        Self {
            probes,
            options,
            config,
            exporter,
            clock: Clock::new(),
            own_ns: select::pid_ns("/proc/self/ns/pid"),
            running: HashMap::new(),
            pending: Vec::new(),
            not_go: HashSet::new(),
            analyses: HashMap::new(),
            namers: HashMap::new(),
            refreshed_last: 0,
            skipped: HashMap::new(),
            snapshots: None,
        }
    }

    fn skip(&mut self, pid: u32, reason: &'static str) {
        if reason == "not selected" {
            debug!(pid, reason, "not profiled");
        } else {
            info!(pid, reason, "not profiled");
        }
        *self.skipped.entry(reason).or_default() += 1;
    }

    /// Attaches to every matching Go process already running.
    pub fn scan(&mut self) {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let mut pids: Vec<u32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        for pid in pids {
            if let Some(p) = self.consider(pid, None) {
                self.attach(p);
            }
        }
    }

    /// A process exec'd: whatever it ran before is gone; the new program may be Go.
    pub fn on_exec(&mut self, pid: u32, ktime_ns: u64) {
        debug!(
            pid,
            lag_ms = (clock::monotonic_ns() as u64).saturating_sub(ktime_ns) as f64 / 1e6,
            "exec"
        );
        if self.running.contains_key(&pid) {
            info!(pid, "exec: detaching from the previous program");
            self.remove(pid);
        }
        self.pending.retain(|p| p.target.process.pid != pid);
        if let Some(p) = self.consider(pid, Some(ktime_ns)) {
            self.pending.push(p);
            // The analysis usually outlasts the runtime's setup: attach now if so.
            self.attach_ready();
        }
    }

    /// The process ended.
    pub fn on_exit(&mut self, pid: u32) {
        self.pending.retain(|p| p.target.process.pid != pid);
        if self.running.contains_key(&pid) {
            self.remove(pid);
        }
    }

    /// Selection and analysis of process `pid`; `None` (counted) when it is not profiled.
    fn consider(&mut self, pid: u32, exec_ktime_ns: Option<u64>) -> Option<Pending> {
        if pid == std::process::id() {
            return None;
        }
        let candidate = Candidate::read(pid)?;
        let meta = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
        let file = (meta.dev(), meta.ino());
        if self.not_go.contains(&file) {
            return None;
        }
        if !is_go(pid) {
            if self.not_go.len() >= NOT_GO_KEPT {
                self.not_go.clear();
            }
            self.not_go.insert(file);
            return None;
        }
        if !self.config.select.matches(&candidate, self.own_ns) {
            self.skip(pid, "not selected");
            return None;
        }
        if self.running.len() + self.pending.len() >= self.config.max_targets() {
            warn!(
                pid,
                max_targets = self.config.max_targets(),
                "not profiled: max_targets reached"
            );
            self.skip(pid, "max_targets");
            return None;
        }
        let analysis = Instant::now();
        let key = (meta.dev(), meta.ino(), meta.mtime());
        let analysed = match self.analyses.get(&key).and_then(|t| t.for_process(pid)) {
            Some(r) => r,
            None => Target::analyze(pid),
        };
        let target = match analysed {
            Ok(t) => t,
            Err(_) if select::start_ticks(pid) != Some(candidate.start_ticks) => {
                self.skip(pid, "exited before attach");
                return None;
            }
            Err(e) => {
                warn!(pid, "not profiled: {e}");
                self.skip(pid, "unsupported");
                return None;
            }
        };
        debug!(pid, ms = analysis.elapsed().as_millis() as u64, "analysed");
        if !self.analyses.contains_key(&key)
            && let Some(Ok(copy)) = target.for_process(pid)
        {
            if self.analyses.len() >= ANALYSES_KEPT {
                self.analyses.clear();
            }
            self.analyses.insert(key, copy);
        }
        Some(Pending {
            target,
            binary: key,
            start_ticks: candidate.start_ticks,
            attributes: meta::of_process(pid, &candidate.cgroups),
            since: Instant::now(),
            exec_ktime_ns,
        })
    }

    /// Attaches the processes whose runtime is set up by now.
    pub fn attach_ready(&mut self) {
        let (ready, waiting): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| {
                p.since.elapsed().as_millis() >= RUNTIME_SETUP_MAX_MS
                    || p.target
                        .vars
                        .gomaxprocs
                        .and_then(|a| p.target.process.read_u32(a).ok())
                        .is_some_and(|n| n > 0)
            });
        self.pending = waiting;
        for p in ready {
            self.attach(p);
        }
    }

    fn attach(&mut self, p: Pending) {
        let pid = p.target.process.pid;
        if select::start_ticks(pid) != Some(p.start_ticks) {
            self.skip(pid, "exited before attach");
            return;
        }
        let attaching = Instant::now();
        if let Err(e) = self.probes.attach(&p.target, &self.options) {
            self.probes.detach(pid);
            if select::start_ticks(pid) != Some(p.start_ticks) {
                // It exited while its probes were being attached.
                self.skip(pid, "exited before attach");
                return;
            }
            warn!(pid, "attaching: {}", text::error::chain(&e));
            self.skip(pid, "attach failed");
            return;
        }
        let metrics = if self.exporter.enabled() {
            let info = ProcessInfo {
                pid,
                exe: &p.target.exe,
                go_version: &p.target.go_version.raw,
                service_name: p
                    .attributes
                    .iter()
                    .find(|(k, _)| *k == "service.name")
                    .map(|(_, v)| v.as_str()),
                attributes: &p.attributes,
            };
            self.exporter
                .target(resource::of_process(&info))
                .inspect_err(|e| warn!(pid, "exporting: {e}"))
                .ok()
        } else {
            None
        };
        let since_exec_ms = p
            .exec_ktime_ns
            .map(|t| (clock::monotonic_ns() as u64).saturating_sub(t) as f64 / 1e6);
        info!(
            pid,
            exe = %p.target.exe.display(),
            go = %p.target.go_version,
            uprobes = self.probes.attached(),
            since_exec_ms,
            attach_ms = attaching.elapsed().as_millis() as u64,
            "attached"
        );
        let target = p.target;
        // NB: a PIE binary is loaded at another address in each process: its own namer.
        let namer = match self.namers.get(&p.binary) {
            Some(n) if !target.pie => n.clone(),
            _ => {
                let n = Rc::new(RefCell::new(StackNamer::new(pid, target.gc_start.addr)));
                if !target.pie {
                    self.namers.insert(p.binary, n.clone());
                }
                n
            }
        };
        let session = Session::new(
            target,
            self.options.clone(),
            namer,
            metrics,
            self.clock.now_unix(),
        );
        // The last few cycles and pauses stay for the snapshots; otherwise none.
        let (session, recorder) = match &self.snapshots {
            Some(s) => (
                session.with_recent(super::snapshot::RECENT),
                Some(s.recorder(pid)),
            ),
            None => (session.without_history(), None),
        };
        self.running.insert(
            pid,
            Running {
                start_ticks: p.start_ticks,
                session,
                binary: p.binary,
                recorder,
            },
        );
    }

    /// Detaches `pid` and ends its export (its last values go with the next OTLP push: a slow
    /// collector must not hold the loop up).
    pub fn remove(&mut self, pid: u32) {
        let Some(mut r) = self.running.remove(&pid) else {
            return;
        };
        if !self.running.values().any(|o| o.binary == r.binary) {
            self.namers.remove(&r.binary);
        }
        self.drain();
        let uprobes = self.probes.detach(pid);
        info!(pid, uprobes, remaining = self.probes.attached(), "detached");
        if let Some(m) = r.session.take_metrics() {
            self.exporter.finish_later(m);
        }
    }

    /// Routes the waiting GC events to their processes' sessions, then writes the snapshots
    /// of the pauses over the threshold.
    pub fn drain(&mut self) {
        let running = &mut self.running;
        let snapshots = self.snapshots.as_ref();
        let mut due = Vec::new();
        self.probes.drain(|ev| {
            if let Some(r) = running.get_mut(&ev.tgid) {
                let last = Snapshots::last_other(&r.session);
                let done = r.session.on_event(&ev);
                if let Some(s) = snapshots {
                    let triggers = s.triggers(&r.session, last, done.as_ref());
                    due.extend(triggers.into_iter().map(|t| (ev.tgid, t)));
                }
            }
        });
        let Some(s) = snapshots else { return };
        for (pid, trigger) in due {
            if let Some(Running {
                session,
                recorder: Some(rec),
                ..
            }) = running.get_mut(&pid)
            {
                s.take(&self.probes, session, rec, &trigger, &self.clock);
            }
        }
    }

    /// The snapshots' baselines and goroutine counts (on the metrics tick, after the counts
    /// were read), for at most [`REFRESH_BUDGET`].
    pub fn snapshot_tick(&mut self) {
        let Some(s) = &self.snapshots else { return };
        let started = Instant::now();
        for r in self.running.values_mut() {
            if started.elapsed() >= REFRESH_BUDGET {
                break;
            }
            if let Some(rec) = &mut r.recorder {
                s.tick(&self.probes, &r.session, rec, &self.clock);
            }
        }
    }

    /// Takes the kernel's per-stack rows of the last interval into each process' session (its
    /// exported series and, with `profiles`, its next profiles), then deletes the stacks no
    /// longer referenced and forgets them in the namers: the kernel's maps and goprobe's
    /// memory hold what the last intervals counted, not everything since start.
    pub fn take(&mut self, profiles: bool) {
        let started = Instant::now();
        let stats = match self.probes.take() {
            Ok(s) => s,
            Err(e) => {
                warn!("taking the per-stack rows: {e}");
                return;
            }
        };
        let probes = &self.probes;
        for r in self.running.values_mut() {
            r.session.absorb(probes, profiles);
        }
        let evicted = self.probes.evict_stacks();
        let mut forgotten = 0;
        let mut seen = HashSet::new();
        for r in self.running.values() {
            let namer = r.session.namer();
            // Shared namers once.
            if seen.insert(Rc::as_ptr(namer)) {
                forgotten += namer.borrow_mut().evict(NAMER_KEEPS_TAKES);
            }
        }
        debug!(
            rows = stats.rows,
            evicted,
            forgotten,
            ms = started.elapsed().as_millis() as u64,
            "per-stack rows taken"
        );
    }

    /// Reads each process' goroutine count.
    pub fn sample_goroutines(&mut self) {
        for r in self.running.values_mut() {
            r.session.read_goroutine_count();
        }
    }

    /// Refreshes the exported metrics of the processes, in turn, for at most
    /// [`REFRESH_BUDGET`] (all of them when `all`): the per-stack series of a process are
    /// named every few seconds, which can take a while, and exec events must not wait on it.
    pub fn refresh(&mut self, all: bool) {
        let started = Instant::now();
        let mut pids: Vec<u32> = self.running.keys().copied().collect();
        pids.sort_unstable();
        // Start after the last process refreshed, so that each gets its turn.
        let first = pids.partition_point(|&p| p <= self.refreshed_last);
        pids.rotate_left(first);
        let probes = &self.probes;
        for pid in pids {
            if !all && started.elapsed() >= REFRESH_BUDGET {
                break;
            }
            let Some(r) = self.running.get_mut(&pid) else {
                continue;
            };
            if !r.session.exports() {
                continue;
            }
            let t = Instant::now();
            r.session.refresh_metrics(probes, all);
            debug!(
                pid,
                ms = t.elapsed().as_millis() as u64,
                "metrics refreshed"
            );
            self.refreshed_last = pid;
        }
    }

    /// Writes each process' profiles (of what the takes since the last ones counted, or since
    /// its attach) into `dir`, then rotates it.
    pub fn write_profiles(&mut self, dir: &PprofDir) {
        let now = self.clock.now_unix();
        for (&pid, r) in &mut self.running {
            let profiles = r.session.take_profiles(now);
            let exe = &r.session.target.exe;
            let exe = exe
                .file_name()
                .map_or_else(|| "go".into(), |n| n.to_string_lossy().into_owned());
            for p in profiles.iter().filter(|p| !p.samples.is_empty()) {
                let name = super::pprof::file_name(&exe, pid, p.spec.name, now / 1_000_000_000);
                dir.write(&name, &pprof::encode_gz(p));
            }
        }
        dir.rotate();
    }

    /// Drops the processes that ended without an exit event reaching us (ring buffer full).
    pub fn sweep(&mut self) {
        let gone: Vec<u32> = self
            .running
            .iter()
            .filter(|(pid, r)| select::start_ticks(**pid) != Some(r.start_ticks))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in gone {
            debug!(pid, "gone without an exit event");
            self.remove(pid);
        }
    }

    /// Detaches everything (SIGTERM) and starts the final OTLP push of every process' last
    /// values, which stay on the Prometheus endpoint.
    pub fn shutdown(&mut self) -> FinalPush {
        // Both generations' rows into the final values.
        self.take(false);
        self.take(false);
        self.refresh(true);
        let pids: Vec<u32> = self.running.keys().copied().collect();
        let mut last = Vec::with_capacity(pids.len());
        for pid in pids {
            if let Some(mut r) = self.running.remove(&pid) {
                self.probes.detach(pid);
                last.extend(r.session.take_metrics());
            }
        }
        self.exporter.push_final(last)
    }
}
