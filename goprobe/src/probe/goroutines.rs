//! The goroutine probes (ebpf/goprobe-ebpf/src/goroutines.rs): attaching them, and reading the
//! created/exited counts they keep. Creation sites are in the shared `SITES` map
//! ([`goprobe_common::site_kind::GOROUTINE_CREATE`]).

use aya::{
    maps::{PerCpuHashMap, PerCpuValues},
    util::nr_cpus,
};
use goprobe_common::GoroutineCounts;
use tracing::warn;

use super::{Options, ProbeError, Probes};
use crate::analysis::{FunctionPlan, Target};

const COUNTS: &str = "GOROUTINE_COUNTS";

impl Probes {
    /// Attaches the goroutine creation and exit probes when `options` asks for goroutines and
    /// the target has them (`Target::goroutines`); creates the target's counters first.
    pub(crate) fn attach_goroutines(
        &mut self,
        target: &Target,
        options: &Options,
    ) -> Result<(), ProbeError> {
        if !(options.goroutines && options.goroutine_sites) {
            return Ok(());
        }
        let pid = target.process.pid;
        let Some(plans) = target.goroutines.as_ref() else {
            warn!(
                pid,
                "runtime.newproc or the goroutine exit function cannot be probed: no goroutine \
                 creation sites or created/exited counts"
            );
            return Ok(());
        };
        let map_err = |source| ProbeError::Map {
            map: COUNTS,
            source,
        };
        let cpus = nr_cpus().map_err(|(_, e)| map_err(aya::maps::MapError::IoError(e)))?;
        let zero = PerCpuValues::try_from(vec![GoroutineCounts::default(); cpus])
            .map_err(|e| map_err(aya::maps::MapError::IoError(e)))?;
        let map = self
            .ebpf
            .map_mut(COUNTS)
            .ok_or(ProbeError::MissingMap { map: COUNTS })?;
        let mut counts: PerCpuHashMap<_, u32, GoroutineCounts> =
            PerCpuHashMap::try_from(map).map_err(map_err)?;
        counts.insert(pid, zero, 0).map_err(map_err)?;

        let mut sites: Vec<(&'static str, &FunctionPlan)> =
            vec![("goroutine_exit_entry", &plans.exit)];
        sites.extend(plans.create.iter().map(|p| ("goroutine_create_entry", p)));
        let sites: Vec<_> = sites
            .into_iter()
            .map(|(program, plan)| (program, plan, plan.sites.entry))
            .collect();
        self.attach_uprobes(target, &sites)?;
        Ok(())
    }

    /// Goroutines created and exited in process `pid` since attach, summed over CPUs; `None`
    /// when the goroutine probes are not attached to it.
    pub fn goroutine_counts(&self, pid: u32) -> Option<GoroutineCounts> {
        let map = self.ebpf.map(COUNTS)?;
        let counts = PerCpuHashMap::<_, u32, GoroutineCounts>::try_from(map).ok()?;
        let per_cpu = counts.get(&pid, 0).ok()?;
        Some(
            per_cpu
                .iter()
                .fold(GoroutineCounts::default(), |s, c| GoroutineCounts {
                    created: s.created + c.created,
                    exited: s.exited + c.exited,
                }),
        )
    }
}
