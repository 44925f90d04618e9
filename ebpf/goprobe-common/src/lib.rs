//! The one definition of the kernel/user ABI of goprobe.
//!
//! Every struct that crosses between the eBPF programs (`goprobe-ebpf`) and the user-space agent
//! (`goprobe`) lives here: `#[repr(C)]`, `Copy`, explicit padding, a size assertion each. With the
//! `user` feature the structs implement [`aya::Pod`] so the agent can put them in maps.
#![no_std]

use core::mem::size_of;

/// Max number of processes the agent can watch at once (size of [`TargetConfig`] map).
pub const MAX_TARGETS: u32 = 1024;
/// Max number of threads that can be inside a stop-the-world at once, across all targets.
pub const MAX_PENDING_STW: u32 = 4096;
/// Max number of goroutines with a not-yet-consumed `gcStart` trigger.
pub const MAX_PENDING_TRIGGERS: u32 = 8192;
/// Size of the STW event ring buffer in bytes (power of two, multiple of the page size).
pub const STW_RING_BYTES: u32 = 256 * 1024;
/// Size of the process lifecycle ring buffer in bytes (`goprobe agent`; power of two).
pub const LIFECYCLE_RING_BYTES: u32 = 256 * 1024;

/// What happened to a process (`LifecycleEvent::kind`).
pub mod lifecycle_kind {
    /// The process replaced its image (`sched:sched_process_exec`): every exec on the host.
    pub const EXEC: u32 = 1;
    /// The thread group leader of an attached process exited (`sched:sched_process_exit`).
    pub const EXIT: u32 = 2;
}

/// A pid namespace, as `stat` of `/proc/<pid>/ns/pid` names it (`PID_NS`: the one goprobe
/// numbers processes in; all zero for the initial namespace).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidNs {
    pub dev: u64,
    pub ino: u64,
}
const _: () = assert!(size_of::<PidNs>() == 16);

/// A process started a new program or ended (`goprobe agent`'s discovery).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// [`lifecycle_kind`].
    pub kind: u32,
    pub tgid: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) at the tracepoint.
    pub ktime_ns: u64,
}
const _: () = assert!(size_of::<LifecycleEvent>() == 16);

/// Which calling convention of the Go runtime's stop/start-the-world functions a target has.
///
/// NB: the reason of a stop-the-world and `runtime.startTheWorldWithSema`'s signature changed
/// three times (src/runtime/proc.go): Go 1.19 `func stopTheWorldWithSema()` takes no reason (the
/// caller puts it in `m.preemptoff`, a string) and `startTheWorldWithSema(emitTraceEvent bool)
/// int64`; Go 1.21 `stopTheWorldWithSema(reason stwReason)` and `startTheWorldWithSema() int64`;
/// Go 1.22 `startTheWorldWithSema(now int64, w worldStop) int64` with `worldStop{reason; start}`;
/// Go 1.23+ the same with `worldStop{reason; startedStopping; finishedStopping;
/// stoppingCPUTime}`. The register positions of `reason` (BL) and the start time (RCX) are the
/// same in 1.22 and 1.23+.
pub mod stw_abi {
    /// Go 1.21: reason from `stopTheWorldWithSema(reason)` entry, times from `runtime.work`.
    pub const GO121: u32 = 1;
    /// Go 1.22 and later: the `worldStop` record is passed to `startTheWorldWithSema` in registers.
    pub const GO122: u32 = 2;
    /// Go 1.19: as [`GO121`], but the reason is the string in `m.preemptoff` at
    /// `stopTheWorldWithSema` entry (see [`super::STW_REASON_IN_TEXT`]).
    pub const GO119: u32 = 3;

    /// Whether `stopTheWorldWithSema` is probed: its entry is where the reason (and, for
    /// stop-the-worlds the runtime does not time, the start) is known.
    pub const fn probes_stop(abi: u32) -> bool {
        abi == GO119 || abi == GO121
    }
}

/// Where the end of a stop-the-world (the `now` that `startTheWorldWithSema` returns) is read.
pub mod stw_exit {
    /// On every RET of `startTheWorldWithSema` (Go 1.19/1.21, or callers not recognised).
    pub const RETS: u32 = 0;
    /// At its entry when the caller passes `now` (the final mark termination), for the sweep
    /// termination from `work.tMark` in user space ([`super::STW_FLAG_NOW_FROM_TMARK`]), and
    /// else right after the calls of the callers that pass 0 (Go 1.22+): no RET probe, so no
    /// out-of-line single step on the GC's path.
    pub const CALLERS: u32 = 1;
}

