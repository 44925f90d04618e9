//! A question the agent asks of every exec on the host: is this executable Go?

/// Whether `/proc/<pid>/exe` looks like a Go program: a cheap test of its ELF section names,
/// run on every exec of the host before the real analysis.
///
/// NB: the Go linker writes `.note.go.buildid` (unless `-buildid=`), `.go.buildinfo` (Go 1.13+)
/// and, outside PIE, `.gopclntab` (cmd/link/internal/ld/elf.go, data.go); `-s -w` strips
/// neither.
pub fn is_go(pid: u32) -> bool {
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
