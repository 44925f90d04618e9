//! What goprobe exposes and what it touches (docs/security.md): no network listener unless asked,
//! loopback for a bare port; and, traced with strace, no file of the target's opened beyond the
//! ones docs/security.md lists and no byte of its memory read or written outside the runtime's
//! global variables.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{collections::BTreeSet, path::PathBuf, process::Command, time::Duration};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use support::{Proc, attach, goprobe, start_testprog, testprog};

const GO: &str = "1.27.3";

/// Socket inodes among `pid`'s open files.
fn socket_inodes(pid: u32) -> BTreeSet<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// `pid`'s TCP and UDP sockets as (protocol, local address as the kernel prints it, state).
fn inet_sockets(pid: u32) -> Vec<(String, String, String)> {
    let mine = socket_inodes(pid);
    let mut found = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        for row in table.lines().skip(1) {
            let f: Vec<&str> = row.split_whitespace().collect();
            if f.len() > 9 && mine.contains(&f[9].parse().unwrap_or(0)) {
                found.push((proto.to_owned(), f[1].to_owned(), f[3].to_owned()));
            }
        }
    }
    found
}

#[test]
fn opens_no_listener_unless_asked_and_binds_loopback() {
    let mut prog = start_testprog("gcstress", GO, &["-mode", "churn"], &[]);
    prog.send("start");

    let probe = attach(prog.pid(), &["--duration", "2"]);
    let sockets = inet_sockets(probe.pid());
    assert!(sockets.is_empty(), "goprobe attach opened {sockets:?}");
    let (status, _, err) = probe.finish(Duration::from_secs(30));
    assert!(status.success(), "{err}");

    // The agent with a config that selects nothing and no `listen`: no socket either.
    let config = std::env::temp_dir().join(format!("goprobe-security-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[select]\ninclude_exe = [\"/nonexistent/goprobe-security/*\"]\n",
    )
    .unwrap();
    let mut cmd = goprobe();
    cmd.arg("agent").arg("--config").arg(&config);
    let agent = Proc::spawn(cmd);
    agent.wait_stderr("agent ready", Duration::from_secs(60));
    let sockets = inet_sockets(agent.pid());
    assert!(sockets.is_empty(), "goprobe agent opened {sockets:?}");
    // SAFETY: plain kill(2) of our own child.
    assert_eq!(
        unsafe { libc::kill(agent.pid() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let (status, _, err) = agent.finish(Duration::from_secs(30));
    assert!(status.success(), "{err}");

    // A bare port is a loopback address: one listening TCP socket, on 127.0.0.1.
    let probe = attach(prog.pid(), &["--prometheus", "0", "--duration", "2"]);
    let sockets = inet_sockets(probe.pid());
    let listening: Vec<_> = sockets.iter().filter(|s| s.2 == "0A").collect();
    assert_eq!(listening.len(), 1, "{sockets:?}");
    assert_eq!(listening[0].0, "tcp", "{sockets:?}");
    assert!(
        listening[0].1.starts_with("0100007F:"),
        "not 127.0.0.1: {sockets:?}"
    );
    let (status, _, err) = probe.finish(Duration::from_secs(30));
    assert!(status.success(), "{err}");
    prog.send("stop");
    let (status, _, err) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "{err}");
}

/// The `/proc/<pid>/…` files docs/security.md says goprobe opens: its table rows
/// "| `/proc/<pid>/NAME` | …".
fn documented_proc_files() -> BTreeSet<String> {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md");
    std::fs::read_to_string(doc)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `/proc/<pid>/")?;
            Some(rest.split('`').next()?.to_owned())
        })
        .collect()
}

/// What goprobe may touch in a Go program's memory: the address ranges of the sections that hold
/// its global variables, the address of `runtime.MemProfileRate` (the one word goprobe may
/// write) and of `runtime.allp` (the P array, whose free-goroutine counts the goroutine count needs).
struct Globals {
    ranges: Vec<(String, u64, u64)>,
    mem_profile_rate: u64,
    allp: u64,
}

impl Globals {
    fn of(binary: &std::path::Path) -> Self {
        let data = std::fs::read(binary).unwrap();
        let elf = object::File::parse(&*data).unwrap();
        // NB: the Go linker puts package-level variables in .noptrdata, .data, .bss and .noptrbss
        // (cmd/link/internal/ld/data.go, every release goprobe supports).
        let ranges = elf
            .sections()
            .filter(|s| matches!(s.name(), Ok(".noptrdata" | ".data" | ".bss" | ".noptrbss")))
            .map(|s| {
                (
                    s.name().unwrap().to_owned(),
                    s.address(),
                    s.address() + s.size(),
                )
            })
            .collect();
        let symbol = |name: &str| {
            elf.symbols()
                .find(|s| s.name() == Ok(name))
                .unwrap_or_else(|| panic!("{name} not in {}", binary.display()))
                .address()
        };
        Self {
            ranges,
            mem_profile_rate: symbol("runtime.MemProfileRate"),
            allp: symbol("runtime.allp"),
        }
    }

    fn contains(&self, addr: u64, len: u64) -> bool {
        self.ranges.iter().any(|r| r.1 <= addr && addr + len <= r.2)
    }

    /// The heap ranges gcount() reads, as the running process `pid` has them now: the `allp`
    /// array and each P.
    fn allp_ranges(&self, pid: u32) -> Vec<(u64, u64)> {
        use std::os::unix::fs::FileExt as _;
        let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
        let word = |addr: u64| {
            let mut b = [0u8; 8];
            mem.read_exact_at(&mut b, addr).unwrap();
            u64::from_le_bytes(b)
        };
        // NB: `allp []*p` (src/runtime/runtime2.go, Go 1.19–1.27): pointer, then length.
        let (array, len) = (word(self.allp), word(self.allp + 8));
        assert!(len <= 1024, "len(allp) = {len}");
        let mut ranges = vec![(array, array + len * 8)];
        // NB: a runtime.p is about 10 KiB (Go 1.27); 64 KiB bounds it in every release.
        ranges.extend(
            (0..len)
                .map(|i| word(array + i * 8))
                .map(|p| (p, p + 0x10000)),
        );
        ranges
    }
}

/// One traced access to the target's memory: (syscall, length, address).
fn mem_accesses(trace: &str, pid: u32) -> Vec<(String, u64, u64)> {
    let fd = format!("</proc/{pid}/mem>, ");
    trace
        .lines()
        .filter_map(|l| {
            let (head, rest) = l.split_once(&fd)?;
            let call = head.rsplit(' ').next()?.split('(').next()?.to_owned();
            // With `-s 0` the buffer prints as `""...`: then the length, then the offset.
            let mut f = rest.split(", ");
            let _buf = f.next()?;
            let len = f.next()?.parse().ok()?;
            let addr = f.next()?.split(')').next()?.parse().ok()?;
            Some((call, len, addr))
        })
        .collect()
}

#[test]
fn touches_only_documented_files_and_runtime_globals() {
    let binary = testprog("gcstress", GO);
    let mut prog = start_testprog("gcstress", GO, &["-mode", "churn"], &[]);
    prog.send("start");
    let pid = prog.pid();
    let trace_file =
        std::env::temp_dir().join(format!("goprobe-security-{}.strace", std::process::id()));
    let goprobe_bin = goprobe().get_program().to_owned();
    // Every way to open a file or reach another process' memory; -y prints each fd's path.
    let out = Command::new("strace")
        .args(["-f", "-qq", "-y", "-s", "0", "-o"])
        .arg(&trace_file)
        .args([
            "-e",
            "trace=open,openat,openat2,pread64,pwrite64,preadv,pwritev,preadv2,pwritev2,\
             read,write,process_vm_readv,process_vm_writev,ptrace",
        ])
        .arg(goprobe_bin)
        .args(["attach", &pid.to_string(), "--duration", "3", "--json"])
        .env("RUST_LOG", "goprobe=info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !report["gc"]["cycles"].as_array().unwrap().is_empty(),
        "goprobe measured nothing: {report}"
    );
    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let _ = std::fs::remove_file(&trace_file);

    // Files of the target's: only those the document lists.
    let documented = documented_proc_files();
    let prefix = format!("\"/proc/{pid}/");
    let opened: BTreeSet<String> = trace
        .lines()
        .filter(|l| l.contains(" open"))
        .filter_map(|l| Some(l.split_once(&prefix)?.1.split('"').next()?.to_owned()))
        .map(|f| match f.split_once('/') {
            // /proc/<pid>/root/<path>: the target's own view of a file;
            // /proc/<pid>/map_files/<range>: a mapped file, even deleted or replaced on disk.
            Some((dir @ ("root" | "map_files"), _)) => format!("{dir}/…"),
            _ => f,
        })
        .collect();
    assert!(opened.contains("mem"), "traced no open of /proc/{pid}/mem");
    let undocumented: Vec<_> = opened.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "goprobe opened /proc/{pid}/{undocumented:?}, which docs/security.md does not list \
         (it lists {documented:?})"
    );

    // Memory: reads only inside the runtime's globals and the Ps, writes only to
    // runtime.MemProfileRate.
    let globals = Globals::of(&binary);
    let ps = globals.allp_ranges(pid);
    let accesses = mem_accesses(&trace, pid);
    assert!(
        accesses.iter().any(|a| a.0 == "pread64"),
        "traced no read of the target's memory"
    );
    for (call, len, addr) in &accesses {
        match call.as_str() {
            "pread64" => assert!(
                globals.contains(*addr, *len)
                    || ps.iter().any(|r| r.0 <= *addr && addr + len <= r.1),
                "read of {len} bytes at {addr:#x} is outside the globals {:x?} and the Ps {ps:x?}",
                globals.ranges
            ),
            "pwrite64" => assert!(
                *addr == globals.mem_profile_rate && *len == 8,
                "write of {len} bytes at {addr:#x}; runtime.MemProfileRate is at {:#x}",
                globals.mem_profile_rate
            ),
            other => panic!("{other} on /proc/{pid}/mem"),
        }
    }
    assert!(
        !trace.contains("process_vm_") && !trace.contains("ptrace("),
        "goprobe used process_vm_*v or ptrace"
    );
    prog.send("stop");
    let (status, out, err) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "{err}");
    let result: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(result["failures"], 0, "{result}");
}