/// Per-process constants the probes need, keyed by tgid in the `TARGETS` map.
///
/// Addresses are run-time addresses (PIE load bias already applied); offsets come from the
/// per-Go-version layout table in `goprobe/src/analysis/layout/mod.rs`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TargetConfig {
    /// One of [`stw_abi`].
    pub stw_abi: u32,
    /// Offset of `runtime.workType.cycles` (uint32).
    pub off_work_cycles: u32,
    /// Address of the `runtime.work` global.
    pub work_addr: u64,
    /// Address of the `runtime.memstats` global.
    pub memstats_addr: u64,
    /// Offset of `runtime.workType.pauseNS` (int64).
    pub off_work_pause_ns: u32,
    /// Offset of `runtime.workType.pauseStart` (int64; Go 1.19 and 1.21 only, else 0).
    pub off_work_pause_start: u32,
    /// Offset of `runtime.workType.userForced` (bool).
    pub off_work_user_forced: u32,
    /// Offset of `runtime.mstats.numgc` (uint32).
    pub off_memstats_numgc: u32,
    /// Offset of `runtime.g.m` (*m).
    pub off_g_m: u32,
    /// Offset of `runtime.m.curg` (*g).
    pub off_m_curg: u32,
    /// Offset of `runtime.m.preemptoff` (string; read on Go 1.19 only, else 0).
    pub off_m_preemptoff: u32,
    /// Where each STW's end is read: one of [`stw_exit`].
    pub stw_exit: u32,
    /// Address of the `runtime.gcController` global, 0 when it could not be located (then the
    /// `gcController` fields of [`CycleState`] are not read).
    pub gc_controller_addr: u64,
    /// Offsets of `runtime.workType.tSweepTerm`, `tMark`, `tMarkTerm`, `tEnd` (int64 each).
    pub off_work_t: [u32; 4],
    /// Offsets of `runtime.workType.heap0`, `heap1`, `heap2` (uint64 each).
    pub off_work_heap: [u32; 3],
    /// Offset of `runtime.gcControllerState.gcPercent` (int32; atomic.Int32 from Go 1.21).
    pub off_gcc_gc_percent: u32,
    /// Offset of `runtime.gcControllerState.memoryLimit` (atomic.Int64).
    pub off_gcc_memory_limit: u32,
    /// Offset of `runtime.gcControllerState.lastHeapGoal` (uint64); 0 when unknown for this
    /// binary (no DWARF and no verified table entry), then it is not read.
    pub off_gcc_last_heap_goal: u32,
}
const _: () = assert!(size_of::<TargetConfig>() == 104);

/// `StwEvent::reason` on Go 1.19: not GC; the runtime's reason is the text in
/// [`StwEvent::reason_text`]. Outside the `stwReason` enum of Go 1.21+ (0 to 16).
pub const STW_REASON_IN_TEXT: u8 = 0xff;
/// Bytes of a Go 1.19 reason string kept in [`StwEvent::reason_text`]; the longest the Go 1.19
/// runtime uses is 20 (`"PageCachePagesLeaked"`).
pub const STW_REASON_TEXT_LEN: usize = 24;

/// `StwEvent::trigger` when no `gcStart` was seen for the cycle.
pub const TRIGGER_UNKNOWN: u8 = 0xff;

/// `StwEvent::flags`: the stop entry (Go 1.19/1.21 `stopTheWorldWithSema`) was seen for this STW.
pub const STW_FLAG_STOP_SEEN: u8 = 1 << 0;
/// `StwEvent::flags`: the `startTheWorldWithSema` entry was seen for this STW.
pub const STW_FLAG_START_SEEN: u8 = 1 << 1;
/// `StwEvent::flags`: a read of the target's memory failed; runtime fields are zero.
pub const STW_FLAG_READ_FAILED: u8 = 1 << 2;
/// `StwEvent::flags`: a sweep termination sent at `startTheWorldWithSema` entry
/// ([`stw_exit::CALLERS`]); its `now` is the cycle's `work.tMark`, read at the final mark
/// termination (`StwEvent::now` is 0).
pub const STW_FLAG_NOW_FROM_TMARK: u8 = 1 << 3;

