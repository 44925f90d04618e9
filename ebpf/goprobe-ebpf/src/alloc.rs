//! Allocations by stack (`goprobe attach --alloc`), counted in the kernel into `SITES`
//! (`site_kind::ALLOC`, a = bytes, b = objects); nothing is sent per allocation.
//!
//! Three ways, chosen per process by user space (`AllocConfig::sampler`):
//! - exact: every `runtime.mallocgc` call, plus the size-specialized entry points the compiler
//!   calls directly on Go 1.27 (`mallocgcSmallScanNoHeaderSC1..` …);
//! - profilealloc: the runtime's own heap-profile sampler, one call per ~MemProfileRate bytes;
//!   counted per (stack, size) in `ALLOC_SAMPLES` and unbiased in user space;
//! - span-refill: the allocator's slow paths, `(*mcache).refill` (a span of one size class is
//!   used up: its objects are weighed onto the refilling stack) and `(*mcache).allocLarge`.
//!
//! Every probe is an entry probe on the allocating goroutine's stack (see stacks.rs `capture`).

use aya_ebpf::{
    macros::{map, uprobe},
    maps::HashMap,
    programs::ProbeContext,
};
use goprobe_common::{
    AllocConfig, AllocSampleKey, MAX_ALLOC_SAMPLES, MAX_TARGETS, budget_signal, counter, site_kind,
};

use crate::{
    budget::admit,
    goabi::{ReadError, int_reg, read_user, stack_check_fails},
    maps::{add, bump, row},
    sites::add_site,
    stacks::{capture, return_address, stack_with, tgid},
};

