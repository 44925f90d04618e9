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