/// `CycleState::flags`: the `runtime.work` fields of the cycle were read.
pub const CYCLE_FLAG_WORK: u32 = 1 << 0;
/// `CycleState::flags`: `gcController.gcPercent` and `memoryLimit` were read.
pub const CYCLE_FLAG_SETTINGS: u32 = 1 << 1;
/// `CycleState::flags`: `gcController.lastHeapGoal` was read.
pub const CYCLE_FLAG_HEAP_GOAL: u32 = 1 << 2;
/// `CycleState::flags`: Go 1.22+: `finished_stopping` holds RDI at `startTheWorldWithSema` entry.
pub const CYCLE_FLAG_STOPPING: u32 = 1 << 3;

/// What a GC cycle was, read from `runtime.work` and `runtime.gcController` at the cycle's final
/// stop-the-world (the mark termination that ends it), plus the stop latency of every STW.
///
/// NB: `gcMarkTermination` sets `work.heap1`, `work.heap2` and `work.tEnd`, and `gcMarkDone`
/// calls `gcController.endCycle` (which sets `lastHeapGoal`), before the final
/// `startTheWorldWithSema` (src/runtime/mgc.go, mgcpacer.go, Go 1.19–1.27); `tSweepTerm`,
/// `tMark`, `tMarkTerm` and `heap0` are set earlier in the same cycle.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CycleState {
    /// `CYCLE_FLAG_*` bits.
    pub flags: u32,
    /// `gcController.gcPercent` (GOGC; -1 when off).
    pub gc_percent: i32,
    /// `work.tSweepTerm`, `tMark`, `tMarkTerm`, `tEnd` (nanotime).
    pub t: [i64; 4],
    /// `work.heap0`, `heap1`, `heap2` (bytes).
    pub heap: [u64; 3],
    /// `gcController.lastHeapGoal` (bytes).
    pub heap_goal: u64,
    /// `gcController.memoryLimit` (GOMEMLIMIT, bytes).
    pub memory_limit: i64,
    /// Go 1.23+: `worldStop.finishedStopping` (RDI at `startTheWorldWithSema` entry), every STW.
    pub finished_stopping: i64,
}
const _: () = assert!(size_of::<CycleState>() == 88);

/// One stop-the-world as seen by the probes: raw readings, interpreted in user space
/// (`goprobe/src/signal/gc.rs`). Times are the runtime's `nanotime()` (CLOCK_MONOTONIC).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct StwEvent {
    pub tgid: u32,
    pub tid: u32,
    /// The runtime's `stwReason` (uint8).
    pub reason: u8,
    /// `gcTrigger.kind` of the `gcStart` that led to this STW, or [`TRIGGER_UNKNOWN`].
    pub trigger: u8,
    /// `work.userForced` read at the start of the world.
    pub user_forced: u8,
    /// `STW_FLAG_*` bits.
    pub flags: u8,
    /// `work.cycles` read at the start of the world.
    pub cycles: u32,
    /// `memstats.numgc` read at the start of the world.
    pub numgc: u32,
    /// Go 1.19: length of the runtime's reason string (`m.preemptoff`), possibly more than the
    /// [`STW_REASON_TEXT_LEN`] bytes kept in `reason_text`; 0 with [`STW_REASON_IN_TEXT`] when
    /// the string could not be read.
    pub reason_len: u32,
    /// Go 1.22+: `worldStop.startedStopping` (RCX at `startTheWorldWithSema` entry).
    pub started: i64,
    /// Go 1.22+: the `now` argument of `startTheWorldWithSema` (RAX at entry; 0 if not passed).
    pub now_arg: i64,
    /// The value `startTheWorldWithSema` returned (RAX at its RET).
    pub now: i64,
    /// Go 1.19/1.21: `bpf_ktime_get_ns()` at `stopTheWorldWithSema` entry.
    pub stop_ktime: i64,
    /// Go 1.19/1.21: `work.pauseNS` at `stopTheWorldWithSema` entry.
    pub pause_ns_at_stop: i64,
    /// `work.pauseNS` at `startTheWorldWithSema` entry.
    pub pause_ns_at_start: i64,
    /// Go 1.19/1.21: `work.pauseStart` at `startTheWorldWithSema` entry.
    pub pause_start: i64,
    /// Go 1.19: the first bytes of `m.preemptoff` at `stopTheWorldWithSema` entry.
    pub reason_text: [u8; STW_REASON_TEXT_LEN],
    /// The cycle's phases, heap and settings (final mark termination only) and the stop latency.
    pub cycle: CycleState,
    /// Who asked for this STW: for a non-GC STW the goroutine that called `runtime.stopTheWorld`,
    /// for a sweep termination forced by `runtime.GC()` the goroutine that called `gcStart`;
    /// else [`CallerStack::NONE`].
    pub caller: CallerStack,
}
const _: () = assert!(size_of::<StwEvent>() == 208);

