//! Signals → [`Profile`]s: what each stack-attributed signal's values are called in pprof, and
//! the resolution of its captured stacks into locations.

use goprobe_common::{CallerStack, SiteCounts, site_kind};

use super::{Profile, Sample, ValueType};
use crate::{
    probe::{Options, Probes, stacks::AssistTotals},
    report::Window,
    signal::stacks::StackNamer,
};

/// How one signal is described in its profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// File stem: `alloc`, `assist`, `pagefaults`, `cpu`, `goroutines`.
    pub name: &'static str,
    /// What the values are, for titles: "allocations", "mark assist time", …
    pub title: &'static str,
    pub sample_types: Vec<ValueType>,
    /// The sample type flamegraphs and folded files show (index into `sample_types`).
    pub default_type: usize,
    /// More flamegraphs and folded files: (file name suffix, sample type index), e.g.
    /// `("-objects", 0)` for allocations.
    pub extra_views: Vec<(&'static str, usize)>,
    /// pprof `period_type` and `period` (CPU: nanoseconds between samples).
    pub period: Option<(ValueType, i64)>,
}

impl Spec {
    /// Allocations: values `[objects, bytes]`, as Go's own heap profile names them.
    pub fn alloc() -> Self {
        Self {
            name: "alloc",
            title: "allocations",
            sample_types: vec![
                ValueType::new("alloc_objects", "count"),
                ValueType::new("alloc_space", "bytes"),
            ],
            default_type: 1,
            extra_views: vec![("-objects", 0)],
            period: None,
        }
    }

    /// Mark assist time: values `[nanoseconds]`.
    pub fn assist() -> Self {
        Self {
            name: "assist",
            title: "GC mark assist time",
            sample_types: vec![ValueType::new("assist", "nanoseconds")],
            default_type: 0,
            extra_views: Vec::new(),
            period: None,
        }
    }

    /// Page faults: values `[all, minor, major]`.
    pub fn page_faults() -> Self {
        Self {
            name: "pagefaults",
            title: "page faults",
            sample_types: vec![
                ValueType::new("faults", "count"),
                ValueType::new("minor_faults", "count"),
                ValueType::new("major_faults", "count"),
            ],
            default_type: 0,
            extra_views: Vec::new(),
            period: None,
        }
    }

    /// On-CPU samples at `hz`: values `[samples, nanoseconds]`, as Go's CPU profile has them.
    pub fn cpu(hz: u32) -> Self {
        let period = 1_000_000_000 / i64::from(hz.max(1));
        Self {
            name: "cpu",
            title: "on-CPU time",
            sample_types: vec![
                ValueType::new("samples", "count"),
                ValueType::new("cpu", "nanoseconds"),
            ],
            default_type: 1,
            extra_views: Vec::new(),
            period: Some((ValueType::new("cpu", "nanoseconds"), period)),
        }
    }

    /// Goroutine creation: values `[goroutines created]`.
    pub fn goroutines() -> Self {
        Self {
            name: "goroutines",
            title: "goroutines created",
            sample_types: vec![ValueType::new("goroutines", "count")],
            default_type: 0,
            extra_views: Vec::new(),
            period: None,
        }
    }
}

/// The profile of `spec` from per-stack values (one per sample type each) of process `pid`.
pub fn build(
    spec: Spec,
    raw: &[(CallerStack, Vec<i64>)],
    probes: &Probes,
    namer: &mut StackNamer,
    window: &Window,
) -> Profile {
    let samples: Vec<Sample> = raw
        .iter()
        .filter(|(_, v)| v.iter().any(|&x| x != 0))
        .map(|(caller, values)| Sample {
            locations: namer.locations(probes, caller),
            values: values.clone(),
        })
        .collect();
    let mappings = namer.mappings(samples.iter().flat_map(|s| &s.locations));
    Profile {
        spec,
        samples,
        mappings,
        start_unix_ns: window.start_unix_ns,
        duration_ns: window.end_unix_ns - window.start_unix_ns,
    }
}

/// The profiles of every stack-attributed signal `options` turned on.
pub fn collect(
    probes: &Probes,
    pid: u32,
    options: &Options,
    assist: &AssistTotals,
    namer: &mut StackNamer,
    window: &Window,
) -> Vec<Profile> {
    let mut out = Vec::new();
    let assist_raw: Vec<_> = assist
        .by_stack
        .iter()
        .map(|(c, ns)| (*c, vec![*ns as i64]))
        .collect();
    out.push(build(Spec::assist(), &assist_raw, probes, namer, window));
    if let Some(raw) = crate::signal::alloc::raw_sites(probes, pid) {
        // Values in the spec's order: objects, bytes.
        let raw: Vec<_> = raw
            .into_iter()
            .map(|(c, v)| (c, vec![v.b as i64, v.a as i64]))
            .collect();
        let mut p = build(Spec::alloc(), &raw, probes, namer, window);
        p.trim_leaf(crate::signal::alloc::allocator_frames);
        out.push(p);
    }
    let sites = |kind, values: &dyn Fn(SiteCounts) -> Vec<i64>| -> Vec<(CallerStack, Vec<i64>)> {
        probes
            .sites(pid, kind)
            .into_iter()
            .map(|(c, v)| (c, values(v)))
            .collect()
    };
    if options.page_faults {
        let raw = sites(site_kind::PAGE_FAULT, &|v| {
            vec![(v.a + v.b) as i64, v.a as i64, v.b as i64]
        });
        out.push(build(Spec::page_faults(), &raw, probes, namer, window));
    }
    if options.cpu_hz > 0 {
        let period = 1_000_000_000 / i64::from(options.cpu_hz);
        let raw = sites(site_kind::CPU, &|v| vec![v.a as i64, v.a as i64 * period]);
        out.push(build(
            Spec::cpu(options.cpu_hz),
            &raw,
            probes,
            namer,
            window,
        ));
    }
    if options.goroutines && options.goroutine_sites {
        let raw = sites(site_kind::GOROUTINE_CREATE, &|v| vec![v.a as i64]);
        let mut p = build(Spec::goroutines(), &raw, probes, namer, window);
        p.trim_leaf(crate::report::goroutines::runtime_leaf_frames);
        out.push(p);
    }
    out
}
