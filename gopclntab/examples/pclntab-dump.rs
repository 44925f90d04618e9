//! `cargo run -p goprobe-gopclntab --example pclntab-dump -- FILE [HEXADDR...]`: what the
//! crate sees in a binary, and the frames of the given addresses (or of stdin's, one per line).

use std::io::BufRead as _;

use goprobe_gopclntab::{Pclntab, infer_go_version};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: pclntab-dump FILE [HEXADDR...]")?;
    let data = std::fs::read(&path)?;
    let t0 = std::time::Instant::now();
    let t = Pclntab::from_elf(&data)?;
    let open = t0.elapsed();
    let addrs: Vec<String> = args.collect();
    if addrs.is_empty() && atty_stdin_is_pipe() {
        let mut frames = Vec::new();
        for line in std::io::stdin().lock().lines() {
            let pc = u64::from_str_radix(line?.trim().trim_start_matches("0x"), 16)?;
            frames.clear();
            t.frames(pc, &mut frames)?;
            println!("{pc:#x} {frames:?}");
        }
        return Ok(());
    }
    println!(
        "{path}: {t:?} inline={} version={:?} open={open:?}",
        t.has_inline_info(),
        infer_go_version(&data, Some(&t))
    );
    let mut frames = Vec::new();
    for a in addrs {
        let pc = u64::from_str_radix(a.trim_start_matches("0x"), 16)?;
        frames.clear();
        t.frames(pc, &mut frames)?;
        println!(
            "{pc:#x} {:?}",
            t.find_func(pc).map(|f| (f.name, f.entry, f.end))
        );
        for f in &frames {
            println!("    {f:?}");
        }
    }
    Ok(())
}

fn atty_stdin_is_pipe() -> bool {
    std::env::var_os("PCLNTAB_STDIN").is_some()
}