/// Key of the pending-trigger map: a goroutine (`*g`) of one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoroutineKey {
    pub tgid: u32,
    pub _pad0: u32,
    pub g: u64,
}
const _: () = assert!(size_of::<GoroutineKey>() == 16);

/// Max number of distinct user stacks kept in the `STACKS` map.
///
/// NB: a hash map keyed by a 64-bit hash of the frames, not a `BPF_MAP_TYPE_STACK_TRACE`: that
/// map has one slot per hash bucket and `bpf_get_stackid` fails when a bucket holds another stack
/// (kernel/bpf/stackmap.c, -EEXIST without BPF_F_REUSE_STACKID, which would instead silently
/// repoint ids already counted). With a few thousand distinct stacks (recursive code, CPU samples)
/// a quarter of all captures failed, every time for the same stacks. Entries are allocated on
/// first use (`BPF_F_NO_PREALLOC`), so memory follows the number of distinct stacks.
pub const MAX_STACKS: u32 = 32768;
/// Frames kept per stack, leaf first (the kernel's `PERF_MAX_STACK_DEPTH`).
pub const MAX_STACK_DEPTH: usize = 127;

/// The frames of one stack: return addresses, leaf first, zero after the last.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackFrames {
    pub ips: [u64; MAX_STACK_DEPTH],
}
const _: () = assert!(size_of::<StackFrames>() == 1016);
/// Max number of goroutines with a captured, not-yet-consumed caller stack, per kind.
pub const MAX_PENDING_CALLERS: u32 = 8192;
/// Max number of distinct (process, assist stack) pairs aggregated.
pub const MAX_ASSIST_SITES: u32 = 8192;
/// Max number of (process, GC cycle) pairs with assist time aggregated.
pub const MAX_ASSIST_CYCLES: u32 = 4096;
/// `bpf_get_stack` flag: the user-space stack (include/uapi/linux/bpf.h `BPF_F_USER_STACK`).
pub const BPF_F_USER_STACK: u64 = 1 << 8;

/// A user stack captured at a function's entry: `id`, its key in the `STACKS` map (negative:
/// none), and the return address read at the stack pointer.
///
/// The return address is kept because a stack walked by frame pointers at a function's entry can
/// miss the immediate caller: the callee has not pushed its frame yet. The kernel adds it itself
/// when the probed instruction is `push rbp` (arch/x86/events/core.c, Linux 6.11+), but Go 1.19
/// prologues have none (the probe sits on the stack check's `jbe`); user space inserts `ret`
/// after the first frame when the walked stack lacks it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallerStack {
    pub id: i64,
    pub ret: u64,
}
const _: () = assert!(size_of::<CallerStack>() == 16);

impl CallerStack {
    /// No stack captured.
    pub const NONE: Self = Self { id: -1, ret: 0 };

    /// Whether a stack was captured.
    pub const fn is_some(&self) -> bool {
        self.id >= 0
    }
}

impl Default for CallerStack {
    fn default() -> Self {
        Self::NONE
    }
}

/// Key of the assist-time-by-stack map: a process and the stack that entered `gcAssistAlloc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AssistKey {
    pub tgid: u32,
    /// The [`GENERATION`](crate::generation) the row was counted in.
    pub generation: u32,
    pub stack: CallerStack,
}
const _: () = assert!(size_of::<AssistKey>() == 24);

/// Key of the assist-time-by-cycle map: a process and `work.cycles` during the assist.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CycleKey {
    pub tgid: u32,
    pub cycle: u32,
}
const _: () = assert!(size_of::<CycleKey>() == 8);

