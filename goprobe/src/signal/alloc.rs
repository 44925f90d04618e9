//! What the allocation probes counted → the report's `alloc` section: profilealloc samples
//! unbiased into estimates, stacks named with the allocator's own frames trimmed off.

use std::collections::HashMap;

use goprobe_common::{CallerStack, SiteCounts, alloc_sampler, site_kind};

use crate::{
    analysis::Target,
    probe::{
        AllocMode, Probes,
        alloc::{choose, sampler_name},
    },
    report::{Alloc, AllocSite, sites::name_sites},
};

/// The `alloc` section for `target` watched in `mode`; `None` with `AllocMode::Off`.
pub fn collect(
    probes: &Probes,
    target: &Target,
    mode: AllocMode,
    mut names: impl FnMut(&CallerStack) -> Vec<String>,
) -> Option<Alloc> {
    let mode_name = match mode {
        AllocMode::Off => return None,
        AllocMode::Sampled => "sampled",
        AllocMode::Spans => "spans",
        AllocMode::Exact => "exact",
    };
    let pid = target.process.pid;
    let mut alloc = Alloc {
        mode: mode_name.to_owned(),
        ..Alloc::default()
    };
    let Some(cfg) = probes.alloc_config(pid) else {
        alloc.unavailable = Some(match choose(target, mode, false) {
            Err(e) => e.to_string(),
            Ok(_) => "allocation probes were not attached".to_owned(),
        });
        return Some(alloc);
    };
    let raw = raw_sites(probes, pid).unwrap_or_default();
    alloc.sampler = Some(sampler_name(cfg.sampler).to_owned());
    alloc.sample_rate =
        (cfg.sampler == alloc_sampler::PROFILEALLOC).then_some(cfg.mem_profile_rate);
    alloc.sample_rate_set_by_goprobe = probes.alloc_rate_set_by_goprobe(pid);
    alloc.sites = name_sites(&raw, |s| trim_allocator(names(s)))
        .into_iter()
        .map(|s| AllocSite {
            stack: s.stack,
            bytes: s.a,
            objects: s.b,
        })
        .collect();
    alloc.bytes = alloc.sites.iter().map(|s| s.bytes).sum();
    alloc.objects = alloc.sites.iter().map(|s| s.objects).sum();
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

/// The per-stack bytes (`a`) and objects (`b`) of process `pid`'s allocations, weighted as the
/// attached sampler requires; `None` when no allocation probe is attached.
pub fn raw_sites(probes: &Probes, pid: u32) -> Option<Vec<(CallerStack, SiteCounts)>> {
    let cfg = probes.alloc_config(pid)?;
    Some(if cfg.sampler == alloc_sampler::PROFILEALLOC {
        unbias(&probes.alloc_samples(pid), cfg.mem_profile_rate)
    } else {
        probes.sites(pid, site_kind::ALLOC)
    })
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
