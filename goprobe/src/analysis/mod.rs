//! Target analysis: from a pid to a [`Target`] — what the process runs (a supported Go
//! executable), where each probe goes (file offsets), and the runtime addresses and offsets the
//! probes read.

pub mod binary;
pub mod layout;
pub mod plan;
pub mod process;

use std::{io, path::PathBuf, sync::Arc};

use binary::{
    buildinfo, disasm, disasm::DisasmError, elf::ElfInfo, frameless, symbols::RuntimeSymbols, vars,
    version, version::GoVersion,
};
use goprobe_gopclntab::{VersionHint, infer_go_version};
use layout::{RuntimeLayout, dwarf};
pub use plan::FunctionPlan;
use plan::{alloc, goroutines};
pub use process::Process;

/// NB: runtime functions and variables the GC probes need (src/runtime/proc.go, mgc.go,
/// mstats.go). `stopTheWorldWithSema` is only probed on Go 1.19 and 1.21 (see
/// goprobe_common::stw_abi::probes_stop).
const START_THE_WORLD: &str = "runtime.startTheWorldWithSema";
const STOP_THE_WORLD: &str = "runtime.stopTheWorldWithSema";
const GC_START: &str = "runtime.gcStart";
/// NB: goroutine-side functions the stack probes use (src/runtime/proc.go `stopTheWorld`,
/// src/runtime/mgcmark.go `gcAssistAlloc` and, on g0, `gcAssistAlloc1`; Go 1.19–1.27).
const STOP_THE_WORLD_CALLER: &str = "runtime.stopTheWorld";
const GC_ASSIST_ALLOC: &str = "runtime.gcAssistAlloc";
const GC_ASSIST_ALLOC1: &str = "runtime.gcAssistAlloc1";
/// The `.symtab` names looked up: functions are found through the Go function table too,
/// variables only here or by [`vars::locate`].
fn wanted() -> Vec<&'static str> {
    let mut names = vec![START_THE_WORLD, STOP_THE_WORLD, GC_START];
    names.extend(vars::Var::ALL.iter().map(|v| v.symbol()));
    names
}

/// Why a process cannot be profiled. Messages are shown to users as they are.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: u32 },
    #[error("pid {pid} ({comm}) is a kernel thread; goprobe attaches to Go programs")]
    KernelThread { pid: u32, comm: String },
    #[error(
        "permission denied reading /proc/{pid}: run as root, or grant CAP_SYS_PTRACE and \
         CAP_DAC_READ_SEARCH (docs/config.md, Capabilities)"
    )]
    PermissionDenied { pid: u32 },
    #[error("reading /proc/{pid}/{what}")]
    Proc {
        pid: u32,
        what: &'static str,
        source: io::Error,
    },
    #[error("pid {pid} ({exe}) is not an ELF executable: {reason}")]
    NotElf {
        pid: u32,
        exe: PathBuf,
        reason: String,
    },
    #[error(
        "pid {pid} ({exe}) is packed with {packer}: its code is unpacked into anonymous memory at \
         startup, and uprobes can only be placed in a file's pages; profile the unpacked binary \
         (`upx -d`)"
    )]
    Packed {
        pid: u32,
        exe: PathBuf,
        packer: &'static str,
    },
    #[error(
        "pid {pid} ({exe}) is not a Go program: it has no Go build info and no Go symbol table"
    )]
    NotGo { pid: u32, exe: PathBuf },
    #[error(
        "pid {pid} ({exe}) was built with {version}, which goprobe does not support; supported: {range}"
    )]
    UnsupportedGoVersion {
        pid: u32,
        exe: PathBuf,
        version: String,
        range: String,
    },
    #[error(
        "pid {pid} ({exe}) has no Go build info and its Go version cannot be told ({hint}); \
         every probe goprobe has (GC pauses) depends on the exact runtime version, so none can \
         run"
    )]
    UnknownGoVersion {
        pid: u32,
        exe: PathBuf,
        hint: String,
    },
    #[error("pid {pid} ({exe}) is stripped (no .symtab), and {source}")]
    Vars {
        pid: u32,
        exe: PathBuf,
        source: vars::VarsError,
    },
    #[error("pid {pid} ({exe}): symbol {symbol} not found in the Go runtime")]
    MissingSymbol {
        pid: u32,
        exe: PathBuf,
        symbol: &'static str,
    },
    #[error("pid {pid} ({exe}): cannot place probes in {symbol}: {source}")]
    Disasm {
        pid: u32,
        exe: PathBuf,
        symbol: &'static str,
        source: DisasmError,
    },
    #[error("pid {pid} ({exe}) is position-independent but its text is not mapped")]
    NotMapped { pid: u32, exe: PathBuf },
    #[error(
        "pid {pid}: runtime layout check failed (work.cycles={cycles}, memstats.numgc={numgc}); \
         the binary's runtime differs from the {version} layout goprobe knows (GOEXPERIMENT or \
         -race build?)"
    )]
    LayoutMismatch {
        pid: u32,
        version: String,
        cycles: u32,
        numgc: u32,
    },
}

