//! The recipes: which runtime function touches which variable, with which instruction, per Go
//! release. Data, not code: a new Go release is a check of the cited source lines plus a test run.
//!
//! A recipe names a function and one or more anchors. An anchor is an instruction class
//! ([`Access`]) and the field of the variable that the instruction's RIP-relative operand points
//! at. A recipe yields every base address `B` such that, for each anchor, the function has an
//! instruction of that class whose operand is `B + field offset`. The base is accepted only when
//! at least two recipes, in different functions, can run and all of them agree on one address.

use std::ops::RangeInclusive;

use super::decode::Access;
use crate::analysis::layout::RuntimeLayout;

/// Go 1.x releases whose runtime sources the recipes below were checked against (1.19, 1.21 to
/// 1.27; Go 1.20's sources were not available to check). Recipes only run for these.
pub const CHECKED_MINORS: &[u32] = &[19, 21, 22, 23, 24, 25, 26, 27];

/// A runtime variable goprobe locates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Var {
    /// `runtime.work`.
    Work,
    /// `runtime.memstats`.
    Memstats,
    /// `runtime.allglen`.
    Allglen,
    /// `runtime.sched`.
    Sched,
    /// `runtime.gcController`.
    GcController,
    /// `runtime.MemProfileRate`.
    MemProfileRate,
    /// `runtime.gomaxprocs`.
    Gomaxprocs,
    /// `runtime.ncpu` (`runtime.numCPUStartup` since Go 1.25).
    Ncpu,
    /// `runtime.allp` (`[]*p`).
    Allp,
}

impl Var {
    /// Every variable, in the order [`super::locate`] looks for them.
    pub const ALL: [Var; 9] = [
        Var::Work,
        Var::Memstats,
        Var::Allglen,
        Var::Sched,
        Var::GcController,
        Var::MemProfileRate,
        Var::Gomaxprocs,
        Var::Ncpu,
        Var::Allp,
    ];

    /// The variable's Go name, as `.symtab` has it.
    pub fn symbol(self) -> &'static str {
        match self {
            Var::Work => "runtime.work",
            Var::Memstats => "runtime.memstats",
            Var::Allglen => "runtime.allglen",
            Var::Sched => "runtime.sched",
            Var::GcController => "runtime.gcController",
            Var::MemProfileRate => "runtime.MemProfileRate",
            Var::Gomaxprocs => "runtime.gomaxprocs",
            // NB: renamed numCPUStartup in Go 1.25 (runtime/runtime2.go; set in os_linux.go
            // osinit), same meaning: the CPU count at startup.
            Var::Ncpu => "runtime.ncpu",
            Var::Allp => "runtime.allp",
        }
    }
}

/// Which field of the variable an anchor's operand points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// The variable itself, or its first field (offset 0).
    Base,
    /// `runtime.workType.cycles`.
    WorkCycles,
    /// `runtime.workType.userForced`.
    WorkUserForced,
    /// `runtime.mstats.numgc`.
    MemstatsNumgc,
    /// The length of a slice variable (the word after its data pointer).
    SliceLen,
}

impl Field {
    /// The field's offset inside its variable, from the target's layout.
    pub fn offset(self, layout: &RuntimeLayout) -> u64 {
        match self {
            Field::Base => 0,
            Field::WorkCycles => u64::from(layout.work_cycles),
            Field::WorkUserForced => u64::from(layout.work_user_forced),
            Field::MemstatsNumgc => u64::from(layout.memstats_numgc),
            // NB: a slice header is {array, len, cap} (src/runtime/slice.go, Go 1.19–1.27).
            Field::SliceLen => 8,
        }
    }
}

/// An instruction class and the field its operand points at.
#[derive(Clone, Copy, Debug)]
pub struct Anchor {
    /// How the instruction uses its operand.
    pub access: Access,
    /// Which field of the variable the operand points at.
    pub field: Field,
    /// Only the function's first instruction of this class counts (source order is relied on).
    pub first: bool,
}

/// One way to find a variable: a function and the anchors it must contain.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// Short name for reports, `function: what`.
    pub name: &'static str,
    /// The runtime function, by its Go symbol name.
    pub function: &'static str,
    /// Go 1.x releases the recipe holds for.
    pub minors: RangeInclusive<u32>,
    /// What the function must contain; all anchors must hold for one base.
    pub anchors: &'static [Anchor],
}

