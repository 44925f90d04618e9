//! A per-second cap on the BPF work of every per-event signal: each program asks [`admit`]
//! before its costly part (a stack walk, map updates) and returns early once its signal's
//! budget on this CPU is spent for the current window; what was skipped is counted
//! (`counter::BUDGET_SKIPPED + signal`) so the report and the metrics show it. The target is
//! never stalled: an over-budget program does less, never waits.
//!
//! User space writes the caps (program runs per CPU per window, 0 = no cap) into `BUDGET_CAPS`
//! (goprobe/src/probe/budget.rs); a window is 2^30 ns ([`BUDGET_WINDOW_SHIFT`]).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, PerCpuArray},
};
use goprobe_common::{BUDGET_WINDOW_SHIFT, BudgetSlot, budget_signal, counter};

use crate::maps::bump;

/// Runs per CPU per window allowed, per [`budget_signal`]; 0 (or unset) is no cap.
#[map]
static BUDGET_CAPS: Array<u32> = Array::with_max_entries(budget_signal::LEN, 0);

/// This CPU's spending per [`budget_signal`] in the current window.
#[map]
static BUDGET: PerCpuArray<BudgetSlot> = PerCpuArray::with_max_entries(budget_signal::LEN, 0);

/// Whether one more run of `signal` ([`budget_signal`]) fits this CPU's budget; if not, counts
/// it as skipped.
///
/// NB: per-CPU state needs no atomics: no BPF program interrupts another on the same CPU
/// (kernel/trace/bpf_trace.c `trace_call_bpf` and kernel/events/core.c `bpf_overflow_handler`
/// both give up while `bpf_prog_active` is set), so the read-modify-write is not torn.
#[inline(always)]
pub(crate) fn admit(signal: u32) -> bool {
    let cap = match BUDGET_CAPS.get(signal) {
        Some(&c) if c > 0 => u64::from(c),
        _ => return true,
    };
    let Some(slot) = BUDGET.get_ptr_mut(signal) else {
        return true;
    };
    // SAFETY: plain helper call.
    let window = unsafe { bpf_ktime_get_ns() } >> BUDGET_WINDOW_SHIFT;
    // SAFETY: this CPU's slot, no concurrent writer while the program runs (see above).
    unsafe {
        if (*slot).window != window {
            (*slot).window = window;
            (*slot).used = 0;
        }
        if (*slot).used >= cap {
            bump(counter::BUDGET_SKIPPED + signal);
            return false;
        }
        (*slot).used += 1;
    }
    true
}