/// Link-time addresses of the runtime variables the probes read: from `.symtab` when the binary
/// has one, else decoded from the runtime's own code ([`vars::locate`]).
fn runtime_vars(
    symbols: &RuntimeSymbols<'_>,
    elf: &ElfInfo,
    version: &GoVersion,
    layout: &RuntimeLayout,
) -> Result<vars::RuntimeVars, vars::VarsError> {
    use vars::Var;
    let sym = |v: Var| elf.symbols.get(v.symbol()).map(|s| s.address);
    if let (Some(work), Some(memstats)) = (sym(Var::Work), sym(Var::Memstats)) {
        return Ok(vars::RuntimeVars {
            work,
            memstats,
            allglen: sym(Var::Allglen),
            sched: sym(Var::Sched),
            gc_controller: sym(Var::GcController),
            mem_profile_rate: sym(Var::MemProfileRate),
            gomaxprocs: sym(Var::Gomaxprocs),
            ncpu: sym(Var::Ncpu),
            allp: sym(Var::Allp),
            evidence: Vec::new(),
        });
    }
    let vars = vars::locate(&|name: &str| symbols.function(name), version, layout)?;
    tracing::debug!(?vars.evidence, "runtime variables located from code");
    Ok(vars)
}

/// The Go release of `exe` (its build info, else the runtime's own version string) and the
/// runtime layout goprobe reads it with: from its DWARF when it has one, else the release's table.
fn go_runtime(
    pid: u32,
    exe: &std::path::Path,
    elf: &ElfInfo,
    data: &[u8],
    symbols: &RuntimeSymbols<'_>,
) -> Result<(GoVersion, RuntimeLayout, LayoutSource), TargetError> {
    let unsupported = |version: String| TargetError::UnsupportedGoVersion {
        pid,
        exe: exe.to_owned(),
        version,
        range: version::supported_range(),
    };
    let raw = match &elf.go_version {
        Some(v) => v.clone(),
        // NB: no build info (esbuild strips it): the runtime's own version string.
        None => match infer_go_version(data, symbols.table()) {
            VersionHint::Exact(v) => {
                tracing::info!(pid, "no Go build info; the runtime says it is {v}");
                v
            }
            hint => {
                return Err(TargetError::UnknownGoVersion {
                    pid,
                    exe: exe.to_owned(),
                    hint: match hint {
                        VersionHint::Range {
                            min,
                            max: Some(max),
                        } => format!("its function table is from Go 1.{min} to 1.{max}"),
                        VersionHint::Range { min, max: None } => {
                            format!("its function table is from Go 1.{min} or later")
                        }
                        _ => "no version string or function table".into(),
                    },
                });
            }
        },
    };
    let go_version = GoVersion::parse(&raw).ok_or_else(|| unsupported(raw.clone()))?;
    let layout = layout::for_minor(go_version.minor)
        .filter(|_| go_version.is_supported())
        .ok_or_else(|| unsupported(raw.clone()))?;
    let (layout, layout_source) = match dwarf::DwarfFields::read(data) {
        Ok(Some(fields)) if !fields.is_empty() => (fields.apply(layout), LayoutSource::Dwarf),
        Ok(_) => (layout, LayoutSource::Table),
        Err(e) => {
            tracing::warn!(
                pid,
                "unreadable DWARF ({e}); using the Go {} table",
                go_version
            );
            (layout, LayoutSource::Table)
        }
    };
    Ok((go_version, layout, layout_source))
}

/// Where a target's runtime struct offsets came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutSource {
    /// The binary's own DWARF.
    Dwarf,
    /// goprobe's per-release table (no DWARF in the binary).
    Table,
}

/// A Go process ready to be probed: the process, and the analysis of the binary it runs,
/// shared by every process of that binary that goprobe watches. Its binary's fields read
/// through it (`target.layout`): a target is its binary as seen in one process.
#[derive(Debug)]
pub struct Target {
    pub process: Process,
    /// The executable as the process sees it.
    pub exe: PathBuf,
    pub binary: Arc<Binary>,
}