const fn any(access: Access, field: Field) -> Anchor {
    Anchor {
        access,
        field,
        first: false,
    }
}

const fn first(access: Access, field: Field) -> Anchor {
    Anchor {
        access,
        field,
        first: true,
    }
}

/// The recipes for one variable.
pub fn recipes(var: Var) -> &'static [Recipe] {
    match var {
        Var::Work => WORK,
        Var::Memstats => MEMSTATS,
        Var::Allglen => ALLGLEN,
        Var::Sched => SCHED,
        Var::GcController => GC_CONTROLLER,
        Var::MemProfileRate => MEM_PROFILE_RATE,
        Var::Gomaxprocs => GOMAXPROCS,
        Var::Ncpu => NCPU,
        Var::Allp => ALLP,
    }
}

static WORK: &[Recipe] = &[
    // NB: runtime/mgc.go `func GC()` starts with `n := work.cycles.Load()` (1.21–1.27; 1.19:
    // `n := atomic.Load(&work.cycles)`, mgc.go:439; 1.27: mgc.go:549) and reloads work.cycles in
    // its sweep loops: 32-bit loads of work.cycles. The first RIP-relative operand of the
    // function is that load (nothing precedes it in the source).
    Recipe {
        name: "runtime.GC: first 32-bit load = work.cycles",
        function: "runtime.GC",
        minors: 19..=27,
        anchors: &[first(Access::Load(4), Field::WorkCycles)],
    },
    // NB: runtime/mgc.go gcStart: `work.userForced = trigger.kind == gcTriggerCycle` (1.19
    // mgc.go:616, 1.21:653, 1.22:647, 1.23:681, 1.24:692, 1.25:706, 1.26/1.27:796) compiles to
    // `sete byte [work.userForced]`.
    Recipe {
        name: "runtime.gcStart: setcc = work.userForced",
        function: "runtime.gcStart",
        minors: 19..=27,
        anchors: &[any(Access::SetCc, Field::WorkUserForced)],
    },
    // NB: runtime/mgc.go gcTrigger.test: `return int32(t.n-work.cycles.Load()) > 0` (1.19:
    // `t.n-work.cycles`, mgc.go:568, compiled to `sub r32,[work.cycles]`; 1.21:589, 1.22:584,
    // 1.23/1.24:618, 1.25:632, 1.26/1.27:722). Called by gcStart, so in every binary.
    Recipe {
        name: "runtime.gcTrigger.test: 32-bit read = work.cycles",
        function: "runtime.gcTrigger.test",
        minors: 19..=27,
        anchors: &[any(Access::Load(4), Field::WorkCycles)],
    },
    // NB: runtime/mgc.go gcMarkTermination: `if work.userForced { memstats.numforcedgc++ }`
    // (1.19 mgc.go:1032, 1.21:1054, 1.22:1044, 1.23:1122, 1.24:1133, 1.25:1144, 1.26:1451,
    // 1.27:1467): `cmp byte [work.userForced],0`.
    Recipe {
        name: "runtime.gcMarkTermination: byte cmp = work.userForced",
        function: "runtime.gcMarkTermination",
        minors: 19..=27,
        anchors: &[any(Access::Cmp(1), Field::WorkUserForced)],
    },
    // NB: `full lfstack` is the first field of `type workType struct` (mgc.go, 1.19–1.27), so
    // these two recipes pin the base itself: without them, a layout table whose offsets are all
    // shifted (a GOEXPERIMENT build without DWARF: greenteagc moves cycles and userForced by the
    // same 96 bytes in 1.25) would yield a consistent but wrong base.
    // runtime/mgcwork.go putfull: `work.full.push(&b.node)` (1.19 mgcwork.go:419, 1.21–1.24:420,
    // 1.25:478, 1.26/1.27:492): `lea rax,[work]`, the receiver.
    Recipe {
        name: "runtime.putfull: lea = &work.full",
        function: "runtime.putfull",
        minors: 19..=27,
        anchors: &[any(Access::Lea, Field::Base)],
    },
    // NB: runtime/mgcmark.go gcDrain: `if work.full == 0 { gcw.balance() }` (1.19/1.21
    // mgcmark.go:1084, 1.22:1223, 1.23:1211, 1.24:1209, 1.25:1237, 1.26:1315, 1.27:1320):
    // `cmp qword [work],0`.
    Recipe {
        name: "runtime.gcDrain: 64-bit cmp = work.full",
        function: "runtime.gcDrain",
        minors: 19..=27,
        anchors: &[any(Access::Cmp(8), Field::Base)],
    },
    // NB: runtime/mgc.go gcWaitOnMark: `nMarks := work.cycles.Load()` (1.19:
    // `atomic.Load(&work.cycles)`) after `lock(&work.sweepWaiters.lock)`.
    Recipe {
        name: "runtime.gcWaitOnMark: 32-bit load = work.cycles",
        function: "runtime.gcWaitOnMark",
        minors: 19..=27,
        anchors: &[any(Access::Load(4), Field::WorkCycles)],
    },
];

