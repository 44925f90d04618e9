//! The allocation probes (ebpf/goprobe-ebpf/src/alloc.rs): which sampler a target gets, attaching
//! it, and reading back what it counted.

use aya::maps::HashMap;
use goprobe_common::{AllocConfig, AllocSampleKey, CallerStack, alloc_sampler};
use tracing::{info, warn};

use super::{AllocMode, Options, ProbeError, Probes};
use crate::analysis::{FunctionPlan, Target, process::memprofile};

/// Why allocations cannot be watched in a target with the asked mode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocUnavailable {
    #[error("runtime.mallocgc cannot be probed")]
    NoMallocgc,
    #[error(
        "runtime.MemProfileRate is {rate} but runtime.profilealloc cannot be probed, and the \
         span-refill sampler is unavailable: {fallback}"
    )]
    NoProfilealloc { rate: u64, fallback: Box<Self> },
    #[error("runtime.(*mcache).refill or (*mcache).allocLarge cannot be probed")]
    NoSlowPaths,
    #[error(
        "the offsets of runtime.mcache/mspan fields are not known for Go 1.{minor} without DWARF"
    )]
    NoLayout { minor: u32 },
}

/// Picks the sampler for `target` in `mode` (not `Off`) and fills its settings;
/// `rate_set_by_goprobe` is the rate goprobe has just written ([`Options::alloc_rate`]) into the
/// target's `runtime.MemProfileRate` (see [`Probes::attach_alloc`]).
///
/// NB: sampled mode rides the runtime's sampler when `runtime.MemProfileRate` > 0. The linker
/// sets `runtime.disableMemoryProfiling` in binaries that do not link runtime.MemProfile (no
/// runtime/pprof import), and schedinit then sets MemProfileRate to 0 (src/runtime/proc.go
/// `schedinit`, mprof.go; Go 1.19–1.27): profilealloc is never called. goprobe then turns it
/// on for the window ([`memprofile`]); when it may not, and always in `Spans` mode, the slow
/// paths are sampled instead (see ebpf alloc.rs), and the target's memory is never written.
pub fn choose(
    target: &Target,
    mode: AllocMode,
    rate_set_by_goprobe: Option<u64>,
) -> Result<AllocConfig, AllocUnavailable> {
    let p = &target.alloc;
    let (start, end) = p.mallocgc_range;
    let mut cfg = AllocConfig {
        mallocgc_start: start,
        mallocgc_end: end,
        entry_on_jbe: u32::from(p.entry_on_jbe),
        ..AllocConfig::default()
    };
    if mode == AllocMode::Exact {
        p.mallocgc.as_ref().ok_or(AllocUnavailable::NoMallocgc)?;
        cfg.sampler = alloc_sampler::EXACT;
        return Ok(cfg);
    }
    let rate = match mode {
        AllocMode::Spans => None,
        _ if rate_set_by_goprobe.is_some() => rate_set_by_goprobe,
        _ => mem_profile_rate(target),
    };
    let refill = || -> Result<AllocConfig, AllocUnavailable> {
        if p.refill.is_none() || p.alloc_large.is_none() {
            return Err(AllocUnavailable::NoSlowPaths);
        }
        let [alloc, tiny, count, before, elemsize] =
            target
                .layout
                .alloc
                .complete()
                .ok_or(AllocUnavailable::NoLayout {
                    minor: target.go_version.minor,
                })?;
        Ok(AllocConfig {
            sampler: alloc_sampler::SPAN_REFILL,
            off_mcache_alloc: alloc,
            off_mcache_tiny_allocs: tiny,
            off_span_alloc_count: count,
            off_span_alloc_count_before_cache: before,
            off_span_elemsize: elemsize,
            ..cfg
        })
    };
    match rate {
        Some(rate) if rate > 0 => {
            if p.profilealloc.is_some() {
                cfg.sampler = alloc_sampler::PROFILEALLOC;
                cfg.mem_profile_rate = rate;
                return Ok(cfg);
            }
            refill().map_err(|e| AllocUnavailable::NoProfilealloc {
                rate,
                fallback: Box::new(e),
            })
        }
        _ => refill(),
    }
}

/// `runtime.MemProfileRate` of the live target; `None` when it cannot be located or read.
fn mem_profile_rate(target: &Target) -> Option<u64> {
    let addr = target.vars.mem_profile_rate?;
    let mut b = [0u8; 8];
    target.process.read_memory(addr, &mut b).ok()?;
    // NB: `MemProfileRate int` (src/runtime/mprof.go, Go 1.19–1.27); negative is meaningless.
    Some(u64::try_from(i64::from_le_bytes(b)).unwrap_or(0))
}

