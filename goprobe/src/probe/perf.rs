//! The perf-event signals (ebpf/goprobe-ebpf/src/perf.rs): page faults and on-CPU samples,
//! and the kernel's own page-fault counts of each process at attach (the exact totals).
//!
//! One software perf event per online CPU and signal, for all processes, each running a BPF
//! program that keeps only attached processes (`TARGETS`) and counts per user stack into
//! `SITES`.
//!
//! Why per CPU rather than per thread: a Go process already has its threads when goprobe
//! attaches (sysmon, the Ms of every P, template threads), and makes more at any time (blocking
//! syscalls, cgo). Per-thread events with `inherit` only follow threads cloned *after* the
//! event is opened, so each existing thread needs its own (a /proc/<pid>/task walk racing with
//! thread creation, N×3 file descriptors, one more set per new target). Per-CPU events see
//! every thread from the first instant, cost `ncpu × 3` descriptors whatever the target, and
//! serve every attached process at once; the price is that the programs run for every page
//! fault and tick of the machine, where they stop after one hash lookup (`cargo xtask bench`
//! measures the cost to the target).

use aya::{
    programs::{
        PerfEvent,
        perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
    util::online_cpus,
};
use std::{collections::HashMap, sync::Mutex};

use tracing::debug;

use super::{Options, ProbeError, Probes};
use crate::analysis::{Target, process};

/// Faults per page-fault stack sample by default (`--page-fault-period`). A sample costs the
/// faulting thread about 1–1.5 µs (a stack walk; `--bpf-stats`), against 4.4 µs for every fault
/// at period 1: a program faulting 8,600 times a second (the allocation-heavy service of issue
/// 19) pays 0.4 ms a second, 0.04%, and gets 270 samples a second, enough for its heaviest
/// stacks within a few percent in a minute. The page-fault budget (1000 runs per CPU and
/// second) bounds a fault storm at about 0.15% of a CPU.
pub const PAGE_FAULT_PERIOD: u32 = 32;

/// Each attached process' page-fault counts (`/proc/<pid>/stat` minflt, majflt) at attach and
/// at the last read, so that a process that has gone still has its totals until then.
#[derive(Debug, Default)]
pub(super) struct FaultCounters(Mutex<HashMap<u32, FaultWindow>>);

#[derive(Clone, Copy, Debug)]
struct FaultWindow {
    at_attach: process::Faults,
    last: process::Faults,
}

impl FaultCounters {
    /// Takes `pid`'s counts now as its zero (unless already attached).
    fn attach(&self, pid: u32) {
        let now = match process::faults(pid) {
            Ok(n) => n,
            Err(e) => {
                debug!(pid, "page-fault counts unreadable at attach: {e}");
                return;
            }
        };
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(pid).or_insert(FaultWindow {
            at_attach: now,
            last: now,
        });
    }

    /// Forgets `pid` (detached).
    pub(super) fn forget(&self, pid: u32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
    }
}

impl Probes {
    /// Minor and major faults of `pid` since attach: from `now`, its counts just read, or, when
    /// they could not be read or are another process' (the process is gone, its pid reused),
    /// from the last read; with whether `now` was used. None when the counts were not taken at
    /// attach.
    pub fn faults_since_attach(
        &self,
        pid: u32,
        now: Option<process::Faults>,
    ) -> Option<((u64, u64), bool)> {
        let mut m = self
            .fault_counts
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let w = m.get_mut(&pid)?;
        let now = now.filter(|n| n.start_ticks == w.at_attach.start_ticks);
        if let Some(n) = now {
            w.last = n;
        }
        let since = (
            w.last.minor.saturating_sub(w.at_attach.minor),
            w.last.major.saturating_sub(w.at_attach.major),
        );
        Some((since, now.is_some()))
    }

    /// Opens the perf events `options` asks for (page faults, CPU samples) on every online CPU,
    /// unless open already. `attach` has told the programs where `target`'s frameless code is
    /// (its binary's ranges, loaded once per binary: probe/frameless.rs).
    pub(super) fn attach_perf(
        &mut self,
        target: &Target,
        options: &Options,
    ) -> Result<(), ProbeError> {
        let mut events: Vec<(&'static str, &'static str, SoftwareEvent, SamplePolicy)> = Vec::new();
        if options.page_faults {
            self.fault_counts.attach(target.process.pid);
            // NB: sampled for stacks only, one sample per `page_fault_period` faults of the CPU
            // (any process); the programs weight each sample by its period, and the page-fault
            // budget caps the samples per second. Not frequency mode (attr.freq): on Linux 6.18
            // per-CPU page-fault events at sample_freq 100 took 14 samples in 6 s on two CPUs
            // (the period adapts at an overflow only when the last one was under two ticks ago,
            // kernel/events/core.c `__perf_event_account_interrupt`, so after a burst it stays
            // long), and the target's faults got none. The kernel emits these events from
            // mm/memory.c `mm_account_fault` once a fault is handled, where it also counts the
            // task's min_flt/maj_flt, which the totals are taken from (signal/pagefault.rs).
            let policy = SamplePolicy::Period(u64::from(options.page_fault_period.max(1)));
            events.push((
                "page_fault_min",
                "page-faults-min",
                SoftwareEvent::PageFaultsMin,
                policy,
            ));
            events.push((
                "page_fault_maj",
                "page-faults-maj",
                SoftwareEvent::PageFaultsMaj,
                policy,
            ));
        }
        if options.cpu_hz > 0 {
            events.push((
                "cpu_sample",
                "cpu-clock",
                SoftwareEvent::CpuClock,
                SamplePolicy::Frequency(u64::from(options.cpu_hz)),
            ));
        }
        if events.is_empty() || !self.perf_links.is_empty() {
            // NB: the events are open for every process already; each target's frameless
            // ranges were loaded by `attach` (probe/frameless.rs).
            return Ok(());
        }
        let cpus =
            online_cpus().map_err(|(path, source)| ProbeError::OnlineCpus { path, source })?;
        for (program, event, config, policy) in events {
            let prog: &mut PerfEvent = self
                .ebpf
                .program_mut(program)
                .ok_or(ProbeError::MissingProgram { program })?
                .try_into()
                .map_err(|source| ProbeError::LoadProgram { program, source })?;
            if prog.fd().is_err() {
                prog.load()
                    .map_err(|source| ProbeError::LoadProgram { program, source })?;
            }
            for &cpu in &cpus {
                let id = prog
                    .attach(
                        PerfEventConfig::Software(config),
                        PerfEventScope::AllProcessesOneCpu { cpu },
                        policy,
                        false,
                    )
                    .map_err(|source| ProbeError::PerfEvent {
                        program,
                        event,
                        cpu,
                        source,
                    })?;
                self.perf_links.push((program, id));
            }
            debug!(program, event, cpus = cpus.len(), "perf events opened");
        }
        Ok(())
    }

    /// Closes the perf events (when no process is attached any more).
    pub(super) fn close_perf(&mut self) {
        let mut owned = Vec::new();
        for (program, id) in std::mem::take(&mut self.perf_links) {
            let prog: Option<&mut PerfEvent> = self
                .ebpf
                .program_mut(program)
                .and_then(|p| p.try_into().ok());
            match prog.map(|p| p.take_link(id)) {
                Some(Ok(link)) => owned.push(link),
                Some(Err(e)) => tracing::warn!(program, "closing perf event: {e}"),
                None => {}
            }
        }
        self.bury(owned);
    }
}
