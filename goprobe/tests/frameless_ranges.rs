//! The frameless ranges goprobe loads for a binary are exactly where a frame-pointer walk
//! misses the caller: every instruction of every function, decoded, is in a range (or is a
//! `RET`, which the BPF side recognizes by its opcode) if and only if the function table's
//! pcsp says SP is at its entry value there (the return address at `[SP]`). For the test
//! programs of every Go release (plain, stripped, PIE), Debian's prometheus (Go 1.19) and hugo
//! (Go 1.27, 95 MB): the numbers printed are the ranges per binary and the time to compute them.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{path::PathBuf, time::Instant};

use goprobe::analysis::binary::{
    elf::ElfInfo,
    frameless::{self, lookup},
};
use goprobe_common::{MAX_FRAMELESS, X86_RET};
use goprobe_gopclntab::Pclntab;
use iced_x86::{Decoder, DecoderOptions, Mnemonic};

fn binaries() -> Vec<(String, PathBuf)> {
    let mut v = Vec::new();
    for go in ["1.19", "1.21.13", "1.23.9", "1.25.5", "1.27.3"] {
        v.push((format!("signals {go}"), support::testprog("signals", go)));
    }
    v.push((
        "signals-sw 1.27.3".into(),
        support::testprog("signals-sw", "1.27.3"),
    ));
    v.push((
        "gcstress-pie 1.27.3".into(),
        support::testprog("gcstress-pie", "1.27.3"),
    ));
    v.push(("prometheus".into(), "/usr/bin/prometheus".into()));
    v.push((
        "hugo".into(),
        std::env::var_os("GOPROBE_HUGO")
            .map(PathBuf::from)
            .expect("GOPROBE_HUGO is not set: run the tests via `cargo xtask test`"),
    ));
    v
}

fn check(name: &str, path: &std::path::Path) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let elf = ElfInfo::parse(&data, &[]).unwrap();
    let table = Pclntab::from_elf(&data).unwrap();
    let byte = |addr: u64| {
        elf.bytes_at(&data, addr, 1)
            .and_then(|b| b.first().copied())
    };
    let started = Instant::now();
    let f = frameless::ranges(Some(&table), &byte);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(f.too_many, None, "{name}");
    assert!(f.ranges.len() <= MAX_FRAMELESS as usize);
    assert!(
        f.ranges
            .windows(2)
            .all(|w| w[0].0 < w[0].1 && w[0].1 < w[1].0),
        "{name}: ranges not sorted, disjoint and apart"
    );
    let (mut instructions, mut zero, mut rets) = (0u64, 0u64, 0u64);
    for func in table.funcs() {
        let steps = table.sp_deltas(&func).unwrap();
        let Some(&(_, code_end, _)) = steps.last() else {
            continue;
        };
        let code = elf
            .bytes_at(&data, func.entry, code_end - func.entry)
            .unwrap();
        let mut d = Decoder::with_ip(64, code, func.entry, DecoderOptions::NONE);
        let mut step = 0;
        while d.can_decode() {
            let ins = d.decode();
            let pc = ins.ip();
            while steps[step].1 <= pc {
                step += 1;
            }
            let at_entry_sp = steps[step].2 == 0;
            let off = u32::try_from(pc - f.text_start).unwrap();
            let ret = byte(pc) == Some(X86_RET);
            let covered = lookup(&f.ranges, off).is_some() || ret;
            assert_eq!(
                covered,
                at_entry_sp,
                "{name}: {} at {pc:#x} ({:?}, pcsp delta {}): covered {covered}",
                func.name,
                ins.mnemonic(),
                steps[step].2
            );
            if ret {
                assert_eq!(ins.mnemonic(), Mnemonic::Ret, "{name}: {pc:#x}");
                rets += 1;
            }
            instructions += 1;
            zero += u64::from(at_entry_sp);
        }
    }
    eprintln!(
        "{name}: {} functions, {instructions} instructions ({zero} at the entry SP, {rets} RETs): \
         {} ranges ({} KiB in the kernel), computed in {ms:.1} ms",
        table.len(),
        f.ranges.len(),
        f.ranges.len() * 8 / 1024
    );
}

#[test]
fn ranges_cover_exactly_the_pcs_at_the_entry_sp() {
    for (name, path) in binaries() {
        check(&name, &path);
    }
}
