//! What the allocation probes counted → [`Allocations`]: profilealloc samples unbiased into
//! estimates, stacks resolved with the allocator's own frames trimmed off.

use std::collections::HashMap;

use goprobe_common::{CallerStack, SiteCounts, alloc_sampler, site_kind};

use super::stacks::{Site, StackNamer};
use crate::{
    analysis::Target,
    probe::{
        AllocMode, Probes,
        alloc::{choose, sampler_name},
    },
};

/// Bytes and objects allocated by one stack (estimates unless the sampler is `exact`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocCounts {
    pub bytes: u64,
    pub objects: u64,
}

/// The allocations of one process since attach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocations {
    /// `sampled`, `spans` or `exact` (see `goprobe attach --help`).
    pub mode: &'static str,
    /// How the counts were taken: `exact`, `profilealloc` or `span-refill`; `None` when the
    /// allocation probes were not attached.
    pub sampler: Option<&'static str>,
    /// `runtime.MemProfileRate` the profilealloc sampler ran with.
    pub sample_rate: Option<u64>,
    /// Whether goprobe wrote `sample_rate` into the target's `runtime.MemProfileRate`.
    pub rate_set_by_goprobe: bool,
    /// Why allocations could not be watched; `None` when they were.
    pub unavailable: Option<String>,
    /// By allocating stack, the allocator's own frames trimmed ([`trim_allocator`]).
    pub sites: Vec<Site<AllocCounts>>,
}

impl Allocations {
    /// Bytes and objects over all sites.
    pub fn totals(&self) -> AllocCounts {
        self.sites
            .iter()
            .fold(AllocCounts::default(), |t, s| AllocCounts {
                bytes: t.bytes + s.value.bytes,
                objects: t.objects + s.value.objects,
            })
    }
}

/// The allocations of `target` watched in `mode`; `None` with `AllocMode::Off`.
pub fn read(
    probes: &Probes,
    target: &Target,
    mode: AllocMode,
    namer: &mut StackNamer,
) -> Option<Allocations> {
    let mode_name = match mode {
        AllocMode::Off => return None,
        AllocMode::Sampled => "sampled",
        AllocMode::Spans => "spans",
        AllocMode::Exact => "exact",
    };
    let pid = target.process.pid;
    let mut alloc = Allocations {
        mode: mode_name,
        sampler: None,
        sample_rate: None,
        rate_set_by_goprobe: false,
        unavailable: None,
        sites: Vec::new(),
    };
    let Some(cfg) = probes.alloc_config(pid) else {
        alloc.unavailable = Some(match choose(target, mode, None) {
            Err(e) => e.to_string(),
            Ok(_) => "allocation probes were not attached".to_owned(),
        });
        return Some(alloc);
    };
    let raw = if cfg.sampler == alloc_sampler::PROFILEALLOC {
        unbias(&probes.alloc_samples(pid), cfg.mem_profile_rate)
    } else {
        probes.sites(pid, site_kind::ALLOC)
    };
    alloc.sampler = Some(sampler_name(cfg.sampler));
    alloc.sample_rate =
        (cfg.sampler == alloc_sampler::PROFILEALLOC).then_some(cfg.mem_profile_rate);
    alloc.rate_set_by_goprobe = probes.alloc_rate_set_by_goprobe(pid);
    alloc.sites = namer
        .sites(probes, raw, |c| AllocCounts {
            bytes: c.a,
            objects: c.b,
        })
        .into_iter()
        .map(|s| Site {
            stack: s.stack.trim_leaf(allocator_frames),
            value: s.value,
        })
        .collect();
    Some(alloc)
}

/// `runtime.profilealloc` samples (stack, size, count) → estimated bytes and objects per
/// stack, as pprof unbiases heap samples (src/runtime/pprof/protomem.go `scaleHeapSample`):
/// an allocation of `size` bytes is sampled with probability `1 − exp(−size/rate)` (the
/// runtime draws exponential sample distances of mean `rate`, malloc.go `nextSample`), so
/// each sample stands for `1/(1 − exp(−size/rate))` allocations.
///
/// NB: BPF has no floating point, so the kernel keeps exact sample counts per (stack, size)
/// and the weighting happens here, once per distinct size; nothing is rounded before the sum.
pub fn unbias(samples: &[(CallerStack, u64, u64)], rate: u64) -> Vec<(CallerStack, SiteCounts)> {
    let mut by_stack: HashMap<CallerStack, (f64, f64)> = HashMap::new();
    for &(stack, size, count) in samples {
        let scale = if rate <= 1 || size == 0 {
            1.0
        } else {
            1.0 / (1.0 - (-(size as f64) / rate as f64).exp())
        };
        let e = by_stack.entry(stack).or_default();
        e.0 += count as f64 * size as f64 * scale;
        e.1 += count as f64 * scale;
    }
    by_stack
        .into_iter()
        .map(|(stack, (bytes, objects))| {
            (
                stack,
                SiteCounts {
                    a: bytes.round() as u64,
                    b: objects.round() as u64,
                },
            )
        })
        .collect()
}