/// An assist in progress on one thread: `gcAssistAlloc1` entry time and the assisting goroutine.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AssistPending {
    pub start_ktime: u64,
    pub g: u64,
}
const _: () = assert!(size_of::<AssistPending>() == 16);

/// What a [`SiteKey`] counts; the meaning of [`SiteCounts`] `a` and `b` per kind.
pub mod site_kind {
    /// Allocations: `a` bytes, `b` objects (weighted estimates in sampled mode).
    pub const ALLOC: u32 = 1;
    /// Goroutine creations (`go` statements): `a` goroutines created, `b` unused.
    pub const GOROUTINE_CREATE: u32 = 2;
    /// Minor page faults, sampled (one per perf sample period): `a` faults the samples stand for (the
    /// sum of their sample periods), `b` samples.
    pub const PAGE_FAULT: u32 = 3;
    /// On-CPU samples: `a` samples, `b` unused.
    pub const CPU: u32 = 4;
    /// Major page faults, sampled as [`PAGE_FAULT`]: `a` faults (sum of periods), `b` samples.
    pub const PAGE_FAULT_MAJOR: u32 = 5;
}

/// Max number of distinct (process, kind, stack) triples counted in the `SITES` map: room for
/// every stack the `STACKS` map holds, under two signals, and each signal's no-stack entry, so
/// that a full stack map still leaves the weight of uncaptured stacks somewhere to go.
pub const MAX_SITES: u32 = 2 * MAX_STACKS + 64;

/// Key of the per-stack counters every stack-attributed signal shares (`SITES`, per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SiteKey {
    pub tgid: u32,
    /// One of [`site_kind`].
    pub kind: u32,
    pub stack: CallerStack,
    /// The [`GENERATION`](crate::generation) the row was counted in.
    pub generation: u32,
    pub _pad0: u32,
}
const _: () = assert!(size_of::<SiteKey>() == 32);

/// Two counters per site; what they count depends on [`SiteKey::kind`] (see [`site_kind`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteCounts {
    pub a: u64,
    pub b: u64,
}
const _: () = assert!(size_of::<SiteCounts>() == 16);

/// Goroutines created and exited in one process since attach (`GOROUTINE_COUNTS`, per CPU,
/// keyed by tgid). User space creates the entry at attach; the kernel side only adds to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoroutineCounts {
    pub created: u64,
    pub exited: u64,
}
const _: () = assert!(size_of::<GoroutineCounts>() == 16);
/// Max number of frameless pc ranges of one binary (goprobe/src/analysis/binary/frameless.rs);
/// a power of two (the BPF binary search runs `log2(MAX_FRAMELESS) + 1` steps). hugo, a 95 MB
/// Go program with 88k functions, has 69,390; Debian's prometheus 68,318; a small test program
/// about 2,600 (goprobe/tests/frameless_ranges.rs).
pub const MAX_FRAMELESS: u32 = 1 << 17;
/// Steps of the bounded binary search over one binary's ranges (`2^(FRAMELESS_SEARCH_STEPS-1)`
/// ≥ `MAX_FRAMELESS`).
pub const FRAMELESS_SEARCH_STEPS: u32 = 18;
const _: () = assert!(1 << (FRAMELESS_SEARCH_STEPS - 1) >= MAX_FRAMELESS);
/// Entries of the `FRAMELESS` pool, shared by every attached binary (8 bytes each: 8 MiB).
pub const FRAMELESS_POOL: u32 = 1 << 20;
/// The x86-64 `RET` opcode: at it the return address is at `[SP]`, so lone `RET`s need no range
/// (the BPF side reads the opcode at the sampled IP).
pub const X86_RET: u8 = 0xc3;

/// A pc range `[start, end)` at which `[SP]` holds the return address, as offsets from the Go
/// text start of its binary (goprobe/src/analysis/binary/frameless.rs): the same in every
/// process of the binary, PIE or not.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FramelessRange {
    pub start: u32,
    pub end: u32,
}
const _: () = assert!(size_of::<FramelessRange>() == 8);

