//! Per-stack counters shared by every stack-attributed signal (allocations, goroutine creation,
//! page faults, CPU samples): one per-CPU hash map keyed by (process, kind, stack), summed by
//! user space (`goprobe/src/probe/sites.rs`). Nothing here sends an event per occurrence.

use aya_ebpf::{macros::map, maps::PerCpuHashMap};
use goprobe_common::{CallerStack, MAX_SITES, SiteCounts, SiteKey, counter};

use crate::maps::{bump, generation};

/// Counts per (process, [`goprobe_common::site_kind`], stack), per CPU.
///
/// NB: not preallocated (`BPF_F_NO_PREALLOC`): a preallocated per-CPU hash map makes one per-CPU
/// allocation per entry when it is created (kernel/bpf/hashtab.c `prealloc_init`), which took
/// ~300 ms of every attach for this map's 65,600 entries; entries come from the BPF memory
/// allocator on first use instead, safe in every tracing program since Linux 6.1 (96da3f7d489d,
/// "bpf: Remove tracing program restriction on map types"), as `STACKS` already is.
#[map]
static SITES: PerCpuHashMap<SiteKey, SiteCounts> =
    PerCpuHashMap::with_max_entries(MAX_SITES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Adds `a` and `b` to the counters of `stack` for signal `kind` of process `tgid`; when the map
/// is full the weight is lost and `counter::SITES_FULL` says so.
#[inline(always)]
pub fn add_site(tgid: u32, kind: u32, stack: CallerStack, a: u64, b: u64) {
    let key = SiteKey {
        tgid,
        kind,
        stack,
        generation: generation(),
        _pad0: 0,
    };
    match SITES.get_ptr_mut(key) {
        Some(v) => {
            // SAFETY: per-CPU value, no concurrent writer on this CPU while the program runs.
            unsafe {
                (*v).a += a;
                (*v).b += b;
            }
        }
        None => {
            if SITES.insert(key, SiteCounts { a, b }, 0).is_err() {
                bump(counter::SITES_FULL);
            }
        }
    }
}