static MEMSTATS: &[Recipe] = &[
    // NB: runtime/mstats.go readmemstats_m: `memstats.heapStats.unsafeRead(&consStats)` takes
    // the address of memstats.heapStats, the first field of `type mstats struct` (mstats.go:16
    // in 1.19–1.24, :17 in 1.25–1.27), and `stats.NumGC = memstats.numgc` (1.19 mstats.go:539,
    // 1.21:558, 1.22–1.24:552, 1.25–1.27:554) loads memstats.numgc (uint32).
    Recipe {
        name: "runtime.readmemstats_m: lea = &memstats.heapStats, 32-bit load = memstats.numgc",
        function: "runtime.readmemstats_m",
        minors: 19..=27,
        anchors: &[
            any(Access::Lea, Field::Base),
            any(Access::Load(4), Field::MemstatsNumgc),
        ],
    },
    // NB: runtime/mgc.go gcMarkTermination: `memstats.numgc++` (1.19 mgc.go:1038, 1.21:1060,
    // 1.22:1050, 1.23:1128, 1.24:1139, 1.25:1150, 1.26:1457, 1.27:1473) is `inc dword`; so is
    // `memstats.numforcedgc++` just before it, which the other recipe rules out.
    Recipe {
        name: "runtime.gcMarkTermination: 32-bit inc = memstats.numgc",
        function: "runtime.gcMarkTermination",
        minors: 19..=27,
        anchors: &[any(Access::Inc(4), Field::MemstatsNumgc)],
    },
    // NB: runtime/mcache.go (*mcache).refill: `stats := memstats.heapStats.acquire()` (1.19
    // mcache.go:161, 1.21–1.23:162, 1.24:163, 1.25:164, 1.26/1.27:185): `lea rax,[memstats]`.
    Recipe {
        name: "runtime.(*mcache).refill: lea = &memstats.heapStats",
        function: "runtime.(*mcache).refill",
        minors: 19..=27,
        anchors: &[any(Access::Lea, Field::Base)],
    },
    // NB: runtime/mheap.go (*mheap).allocSpan: `stats := memstats.heapStats.acquire()` (1.19
    // mheap.go:1351, 1.21:1360, 1.22:1356, 1.23:1354, 1.24:1362, 1.25/1.26:1413, 1.27:1404).
    Recipe {
        name: "runtime.(*mheap).allocSpan: lea = &memstats.heapStats",
        function: "runtime.(*mheap).allocSpan",
        minors: 19..=27,
        anchors: &[any(Access::Lea, Field::Base)],
    },
];

static ALLGLEN: &[Recipe] = &[
    // NB: runtime/proc.go allgadd: `atomic.Storeuintptr(&allglen, uintptr(len(allgs)))`
    // (1.19 proc.go:543, 1.27:710) is `lea r,[allglen]; xchg [r],…`.
    Recipe {
        name: "runtime.allgadd: 64-bit atomic = allglen",
        function: "runtime.allgadd",
        minors: 19..=27,
        anchors: &[any(Access::Atomic(8), Field::Base)],
    },
    // NB: runtime/proc.go atomicAllG, inlined into forEachGRace, loads allglen *before* allgptr
    // (`length := atomic.Loaduintptr(&allglen)`, 1.19 proc.go:563, 1.27:730; the comment at
    // allglen's declaration makes that order a correctness requirement).
    Recipe {
        name: "runtime.forEachGRace: first 64-bit load = allglen",
        function: "runtime.forEachGRace",
        minors: 19..=27,
        anchors: &[first(Access::Load(8), Field::Base)],
    },
];

