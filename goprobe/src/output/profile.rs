//! Signal records → [`Profile`]s: what each stack-attributed signal's values are called in
//! pprof. The stacks are the records' own, so a profile and the report built from the same
//! [`Reading`] have the same totals.

use super::{MappingInfo, Profile, Sample, ValueType};
use crate::{
    report::Window,
    signal::{Reading, Site},
    symbolize,
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

/// The profile of `spec` from `sites`, each site's values (one per sample type) from `values`;
/// `mappings` are the process' mappings the stacks lie in (at least).
pub fn build<V>(
    spec: Spec,
    sites: &[Site<V>],
    values: impl Fn(&V) -> Vec<i64>,
    mappings: &[symbolize::MappingInfo],
    window: &Window,
) -> Profile {
    let samples: Vec<Sample> = sites
        .iter()
        .map(|s| (s, values(&s.value)))
        .filter(|(_, v)| v.iter().any(|&x| x != 0))
        .map(|(s, values)| Sample {
            locations: s.stack.locations.to_vec(),
            values,
        })
        .collect();
    let mappings = mappings
        .iter()
        .filter(|m| {
            samples
                .iter()
                .flat_map(|s| &s.locations)
                .any(|l| (m.start..m.end).contains(&l.address))
        })
        .map(|m| MappingInfo {
            start: m.start,
            limit: m.end,
            file_offset: m.file_offset,
            path: m.path.clone(),
            build_id: m.build_id.clone(),
        })
        .collect();
    Profile {
        spec,
        samples,
        mappings,
        start_unix_ns: window.start_unix_ns,
        duration_ns: window.end_unix_ns - window.start_unix_ns,
    }
}

/// The profile of every stack-attributed signal `reading` has (allocations only when they
/// could be watched), in the order assist, alloc, pagefaults, cpu, goroutines.
pub fn collect(
    reading: &Reading,
    mappings: &[symbolize::MappingInfo],
    window: &Window,
) -> Vec<Profile> {
    let mut out = Vec::new();
    if let Some(a) = &reading.assist {
        out.push(build(
            Spec::assist(),
            &a.by_stack,
            |&ns| vec![ns as i64],
            mappings,
            window,
        ));
    }
    if let Some(a) = reading.alloc.as_ref().filter(|a| a.unavailable.is_none()) {
        // Values in the spec's order: objects, bytes.
        let values = |c: &crate::signal::alloc::AllocCounts| vec![c.objects as i64, c.bytes as i64];
        out.push(build(Spec::alloc(), &a.sites, values, mappings, window));
    }
    if let Some(p) = &reading.page_faults {
        let values = |c: &crate::signal::pagefault::FaultCounts| {
            vec![(c.minor + c.major) as i64, c.minor as i64, c.major as i64]
        };
        out.push(build(
            Spec::page_faults(),
            &p.sites,
            values,
            mappings,
            window,
        ));
    }
    if let Some(c) = &reading.cpu {
        let period = c.period_ns();
        let values = |&n: &u64| vec![n as i64, n as i64 * period];
        out.push(build(Spec::cpu(c.hz), &c.sites, values, mappings, window));
    }
    if let Some(c) = &reading.creations {
        let values = |&n: &u64| vec![n as i64];
        out.push(build(
            Spec::goroutines(),
            &c.sites,
            values,
            mappings,
            window,
        ));
    }
    out
}
