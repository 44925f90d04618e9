//! Hostile inputs (issue 10): the executable of a running Go program replaced, deleted or
//! corrupted on disk; a program that runs from a deliberately corrupted ELF; goprobe run as a user
//! who is not root, without capabilities and with them. Each ends in a correct measurement (GC
//! pauses equal to the program's own MemStats.PauseNs) or in one clear error line and exit 1,
//! never a panic.
//!
//! Covered elsewhere: a non-Go pid, a kernel thread, unsupported Go versions, missing
//! capabilities of root and UPX (bad_input.rs); a binary without build info, esbuild from npm,
//! and stripped real programs (real_programs.rs `esbuild_without_build_info`).

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{Proc, assert_clean_error, cycle_pauses, goprobe, testprog};

const GO: &str = "1.27.3";
/// The runtime and goprobe may differ by at most this much per pause (gc_pauses.rs).
const TOLERANCE_NS: i64 = 1_000;

/// A fresh directory for one test's files.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("goprobe-hostile-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `bytes` as an executable file `path`, atomically (write a sibling, rename over): the
/// way package managers and deploy tools replace a binary that may be running.
fn install(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Starts `bin -mode pauses -cycles 30` (gcstress) and waits for its "ready".
fn start(bin: &Path) -> Proc {
    let mut cmd = Command::new(bin);
    cmd.args(["-mode", "pauses", "-cycles", "30"]);
    let p = Proc::spawn(cmd);
    p.wait_stdout("ready", Duration::from_secs(30));
    p
}

/// What `goprobe attach --json` made of a process.
enum Outcome {
    /// It attached, and its GC pauses equal the runtime's: the report.
    Measured(Value),
    /// It refused with one clear line: that line.
    Refused(String),
}

/// Attaches `goprobe attach <pid> --json` to gcstress `prog` (ready, not started). If goprobe
/// refuses, checks the refusal is clean: exit 1, nothing on stdout, no panic, one
/// `goprobe: error:` line and it is the last. If it attaches, runs the program to its end and
/// checks every GC cycle the program saw is in the report with the runtime's own pause.
fn attach_to(prog: Proc) -> Outcome {
    attach_as_to(&[], prog)
}

/// [`attach_to`], with goprobe run through `setpriv <setpriv> --` unless `setpriv` is empty.
fn attach_as_to(setpriv: &[&str], mut prog: Proc) -> Outcome {
    let mut cmd = if setpriv.is_empty() {
        goprobe()
    } else {
        let mut c = Command::new("setpriv");
        c.args(setpriv).arg("--").arg(goprobe().get_program());
        c
    };
    cmd.env("RUST_LOG", "goprobe=warn"); // what a user sees: warnings and errors
    cmd.args(["attach", &prog.pid().to_string(), "--json"]);
    let mut probe = Proc::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let attached = loop {
        seen.extend(probe.stderr_so_far());
        if seen
            .iter()
            .any(|l| l.starts_with("goprobe: attached to pid"))
        {
            break true;
        }
        if probe.child.try_wait().unwrap().is_some() {
            break false;
        }
        assert!(
            Instant::now() < deadline,
            "goprobe neither attached nor exited: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    if !attached {
        let (status, out, err) = probe.finish(Duration::from_secs(10));
        seen.extend(err.lines().map(str::to_owned));
        let all = seen.join("\n");
        assert!(!all.contains("panicked"), "panic: {all}");
        assert_eq!(status.code(), Some(1), "{status:?}: {all}");
        assert!(out.is_empty(), "stdout: {out}");
        let errors: Vec<&String> = seen
            .iter()
            .filter(|l| l.starts_with("goprobe: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "want one error line: {all}");
        assert_eq!(
            seen.last(),
            Some(errors[0]),
            "the error is not the last line: {all}"
        );
        return Outcome::Refused(errors[0].clone());
    }
    prog.send("start");
    let (status, out, target_err) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "gcstress failed: {target_err}");
    let truth: Value = serde_json::from_str(out.trim()).expect("gcstress JSON");
    let (gp_status, gp_out, gp_err) = probe.finish(Duration::from_secs(30));
    let gp_err = format!("{}\n{gp_err}", seen.join("\n"));
    assert!(gp_status.success(), "goprobe failed: {gp_err}");
    assert!(!gp_err.contains("panicked"), "panic: {gp_err}");
    let report: Value = serde_json::from_str(&gp_out).expect("goprobe --json output");
    assert_eq!(
        report["target"]["go_version"], truth["go_version"],
        "{gp_err}"
    );
    assert_eq!(report["goprobe"]["lost_events"], 0, "{gp_err}");
    check_pauses(&truth, &report);
    Outcome::Measured(report)
}

/// Every cycle the program completed while watched is in the report, with the pause the
/// runtime recorded.
fn check_pauses(truth: &Value, report: &Value) {
    let got = cycle_pauses(report);
    let (start, end) = (
        truth["numgc_start"].as_u64().unwrap(),
        truth["numgc_end"].as_u64().unwrap(),
    );
    assert!(
        end - start >= 25,
        "too few cycles to be a test: {start}..{end}"
    );
    for cycle in start + 1..=end {
        let want = truth["pause_ns"][cycle.to_string()].as_i64().unwrap();
        let pause = *got
            .get(&cycle)
            .unwrap_or_else(|| panic!("cycle {cycle} missing from report: {got:?}"));
        assert!(
            (pause - want).abs() <= TOLERANCE_NS,
            "cycle {cycle}: goprobe {pause} ns, runtime {want} ns"
        );
    }
}

fn measured(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Measured(report) => report,
        Outcome::Refused(line) => panic!("goprobe refused: {line}"),
    }
}

/// NB: once the file a process runs is unlinked (deleted, or replaced by a rename), the kernel
/// shows its /proc/<pid>/exe link target with " (deleted)" appended (fs/d_path.c `d_path`).
fn assert_exe_deleted(pid: u32, path: &Path) {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        link,
        PathBuf::from(format!("{} (deleted)", path.display())),
        "/proc/{pid}/exe"
    );
}

/// The binary on disk now belongs to another Go release: goprobe must probe the image the
/// process runs (through /proc/<pid>/exe), not the file now at its path.
#[test]
fn binary_replaced_on_disk_while_running() {
    let dir = scratch("replaced");
    let bin = dir.join("gcstress");
    install(&bin, &std::fs::read(testprog("gcstress", GO)).unwrap());
    let prog = start(&bin);
    let pid = prog.pid();
    install(
        &bin,
        &std::fs::read(testprog("gcstress", "1.21.13")).unwrap(),
    );
    assert_exe_deleted(pid, &bin);
    let report = measured(attach_to(prog));
    // Documented (docs/report-schema.md, target.exe): the path as the kernel shows it.
    assert_eq!(
        report["target"]["exe"],
        format!("{} (deleted)", bin.display())
    );
}

/// The binary was deleted after the start.
#[test]
fn binary_deleted_after_start() {
    let dir = scratch("deleted");
    let bin = dir.join("gcstress");
    install(&bin, &std::fs::read(testprog("gcstress", GO)).unwrap());
    let prog = start(&bin);
    std::fs::remove_file(&bin).unwrap();
    assert_exe_deleted(prog.pid(), &bin);
    let report = measured(attach_to(prog));
    assert_eq!(
        report["target"]["exe"],
        format!("{} (deleted)", bin.display())
    );
}

/// `goprobe doctor` takes the same way in (session/observe.rs): a deleted binary works there too.
#[test]
fn doctor_on_a_deleted_binary() {
    let dir = scratch("doctor-deleted");
    let bin = dir.join("gcstress");
    install(&bin, &std::fs::read(testprog("gcstress", GO)).unwrap());
    let prog = start(&bin);
    std::fs::remove_file(&bin).unwrap();
    let out = goprobe()
        .args([
            "doctor",
            &prog.pid().to_string(),
            "--duration",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "goprobe doctor failed: {stderr}");
    let report: Value = serde_json::from_str(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("doctor JSON: {e}; stderr: {stderr}"));
    assert!(report["findings"].is_array(), "{report}");
}

/// A little ELF64 editing, enough to corrupt one part of a Go binary and leave the rest.
mod elf {
    fn u16_at(d: &[u8], at: usize) -> usize {
        usize::from(u16::from_le_bytes(d[at..at + 2].try_into().unwrap()))
    }

    pub fn u64_at(d: &[u8], at: usize) -> usize {
        usize::try_from(u64::from_le_bytes(d[at..at + 8].try_into().unwrap())).unwrap()
    }

    /// (e_shoff, e_shnum): where the section header table is and how many entries it has.
    pub fn table(d: &[u8]) -> (usize, usize) {
        (u64_at(d, 0x28), u16_at(d, 0x3c))
    }

    /// The file offset of the section header of section `name`.
    pub fn header(d: &[u8], name: &str) -> usize {
        let (shoff, shnum) = table(d);
        let strtab = u64_at(d, shoff + 64 * u16_at(d, 0x3e) + 0x18);
        (0..shnum)
            .map(|i| shoff + 64 * i)
            .find(|&h| {
                let at = strtab + u32::from_le_bytes(d[h..h + 4].try_into().unwrap()) as usize;
                d[at..].split(|&b| b == 0).next() == Some(name.as_bytes())
            })
            .unwrap_or_else(|| panic!("no section {name}"))
    }

    /// (file offset, size) of section `name`.
    pub fn section(d: &[u8], name: &str) -> (usize, usize) {
        let h = header(d, name);
        (u64_at(d, h + 0x18), u64_at(d, h + 0x20))
    }

    /// Overwrites `d[range]` with reproducible pseudo-random bytes (xorshift64).
    pub fn garbage(d: &mut [u8], range: std::ops::Range<usize>) {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in &mut d[range] {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}

/// gcstress with its section header table zeroed: the kernel and the Go runtime only use
/// program headers, so it runs; every section (.go.buildinfo, .gopclntab, .symtab) is gone.
fn without_section_headers() -> Vec<u8> {
    let mut d = std::fs::read(testprog("gcstress", GO)).unwrap();
    let (shoff, shnum) = elf::table(&d);
    d[shoff..shoff + 64 * shnum].fill(0);
    d
}

/// The on-disk file is corrupted after the start (a copy without section headers renamed over
/// it): the process still runs the intact image, which is what goprobe must read.
#[test]
fn on_disk_file_corrupted_after_start() {
    let dir = scratch("corrupted-after");
    let bin = dir.join("gcstress");
    install(&bin, &std::fs::read(testprog("gcstress", GO)).unwrap());
    let prog = start(&bin);
    install(&bin, &without_section_headers());
    assert_exe_deleted(prog.pid(), &bin);
    measured(attach_to(prog));
}

/// A copy of gcstress changed by `corrupt`.
fn corrupted_copy(tag: &str, corrupt: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let dir = scratch(tag);
    let bin = dir.join(format!("gcstress-{tag}"));
    let mut d = std::fs::read(testprog("gcstress", GO)).unwrap();
    corrupt(&mut d);
    install(&bin, &d);
    bin
}

/// Starts a copy of gcstress changed by `corrupt` (it must still run) and attaches to it.
fn run_corrupted(tag: &str, corrupt: impl FnOnce(&mut Vec<u8>)) -> Outcome {
    let outcome = attach_to(start(&corrupted_copy(tag, corrupt)));
    match &outcome {
        Outcome::Measured(_) => eprintln!("{tag}: measured, pauses exact"),
        Outcome::Refused(line) => eprintln!("{tag}: refused: {line}"),
    }
    outcome
}

/// No section headers at all: build info, function table and runtime variables are found from
/// the program headers and the runtime's own data.
#[test]
fn running_without_section_headers() {
    measured(run_corrupted("no-shdr", |d| *d = without_section_headers()));
}

/// A section header table past the end of the file: the ELF parser refuses the file, goprobe
/// then reads it as one without section headers (it used to refuse it as "not an ELF
/// executable", though the kernel runs it).
#[test]
fn running_with_section_headers_past_the_end() {
    let bin = corrupted_copy("shoff-past-end", |d| {
        let past = (d.len() as u64 + (1 << 20)).to_le_bytes();
        d[0x28..0x30].copy_from_slice(&past);
    });
    let prog = start(&bin);
    // `goprobe ps` (and `goprobe agent`'s discovery) read it the same way.
    let out = goprobe().args(["ps", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let entry = listed
        .iter()
        .find(|p| p["pid"] == prog.pid())
        .unwrap_or_else(|| panic!("pid {} not listed: {listed:#?}", prog.pid()));
    assert_eq!(entry["go_version"], format!("go{GO}"), "{entry}");
    measured(attach_to(prog));
}

/// `.symtab` overwritten with noise: no runtime variable is found by name, so they are
/// decoded from the runtime's code, as for a stripped binary.
#[test]
fn running_with_a_garbage_symbol_table() {
    measured(run_corrupted("symtab", |d| {
        let (off, size) = elf::section(d, ".symtab");
        elf::garbage(d, off..off + size);
    }));
}

#[test]
fn running_with_garbage_build_info() {
    // The 32-byte header (magic, pointer size, flags) stays: the version and module strings
    // after it become garbage. The runtime never reads this section.
    measured(run_corrupted("buildinfo", |d| {
        let (off, size) = elf::section(d, ".go.buildinfo");
        elf::garbage(d, off + 32..off + size);
    }));
}

/// `.debug_info` overwritten with noise: the struct offsets come from goprobe's table.
#[test]
fn running_with_garbage_dwarf() {
    measured(run_corrupted("dwarf", |d| {
        let (off, size) = elf::section(d, ".debug_info");
        elf::garbage(d, off..off + size);
    }));
}

#[test]
fn running_with_a_lying_gopclntab_header() {
    // The section header of .gopclntab points at .rodata with a size past the end of the file;
    // the runtime finds its function table through moduledata, not through section headers.
    measured(run_corrupted("gopclntab", |d| {
        let h = elf::header(d, ".gopclntab");
        let rodata = elf::section(d, ".rodata").0 as u64;
        d[h + 0x18..h + 0x20].copy_from_slice(&rodata.to_le_bytes());
        d[h + 0x20..h + 0x28].copy_from_slice(&0x7fff_ffffu64.to_le_bytes());
    }));
}

/// `goprobe` run through `setpriv` with `args` before `--`: the output of `goprobe attach <pid>`.
fn attach_as(setpriv: &[&str], pid: u32) -> std::process::Output {
    Command::new("setpriv")
        .args(setpriv)
        .arg("--")
        .arg(goprobe().get_program())
        .args(["attach", &pid.to_string()])
        .output()
        .expect("setpriv (util-linux)")
}

/// A user who is not root and has no capabilities (bad_input.rs drops capabilities from root,
/// who keeps uid 0 and its file access): one line that names what is missing and what to do.
#[test]
fn non_root_without_capabilities() {
    let prog = start(&testprog("gcstress", GO));
    let nobody = [
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    let out = attach_as(&nobody, prog.pid());
    // Both halves name what this kernel needs (Linux 6.16+: CAP_SYS_ADMIN for uprobes).
    assert_clean_error(
        &out,
        &[
            "missing capabilities: CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH;",
            "run as root",
            "setcap cap_sys_admin,cap_sys_ptrace,cap_dac_read_search+ep",
        ],
    );
}

/// `nobody` with the capabilities docs/config.md lists, on a process of root's: it measures;
/// without CAP_DAC_READ_SEARCH, one line names it; with CAP_BPF + CAP_PERFMON instead of
/// CAP_SYS_ADMIN, one line names CAP_SYS_ADMIN (this kernel refuses uprobes to CAP_PERFMON).
#[test]
fn non_root_with_capabilities() {
    let caps = "+sys_admin,+sys_ptrace,+dac_read_search";
    let with = |caps: &str| {
        [
            "--reuid=nobody".to_owned(),
            "--regid=nogroup".to_owned(),
            "--clear-groups".to_owned(),
            format!("--inh-caps={caps}"),
            format!("--ambient-caps={caps}"),
        ]
    };
    let all = with(caps);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    measured(attach_as_to(&all, start(&testprog("gcstress", GO))));
    let fewer = with(caps.trim_end_matches(",+dac_read_search"));
    let fewer: Vec<&str> = fewer.iter().map(String::as_str).collect();
    match attach_as_to(&fewer, start(&testprog("gcstress", GO))) {
        Outcome::Refused(line) => assert!(line.contains("CAP_DAC_READ_SEARCH"), "{line}"),
        Outcome::Measured(_) => panic!("nobody read root's process without CAP_DAC_READ_SEARCH"),
    }
    let perfmon = with("+bpf,+perfmon,+sys_ptrace,+dac_read_search");
    let perfmon: Vec<&str> = perfmon.iter().map(String::as_str).collect();
    match attach_as_to(&perfmon, start(&testprog("gcstress", GO))) {
        Outcome::Refused(line) => assert!(
            line.contains("missing capabilities: CAP_SYS_ADMIN;"),
            "{line}"
        ),
        Outcome::Measured(_) => panic!("uprobes without CAP_SYS_ADMIN on this kernel"),
    }
}
