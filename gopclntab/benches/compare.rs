//! `cargo xtask bench`: goprobe-gopclntab against blazesym (DWARF of an unstripped binary) and
//! `go tool addr2line`, on hugo (95 MB, stripped, Go 1.27, cgo) and an unstripped `cmd/go`
//! built by xtask with Go 1.27.3. Measures cold open to the first symbolized address, warm
//! `frames` look-ups per second (raw, and through `FrameCache` on a hot set), and memory.
//! Writes Markdown to `$GOPROBE_BENCH_OUT` and prints it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench: a failure is a crash

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use blazesym::symbolize::{Input, Symbolized, Symbolizer, source::Elf, source::Source};
use goprobe_gopclntab::{FrameCache, Pclntab};

const LOOKUPS: usize = 1_000_000;
const HOT_SET: usize = 10_000;
const BLAZE_LOOKUPS: usize = 100_000;
const ADDR2LINE_LOOKUPS: usize = 100_000;

fn env(name: &str) -> PathBuf {
    std::env::var_os(name)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{name} is not set: run this bench via `cargo xtask bench`"))
}

/// A read-only private mapping of a whole file: pages are read only when touched, as a
/// profiler would map a target's executable.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn new(path: &Path) -> Mapped {
        use std::os::fd::AsRawFd as _;
        let f = std::fs::File::open(path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        // SAFETY: a fresh read-only mapping of a file we keep unchanged while mapped.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap {}", path.display());
        Mapped { ptr, len }
    }
    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// CPU time of this thread: the machine is shared, so rates are per CPU-second, not wall time.
struct Cpu(Duration);

impl Cpu {
    fn now() -> Cpu {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Cpu(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
    }
    fn elapsed(&self) -> Duration {
        Cpu::now().0.saturating_sub(self.0)
    }
}

/// Resident set size in bytes (/proc/self/statm), file-backed pages included.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn rate(n: usize, d: Duration) -> String {
    let r = n as f64 / d.as_secs_f64();
    if r > 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0} k/s", r / 1e3)
    }
}

/// Uniform random pcs in Go text, and a stream drawn from a hot subset of them.
fn addresses(t: &Pclntab<'_>) -> (Vec<u64>, Vec<u64>) {
    let lo = t.text_start();
    let hi = t.funcs().last().unwrap().end;
    let mut rng = Rng(0xbe4c);
    let uniform: Vec<u64> = (0..LOOKUPS).map(|_| lo + rng.next() % (hi - lo)).collect();
    let hot: Vec<u64> = (0..LOOKUPS)
        .map(|_| {
            // Skewed: half the samples from the hottest 1% of the hot set.
            let k = if rng.next().is_multiple_of(2) {
                rng.next() as usize % (HOT_SET / 100)
            } else {
                rng.next() as usize % HOT_SET
            };
            uniform[k]
        })
        .collect();
    (uniform, hot)
}

struct Ours {
    open: Duration,
    open_cpu: Duration,
    reopen: Duration,
    raw: Duration,
    cached_hot: Duration,
    cached_uniform: Duration,
    rss: u64,
    cache_rss: u64,
    nfunc: usize,
}

