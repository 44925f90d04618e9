//! The process symbolizer on live processes: Go text of stripped binaries (non-PIE and PIE)
//! resolves to the names the unstripped twin's symbol table gives at the same addresses, and
//! shared-library code (libc of a cgo program) to its dynamic symbols.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

#[path = "../../gopclntab/tests/common/names.rs"]
mod names;
mod support;

use std::{path::Path, process::Command};

use goprobe::symbolize::{FrameKind, Symbolizer, maps};
use object::{Object as _, ObjectSection as _, ObjectSegment as _, ObjectSymbol as _};

/// `strip`s a copy of `bin`.
fn stripped_copy(bin: &Path, tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("goprobe-sym-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{tag}-stripped"));
    let st = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(bin)
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// Go function symbols of the unstripped binary inside Go text: `(link address, name)`.
fn go_functions(bin: &Path) -> Vec<(u64, String)> {
    let data = std::fs::read(bin).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let sym = |n: &str| {
        file.symbols()
            .find(|s| s.name() == Ok(n))
            .unwrap()
            .address()
    };
    let (text, etext) = (sym("runtime.text"), sym("runtime.etext"));
    let mut f: Vec<(u64, String)> = file
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
        .filter(|s| (text..etext).contains(&s.address()))
        .map(|s| (s.address(), s.name().unwrap().to_owned()))
        .collect();
    f.sort();
    f.dedup_by_key(|x| x.0);
    f
}

/// The symbol table's name as the runtime (and so the gopclntab) spells it: without the
/// `.abi0` suffix of assembly functions and, for Go 1.18–1.20, with each bracketed group
/// (generic type arguments, array lengths) shortened to `[...]`, as those linkers wrote function
/// names into the table (src/cmd/link/internal/ld/pcln.go; Go 1.21 writes them in full).
fn runtime_name(sym: &str) -> String {
    names::abbreviate_brackets(sym.strip_suffix(".abi0").unwrap_or(sym))
}

/// Where file offset 0 of `exe` is mapped in `pid`, minus its first PT_LOAD vaddr.
fn bias(pid: u32, exe: &Path) -> u64 {
    let data = std::fs::read(exe).unwrap();
    let file = object::File::parse(&*data).unwrap();
    if file.kind() != object::ObjectKind::Dynamic {
        return 0;
    }
    let first = file.segments().map(|s| s.address()).min().unwrap();
    let maps = maps::read(pid).unwrap();
    let base = maps
        .iter()
        .find(|m| m.offset == 0 && m.is_file())
        .unwrap()
        .start;
    base - first
}

fn check_go(version: &str, name: &str, pie: bool) {
    let bin = support::testprog(name, version);
    let stripped = stripped_copy(&bin, &format!("{version}-{name}"));
    let prog = support::Proc::spawn(Command::new(&stripped));
    prog.wait_stdout("ready", std::time::Duration::from_secs(30));
    let bias = bias(prog.pid(), &stripped);
    assert_eq!(bias != 0, pie, "PIE load bias");
    let funcs = go_functions(&bin);
    let mut sym = Symbolizer::new();
    let step = (funcs.len() / 3000).max(1);
    let (mut checked, mut agreed) = (0, 0);
    for (addr, name) in funcs.iter().step_by(step) {
        let frames = sym.frames(prog.pid(), addr + bias);
        let outer = frames.last().unwrap();
        checked += 1;
        let want = if version == "1.19" {
            runtime_name(name)
        } else {
            name.strip_suffix(".abi0").unwrap_or(name).to_owned()
        };
        // NB: the symbol table spells the linker's "·" (generated names) as ".".
        if outer.kind == FrameKind::Go && outer.function.replace('·', ".") == want {
            agreed += 1;
        } else {
            eprintln!("{version} {name}: {addr:#x} {name} -> {frames:?}");
        }
    }
    eprintln!("{version} {name} (stripped, pie={pie}): {agreed}/{checked} function entries agree");
    assert_eq!(agreed, checked);
}

#[test]
fn stripped_go_text_by_version() {
    for v in ["1.19", "1.21.13", "1.23.9", "1.25.5", "1.27.3"] {
        check_go(v, "gcstress", false);
    }
}

#[test]
fn stripped_pie_go_text() {
    for v in ["1.19", "1.21.13", "1.27.3"] {
        check_go(v, "gcstress-pie", true);
    }
}

#[test]
fn shared_library_code_of_a_cgo_program() {
    let prog = support::start_testprog("gcstress-race", "1.27.3", &[], &[]);
    let maps = maps::read(prog.pid()).unwrap();
    let libc = maps
        .iter()
        .find(|m| m.path.contains("libc.so") && m.executable)
        .expect("cgo program maps libc");
    let data = std::fs::read(&libc.path).unwrap();
    let file = object::File::parse(&*data).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let mut sym = Symbolizer::new();
    let mut checked = 0;
    for want in ["malloc", "free", "calloc", "nanosleep"] {
        let s = file
            .dynamic_symbols()
            .find(|s| s.name() == Ok(want))
            .unwrap();
        // Same segment as .text: file offset = vaddr - text vaddr + text offset.
        let (text_off, _) = text.file_range().unwrap();
        let off = s.address() - text.address() + text_off;
        let addr = libc.start + off - libc.offset;
        let frames = sym.frames(prog.pid(), addr);
        let f = frames.last().unwrap();
        assert_eq!(f.kind, FrameKind::Native, "{want}: {frames:?}");
        // glibc exports aliases (malloc = __libc_malloc) and, where its DWARF is installed
        // (libc6-dbg), names the code by the hidden alias `__GI___libc_malloc`: any name at
        // that address is right.
        let names: Vec<_> = file
            .dynamic_symbols()
            .filter(|x| x.address() == s.address())
            .filter_map(|x| x.name().ok())
            .collect();
        assert!(
            names.iter().any(|n| f.function.ends_with(n)),
            "{want}: got {f:?}, aliases {names:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn one_build_in_two_files_is_read_once() {
    let bin = support::testprog("gcstress", "1.27.3");
    let a = stripped_copy(&bin, "copy-a");
    let b = stripped_copy(&bin, "copy-b");
    let pa = support::Proc::spawn(Command::new(&a));
    let pb = support::Proc::spawn(Command::new(&b));
    pa.wait_stdout("ready", std::time::Duration::from_secs(30));
    pb.wait_stdout("ready", std::time::Duration::from_secs(30));
    let (addr, name) = go_functions(&bin)
        .into_iter()
        .find(|(_, n)| n == "main.main")
        .unwrap();
    let mut sym = Symbolizer::new();
    let fa = sym.frames(pa.pid(), addr);
    let fb = sym.frames(pb.pid(), addr);
    assert_eq!(&*fa.last().unwrap().function, name);
    assert_eq!(fa, fb);
    assert_eq!(sym.go_binaries(), 1, "same build id, two inodes: one table");
}