/// Allocation settings per process.
#[map]
static ALLOC_TARGETS: HashMap<u32, AllocConfig> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// `runtime.profilealloc` samples per (process, stack, size), added to by every CPU.
/// NB: not preallocated, as `SITES` (sites.rs).
#[map]
static ALLOC_SAMPLES: HashMap<AllocSampleKey, u64> =
    HashMap::with_max_entries(MAX_ALLOC_SAMPLES, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// NB: `tinySpanClass` = makeSpanClass(tinySizeClass=2, noscan) = 2<<1|1 (src/runtime/malloc.go
/// `tinySpanClass`, mheap.go `makeSpanClass`; Go 1.19–1.27).
const TINY_SPAN_CLASS: u64 = 5;
/// NB: `numSpanClasses` = 68 size classes × 2 (src/runtime/mheap.go, sizeclasses.go; Go
/// 1.19–1.27): bounds the `c.alloc[spc]` index for the verifier.
const NUM_SPAN_CLASSES: u64 = 136;
/// NB: the heap's page size, `_PageShift` = 13 (src/runtime/malloc.go, internal/runtime/gc
/// since 1.25); large objects are accounted in whole pages (mcache.go `allocLarge`).
const PAGE_SIZE: u64 = 8192;

/// Whether the hit is at a `jbe` to morestack that is about to be taken (Go 1.19 sites only, see
/// [`stack_check_fails`]).
#[inline(always)]
fn morestack_pending(ctx: &ProbeContext, cfg: &AllocConfig) -> bool {
    cfg.entry_on_jbe != 0 && stack_check_fails(ctx)
}

/// `runtime.mallocgc(size uintptr, typ *_type, needzero bool)` entry (exact mode).
#[uprobe]
pub fn alloc_mallocgc_entry(ctx: ProbeContext) -> u32 {
    match try_mallocgc_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_mallocgc_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    // NB: RAX = size (Go ABIInternal; src/runtime/malloc.go `mallocgc`, signature pinned by
    // go.dev/issue/67401, Go 1.19–1.27). Size 0 returns &zerobase and counts in no MemStats.
    let size = int_reg(ctx, 0)?;
    if size == 0 {
        return Ok(());
    }
    let tgid = tgid();
    // SAFETY: copied out immediately.
    let cfg = unsafe { ALLOC_TARGETS.get(tgid) }.ok_or(ReadError)?;
    if morestack_pending(ctx, cfg) || !admit(budget_signal::ALLOC) {
        return Ok(());
    }
    let stack = capture(ctx);
    add_site(tgid, site_kind::ALLOC, stack, size, 1);
    Ok(())
}

/// Entry of a size-specialized `runtime.mallocgc*SC*` function (exact mode, Go 1.27; 1.26 with
/// GOEXPERIMENT=sizespecializedmalloc).
#[uprobe]
pub fn alloc_direct_entry(ctx: ProbeContext) -> u32 {
    match try_direct_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_direct_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    // NB: `(size uintptr, typ *_type, needzero bool) unsafe.Pointer` (src/runtime/
    // malloc_generated.go, Go 1.27.3): RAX = size. The compiler calls them directly for `new(T)`
    // with T ≤ 80 bytes (cmd/compile ssagen `specializedMallocSym`), and mallocgc itself calls
    // them for small sizes (malloc.go `mallocNoScanTable`, `mallocScanTable`): those calls
    // return into mallocgc and were counted at its entry.
    let tgid = tgid();
    let ret = return_address(ctx);
    // SAFETY: copied out immediately.
    let cfg = unsafe { ALLOC_TARGETS.get(tgid) }.ok_or(ReadError)?;
    if (ret >= cfg.mallocgc_start && ret < cfg.mallocgc_end) || morestack_pending(ctx, cfg) {
        return Ok(());
    }
    if !admit(budget_signal::ALLOC) {
        return Ok(());
    }
    let size = int_reg(ctx, 0)?;
    if size == 0 {
        return Ok(());
    }
    add_site(tgid, site_kind::ALLOC, stack_with(ctx, ret), size, 1);
    Ok(())
}

/// `runtime.profilealloc(mp *m, x unsafe.Pointer, size uintptr)` entry (sampled mode with the
/// runtime's sampler on).
#[uprobe]
pub fn alloc_profilealloc_entry(ctx: ProbeContext) -> u32 {
    match try_profilealloc_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_profilealloc_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    // NB: RCX = size (src/runtime/malloc.go `profilealloc`, Go 1.19–1.27): the requested size
    // on Go ≤ 1.23 (mallocgc), the size-class size on 1.24+ (`elemsize` in mallocgcSmall*).
    // It runs on the allocating goroutine, called straight from the allocator.
    let size = int_reg(ctx, 2)?;
    let tgid = tgid();
    // SAFETY: copied out immediately.
    let cfg = unsafe { ALLOC_TARGETS.get(tgid) }.ok_or(ReadError)?;
    if morestack_pending(ctx, cfg) || !admit(budget_signal::ALLOC) {
        return Ok(());
    }
    let key = AllocSampleKey {
        tgid,
        generation: crate::maps::generation(),
        stack: capture(ctx),
        size,
    };
    match row(&ALLOC_SAMPLES, &key, &0) {
        Some(v) => add(v, 1),
        None => bump(counter::SITES_FULL),
    }
    Ok(())
}

/// `runtime.(*mcache).refill(c *mcache, spc spanClass)` entry (sampled mode, span-refill).
#[uprobe]
pub fn alloc_refill_entry(ctx: ProbeContext) -> u32 {
    match try_refill_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_refill_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    let tgid = tgid();
    // SAFETY: copied out immediately.
    let cfg = unsafe { ALLOC_TARGETS.get(tgid) }.ok_or(ReadError)?;
    // NB: no budget here: each span refill carries a whole span's objects, so a skipped
    // one would be a loss the estimate cannot scale back; refills are bounded by the
    // allocation rate itself.
    if morestack_pending(ctx, cfg) {
        return Ok(());
    }
    // NB: RAX = c, BL = spc (src/runtime/mcache.go `refill`, Go 1.19–1.27). refill is called
    // (from `nextFree`) when the cached span of class spc is full, and adds
    // `s.allocCount - s.allocCountBeforeCache` to heapStats.smallAllocCount[spc.sizeclass()]
    // (and, for the tiny class, c.tinyAllocs to tinyAllocCount): the counts MemStats.Mallocs
    // and TotalAlloc (× the class size, which is s.elemsize) are made of (mstats.go
    // readmemstats_m). The cached span `&emptymspan` has both counts 0.
    let c = int_reg(ctx, 0)?;
    let spc = int_reg(ctx, 1)? & 0xff;
    if spc >= NUM_SPAN_CLASSES {
        return Err(ReadError);
    }
    let s: u64 = read_user(c + cfg.off_mcache_alloc as u64 + spc * 8)?;
    if s == 0 {
        return Ok(());
    }
    let count: u16 = read_user(s + cfg.off_span_alloc_count as u64)?;
    let before: u16 = read_user(s + cfg.off_span_alloc_count_before_cache as u64)?;
    let used = u64::from(count.saturating_sub(before));
    let mut objects = used;
    if spc == TINY_SPAN_CLASS {
        // NB: tiny objects (noscan, < 16 B) share 16-byte blocks: a block counts as one
        // smallAllocCount object, each tiny object that fit into an existing block as one
        // tinyAllocs; Mallocs counts both (mstats.go readmemstats_m), so does this.
        let tiny: u64 = read_user(c + cfg.off_mcache_tiny_allocs as u64)?;
        objects += tiny;
    }
    if objects == 0 {
        return Ok(());
    }
    let elemsize: u64 = read_user(s + cfg.off_span_elemsize as u64)?;
    let stack = capture(ctx);
    add_site(tgid, site_kind::ALLOC, stack, used * elemsize, objects);
    Ok(())
}

/// `runtime.(*mcache).allocLarge(c *mcache, size uintptr, noscan bool)` entry (sampled mode,
/// span-refill): one large object, weighed in whole pages as the runtime accounts it.
#[uprobe]
pub fn alloc_large_entry(ctx: ProbeContext) -> u32 {
    match try_large_entry(&ctx) {
        Ok(()) | Err(ReadError) => 0,
    }
}

fn try_large_entry(ctx: &ProbeContext) -> Result<(), ReadError> {
    // NB: RBX = size (src/runtime/mcache.go `allocLarge`, Go 1.19–1.27), which adds
    // `npages*pageSize` to heapStats.largeAlloc and 1 to largeAllocCount.
    let size = int_reg(ctx, 1)?;
    let tgid = tgid();
    // SAFETY: copied out immediately.
    let cfg = unsafe { ALLOC_TARGETS.get(tgid) }.ok_or(ReadError)?;
    // NB: no budget here: each span refill carries a whole span's objects, so a skipped
    // one would be a loss the estimate cannot scale back; refills are bounded by the
    // allocation rate itself.
    if morestack_pending(ctx, cfg) {
        return Ok(());
    }
    let bytes = size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let stack = capture(ctx);
    add_site(tgid, site_kind::ALLOC, stack, bytes, 1);
    Ok(())
}