impl std::ops::Deref for Target {
    type Target = Binary;

    fn deref(&self) -> &Binary {
        &self.binary
    }
}

/// What goprobe knows of one executable before the first probe fires: its Go version, runtime
/// layout, runtime variables and probe plans. Addresses are run-time ones: for a PIE binary
/// they hold for the process it was analysed in only ([`Target::for_process`]).
#[derive(Debug)]
pub struct Binary {
    pub go_version: GoVersion,
    pub stripped: bool,
    /// Position-independent (`-buildmode=pie`).
    pub pie: bool,
    /// The binary's build info (`go version -m`), when it has one.
    pub build_info: Option<buildinfo::BuildInfo>,
    pub layout: RuntimeLayout,
    /// Where `layout` came from.
    pub layout_source: LayoutSource,
    /// Run-time addresses of the runtime variables goprobe reads (`work` and `memstats`
    /// always; the others when `.symtab` has them or their recipes agree).
    pub vars: vars::RuntimeVars,
    pub start_the_world: FunctionPlan,
    /// Where STW ends are read when not on `start_the_world`'s RETs: the sites after the calls
    /// that discard its result ([`plan::exits::stw_exits`]); `None`: on its RETs.
    pub stw_exits: Option<Vec<FunctionPlan>>,
    /// Offset in `runtime.gcAssistAlloc1` of the call where an assist's time ends
    /// ([`plan::exits::assist_end`]); `None`: on its RETs.
    pub assist_end: Option<u64>,
    /// Only probed on Go 1.19 and 1.21.
    pub stop_the_world: FunctionPlan,
    pub gc_start: FunctionPlan,
    /// `runtime.stopTheWorld`, for the stacks of non-GC STWs; `None` if it cannot be probed.
    pub stw_caller: Option<FunctionPlan>,
    /// `runtime.gcAssistAlloc` and `runtime.gcAssistAlloc1`, for mark assists; `None` if either
    /// cannot be probed.
    pub assist: Option<(FunctionPlan, FunctionPlan)>,
    /// Goroutine creation and exit probes; `None` if they cannot be placed.
    pub goroutines: Option<goroutines::GoroutinePlans>,
    /// Pc ranges where `[SP]` is the return address (frameless leaves, function entries), for
    /// the perf-event signals' stacks ([`frameless::ranges`]): offsets from the Go text, the
    /// same for every process of the binary, PIE or not.
    pub frameless: Arc<frameless::Frameless>,
    /// Load bias: run-time minus link-time addresses (0 unless PIE).
    pub bias: u64,
    /// The allocation probes this target can have (`goprobe attach --alloc`).
    pub alloc: alloc::AllocPlans,
}