static SCHED: &[Recipe] = &[
    // NB: schedt.goidgen is the first field of runtime.schedt (runtime2.go, 1.19–1.27).
    // runtime/proc.go newproc1 refills the goid cache with
    // `pp.goidcache = sched.goidgen.Add(_GoidCacheBatch)` (1.19: `atomic.Xadd64(&sched.goidgen,
    // …)`, proc.go:4183; 1.27: proc.go:5433): `lea r,[sched]; lock xadd [r],…`.
    Recipe {
        name: "runtime.newproc1: 64-bit atomic = sched.goidgen",
        function: "runtime.newproc1",
        minors: 19..=27,
        anchors: &[any(Access::Atomic(8), Field::Base)],
    },
    // NB: runtime/proc.go oneNewExtraM: `gp.goid = sched.goidgen.Add(1)` (1.19 proc.go:1932,
    // 1.27:2551). Its other atomic, `sched.ngsys.Add(1)`, is 32-bit.
    Recipe {
        name: "runtime.oneNewExtraM: 64-bit atomic = sched.goidgen",
        function: "runtime.oneNewExtraM",
        minors: 19..=27,
        anchors: &[any(Access::Atomic(8), Field::Base)],
    },
];

static GC_CONTROLLER: &[Recipe] = &[
    // NB: runtime/mgc.go gcinit: `gcController.init(readGOGC(), readGOMEMLIMIT())` (1.19
    // mgc.go:162, 1.27:189): the receiver is `lea rax,[gcController]`.
    Recipe {
        name: "runtime.gcinit: lea = &gcController",
        function: "runtime.gcinit",
        minors: 19..=27,
        anchors: &[any(Access::Lea, Field::Base)],
    },
    // NB: runtime/mgcpacer.go gcControllerCommit: `gcController.commit(isSweepDone())` (1.19
    // mgcpacer.go:1563, 1.21:1428, 1.24:1439, 1.27:1519).
    Recipe {
        name: "runtime.gcControllerCommit: lea = &gcController",
        function: "runtime.gcControllerCommit",
        minors: 19..=27,
        anchors: &[any(Access::Lea, Field::Base)],
    },
];

static MEM_PROFILE_RATE: &[Recipe] = &[
    // NB: runtime/malloc.go profilealloc: `c.nextSample = nextSample()` (1.19 malloc.go:1237,
    // 1.21:1363), and nextSample, inlined, reads MemProfileRate (int); 1.24+ first
    // `c.memProfRate = MemProfileRate` (1.24 malloc.go:1812, 1.27:2227). Its other 64-bit load
    // is mcache0.
    Recipe {
        name: "runtime.profilealloc: 64-bit load = MemProfileRate",
        function: "runtime.profilealloc",
        minors: 19..=27,
        anchors: &[any(Access::Load(8), Field::Base)],
    },
    // NB: runtime/mcache.go allocmcache: `c.nextSample = nextSample()` (1.19 mcache.go:95,
    // 1.21:96, 1.24:97, 1.27:108), nextSample inlined as above.
    Recipe {
        name: "runtime.allocmcache: 64-bit load = MemProfileRate",
        function: "runtime.allocmcache",
        minors: 19..=27,
        anchors: &[any(Access::Load(8), Field::Base)],
    },
];