impl Probes {
    /// Attaches the allocation probes `options.alloc` asks for (none with `Off`). A target where
    /// they cannot go is not an error: the report says why allocations are unavailable.
    pub(super) fn attach_alloc(
        &mut self,
        target: &Target,
        options: &Options,
    ) -> Result<(), ProbeError> {
        if options.alloc == AllocMode::Off {
            return Ok(());
        }
        let pid = target.process.pid;
        let rate_set = (options.alloc == AllocMode::Sampled
            && target.alloc.profilealloc.is_some()
            && mem_profile_rate(target) == Some(0))
        .then(|| self.enable_runtime_sampler(target, options.alloc_rate))
        .flatten();
        let cfg = match choose(target, options.alloc, rate_set) {
            Ok(cfg) => cfg,
            Err(e) => {
                warn!(pid, "allocations unavailable: {e}");
                return Ok(());
            }
        };
        let map = self
            .ebpf
            .map_mut("ALLOC_TARGETS")
            .ok_or(ProbeError::MissingMap {
                map: "ALLOC_TARGETS",
            })?;
        let mut targets: HashMap<_, u32, AllocConfig> =
            HashMap::try_from(map).map_err(|source| ProbeError::Map {
                map: "ALLOC_TARGETS",
                source,
            })?;
        targets
            .insert(pid, cfg, 0)
            .map_err(|source| ProbeError::Map {
                map: "ALLOC_TARGETS",
                source,
            })?;
        let p = &target.alloc;
        let mut sites: Vec<(&'static str, &FunctionPlan)> = Vec::new();
        match cfg.sampler {
            alloc_sampler::EXACT => {
                // Direct entries first: a mallocgc call that dispatches to one of them is
                // skipped by its return address, whichever is attached first.
                sites.extend(p.direct.iter().map(|d| ("alloc_direct_entry", d)));
                sites.extend(p.mallocgc.iter().map(|m| ("alloc_mallocgc_entry", m)));
            }
            alloc_sampler::PROFILEALLOC => {
                sites.extend(
                    p.profilealloc
                        .iter()
                        .map(|m| ("alloc_profilealloc_entry", m)),
                );
            }
            _ => {
                sites.extend(p.refill.iter().map(|m| ("alloc_refill_entry", m)));
                sites.extend(p.alloc_large.iter().map(|m| ("alloc_large_entry", m)));
            }
        }
        let sites: Vec<_> = sites
            .into_iter()
            .map(|(program, plan)| (program, plan, plan.sites.entry))
            .collect();
        self.attach_uprobes(target, &sites)?;
        info!(
            pid,
            sampler = sampler_name(cfg.sampler),
            rate = cfg.mem_profile_rate,
            "allocation probes attached"
        );
        Ok(())
    }

    /// Turns the runtime's heap-profile sampler of `target` on for as long as these probes live
    /// ([`memprofile::RateOverride`]); false, with a warning, when goprobe may not.
    fn enable_runtime_sampler(&mut self, target: &Target, rate: u64) -> Option<u64> {
        match memprofile::RateOverride::enable(target, rate) {
            Ok(o) => {
                self.rate_overrides.push(o);
                Some(rate)
            }
            Err(e) => {
                warn!(
                    pid = target.process.pid,
                    "not turning the runtime's heap-profile sampler on ({e}); sampling the \
                     allocator's span refills instead (slower, see --alloc spans)"
                );
                None
            }
        }
    }

    /// Whether goprobe set `runtime.MemProfileRate` of `pid` for this window.
    pub fn alloc_rate_set_by_goprobe(&self, pid: u32) -> bool {
        self.rate_overrides.iter().any(|o| o.pid() == pid)
    }

    /// The allocation settings registered for `pid`, when its probes are attached.
    pub fn alloc_config(&self, pid: u32) -> Option<AllocConfig> {
        let map = self.ebpf.map("ALLOC_TARGETS")?;
        let m = HashMap::<_, u32, AllocConfig>::try_from(map).ok()?;
        m.get(&pid, 0).ok()
    }

    /// The `runtime.profilealloc` samples of `pid`: (stack, size, samples).
    pub fn alloc_samples(&self, pid: u32) -> Vec<(CallerStack, u64, u64)> {
        self.rows::<AllocSampleKey, u64>("ALLOC_SAMPLES", pid, |k| k.tgid)
            .into_iter()
            .map(|(k, v)| (k.stack, k.size, v))
            .collect()
    }
}

/// The report's name of an [`alloc_sampler`] value.
pub fn sampler_name(sampler: u32) -> &'static str {
    match sampler {
        alloc_sampler::EXACT => "exact",
        alloc_sampler::PROFILEALLOC => "profilealloc",
        alloc_sampler::SPAN_REFILL => "span-refill",
        _ => "none",
    }
}
