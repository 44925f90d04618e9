//! The maps and counters every program shares: the attached processes' constants, the STWs in
//! progress, and the loss counters (see `goprobe_common::counter`).

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray},
};
use goprobe_common::{MAX_PENDING_STW, MAX_TARGETS, StwEvent, TargetConfig, counter};

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