static GOMAXPROCS: &[Recipe] = &[
    // NB: runtime/debug.go GOMAXPROCS: `ret := int(gomaxprocs)` (1.19–1.24 debug.go:22,
    // 1.25–1.27 :76), a sign-extending 32-bit load. Only in programs that call it.
    Recipe {
        name: "runtime.GOMAXPROCS: 32-bit load = gomaxprocs",
        function: "runtime.GOMAXPROCS",
        minors: 19..=27,
        anchors: &[any(Access::Load(4), Field::Base)],
    },
    // NB: runtime/mstats.go flushallmcaches: `for i := 0; i < int(gomaxprocs); i++` (1.19
    // mstats.go:620, 1.27:635).
    Recipe {
        name: "runtime.flushallmcaches: 32-bit load = gomaxprocs",
        function: "runtime.flushallmcaches",
        minors: 19..=27,
        anchors: &[any(Access::Load(4), Field::Base)],
    },
    // NB: runtime/proc.go procresize: `var int32p *int32 = &gomaxprocs;
    // atomic.Store((*uint32)(unsafe.Pointer(int32p)), uint32(nprocs))` (1.19 proc.go:4929,
    // 1.27:6295): `lea r,[gomaxprocs]; xchg [r],…`.
    Recipe {
        name: "runtime.procresize: 32-bit atomic = gomaxprocs",
        function: "runtime.procresize",
        minors: 19..=27,
        anchors: &[any(Access::Atomic(4), Field::Base)],
    },
];

static NCPU: &[Recipe] = &[
    // NB: runtime/os_linux.go osinit: `ncpu = getproccount()` (1.19 os_linux.go:330,
    // 1.24:356); 1.25+ `numCPUStartup = getCPUCount()` (1.25 os_linux.go:357, 1.26/1.27:354):
    // a 32-bit store.
    Recipe {
        name: "runtime.osinit: 32-bit store = ncpu",
        function: "runtime.osinit",
        minors: 19..=27,
        anchors: &[any(Access::Store(4), Field::Base)],
    },
    // NB: runtime/proc.go schedinit: `procs := ncpu` (1.19 proc.go:718, 1.24:876); 1.25+
    // `procs = defaultGOMAXPROCS(numCPUStartup)` (1.25 proc.go:933, 1.26:934, 1.27:947).
    Recipe {
        name: "runtime.schedinit: 32-bit load = ncpu",
        function: "runtime.schedinit",
        minors: 19..=27,
        anchors: &[any(Access::Load(4), Field::Base)],
    },
    // NB: runtime/mgc.go gcStart: `if work.stwprocs > ncpu` (1.19 mgc.go:650; 1.25+
    // `numCPUStartup`, 1.27 mgc.go:822).
    Recipe {
        name: "runtime.gcStart: 32-bit load = ncpu",
        function: "runtime.gcStart",
        minors: 19..=27,
        anchors: &[any(Access::Load(4), Field::Base)],
    },
];

static ALLP: &[Recipe] = &[
    // NB: `for _, pp := range allp` loads the slice's array pointer and its length, both
    // 64-bit, RIP-relative (amd64 codegen of a range over a package-level slice). preemptall
    // (src/runtime/proc.go: 1.19 proc.go:5367, 1.21:5743, 1.23:6284, 1.25:6474, 1.27:6896),
    // called by stop-the-world, is in every binary.
    Recipe {
        name: "runtime.preemptall: 64-bit loads = allp.array, allp.len",
        function: "runtime.preemptall",
        minors: 19..=27,
        anchors: &[
            any(Access::Load(8), Field::Base),
            any(Access::Load(8), Field::SliceLen),
        ],
    },
    // NB: runtime/mgcmark.go gcMarkTinyAllocs: `for _, p := range allp` (1.19 mgcmark.go:1592,
    // 1.21:1589, 1.23:1718, 1.25:1802, 1.27:1795).
    Recipe {
        name: "runtime.gcMarkTinyAllocs: 64-bit loads = allp.array, allp.len",
        function: "runtime.gcMarkTinyAllocs",
        minors: 19..=27,
        anchors: &[
            any(Access::Load(8), Field::Base),
            any(Access::Load(8), Field::SliceLen),
        ],
    },
    // NB: runtime/mstats.go flushmcache: `p := allp[i]`, bounds-checked against len(allp)
    // (1.19 mstats.go:603, 1.21:622, 1.23:616, 1.25/1.27:618).
    Recipe {
        name: "runtime.flushmcache: 64-bit loads = allp.len, allp.array",
        function: "runtime.flushmcache",
        minors: 19..=27,
        anchors: &[
            any(Access::Load(8), Field::Base),
            any(Access::Load(8), Field::SliceLen),
        ],
    },
];