fn bench_ours(path: &Path) -> (Ours, Vec<u64>) {
    let before = rss();
    let start = Instant::now();
    let cpu = Cpu::now();
    let map = Mapped::new(path);
    let t = Pclntab::from_elf(map.bytes()).unwrap();
    let mut frames = Vec::new();
    t.frames(t.text_start() + 0x1000, &mut frames).unwrap();
    let open = start.elapsed();
    let open_cpu = cpu.elapsed();
    // Re-opens (new mapping, page cache warm): median wall time.
    let mut again: Vec<Duration> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let m = Mapped::new(path);
            let t = Pclntab::from_elf(m.bytes()).unwrap();
            let mut f = Vec::new();
            t.frames(t.text_start() + 0x1000, &mut f).unwrap();
            start.elapsed()
        })
        .collect();
    again.sort();
    let reopen = again[2];
    let (uniform, hot) = addresses(&t);
    let mut n = 0usize;
    // One pass to fault the table in, then the timed pass.
    for pass in 0..2 {
        let start = Cpu::now();
        for &pc in &uniform {
            frames.clear();
            t.frames(pc, &mut frames).unwrap();
            n += frames.len();
        }
        if pass == 1 {
            let raw = start.elapsed();
            // The two address vectors are the bench's, not the symbolizer's.
            let vectors = (uniform.capacity() + hot.capacity()) as u64 * 8;
            let table_rss = rss().saturating_sub(before).saturating_sub(vectors);
            let before_cache = rss();
            let mut cache = FrameCache::new(16);
            let start = Cpu::now();
            for &pc in &hot {
                frames.clear();
                cache.frames(&t, pc, &mut frames).unwrap();
                n += frames.len();
            }
            let cached_hot = start.elapsed();
            let start = Cpu::now();
            for &pc in &uniform {
                frames.clear();
                cache.frames(&t, pc, &mut frames).unwrap();
                n += frames.len();
            }
            let cached_uniform = start.elapsed();
            std::hint::black_box(n);
            let o = Ours {
                open,
                open_cpu,
                reopen,
                raw,
                cached_hot,
                cached_uniform,
                rss: table_rss,
                cache_rss: rss().saturating_sub(before_cache),
                nfunc: t.len(),
            };
            return (o, uniform);
        }
    }
    unreachable!()
}

/// blazesym on the unstripped file: cold first symbolization, warm batch rate, RSS growth,
/// and agreement with ours (function chain, file:line) on the first 10,000 addresses.
fn bench_blazesym(path: &Path, pcs: &[u64], md: &mut String) {
    let before = rss();
    let start = Instant::now();
    let sym = Symbolizer::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .build();
    let src = Source::Elf(Elf::new(path));
    let first = sym.symbolize(&src, Input::VirtOffset(&pcs[..1])).unwrap();
    let open = start.elapsed();
    std::hint::black_box(first);
    let batch = &pcs[..BLAZE_LOOKUPS];
    sym.symbolize(&src, Input::VirtOffset(batch)).unwrap();
    let start = Cpu::now();
    let out = sym.symbolize(&src, Input::VirtOffset(batch)).unwrap();
    let warm = start.elapsed();
    let grown = rss().saturating_sub(before);
    // Agreement on the first 10,000.
    let data = std::fs::read(path).unwrap();
    let t = Pclntab::from_elf(&data).unwrap();
    let mut frames = Vec::new();
    let mut agree = 0;
    let mut examples = Vec::new();
    let mut unknown = 0;
    for (pc, s) in pcs.iter().zip(&out).take(10_000) {
        frames.clear();
        t.frames(*pc, &mut frames).unwrap();
        let ours: Vec<String> = frames.iter().map(|f| f.function.to_owned()).collect();
        let theirs: Vec<String> = match s {
            Symbolized::Sym(s) => s
                .inlined
                .iter()
                .rev()
                .map(|f| f.name.to_string())
                .chain([s.name.to_string()])
                .collect(),
            _ => Vec::new(),
        };
        if ours == theirs {
            agree += 1;
        } else if theirs.is_empty() {
            // No DWARF subprogram covers the pc.
            unknown += 1;
        } else if examples.len() < 4 {
            examples.push(format!("`{pc:#x}`: ours {ours:?}, blazesym {theirs:?}"));
        }
    }
    let _ = writeln!(
        md,
        "| blazesym 0.2.7 (DWARF) | {:.1} ms | {} (batch of {BLAZE_LOOKUPS}) | – | – | {} RSS growth (mmap'd file pages included) |",
        open.as_secs_f64() * 1e3,
        rate(batch.len(), warm),
        mib(grown),
    );
    let _ = writeln!(
        md,
        "\nFunction chains (inlined frames included) equal to blazesym's on {agree} of 10000 addresses; blazesym found no function for {unknown} (no DWARF subprogram covers them: a DWARF range ends at the function's last instruction, a table entry at the next function's entry, so alignment padding belongs to the preceding function only in the table); {} others{}\n",
        10_000 - agree - unknown,
        if examples.is_empty() {
            String::new()
        } else {
            format!(":\n\n- {}", examples.join("\n- "))
        }
    );
}

