//! Small questions the agent asks the system: is this executable Go, what time is it on the
//! BPF clock.

/// Whether `/proc/<pid>/exe` looks like a Go program: a cheap test of its ELF section names,
/// run on every exec of the host before the real analysis.
///
/// NB: the Go linker writes `.note.go.buildid` (unless `-buildid=`), `.go.buildinfo` (Go 1.13+)
/// and, outside PIE, `.gopclntab` (cmd/link/internal/ld/elf.go, data.go); `-s -w` strips
/// neither.
pub(super) fn is_go(pid: u32) -> bool {
    use object::{Object as _, ObjectSection as _};
    let Ok(file) = std::fs::File::open(format!("/proc/{pid}/exe")) else {
        return false;
    };
    // SAFETY: a read-only private mapping; a binary rewritten under us only yields odd bytes.
    let Ok(data) = (unsafe { memmap2::Mmap::map(&file) }) else {
        return false;
    };
    let Ok(elf) = object::File::parse(&*data) else {
        return false;
    };
    elf.sections().any(|s| {
        matches!(
            s.name(),
            Ok(".note.go.buildid" | ".go.buildinfo" | ".gopclntab")
        )
    })
}

/// CLOCK_MONOTONIC now, in ns (the clock of `bpf_ktime_get_ns`).
pub(super) fn mono_now_ns() -> u64 {
    // SAFETY: zeroed timespec is valid; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
