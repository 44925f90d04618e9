//! Loading goprobe's BPF programs, attaching them to a [`Target`], and draining what they report.

pub mod alloc;
pub mod budget;
mod frameless;
pub mod goroutines;
mod load;
pub mod perf;
pub mod rotate;
pub mod sites;
pub mod stacks;
pub mod stats;
mod targets;

use std::{num::NonZeroU32, os::fd::AsRawFd};

use aya::{
    Ebpf, EbpfError,
    maps::{HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{ProgramError, UProbe, uprobe::UProbeScope},
};
use goprobe_common::{StwEvent, TargetConfig, counter, stw_abi, stw_exit};
use tracing::{debug, info_span};

use crate::analysis::{FunctionPlan, Target, process::memprofile::RateOverride};

/// The BPF object built by goprobe/build.rs.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/goprobe"));

/// Reader of the BPF programs' aya-log messages; they reach `tracing` through the `log` bridge.
pub type BpfLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// Why probes could not be loaded or attached.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this goprobe binary was built without its BPF programs (AYA_BUILD_SKIP); rebuild with \
         `cargo xtask build`"
    )]
    NoObject,
    #[error("loading the BPF object")]
    Load(#[source] EbpfError),
    #[error("BPF program {program} is missing from the object")]
    MissingProgram { program: &'static str },
    #[error("BPF map {map} is missing from the object")]
    MissingMap { map: &'static str },
    #[error("BPF map {map}")]
    Map { map: &'static str, source: MapError },
    #[error("loading BPF program {program} into the kernel")]
    LoadProgram {
        program: &'static str,
        source: ProgramError,
    },
    #[error("attaching {program} to {symbol}+{offset:#x} in pid {pid}")]
    Attach {
        program: &'static str,
        symbol: &'static str,
        offset: u64,
        pid: u32,
        source: ProgramError,
    },
    #[error(
        "opening the {event} perf event on CPU {cpu} for {program} (needs CAP_PERFMON or root; \
         --no-page-faults and --cpu-hz 0 turn the perf-event signals off)"
    )]
    PerfEvent {
        program: &'static str,
        event: &'static str,
        cpu: u32,
        source: ProgramError,
    },
    #[error("attaching to the {event} raw tracepoint (needs CAP_BPF and CAP_PERFMON, or root)")]
    Tracepoint {
        event: &'static str,
        source: ProgramError,
    },
    #[error("reading goprobe's own executable (/proc/self/exe)")]
    OwnExe(#[source] std::io::Error),
    #[error("reading the online CPUs ({path})")]
    OnlineCpus {
        path: &'static str,
        source: std::io::Error,
    },
}

/// How allocations are watched (`goprobe attach --alloc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AllocMode {
    /// Not at all.
    Off,
    /// A sample of allocations, weighted into estimates of all bytes and objects: the runtime's
    /// own heap-profile sampler, turned on for the window when the program has it off
    /// ([`crate::analysis::process::memprofile`]), else the span-refill sampler.
    #[default]
    Sampled,
    /// The span-refill sampler, which never writes to the target (costlier than `Sampled`).
    Spans,
    /// Every allocation, counted in the kernel per stack.
    Exact,
}

/// Which signals to watch beyond GC pauses, and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub alloc: AllocMode,
    /// On-CPU sampling frequency (per CPU, Hz); 0 turns CPU sampling off.
    pub cpu_hz: u32,
    /// Minor and major page faults of the target's threads.
    pub page_faults: bool,
    /// Goroutine count samples (read from memory: free for the target).
    pub goroutines: bool,
    /// Goroutine creation sites and created/exited counts: an entry probe on `runtime.newproc`
    /// and one on goroutine exit, about 6 µs of the target's time per goroutine (`cargo xtask
    /// bench`), so off by default.
    pub goroutine_sites: bool,
    /// Faults per page-fault stack sample (perf sample period, per CPU); the totals are exact
    /// whatever it is.
    pub page_fault_period: u32,
    /// Per-second caps on each signal's BPF work.
    pub budget: budget::Budget,
    /// The `runtime.MemProfileRate` goprobe writes (bytes per sample) in `Sampled` mode into a
    /// program that has the runtime's sampler off.
    pub alloc_rate: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            alloc: AllocMode::default(),
            cpu_hz: 97,
            page_faults: true,
            goroutines: true,
            goroutine_sites: false,
            page_fault_period: perf::PAGE_FAULT_PERIOD,
            budget: budget::Budget::default(),
            alloc_rate: crate::analysis::process::memprofile::DEFAULT_RATE,
        }
    }
}

impl Options {
    /// The caps written into the kernel: `budget`, without the allocation cap in exact mode,
    /// which is asked to count every allocation.
    pub fn effective_budget(&self) -> budget::Budget {
        let mut b = self.budget;
        if self.alloc == AllocMode::Exact {
            b.caps[goprobe_common::budget_signal::ALLOC as usize] = 0;
        }
        b
    }
}