/// `go tool addr2line` on `n` addresses: one process, addresses on stdin.
fn bench_addr2line(go: &Path, path: &Path, pcs: &[u64]) -> (Duration, Duration) {
    let input: String = pcs.iter().map(|pc| format!("{pc:#x}\n")).collect();
    let cpu_before = children_cpu();
    let start = Instant::now();
    let mut child = Command::new(go)
        .args(["tool", "addr2line"])
        .arg(path)
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let w = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(out.status.success());
    (start.elapsed(), children_cpu().saturating_sub(cpu_before))
}

/// User + system CPU time of waited-for children.
fn children_cpu() -> Duration {
    // SAFETY: getrusage fills one rusage struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() {
    let hugo = env("GOPROBE_HUGO");
    let unstripped = env("GOPROBE_BENCH_UNSTRIPPED");
    let go = env("GOPROBE_BENCH_GO");
    let out = env("GOPROBE_BENCH_OUT");
    let mut md = String::from("# goprobe-gopclntab bench\n\n");
    let _ = writeln!(
        md,
        "Machine: {} cores shared with other builds; files in the page cache. Cold opens are wall time; look-up rates are per CPU-second of the benchmark thread (CLOCK_THREAD_CPUTIME_ID), since the machine is shared (load average {:.1} at start). Lookups: {LOOKUPS} uniform random pcs in Go text (fixed seed); the cached column uses `FrameCache::new(16)` (65,536 slots) on a stream over {HOT_SET} distinct pcs, half of it from the hottest 1%; `cached, uniform` is the same cache on the uniform stream (mostly misses).\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load()
    );
    for (label, path, blaze) in [
        (
            "hugo 0.168.0 (95 MB, stripped, Go 1.27.2, cgo)",
            &hugo,
            false,
        ),
        ("cmd/go (unstripped, Go 1.27.3)", &unstripped, true),
    ] {
        let (o, pcs) = bench_ours(path);
        let _ = writeln!(md, "## {label}\n");
        let _ = writeln!(
            md,
            "| symbolizer | cold open → first address | warm lookups (raw) | cached, hot set | cached, uniform | memory |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        let _ = writeln!(
            md,
            "| goprobe-gopclntab ({} functions) | {:.3} ms wall ({:.3} ms CPU); re-open median {:.3} ms | {} | {} | {} | {} RSS growth after the raw look-ups: the mmap'd file pages they touched (`Pclntab` itself is {} bytes + the PT_LOAD list + a relocation index for PIEs); the cache adds {} |",
            o.nfunc,
            o.open.as_secs_f64() * 1e3,
            o.open_cpu.as_secs_f64() * 1e3,
            o.reopen.as_secs_f64() * 1e3,
            rate(LOOKUPS, o.raw),
            rate(LOOKUPS, o.cached_hot),
            rate(LOOKUPS, o.cached_uniform),
            mib(o.rss),
            std::mem::size_of::<Pclntab<'_>>(),
            mib(o.cache_rss),
        );
        if blaze {
            bench_blazesym(path, &pcs, &mut md);
        }
        let (wall, cpu) = bench_addr2line(&go, path, &pcs[..ADDR2LINE_LOOKUPS]);
        let _ = writeln!(
            md,
            "{}`go tool addr2line` (Go 1.27.3, one process): {ADDR2LINE_LOOKUPS} addresses in {:.2} s wall, {:.2} s CPU (all threads), including process start and table load: {} per CPU-second (no inlined frames).\n",
            if blaze { "" } else { "\n" },
            wall.as_secs_f64(),
            cpu.as_secs_f64(),
            rate(ADDR2LINE_LOOKUPS, cpu),
        );
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &md).unwrap();
    println!("{md}");
}
