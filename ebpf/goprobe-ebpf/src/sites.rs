//! Per-stack counters shared by every stack-attributed signal (allocations, goroutine creation,
//! page faults, CPU samples): one hash map keyed by (process, kind, stack), read by user space (`goprobe/src/probe/sites.rs`). Nothing here sends an event per occurrence.

use aya_ebpf::{macros::map, maps::HashMap};
use goprobe_common::{CallerStack, MAX_SITES, SiteCounts, SiteKey, counter};

use crate::maps::{add, bump, generation, row};

/// Counts per (process, [`goprobe_common::site_kind`], stack), added to by every CPU (see
/// [`row`]).
///
/// NB: not preallocated (`BPF_F_NO_PREALLOC`): entries come from the BPF memory allocator on
/// first use, so a map sized for the worst case costs only what is used, safe in every tracing
/// program since Linux 6.1 (96da3f7d489d, "bpf: Remove tracing program restriction on map
/// types"), as `STACKS` already is.
#[map]
static SITES: HashMap<SiteKey, SiteCounts> =
    HashMap::with_max_entries(MAX_SITES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

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
    match row(&SITES, &key, &SiteCounts::default()) {
        Some(v) => {
            // SAFETY: a live row; only its fields' addresses are taken.
            let (pa, pb) = unsafe { (&raw mut (*v).a, &raw mut (*v).b) };
            add(pa, a);
            add(pb, b);
        }
        None => bump(counter::SITES_FULL),
    }
}
