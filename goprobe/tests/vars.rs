//! Runtime variables located from machine code (`analysis::binary::vars`) are exactly where `.symtab` says
//! they are, in binaries built by every tested Go release: plain, without DWARF, PIE, the demo
//! program, and -race. The functions are taken from `.symtab` here; on stripped binaries they
//! come from the gopclntab, which yields the same bytes.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{collections::HashMap, path::Path};

use goprobe::analysis::{
    binary::{
        elf::ElfInfo,
        vars::{self, FunctionCode, RuntimeVars},
        version::GoVersion,
    },
    layout::{self, RuntimeLayout, dwarf::DwarfFields},
};
use object::{Object, ObjectSymbol, SymbolKind};

/// `.symtab` addresses and sizes of every function and data symbol.
fn symbols(data: &[u8]) -> HashMap<String, (u64, u64)> {
    let file = object::File::parse(data).unwrap();
    file.symbols()
        .filter(|s| matches!(s.kind(), SymbolKind::Text | SymbolKind::Data))
        .filter_map(|s| Some((s.name().ok()?.to_owned(), (s.address(), s.size()))))
        .collect()
}

/// The code of function `name` from the symbol table `syms`.
fn code_of<'d>(
    elf: &ElfInfo,
    data: &'d [u8],
    syms: &HashMap<String, (u64, u64)>,
    name: &str,
) -> Option<FunctionCode<'d>> {
    let &(addr, size) = syms.get(name)?;
    Some(FunctionCode {
        addr,
        code: elf.bytes_at(data, addr, size)?,
    })
}

/// The runtime layout as `Target::analyze` builds it: DWARF over the per-release table. Go 1.19
/// has no table yet: its offsets come from the DWARF of the same release's `gcstress` alone.
fn layout_for(version: &GoVersion, data: &[u8], go: &str) -> RuntimeLayout {
    let own = DwarfFields::read(data).unwrap().filter(|f| !f.is_empty());
    match (layout::for_minor(version.minor), own) {
        (Some(table), Some(fields)) => fields.apply(table),
        (Some(table), None) => table,
        (None, own) => {
            let fields = own.unwrap_or_else(|| {
                let sibling = std::fs::read(support::testprog("gcstress", go)).unwrap();
                DwarfFields::read(&sibling).unwrap().unwrap()
            });
            for (s, f) in [
                ("runtime.workType", "cycles"),
                ("runtime.workType", "userForced"),
                ("runtime.mstats", "numgc"),
            ] {
                assert!(fields.get(s, f).is_some(), "Go {go}: no {s}.{f} in DWARF");
            }
            // Every field the recipes use is overwritten by DWARF's value.
            fields.apply(layout::for_minor(21).unwrap())
        }
    }
}

fn locate(path: &Path, go: &str) -> (RuntimeVars, HashMap<String, (u64, u64)>) {
    let data = std::fs::read(path).unwrap();
    let elf = ElfInfo::parse(&data, &[]).unwrap();
    let version = GoVersion::parse(elf.go_version.as_deref().unwrap()).unwrap();
    let layout = layout_for(&version, &data, go);
    let syms = symbols(&data);
    let code = |name: &str| code_of(&elf, &data, &syms, name);
    let vars = vars::locate(&code, &version, &layout)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (vars, syms)
}

fn check_binary(name: &str, go: &str) {
    // Shows why an optional variable was not located.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("goprobe=debug")
        .with_test_writer()
        .try_init();
    let path = support::testprog(name, go);
    let (vars, syms) = locate(&path, go);
    let truth = |sym: &str| {
        syms.get(sym)
            .map(|s| s.0)
            .unwrap_or_else(|| panic!("{name} {go}: {sym} not in .symtab"))
    };
    // NB: Go 1.25 renamed runtime.ncpu to runtime.numCPUStartup (runtime/os_linux.go osinit).
    let ncpu = if syms.contains_key("runtime.ncpu") {
        "runtime.ncpu"
    } else {
        "runtime.numCPUStartup"
    };
    let found = [
        ("runtime.work", Some(vars.work)),
        ("runtime.memstats", Some(vars.memstats)),
        ("runtime.allglen", vars.allglen),
        ("runtime.sched", vars.sched),
        ("runtime.gcController", vars.gc_controller),
        ("runtime.MemProfileRate", vars.mem_profile_rate),
        ("runtime.gomaxprocs", vars.gomaxprocs),
        (ncpu, vars.ncpu),
        ("runtime.allp", vars.allp),
    ];
    for (sym, addr) in found {
        // Every variable is found in these binaries, and only at its .symtab address.
        assert_eq!(addr, Some(truth(sym)), "Go {go} {name}: {sym}");
    }
    for e in &vars.evidence {
        println!(
            "Go {go} {name}: {} = {:#x} by {}",
            e.symbol,
            e.address,
            e.recipes.join(" + ")
        );
        assert!(e.recipes.len() >= 2, "{e:?}");
    }
}

