//! `cargo xtask bench` part: goprobe's process symbolizer on a live process — cold (first
//! address of a new `Symbolizer`: maps, build id, table) and warm (the memo every signal hits).
//!
//! Usage: `symbolize_bench <PID>`; prints one Markdown table row.

use std::time::Instant;

use goprobe::symbolize::{Symbolizer, maps};
use goprobe_gopclntab::Pclntab;
use object::{Object as _, ObjectSegment as _};

fn main() -> anyhow::Result<()> {
    let pid: u32 = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: symbolize_bench <PID>"))?
        .parse()?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    let data = std::fs::read(format!("/proc/{pid}/exe"))?;
    let elf = object::File::parse(&*data)?;
    let table = Pclntab::from_elf(&data)?;
    // Load bias: where file offset 0 is mapped minus the first PT_LOAD address.
    let first = elf.segments().map(|s| s.address()).min().unwrap_or(0);
    let maps = maps::read(pid)?;
    let base = maps
        .iter()
        .find(|m| m.offset == 0 && m.is_file() && m.path == exe.to_string_lossy())
        .map_or(first, |m| m.start);
    let bias = if elf.kind() == object::ObjectKind::Dynamic {
        base - first
    } else {
        0
    };
    // 10,000 pcs spread over the Go text, fixed (xorshift) sequence.
    let funcs: Vec<_> = table.funcs().collect();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let pcs: Vec<u64> = (0..10_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let f = funcs[(x % funcs.len() as u64) as usize];
            f.entry + (x >> 32) % (f.end - f.entry).max(1) + bias
        })
        .collect();
    let t = Instant::now();
    let mut sym = Symbolizer::new();
    let first = sym.frames(pid, pcs[0]);
    let cold = t.elapsed();
    let t = Instant::now();
    for &pc in &pcs {
        sym.frames(pid, pc);
    }
    let fill = t.elapsed();
    let rounds = 100;
    let t = Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        for &pc in &pcs {
            n += sym.frames(pid, pc).len();
        }
    }
    let warm = t.elapsed();
    let lookups = (rounds * pcs.len()) as f64;
    println!(
        "| {} ({} functions) | {:.1} ms (`{}`) | {:.0} k/s | {:.2} M/s | {} frames |",
        exe.display(),
        funcs.len(),
        cold.as_secs_f64() * 1e3,
        first.last().map_or("?", |f| &*f.function),
        pcs.len() as f64 / fill.as_secs_f64() / 1e3,
        lookups / warm.as_secs_f64() / 1e6,
        n / rounds,
    );
    Ok(())
}