/// Which processes a uprobe fires for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One uprobe per (site, process): `goprobe attach`, where other processes running the same
    /// binary must not pay for probes they do not need.
    OneProcess,
    /// One uprobe per (site, binary inode) for every process mapping it, shared by the attached
    /// processes of that binary (`goprobe agent`); the programs skip the others (`TARGETS`).
    Shared,
}

/// Loaded BPF programs and the maps user space reads.
pub struct Probes {
    ebpf: Ebpf,
    events: RingBuf<MapData>,
    scope: Scope,
    /// Attached uprobes and the processes each serves.
    links: targets::Links,
    /// The perf events, open while any process is attached (per CPU, for every process).
    perf_links: Vec<(&'static str, aya::programs::perf_event::PerfEventLinkId)>,
    /// Per-CPU maps read for every target at once, by map (agent mode; `per_cpu_rows`).
    snapshots: targets::Snapshots,
    /// Links released by `detach`, with when, waiting for `reap`.
    graveyard: Vec<(std::time::Instant, Box<dyn Send>)>,
    /// Each attached process' page-fault counts at attach, and the last read (perf.rs).
    fault_counts: perf::FaultCounters,
    /// Targets whose `runtime.MemProfileRate` goprobe set; restored when dropped, after `ebpf`
    /// (fields drop in order): the probes are gone by then.
    rate_overrides: Vec<RateOverride>,
    /// Which block of the `FRAMELESS` pool holds each attached binary's ranges.
    frameless: frameless::Pool,
    /// Taking the per-stack rows and evicting stacks (`goprobe agent`, see [`rotate`]).
    rotation: rotate::Rotation,
}

impl Probes {
    /// Loads the BPF object (maps are created, programs not yet verified), for uprobes
    /// attached per process.
    pub fn load() -> Result<Self, ProbeError> {
        Self::load_with(Scope::OneProcess)
    }

