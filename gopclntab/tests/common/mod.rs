//! Shared helpers of the integration tests: where the test programs and Go toolchains are,
//! a seeded sampler, and the two ground truths (`go tool addr2line` and DWARF).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    borrow::Cow,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use goprobe_gopclntab::Pclntab;

#[path = "synth.rs"]
mod synth;
pub use synth::elf_around;
#[path = "names.rs"]
pub mod names;
use object::{Object as _, ObjectSection as _};

/// An environment variable `cargo xtask test` sets; fails with a hint when it is missing.
pub fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(v) => PathBuf::from(v),
        None => panic!("{name} is not set: run these tests via `cargo xtask test`"),
    }
}

/// `target/testprogs`, with one directory per Go release.
pub fn testprogs() -> PathBuf {
    env_path("GOPROBE_TESTPROGS")
}

/// Go releases with built test programs, oldest first, and the `go` command of each.
pub fn go_versions() -> Vec<(String, PathBuf)> {
    let bins = std::env::var("GOPROBE_GO_BINS")
        .expect("GOPROBE_GO_BINS is not set: run these tests via `cargo xtask test`");
    let v: Vec<(String, PathBuf)> = bins
        .split(':')
        .filter_map(|kv| kv.split_once('='))
        .map(|(v, p)| (v.to_owned(), PathBuf::from(p)))
        .collect();
    assert!(!v.is_empty(), "GOPROBE_GO_BINS lists no Go release");
    v
}

/// xorshift64*: a fixed-seed sampler, so every run checks the same addresses.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Every function entry, then `n` random pcs inside Go text.
pub fn sample(t: &Pclntab<'_>, n: usize, seed: u64) -> Vec<u64> {
    let mut pcs: Vec<u64> = t.funcs().map(|f| f.entry).collect();
    let lo = t.text_start();
    let hi = t.funcs().last().expect("functions").end;
    let mut rng = Rng::new(seed);
    pcs.extend((0..n).map(|_| rng.range(lo, hi)));
    pcs
}

/// `go tool addr2line FILE` for `pcs`: (function, file, line) per pc, `None` for `?`.
pub fn go_addr2line(go: &Path, file: &Path, pcs: &[u64]) -> Vec<Option<(String, String, u32)>> {
    let mut child = Command::new(go)
        .args(["tool", "addr2line"])
        .arg(file)
        .env("GOTOOLCHAIN", "local")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {} tool addr2line: {e}", go.display()));
    let mut stdin = child.stdin.take().unwrap();
    let input: String = pcs.iter().map(|pc| format!("{pc:#x}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "go tool addr2line failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * pcs.len(), "addr2line answered every pc");
    lines
        .chunks(2)
        .map(|c| {
            let (file, line) = c[1].rsplit_once(':').unwrap();
            // debug/gosym reports an unknown line as -1 (no pcln value); Frame says 0.
            let line: i64 = line.parse().unwrap();
            let line = u32::try_from(line).unwrap_or(0);
            // debug/gosym's unknown file is "", the runtime's (and Frame's) is "?".
            let file = if file.is_empty() { "?" } else { file };
            (c[0] != "?").then(|| (c[0].to_owned(), file.to_owned(), line))
        })
        .collect()
}

/// One DWARF frame: (function, file, line).
pub type DwarfFrame = (String, String, u32);

/// The DWARF of an ELF file, for inline-aware look-ups (gimli + addr2line).
pub struct Dwarf {
    ctx: addr2line::Context<gimli::EndianRcSlice<gimli::RunTimeEndian>>,
}

impl Dwarf {
    pub fn load(data: &[u8]) -> Dwarf {
        let file = object::File::parse(data).unwrap();
        let load = |id: gimli::SectionId| -> Result<_, gimli::Error> {
            let d: Cow<[u8]> = file
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .unwrap_or(Cow::Borrowed(&[]));
            Ok(gimli::EndianRcSlice::new(
                std::rc::Rc::from(&*d),
                gimli::RunTimeEndian::Little,
            ))
        };
        let dwarf = gimli::Dwarf::load(load).unwrap();
        Dwarf {
            ctx: addr2line::Context::from_dwarf(dwarf).unwrap(),
        }
    }

    /// Frames for `pc`, innermost first.
    pub fn frames(&self, pc: u64) -> Vec<DwarfFrame> {
        let mut out = Vec::new();
        let mut it = self.ctx.find_frames(pc).skip_all_loads().unwrap();
        while let Some(f) = it.next().unwrap() {
            let name = f
                .function
                .as_ref()
                .and_then(|n| n.raw_name().ok().map(|s| s.into_owned()))
                .unwrap_or_default();
            let (file, line) = f
                .location
                .map(|l| (l.file.unwrap_or("?").to_owned(), l.line.unwrap_or(0)))
                .unwrap_or_else(|| ("?".into(), 0));
            out.push((name, file, line));
        }
        out
    }
}

/// A fuzz seed (`gopclntab/fuzz/seeds/NAME`) turned into an ELF, as the fuzz target does.
pub fn seed_elf(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match data[0] {
        1 => elf_around(&[], &data[1..]),
        2 => {
            let n = usize::from(u16::from_le_bytes([data[1], data[2]]));
            elf_around(&data[3..3 + n], &data[3 + n..])
        }
        m => panic!("seed mode {m}"),
    }
}

/// Offset of the table inside an `elf_around` file.
pub fn table_offset(moduledata_len: usize) -> usize {
    64 + 3 * 56 + moduledata_len
}
