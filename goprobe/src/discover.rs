//! Finding Go processes on this host: `goprobe ps` lists them; agent mode (later) attaches to them.
//!
//! Every numeric `/proc` entry is a process; its executable is opened through `/proc/<pid>/exe`
//! (which resolves in the process's own mount namespace, so containers work) and inspected once
//! per binary (`(dev, inode)`), however many processes run it.

use std::{collections::HashMap, fs, os::unix::fs::MetadataExt as _, path::PathBuf, sync::Arc};

use goprobe_gopclntab::{Pclntab, VersionHint, infer_go_version};
use serde::Serialize;

use crate::analysis::{Process, binary::elf::ElfInfo};

/// What goprobe knows about a Go executable without running it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BinaryFacts {
    /// `go1.27.3`, or `None` when the binary carries no build info and the version could not be
    /// inferred.
    pub go_version: Option<String>,
    /// Where `go_version` came from: `"buildinfo"`; `"inferred"` (the runtime's version string,
    /// in a binary without build info); `"layout"` (only the range of releases the function
    /// table's format implies, e.g. `go1.20-go1.25`); or `"unknown"`.
    pub version_source: &'static str,
    /// No `.symtab` (`-ldflags=-s` or `strip`).
    pub stripped: bool,
    /// Built with cgo: from the build info (`CGO_ENABLED`), else whether the function table
    /// has `runtime/cgo` code; `None` when neither can tell.
    pub cgo: Option<bool>,
    /// Position-independent executable.
    pub pie: bool,
    /// The packer that compressed the file (`"UPX"`); goprobe cannot probe packed binaries.
    pub packer: Option<&'static str>,
}

impl BinaryFacts {
    /// Inspects an executable's bytes; `None` if it is not a Go program.
    pub fn inspect(data: &[u8]) -> Option<Self> {
        let (elf, repaired) = ElfInfo::parse_or_repair(data, &[]).ok()?;
        let data = repaired.as_deref().unwrap_or(data);
        let table = Pclntab::from_elf(data).ok();
        if !elf.is_go && table.is_none() && elf.packer.is_none() {
            return None;
        }
        let (go_version, version_source) = match &elf.go_version {
            Some(v) => (Some(v.clone()), "buildinfo"),
            None => match infer_go_version(data, table.as_ref()) {
                VersionHint::Exact(v) => (Some(v), "inferred"),
                VersionHint::Range {
                    min,
                    max: Some(max),
                } => (Some(format!("go1.{min}-go1.{max}")), "layout"),
                VersionHint::Range { min, max: None } => (Some(format!("go1.{min}+")), "layout"),
                VersionHint::Unknown => (None, "unknown"),
            },
        };
        // NB: every cgo binary links package runtime/cgo (src/runtime/cgo), whose Go functions
        // are in the table; pure-Go binaries never have them.
        let cgo = elf.build_info.as_ref().and_then(|b| b.cgo()).or_else(|| {
            table
                .as_ref()
                .map(|t| t.funcs().any(|f| f.name.starts_with("runtime/cgo.")))
        });
        Some(Self {
            go_version,
            version_source,
            stripped: !elf.has_symtab,
            cgo,
            pie: elf.is_pie,
            packer: elf.packer,
        })
    }
}

/// One Go process.
#[derive(Clone, Debug, Serialize)]
pub struct GoProcess {
    pub pid: u32,
    pub comm: String,
    /// The executable's path as the process sees it.
    pub exe: PathBuf,
    #[serde(flatten)]
    pub binary: Arc<BinaryFacts>,
}

/// The result of one scan of `/proc`.
#[derive(Debug, Default)]
pub struct Scan {
    /// Go processes, by pid.
    pub processes: Vec<GoProcess>,
    /// Processes whose executable could not be read (permissions, or gone mid-scan).
    pub unreadable: usize,
}

/// Scans `/proc` for Go processes.
pub fn scan() -> Scan {
    let mut scan = Scan::default();
    let mut seen: HashMap<(u64, u64), Option<Arc<BinaryFacts>>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return scan;
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        // Kernel threads and processes that ended mid-scan are skipped silently.
        let Ok(process) = Process::open(pid) else {
            continue;
        };
        let Ok(meta) = fs::metadata(process.exe_link()) else {
            scan.unreadable += usize::from(fs::symlink_metadata(process.exe_link()).is_ok());
            continue;
        };
        let facts = seen
            .entry((meta.dev(), meta.ino()))
            .or_insert_with(|| {
                let data = process.map_exe().ok()?;
                BinaryFacts::inspect(&data).map(Arc::new)
            })
            .clone();
        let (Some(binary), Ok(exe)) = (facts, process.exe_path()) else {
            continue;
        };
        scan.processes.push(GoProcess {
            pid,
            comm: process.comm,
            exe,
            binary,
        });
    }
    scan
}
