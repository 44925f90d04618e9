//! The maps and counters every program shares: the attached processes' constants, the STWs in
//! progress, and the loss counters (see `goprobe_common::counter`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use goprobe_common::{
    MAX_PENDING_STW, MAX_TARGETS, StwEvent, TargetConfig, counter, generation as gen_abi,
};

/// Per-process constants, written by the agent before it attaches.
#[map]
pub(crate) static TARGETS: HashMap<u32, TargetConfig> = HashMap::with_max_entries(MAX_TARGETS, 0);

/// STWs in progress, keyed by thread id.
#[map]
pub(crate) static STW_PENDING: HashMap<u32, StwEvent> =
    HashMap::with_max_entries(MAX_PENDING_STW, 0);

/// Loss counters, see `goprobe_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);

/// Adds one to loss counter `index` (a `goprobe_common::counter` slot) of this CPU.
#[inline(always)]
pub(crate) fn bump(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *c += 1 };
    }
}

/// The generation per-stack rows are counted in (see `goprobe_common::generation`), flipped by
/// user space.
#[map]
static GENERATION: Array<u32> = Array::with_max_entries(gen_abi::LEN, 0);

/// The generation to count per-stack rows in now (0 until user space flips it).
#[inline(always)]
pub(crate) fn generation() -> u32 {
    GENERATION.get(0).copied().unwrap_or(0)
}

/// Row `key` of a per-stack hash map, created zeroed if missing; `None` when the map is full.
///
/// NB: the per-stack maps (`SITES`, `ALLOC_SAMPLES`, `ASSIST_BY_STACK`, `ASSIST_BY_CYCLE`) are
/// plain hash maps whose rows every CPU adds to atomically ([`add`]), not per-CPU maps: a new
/// key in a per-CPU hash map without preallocation allocates per-CPU memory in the probe,
/// measured at ~16 µs per new key on Linux 6.18 (a recursive allocator makes a new stack almost
/// every time: 538 distinct stacks in 540 mark assists of gcstress `-mode assist`), charged to
/// the target's thread; a plain row comes from the BPF memory allocator's per-CPU cache.
#[inline(always)]
pub(crate) fn row<K, V>(map: &HashMap<K, V>, key: &K, zero: &V) -> Option<*mut V> {
    if let Some(v) = map.get_ptr_mut(key) {
        return Some(v);
    }
    // -EEXIST: another CPU created it meanwhile; either way it is there now.
    match map.insert(key, zero, aya_ebpf::bindings::BPF_NOEXIST as u64) {
        Ok(()) | Err(-17) => map.get_ptr_mut(key),
        Err(_) => None,
    }
}

/// Adds `n` to the counter at `at`, a field of a map value other CPUs may add to at once.
///
/// NB: BPF's atomic add (`BPF_ATOMIC | BPF_ADD`, `lock *(u64 *)(r + 0) += r`, in every kernel
/// with BPF since 3.18 as `BPF_XADD`), written as assembly: core offers no atomic read-modify-
/// write on the bpfel target (its spec has no compare-and-swap, so `AtomicU64::fetch_add` is
/// not there).
#[inline(always)]
pub(crate) fn add(at: *mut u64, n: u64) {
    // SAFETY: `at` points into a live map value (a lookup's result, valid while the program
    // runs), 8-byte aligned as every u64 field of the `goprobe_common` rows.
    unsafe {
        core::arch::asm!(
            "lock *(u64 *)({at} + 0) += {n}",
            at = in(reg) at,
            n = in(reg) n,
            options(nostack),
        );
    }
}
