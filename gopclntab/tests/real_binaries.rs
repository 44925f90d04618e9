//! Real, stripped Go programs we did not build: Debian's prometheus, caddy and etcd (Go 1.19),
//! hugo (Go 1.27, cgo, 95 MB) and esbuild (no `.go.buildinfo`). The table must be found, the
//! runtime functions goprobe probes found by name, every function entry must round-trip through
//! `find_func`, and the inferred Go version must match `go version FILE` (the toolchain's
//! reading of `.go.buildinfo`) where there is one.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::{path::PathBuf, process::Command};

use goprobe_gopclntab::{Layout, Pclntab, VersionHint, infer_go_version};
use object::{Object as _, ObjectSection as _};

fn binaries() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("prometheus", "/usr/bin/prometheus".into()),
        ("caddy", "/usr/bin/caddy".into()),
        ("etcd", "/usr/bin/etcd".into()),
        ("hugo", common::env_path("GOPROBE_HUGO")),
        ("esbuild", common::env_path("GOPROBE_ESBUILD")),
    ]
}

/// The newest Go toolchain (reads every older binary's build info).
fn newest_go() -> PathBuf {
    common::go_versions().pop().expect("a Go release").1
}

/// `go version FILE`'s version, `None` when the file has no build info.
fn go_version_of(path: &std::path::Path) -> Option<String> {
    let out = Command::new(newest_go())
        .arg("version")
        .arg(path)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.rsplit(": ").next().unwrap_or_default().trim();
    (out.status.success() && v.starts_with("go")).then(|| v.to_owned())
}

#[test]
fn real_binaries() {
    for (name, path) in binaries() {
        let data = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (install it via `cargo xtask setup`)",
                path.display()
            )
        });
        let start = std::time::Instant::now();
        let t = Pclntab::from_elf(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        let open = start.elapsed();
        for f in [
            "runtime.main",
            "runtime.gcStart",
            "runtime.startTheWorldWithSema",
        ] {
            let func = t
                .func_by_name(f)
                .unwrap_or_else(|| panic!("{name}: no {f}"));
            assert!(func.end > func.entry, "{name}: {f} is empty");
        }
        let mut checked = 0;
        for f in t.funcs().filter(|f| f.end > f.entry) {
            let found = t.find_func(f.entry).map(|g| (g.entry, g.name));
            assert_eq!(found, Some((f.entry, f.name)), "{name}: round trip");
            let last = t.find_func(f.end - 1).map(|g| g.entry);
            assert_eq!(last, Some(f.entry), "{name}: last byte of {}", f.name);
            checked += 1;
        }
        assert!(checked > t.len() * 9 / 10, "{name}: {checked}/{}", t.len());
        let hint = infer_go_version(&data, Some(&t));
        let truth = go_version_of(&path);
        println!(
            "{name:10} {:?} functions {:6} round-trips {checked:6} open {open:?} inferred {hint:?} go version: {truth:?}",
            t.layout(),
            t.len()
        );
        match truth {
            Some(v) => assert_eq!(hint, VersionHint::Exact(v), "{name}"),
            None => {
                // esbuild: no build info; the inference must fit the table layout.
                let VersionHint::Exact(v) = &hint else {
                    panic!("{name}: no version string found: {hint:?}")
                };
                let minor = goprobe_gopclntab::parse_minor(v.as_bytes()).unwrap();
                assert!(t.layout() != Layout::Go126 || minor >= 26, "{name}: {v}");
            }
        }
    }
}

/// hugo against `go tool addr2line` of Go 1.27.3. NB: Go 1.27 cmd/internal/objfile/elf.go
/// `pcln` takes the text start from `.text` when `runtime.text` is not in the (stripped)
/// symbol table; hugo is cgo-linked, so its Go text starts later than `.text`. So addr2line is
/// asked at `pc - (text_start - .text)`, and the ELF entry point (C's `_start`, before Go text)
/// must not be in the table: that pins our text start independently of debug/gosym.
#[test]
fn hugo_vs_go_addr2line() {
    let path = common::env_path("GOPROBE_HUGO");
    let data = std::fs::read(&path).unwrap();
    let t = Pclntab::from_elf(&data).unwrap();
    let elf = object::File::parse(&*data).unwrap();
    let text = elf.section_by_name(".text").unwrap().address();
    assert!(t.find_func(elf.entry()).is_none(), "C's _start is not Go");
    assert!(t.text_start() > text);
    let shift = t.text_start() - text;
    let pcs = common::sample(&t, 10_000, 0x4060);
    let theirs: Vec<u64> = pcs.iter().map(|pc| pc - shift).collect();
    let truth = common::go_addr2line(&newest_go(), &path, &theirs);
    let mut frames = Vec::new();
    let mut agreed = 0;
    let mut bad = Vec::new();
    for (i, &pc) in pcs.iter().enumerate() {
        frames.clear();
        t.frames(pc, &mut frames).unwrap();
        let got = frames.last().map(|o| {
            (
                o.function.to_owned(),
                frames[0].file.to_owned(),
                frames[0].line,
            )
        });
        if got == truth[i] {
            agreed += 1;
        } else if bad.len() < 10 {
            bad.push(format!("{pc:#x}: ours {got:?} addr2line {:?}", truth[i]));
        }
    }
    println!(
        "hugo: sampled {} agreed with go tool addr2line (1.27.3) {agreed}",
        pcs.len()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A UPX-packed binary has no readable table: a clear error, not a panic or a wrong table.
#[test]
fn upx_packed_is_refused() {
    let upx = common::env_path("GOPROBE_UPX");
    let data = std::fs::read(&upx).unwrap();
    let r = Pclntab::from_elf(&data);
    println!("upx: {r:?}");
    assert!(r.is_err());
}