/// [`FramelessTarget::state`] values.
pub mod frameless_state {
    /// The binary's ranges are in `FRAMELESS[base..base + n_ranges]`.
    pub const LOADED: u32 = 1;
    /// They could not be loaded (pool full, or more than `MAX_FRAMELESS`): a perf sample of this
    /// process is dropped and counted (`counter::STACK_FAILED`), since its stack could miss a
    /// caller.
    pub const UNKNOWN: u32 = 2;
}

/// Where the frameless ranges of one process are (`FRAMELESS_TARGETS`, keyed by tgid): its
/// binary's block of the shared `FRAMELESS` pool, and where that binary's Go text is in it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FramelessTarget {
    /// Run-time address of the binary's Go text start (link-time start plus the load bias).
    pub text: u64,
    /// Bytes of Go text from `text`: an IP outside is not in Go code.
    pub text_len: u32,
    /// One of [`frameless_state`].
    pub state: u32,
    /// Index of the binary's first range in `FRAMELESS`.
    pub base: u32,
    /// Ranges in `FRAMELESS[base..base + n_ranges]`, sorted and disjoint.
    pub n_ranges: u32,
    /// Always 0. The BPF binary search ORs it, loaded afresh, into its bounds at every step so
    /// that the verifier knows nothing of them and can prune its paths (see perf.rs).
    pub zero: u64,
}
const _: () = assert!(size_of::<FramelessTarget>() == 32);

/// Which allocation sampler an [`AllocConfig`] selects (`goprobe attach --alloc`).
pub mod alloc_sampler {
    /// Exact mode: every `runtime.mallocgc` (and size-specialized entry) call counted.
    pub const EXACT: u32 = 1;
    /// Sampled, riding the runtime's own sampler: `runtime.profilealloc` calls.
    pub const PROFILEALLOC: u32 = 2;
    /// Sampled in the kernel on the allocator's slow paths: span refills and large objects.
    pub const SPAN_REFILL: u32 = 3;
}

/// Allocation probing settings of one process (`ALLOC_TARGETS`, keyed by tgid): where the
/// runtime keeps what the span-refill sampler reads, and `runtime.mallocgc`'s code range.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocConfig {
    /// One of [`alloc_sampler`].
    pub sampler: u32,
    pub _pad0: u32,
    /// `runtime.MemProfileRate` read at attach (profilealloc sampler), else 0.
    pub mem_profile_rate: u64,
    /// Run-time `[start, end)` of `runtime.mallocgc`: calls of size-specialized entry points
    /// returning there were already counted at mallocgc's entry.
    pub mallocgc_start: u64,
    pub mallocgc_end: u64,
    /// `runtime.mcache.alloc` ([numSpanClasses]*mspan) and `tinyAllocs` (uintptr).
    pub off_mcache_alloc: u32,
    pub off_mcache_tiny_allocs: u32,
    /// `runtime.mspan.allocCount`, `allocCountBeforeCache` (uint16) and `elemsize` (uintptr).
    pub off_span_alloc_count: u32,
    pub off_span_alloc_count_before_cache: u32,
    pub off_span_elemsize: u32,
    /// 1 when the entry sites are the `jbe` of the stack-bound check (Go 1.19): a hit with the
    /// branch taken goes to morestack and the function runs again, so it is not counted.
    pub entry_on_jbe: u32,
}
const _: () = assert!(size_of::<AllocConfig>() == 56);

/// Max number of distinct (process, stack, size) triples of `runtime.profilealloc` samples.
pub const MAX_ALLOC_SAMPLES: u32 = 16384;

/// Key of the profilealloc sample counts (`ALLOC_SAMPLES`, per CPU): user space weights each
/// sample by its size (pprof's unbiasing needs floating point, which BPF has not).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AllocSampleKey {
    pub tgid: u32,
    /// The [`GENERATION`](crate::generation) the row was counted in.
    pub generation: u32,
    pub stack: CallerStack,
    /// The sampled object's size as the runtime passed it to profilealloc.
    pub size: u64,
}
const _: () = assert!(size_of::<AllocSampleKey>() == 32);

