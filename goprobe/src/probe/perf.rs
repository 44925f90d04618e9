//! The perf-event signals (ebpf/goprobe-ebpf/src/perf.rs): page faults and on-CPU samples.
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
use tracing::debug;

use super::{Options, ProbeError, Probes};
use crate::analysis::Target;

impl Probes {
    /// Opens the perf events `options` asks for (page faults, CPU samples) on every online CPU,
    /// unless open already. `attach` has told the programs where `target`'s frameless code is
    /// (its binary's ranges, loaded once per binary: probe/frameless.rs).
    pub(super) fn attach_perf(
        &mut self,
        _target: &Target,
        options: &Options,
    ) -> Result<(), ProbeError> {
        let mut events: Vec<(&'static str, &'static str, SoftwareEvent, SamplePolicy)> = Vec::new();
        if options.page_faults {
            // NB: one sample per fault (period 1): the count is exact. The kernel emits these
            // from mm_account_fault() once a fault is handled, not for retried or failed ones
            // (mm/memory.c), the same place that counts the task's min_flt/maj_flt for getrusage.
            events.push((
                "page_fault_min",
                "page-faults-min",
                SoftwareEvent::PageFaultsMin,
                SamplePolicy::Period(1),
            ));
            events.push((
                "page_fault_maj",
                "page-faults-maj",
                SoftwareEvent::PageFaultsMaj,
                SamplePolicy::Period(1),
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