/// Whether `frame` is the allocator itself: `runtime.mallocgc` and its size-class variants
/// (Go 1.24+, 1.27 generated ones), and `runtime.newobject`.
fn is_allocator(frame: &str) -> bool {
    frame.starts_with("runtime.mallocgc") || frame == "runtime.newobject"
}

/// `stack` (leaf first) without the allocator's frames: the leaf becomes the function that
/// called the allocator, as in Go's heap profile (src/runtime/mprof.go `mProf_Malloc` skips
/// mallocgc and its callees), whichever probe took the stack (mallocgc, a size-specialized
/// entry, profilealloc, refill, allocLarge): everything up to the innermost allocator frame,
/// and the allocator frames right after it (mallocgcSmallNoscan → mallocgc → newobject), are
/// dropped. Only the innermost allocation counts: when the runtime allocates inside an
/// allocation (mallocgc → gcStart → … → malg → mallocgc), the leaf is the runtime function
/// (`runtime.malg`), not the user code further out.
///
/// NB: `runtime.newobject` (malloc.go, `new(T)`) is trimmed too: Go 1.27 compiles `new(T)` of
/// T ≤ 80 B into a direct call of a size-specialized mallocgc (cmd/compile ssagen
/// `specializedMallocSym`), so keeping newobject would make one `new` site look different
/// across releases and sizes. Other runtime callers (`makeslice`, `growslice`, `rawstring`…)
/// stay: they say how the allocation was made.
pub fn trim_allocator(stack: Vec<String>) -> Vec<String> {
    let names: Vec<&str> = stack.iter().map(String::as_str).collect();
    let n = allocator_frames(&names);
    stack[n..].to_vec()
}

/// How many leaf frames [`trim_allocator`] drops from `names` (leaf first).
pub fn allocator_frames(names: &[&str]) -> usize {
    let Some(first) = names.iter().position(|f| is_allocator(f)) else {
        return 0;
    };
    let run = names[first..]
        .iter()
        .take_while(|f| is_allocator(f))
        .count();
    first + run
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|&x| x.to_owned()).collect()
    }

    #[test]
    fn leaf_is_the_allocators_caller() {
        let refill = v(&[
            "runtime.(*mcache).refill",
            "runtime.(*mcache).nextFree",
            "runtime.mallocgcSmallNoscan",
            "runtime.mallocgc",
            "runtime.newobject",
            "main.allocA",
            "main.main",
        ]);
        assert_eq!(trim_allocator(refill), v(&["main.allocA", "main.main"]));
        let direct = v(&["runtime.mallocgcSmallScanNoHeaderSC2", "main.f"]);
        assert_eq!(trim_allocator(direct), v(&["main.f"]));
        let slice = v(&["runtime.mallocgc", "runtime.makeslice", "main.f"]);
        assert_eq!(trim_allocator(slice), v(&["runtime.makeslice", "main.f"]));
        // The runtime allocating inside an allocation: the innermost allocation's caller.
        let nested = v(&[
            "runtime.mallocgc",
            "runtime.malg",
            "runtime.newproc1",
            "runtime.gcStart",
            "runtime.mallocgc",
            "runtime.newobject",
            "main.allocA",
        ]);
        assert_eq!(trim_allocator(nested)[0], "runtime.malg");
        let other = v(&["main.f", "main.g"]);
        assert_eq!(trim_allocator(other.clone()), other);
        assert_eq!(trim_allocator(Vec::new()), Vec::<String>::new());
    }

    #[test]
    fn unbiasing_follows_pprof() {
        let s = |id| CallerStack { id, ret: 0 };
        let rate = 512 * 1024;
        // 1000 samples of 512 KiB: p = 1 − e^−1, each stands for 1.582 allocations.
        let out = unbias(&[(s(1), rate, 1000)], rate);
        assert_eq!(out.len(), 1);
        let scale = 1.0 / (1.0 - (-1.0f64).exp());
        assert_eq!(out[0].1.b, (1000.0 * scale).round() as u64);
        assert_eq!(out[0].1.a, (1000.0 * rate as f64 * scale).round() as u64);
        // Huge objects are always sampled: weight 1.
        let out = unbias(&[(s(2), 100 * rate, 3)], rate);
        assert_eq!(out[0].1.b, 3);
        // Small objects: weight ≈ rate/size + 1/2.
        let out = unbias(&[(s(3), 64, 1)], rate);
        assert_eq!(out[0].1.b, rate / 64 + 1);
    }
}
