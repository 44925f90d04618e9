//! What a GC cycle was: phase timestamps and heap sizes from `runtime.work`, GOGC, GOMEMLIMIT and
//! the heap goal from `runtime.gcController`, read at the cycle's final stop-the-world; and the
//! stop latency of every stop-the-world (Go 1.23+).
//!
//! Called from `gc::stw_start_entry`: one set of reads per cycle, while the world is stopped, so
//! each read lengthens the pause by its cost (a `bpf_probe_read_user` of a resident page).

use aya_ebpf::programs::ProbeContext;
use goprobe_common::{
    CYCLE_FLAG_HEAP_GOAL, CYCLE_FLAG_SETTINGS, CYCLE_FLAG_STOPPING, CYCLE_FLAG_WORK, StwEvent,
    TargetConfig, stw_abi,
};

use crate::goabi::{ReadError, int_reg, read_user};

/// NB: `stwGCMarkTerm` (src/runtime/proc.go, Go 1.21–1.27; Go 1.19 events get the same number).
const STW_GC_MARK_TERM: u8 = 1;

/// Fills `ev.cycle` at `startTheWorldWithSema` entry, after `ev.cycles`/`ev.numgc` were read.
#[inline(always)]
pub fn read_cycle_state(ctx: &ProbeContext, cfg: &TargetConfig, ev: &mut StwEvent) {
    if cfg.stw_abi == stw_abi::GO122 {
        // NB: Go 1.23+ `worldStop{reason; startedStopping; finishedStopping; stoppingCPUTime}`
        // is passed in BL, RCX, RDI, RSI (src/runtime/proc.go startTheWorldWithSema); Go 1.22's
        // worldStop has no finishedStopping, user space ignores RDI there.
        if let Ok(v) = int_reg(ctx, 3) {
            ev.cycle.finished_stopping = v as i64;
            ev.cycle.flags |= CYCLE_FLAG_STOPPING;
        }
    }
    // NB: memstats.numgc++ happens right before the final startTheWorldWithSema of a cycle
    // (src/runtime/mgc.go gcMarkTermination): numgc == cycles only at that one.
    if ev.reason != STW_GC_MARK_TERM || ev.numgc != ev.cycles || ev.cycles == 0 {
        return;
    }
    let work = cfg.work_addr;
    let read_work = |ev: &mut StwEvent| -> Result<(), ReadError> {
        for i in 0..4 {
            ev.cycle.t[i] = read_user(work + cfg.off_work_t[i] as u64)?;
        }
        for i in 0..3 {
            ev.cycle.heap[i] = read_user(work + cfg.off_work_heap[i] as u64)?;
        }
        Ok(())
    };
    if read_work(ev).is_ok() {
        ev.cycle.flags |= CYCLE_FLAG_WORK;
    }
    let gcc = cfg.gc_controller_addr;
    if gcc == 0 {
        return;
    }
    let read_settings = |ev: &mut StwEvent| -> Result<(), ReadError> {
        ev.cycle.gc_percent = read_user(gcc + cfg.off_gcc_gc_percent as u64)?;
        ev.cycle.memory_limit = read_user(gcc + cfg.off_gcc_memory_limit as u64)?;
        Ok(())
    };
    if read_settings(ev).is_ok() {
        ev.cycle.flags |= CYCLE_FLAG_SETTINGS;
    }
    if cfg.off_gcc_last_heap_goal != 0
        && let Ok(v) = read_user::<u64>(gcc + cfg.off_gcc_last_heap_goal as u64)
    {
        ev.cycle.heap_goal = v;
        ev.cycle.flags |= CYCLE_FLAG_HEAP_GOAL;
    }
}