/// Indexes of the `COUNTERS` per-CPU array.
pub mod counter {
    /// Events dropped because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// STWs whose pending state could not be stored (map full).
    pub const PENDING_FULL: u32 = 1;
    /// RET probes that fired without a matching entry (attached mid-STW).
    pub const UNMATCHED_RET: u32 = 2;
    /// Stacks that could not be captured (no user stack to walk, or the `STACKS` map full), and
    /// perf samples dropped because their process' frameless ranges are not loaded.
    pub const STACK_FAILED: u32 = 3;
    /// Per-stack counts that could not be added (`SITES` map full): their weight is lost.
    pub const SITES_FULL: u32 = 4;
    /// Process lifecycle events dropped because their ring buffer was full.
    pub const LIFECYCLE_FULL: u32 = 5;
    /// First of [`super::budget_signal::LEN`] slots: program runs of each capped signal that
    /// returned early because that signal's per-second budget on their CPU was spent
    /// (`BUDGET_SKIPPED + budget_signal::X`).
    pub const BUDGET_SKIPPED: u32 = 6;
    /// Number of counters.
    pub const LEN: u32 = BUDGET_SKIPPED + super::budget_signal::LEN;
}

/// The signals whose BPF work per second is capped (ebpf/goprobe-ebpf/src/budget.rs): indexes
/// of `BUDGET_CAPS` and of the per-CPU `BUDGET`, and offsets from [`counter::BUDGET_SKIPPED`].
pub mod budget_signal {
    /// `page_fault_min` / `page_fault_maj` samples.
    pub const PAGE_FAULT: u32 = 0;
    /// `cpu_sample` ticks.
    pub const CPU: u32 = 1;
    /// Allocation probes (every sampler).
    pub const ALLOC: u32 = 2;
    /// Goroutine creation stacks (`goroutine_create_entry`; the created count is always kept).
    pub const GOROUTINE: u32 = 3;
    /// Mark-assist stacks (`assist_entry`; the assist's time is still counted, without stack).
    pub const ASSIST: u32 = 4;
    /// Stop-the-world and forced-GC caller stacks (`stw_caller_entry`, `gcStart`'s capture).
    pub const STACK: u32 = 5;
    /// Number of capped signals.
    pub const LEN: u32 = 6;
}

/// Length of a budget window: `bpf_ktime_get_ns() >> BUDGET_WINDOW_SHIFT`, 2^30 ns (1.07 s),
/// a shift where a division would cost more.
pub const BUDGET_WINDOW_SHIFT: u32 = 30;

/// One CPU's spending of one signal's budget (`BUDGET`, per CPU, indexed by
/// [`budget_signal`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetSlot {
    /// The window (`ktime >> BUDGET_WINDOW_SHIFT`) `used` counts in.
    pub window: u64,
    /// Program runs admitted in that window.
    pub used: u64,
}
const _: () = assert!(size_of::<BudgetSlot>() == 16);
/// Double-buffered per-stack rows (`SITES`, `ALLOC_SAMPLES`, `ASSIST_BY_STACK`): the programs
/// count into the generation `GENERATION[0]` names (0 or 1), part of each row's key. User space
/// (`goprobe agent`) takes the rows of the other generation, which no program has written since
/// the previous flip, reading and deleting them without a race, then flips: the maps keep only
/// the rows of the last two intervals, and nothing counted is lost or counted twice.
pub mod generation {
    /// Entries of the `GENERATION` array.
    pub const LEN: u32 = 1;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are #[repr(C)], Copy, made of integers, with explicit padding fields.
    unsafe impl aya::Pod for super::TargetConfig {}
    unsafe impl aya::Pod for super::StackFrames {}
    unsafe impl aya::Pod for super::StwEvent {}
    unsafe impl aya::Pod for super::GoroutineKey {}
    unsafe impl aya::Pod for super::CallerStack {}
    unsafe impl aya::Pod for super::AssistKey {}
    unsafe impl aya::Pod for super::CycleKey {}
    unsafe impl aya::Pod for super::AssistPending {}
    unsafe impl aya::Pod for super::SiteKey {}
    unsafe impl aya::Pod for super::SiteCounts {}
    unsafe impl aya::Pod for super::GoroutineCounts {}
    unsafe impl aya::Pod for super::FramelessRange {}
    unsafe impl aya::Pod for super::FramelessTarget {}
    unsafe impl aya::Pod for super::LifecycleEvent {}
    unsafe impl aya::Pod for super::PidNs {}
    unsafe impl aya::Pod for super::AllocConfig {}
    unsafe impl aya::Pod for super::AllocSampleKey {}
    unsafe impl aya::Pod for super::BudgetSlot {}
}