fn check(go: &str) {
    for name in ["gcstress", "gcstress-nodwarf", "gcstress-pie", "demo"] {
        check_binary(name, go);
    }
}

#[test]
fn go1_19() {
    check("1.19");
}

#[test]
fn go1_21() {
    check("1.21.13");
}

#[test]
fn go1_23() {
    check("1.23.9");
}

#[test]
fn go1_25() {
    check("1.25.5");
}

#[test]
fn go1_27() {
    check("1.27.3");
    check_binary("gcstress-race", "1.27.3");
}

/// Real runtime code read with another release's struct offsets is an error, never an address.
#[test]
fn wrong_layout_is_an_error() {
    let data = std::fs::read(support::testprog("gcstress", "1.27.3")).unwrap();
    let elf = ElfInfo::parse(&data, &[]).unwrap();
    let version = GoVersion::parse(elf.go_version.as_deref().unwrap()).unwrap();
    let syms = symbols(&data);
    let code = |name: &str| code_of(&elf, &data, &syms, name);
    // NB: Go 1.21 has work.cycles at 400 and userForced at 344; 1.27 at 648 and 536.
    let table = layout::for_minor(27).unwrap();
    let wrong = layout::for_minor(21).unwrap();
    // Both fields moved by the same distance, as GOEXPERIMENT=greenteagc does in Go 1.25: the
    // cycles and userForced recipes alone would agree on a base 96 bytes off.
    let shifted = layout::RuntimeLayout {
        work_cycles: table.work_cycles - 96,
        work_user_forced: table.work_user_forced - 96,
        ..table
    };
    for layout in [wrong, shifted] {
        let err = vars::locate(&code, &version, &layout).unwrap_err();
        assert!(
            matches!(
                err,
                vars::VarsError::Disagree {
                    symbol: "runtime.work",
                    ..
                }
            ),
            "{layout:?}: {err}"
        );
    }
    // And a wrong mstats.numgc offset.
    let numgc = layout::RuntimeLayout {
        memstats_numgc: table.memstats_numgc + 8,
        ..table
    };
    let err = vars::locate(&code, &version, &numgc).unwrap_err();
    assert!(
        matches!(
            err,
            vars::VarsError::Disagree {
                symbol: "runtime.memstats",
                ..
            }
        ),
        "{err}"
    );
}

/// Every recipe fed the same unrelated runtime function: one function is not two witnesses.
#[test]
fn wrong_functions_are_an_error() {
    for go in ["1.19", "1.27.3"] {
        let data = std::fs::read(support::testprog("gcstress", go)).unwrap();
        let elf = ElfInfo::parse(&data, &[]).unwrap();
        let version = GoVersion::parse(elf.go_version.as_deref().unwrap()).unwrap();
        let layout = layout_for(&version, &data, go);
        let syms = symbols(&data);
        for other in [
            "runtime.mallocgc",
            "runtime.GC",
            "runtime.gcStart",
            "main.main",
        ] {
            let &(addr, size) = syms.get(other).unwrap();
            let bytes = elf.bytes_at(&data, addr, size).unwrap();
            let code = |_: &str| Some(FunctionCode { addr, code: bytes });
            let err = vars::locate(&code, &version, &layout).unwrap_err();
            assert!(
                matches!(err, vars::VarsError::TooFewRecipes { ran: 1, .. }),
                "Go {go}, every function = {other}: {err}"
            );
        }
    }
}

/// For releases outside `cargo xtask test`'s matrix: point GOPROBE_TESTPROGS at a directory of
/// `<version>/{gcstress,gcstress-pie,demo}` builds and run with `--ignored`.
#[test]
#[ignore = "manual: needs extra Go releases built by hand"]
fn every_version_directory() {
    let root = std::env::var_os("GOPROBE_TESTPROGS").expect("set GOPROBE_TESTPROGS");
    let mut n = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let go = entry.unwrap().file_name().into_string().unwrap();
        for name in ["gcstress", "gcstress-pie", "demo"] {
            check_binary(name, &go);
            n += 1;
        }
    }
    assert!(n > 0, "no version directories");
}