impl Target {
    /// Inspects process `pid` and plans its probes.
    pub fn analyze(pid: u32) -> Result<Self, TargetError> {
        let process = Process::open(pid)?;
        let exe = process.exe_path()?;
        let mapped = process.map_exe()?;
        let (elf, repaired) =
            ElfInfo::parse_or_repair(&mapped, &wanted()).map_err(|e| TargetError::NotElf {
                pid,
                exe: exe.clone(),
                reason: e.to_string(),
            })?;
        if repaired.is_some() {
            tracing::warn!(
                pid,
                "{}: unparsable ELF section headers; reading the binary as if it had none",
                exe.display()
            );
        }
        let data: &[u8] = repaired.as_deref().unwrap_or(&mapped);
        if let Some(packer) = elf.packer {
            return Err(TargetError::Packed { pid, exe, packer });
        }
        let symbols = RuntimeSymbols::new(data, &elf);
        if !elf.is_go && symbols.table().is_none() {
            return Err(TargetError::NotGo { pid, exe });
        }
        let (go_version, layout, layout_source) = go_runtime(pid, &exe, &elf, data, &symbols)?;
        tracing::debug!(pid, ?layout, ?layout_source, "runtime layout");
        let bias = if elf.is_pie {
            let base = process.exe_base()?.ok_or_else(|| TargetError::NotMapped {
                pid,
                exe: exe.clone(),
            })?;
            base.wrapping_sub(elf.first_load_vaddr)
        } else {
            0
        };
        let plan = |name: &'static str| -> Result<FunctionPlan, TargetError> {
            let missing = || TargetError::MissingSymbol {
                pid,
                exe: exe.clone(),
                symbol: name,
            };
            let f = symbols.function(name).ok_or_else(missing)?;
            let sites =
                disasm::probe_sites(f.code, f.addr).map_err(|source| TargetError::Disasm {
                    pid,
                    exe: exe.clone(),
                    symbol: name,
                    source,
                })?;
            let file_offset = elf.file_offset(f.addr).ok_or_else(missing)?;
            Ok(FunctionPlan {
                symbol: name,
                file_offset,
                sites,
                addr: f.addr.wrapping_add(bias),
            })
        };
        // Stack probes are optional: without them the report lacks stacks, not pauses.
        let optional = |name: &'static str| {
            plan(name)
                .inspect_err(|e| tracing::warn!(pid, "no stacks from {name}: {e}"))
                .ok()
        };
        let vars = runtime_vars(&symbols, &elf, &go_version, &layout).map_err(|source| {
            TargetError::Vars {
                pid,
                exe: exe.clone(),
                source,
            }
        })?;
        let exits_timer = std::time::Instant::now();
        let stw_exits = symbols.function(START_THE_WORLD).and_then(|f| {
            plan::exits::stw_exits(&symbols, layout.stw_abi, f.addr, &|label, addr, after| {
                Some(plan::exits::sites_plan(
                    label,
                    elf.file_offset(addr)?,
                    addr.wrapping_add(bias),
                    after,
                ))
            })
        });
        let assist_end = plan::exits::assist_end(&symbols, GC_ASSIST_ALLOC1);
        tracing::debug!(
            pid,
            stw_exits = ?stw_exits.as_ref().map(|e| e.iter().map(|p| p.symbol).collect::<Vec<_>>()),
            ?assist_end,
            ms = exits_timer.elapsed().as_secs_f64() * 1e3,
            "STW and assist ends"
        );
        let binary = Binary {
            vars: vars.biased(bias),
            stw_exits,
            assist_end,
            start_the_world: plan(START_THE_WORLD)?,
            stop_the_world: plan(STOP_THE_WORLD)?,
            gc_start: plan(GC_START)?,
            stw_caller: optional(STOP_THE_WORLD_CALLER),
            assist: optional(GC_ASSIST_ALLOC).zip(optional(GC_ASSIST_ALLOC1)),
            goroutines: goroutines::plans(&|name| plan(name).ok()),
            frameless: Arc::new(frameless::ranges(symbols.table(), &|addr| {
                elf.bytes_at(data, addr, 1).and_then(|b| b.first().copied())
            })),
            bias,
            alloc: alloc::plans(pid, &plan, &|name| symbols.function(name).map(|f| f.code)),
            stripped: !elf.has_symtab,
            pie: elf.is_pie,
            build_info: elf.build_info.clone(),
            layout,
            layout_source,
            go_version,
        };
        let target = Self {
            exe,
            process,
            binary: Arc::new(binary),
        };
        target.check_layout()?;
        Ok(target)
    }

    /// This analysis for process `pid`, which runs the same executable file: for a binary that
    /// is not position-independent every address is the same in each process that runs it,
    /// so only the process handle is new (`goprobe agent` analyses a binary once). The layout
    /// is checked against `pid`'s memory. `None` for a PIE binary (each process has its own
    /// load bias): analyse it.
    pub fn for_process(&self, pid: u32) -> Option<Result<Self, TargetError>> {
        if self.pie {
            return None;
        }
        let make = || -> Result<Self, TargetError> {
            let process = Process::open(pid)?;
            let target = Self {
                exe: process.exe_path()?,
                process,
                binary: self.binary.clone(),
            };
            target.check_layout()?;
            Ok(target)
        };
        Some(make())
    }

    /// Reads `work.cycles` and `memstats.numgc` from the live process: outside a GC they are
    /// equal, during one `cycles == numgc + 1` (src/runtime/mgc.go: `work.cycles.Add(1)` in
    /// gcStart, `memstats.numgc++` in gcMarkTermination). Anything else means wrong offsets.
    pub fn check_layout(&self) -> Result<(), TargetError> {
        let cycles = self
            .process
            .read_u32(self.vars.work + u64::from(self.layout.work_cycles))?;
        let numgc = self
            .process
            .read_u32(self.vars.memstats + u64::from(self.layout.memstats_numgc))?;
        if cycles == numgc || cycles == numgc.wrapping_add(1) {
            Ok(())
        } else {
            Err(TargetError::LayoutMismatch {
                pid: self.process.pid,
                version: self.go_version.raw.clone(),
                cycles,
                numgc,
            })
        }
    }
}