    /// Loads the BPF object; uprobes are attached with `scope`.
    pub fn load_with(scope: Scope) -> Result<Self, ProbeError> {
        if BPF_OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        // NB: one binary's frameless ranges at most for one process; the agent's pool holds many.
        let pool = match scope {
            Scope::OneProcess => goprobe_common::MAX_FRAMELESS,
            Scope::Shared => goprobe_common::FRAMELESS_POOL,
        };
        let mut ebpf = load::load(BPF_OBJECT, pool).map_err(ProbeError::Load)?;
        let map = ebpf
            .take_map("STW_EVENTS")
            .ok_or(ProbeError::MissingMap { map: "STW_EVENTS" })?;
        let events = RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            map: "STW_EVENTS",
            source,
        })?;
        let mut probes = Self {
            ebpf,
            events,
            scope,
            links: targets::Links::default(),
            perf_links: Vec::new(),
            graveyard: Vec::new(),
            snapshots: Default::default(),
            rate_overrides: Vec::new(),
            frameless: frameless::Pool::new(pool),
            fault_counts: Default::default(),
            rotation: Default::default(),
        };
        probes.set_pid_namespace()?;
        Ok(probes)
    }

    /// Bridges the programs' aya-log messages into `tracing`, if the object has any.
    pub fn take_logger(&mut self) -> Option<BpfLogger> {
        aya_log::EbpfLogger::init(&mut self.ebpf)
            .inspect_err(|e| debug!("no BPF logs: {e}"))
            .ok()
    }

    /// Registers `target`'s constants and attaches every GC probe to it, and the probes of the
    /// signals `options` asks for.
    pub fn attach(&mut self, target: &Target, options: &Options) -> Result<(), ProbeError> {
        let pid = target.process.pid;
        let _span = info_span!("attach", pid).entered();
        let l = &target.layout;
        let config = TargetConfig {
            stw_abi: l.stw_abi,
            off_work_cycles: l.work_cycles,
            work_addr: target.vars.work,
            memstats_addr: target.vars.memstats,
            off_work_pause_ns: l.work_pause_ns,
            off_work_pause_start: l.work_pause_start.unwrap_or(0),
            off_work_user_forced: l.work_user_forced,
            off_memstats_numgc: l.memstats_numgc,
            off_g_m: l.g_m,
            off_m_curg: l.m_curg,
            off_m_preemptoff: l.m_preemptoff.unwrap_or(0),
            stw_exit: if target.stw_exits.is_some() {
                stw_exit::CALLERS
            } else {
                stw_exit::RETS
            },
            gc_controller_addr: target.vars.gc_controller.unwrap_or(0),
            off_work_t: l.cycle.work_t,
            off_work_heap: l.cycle.work_heap,
            off_gcc_gc_percent: l.cycle.gcc_gc_percent,
            off_gcc_memory_limit: l.cycle.gcc_memory_limit,
            off_gcc_last_heap_goal: l.cycle.gcc_last_heap_goal.unwrap_or(0),
        };
        if options.page_faults || options.cpu_hz > 0 {
            // Before `TARGETS`: the perf programs may already run for every process (agent).
            self.load_frameless(target)?;
        }
        let map = self
            .ebpf
            .map_mut("TARGETS")
            .ok_or(ProbeError::MissingMap { map: "TARGETS" })?;
        let mut targets: HashMap<_, u32, TargetConfig> =
            HashMap::try_from(map).map_err(|source| ProbeError::Map {
                map: "TARGETS",
                source,
            })?;
        targets
            .insert(pid, config, 0)
            .map_err(|source| ProbeError::Map {
                map: "TARGETS",
                source,
            })?;

        // Order matters for a clean start: exits before entries, so that no entry state is left
        // waiting for an exit probe that is not there yet.
        let ends: Vec<&FunctionPlan> = match &target.stw_exits {
            Some(callers) => callers.iter().collect(),
            None => vec![&target.start_the_world],
        };
        let mut sites: Vec<(&'static str, &FunctionPlan, u64)> = ends
            .into_iter()
            .flat_map(|p| {
                p.sites
                    .rets
                    .iter()
                    .map(move |&off| ("stw_start_ret", p, off))
            })
            .collect();
        sites.push((
            "stw_start_entry",
            &target.start_the_world,
            target.start_the_world.sites.entry,
        ));
        if stw_abi::probes_stop(l.stw_abi) {
            sites.push((
                "stw_stop_entry",
                &target.stop_the_world,
                target.stop_the_world.sites.entry,
            ));
        }
        sites.push((
            "gc_start_entry",
            &target.gc_start,
            target.gc_start.sites.entry,
        ));
        sites.extend(stacks::sites(target));
        self.attach_uprobes(target, &sites)?;
        self.set_budget(&options.effective_budget())?;
        self.attach_goroutines(target, options)?;
        self.attach_perf(target, options)?;
        self.attach_alloc(target, options)?;
        Ok(())
    }

    /// Attaches each (program, function, site offset) of `sites` to `target`'s executable,
    /// loading a program the first time it is used; with [`Scope::Shared`] a site another
    /// process of the same binary already has is only marked as serving `target` too.
    pub(crate) fn attach_uprobes(
        &mut self,
        target: &Target,
        sites: &[(&'static str, &FunctionPlan, u64)],
    ) -> Result<(), ProbeError> {
        let pid = target.process.pid;
        let exe = target.process.exe_link();
        let file = targets::file_id(&exe);
        let (scope, scope_pid) = match self.scope {
            Scope::OneProcess => (
                UProbeScope::OneProcess(NonZeroU32::new(pid).unwrap_or(NonZeroU32::MIN)),
                pid,
            ),
            Scope::Shared => (UProbeScope::AllProcesses, 0),
        };
        for &(program, plan, offset) in sites {
            let file_offset = plan.file_offset + offset;
            let key = targets::LinkKey {
                program,
                file,
                file_offset,
                pid: scope_pid,
            };
            if self.links.serve(&key, pid) {
                continue;
            }
            let prog = self.uprobe(program)?;
            let id =
                prog.attach(file_offset, &exe, scope)
                    .map_err(|source| ProbeError::Attach {
                        program,
                        symbol: plan.symbol,
                        offset,
                        pid,
                        source,
                    })?;
            debug!(
                program,
                symbol = plan.symbol,
                offset,
                file_offset,
                "attached"
            );
            self.links.insert(key, id, pid);
        }
        Ok(())
    }

    /// Uprobe program `program`, loaded into the kernel the first time it is asked for.
    pub(crate) fn uprobe(&mut self, program: &'static str) -> Result<&mut UProbe, ProbeError> {
        let prog: &mut UProbe = self
            .ebpf
            .program_mut(program)
            .ok_or(ProbeError::MissingProgram { program })?
            .try_into()
            .map_err(|source| ProbeError::LoadProgram { program, source })?;
        if prog.fd().is_err() {
            prog.load()
                .map_err(|source| ProbeError::LoadProgram { program, source })?;
        }
        Ok(prog)
    }

    /// Number of uprobes attached.
    pub fn attached(&self) -> usize {
        self.links.len()
    }

    /// The ring buffer's file descriptor, readable when events are waiting.
    pub fn events_fd(&self) -> std::os::fd::RawFd {
        self.events.as_raw_fd()
    }

    /// Takes every event waiting in the ring buffer.
    pub fn drain(&mut self, mut f: impl FnMut(StwEvent)) {
        while let Some(item) = self.events.next() {
            if item.len() >= size_of::<StwEvent>() {
                // SAFETY: the kernel side writes exactly one StwEvent per record; read_unaligned
                // because ring buffer records are only 8-byte aligned.
                f(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<StwEvent>()) });
            }
        }
    }

    /// Events the kernel side had to drop (ring buffer or pending-STW map full).
    pub fn lost_events(&self) -> u64 {
        self.counter(counter::RINGBUF_FULL) + self.counter(counter::PENDING_FULL)
    }

    /// One slot of the per-CPU `COUNTERS`, summed over CPUs (0 if unreadable).
    pub(crate) fn counter(&self, index: u32) -> u64 {
        let Some(map) = self.ebpf.map("COUNTERS") else {
            return 0;
        };
        let Ok(counters) = PerCpuArray::<_, u64>::try_from(map) else {
            return 0;
        };
        counters
            .get(&index, 0)
            .map(|per_cpu| per_cpu.iter().sum::<u64>())
            .unwrap_or(0)
    }
}
