//! Bad input: truncated, corrupted and adversarial tables give `Err` (or `None`), never a
//! panic, a hang or an unbounded allocation. The tables are the fuzz seeds (real Go 1.19,
//! 1.21 and 1.27 tables in a minimal ELF), so these tests need no built programs.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod common;

use std::time::{Duration, Instant};

use common::{Rng, seed_elf, table_offset};
use goprobe_gopclntab::{Error, Frame, Layout, Pclntab};

const SEEDS: &[(&str, Layout, usize)] = &[
    ("go1.19-symtest-sw", Layout::Go118, 0),
    ("go1.21.13-symtest-sw", Layout::Go120, 0),
    ("go1.27.3-symtest-sw", Layout::Go126, 0x238),
];

/// Runs every look-up on a table; returns how many frames came out.
fn exercise(elf: &[u8]) -> usize {
    let Ok(t) = Pclntab::from_elf(elf) else {
        return 0;
    };
    let mut frames: Vec<Frame<'_>> = Vec::new();
    let mut n = 0;
    for f in t.funcs().take(400) {
        for pc in [
            f.entry,
            f.entry.wrapping_add(f.end.saturating_sub(f.entry) / 2),
        ] {
            frames.clear();
            if t.frames(pc, &mut frames).is_ok() {
                n += frames.len();
            }
            let _ = t.find_func(pc);
        }
    }
    let _ = t.func_by_name("main.main");
    let _ = goprobe_gopclntab::infer_go_version(elf, Some(&t));
    n
}

#[test]
fn seeds_are_valid_tables() {
    for &(name, layout, _) in SEEDS {
        let elf = seed_elf(name);
        let t = Pclntab::from_elf(&elf).unwrap();
        assert_eq!(t.layout(), layout, "{name}");
        assert!(t.len() > 1000, "{name}: {} functions", t.len());
        assert!(t.func_by_name("runtime.main").is_some(), "{name}");
        // Only the Go 1.27 seed carries moduledata: the others must degrade to no inline info.
        assert_eq!(t.has_inline_info(), layout == Layout::Go126, "{name}");
        let mut frames = Vec::new();
        for f in t.funcs() {
            frames.clear();
            t.frames(f.entry, &mut frames).unwrap();
            assert_eq!(frames.last().map(|f| f.function), Some(f.name));
        }
    }
}

#[test]
fn not_elf_or_no_table() {
    assert!(matches!(Pclntab::from_elf(&[]), Err(Error::Elf(_))));
    assert!(matches!(
        Pclntab::from_elf(b"\x7fELF\x02\x01\x01"),
        Err(Error::Elf(_))
    ));
    let elf = common::elf_around(&[], &[0u8; 4096]);
    assert!(matches!(Pclntab::from_elf(&elf), Err(Error::NotFound)));
    // A Go 1.2–1.15 header is recognised and refused.
    let mut old = vec![0xfb, 0xff, 0xff, 0xff, 0, 0, 1, 8];
    old.resize(4096, 0);
    let elf = common::elf_around(&[], &old);
    assert!(matches!(
        Pclntab::from_elf(&elf),
        Err(Error::UnsupportedMagic { magic: 0xffff_fffb })
    ));
}

#[test]
fn truncated_tables() {
    for &(name, _, md) in SEEDS {
        let elf = seed_elf(name);
        let tab = table_offset(md);
        let len = elf.len() - tab;
        let mut cuts: Vec<usize> = (0..64).chain((64..len).step_by(len / 97)).collect();
        cuts.push(len - 1);
        for cut in cuts {
            let mut e = elf[..tab + cut].to_vec();
            // Keep the segment table truthful about the file size, as a truncated copy would.
            let filesz_at = 64 + 56 + 32;
            e[filesz_at..filesz_at + 8].copy_from_slice(&(cut as u64).to_le_bytes());
            e[filesz_at + 8..filesz_at + 16].copy_from_slice(&(cut as u64).to_le_bytes());
            exercise(&e);
        }
    }
}

/// Writes the header word `i` (pointer-sized, after the 8-byte prefix) of the table.
fn set_word(elf: &mut [u8], md: usize, i: usize, v: u64) {
    let at = table_offset(md) + 8 + 8 * i;
    elf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn huge_nfunc_and_offsets_out_of_range() {
    let (name, _, md) = SEEDS[1];
    let elf = seed_elf(name);
    for v in [u64::MAX, 1 << 40, 1 << 28, u64::from(u32::MAX)] {
        let mut e = elf.clone();
        set_word(&mut e, md, 0, v);
        assert!(
            matches!(Pclntab::from_elf(&e), Err(Error::Corrupt { .. })),
            "nfunc {v:#x}"
        );
    }
    // Words 3..=7: funcname, cu, filetab, pctab, pcln offsets (Go 1.18+).
    for w in 3..=7 {
        for v in [u64::MAX, 1 << 33, (elf.len() - table_offset(md)) as u64] {
            let mut e = elf.clone();
            set_word(&mut e, md, w, v);
            assert!(
                matches!(Pclntab::from_elf(&e), Err(Error::Corrupt { .. })),
                "word {w} = {v:#x}"
            );
        }
    }
}

#[test]
fn functab_pointing_outside() {
    let (name, _, md) = SEEDS[1];
    let mut elf = seed_elf(name);
    let victim = Pclntab::from_elf(&elf)
        .unwrap()
        .funcs()
        .nth(10)
        .unwrap()
        .entry;
    let pcln = u64::from_le_bytes(elf[table_offset(md) + 64..][..8].try_into().unwrap());
    // funcoff of function 10, relative to pclntable.
    let at = table_offset(md) + pcln as usize + 10 * 8 + 4;
    elf[at..at + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    let t = Pclntab::from_elf(&elf).unwrap();
    assert!(t.find_func(victim).is_none());
    let mut frames = Vec::new();
    assert!(matches!(
        t.frames(victim, &mut frames),
        Err(Error::Corrupt { .. })
    ));
    assert!(frames.is_empty());
    assert!(t.find_func(0).is_none() && t.find_func(u64::MAX).is_none());
}

/// Makes a two-level inline chain cyclic: every inline record naming the middle frame's
/// function gets `parentPc = pc - entry`, whose index is the leaf's record, whose parent is the
/// middle one again. The walk must stop with `InlineTooDeep`.
#[test]
fn cyclic_inline_chain() {
    let (name, _, md) = SEEDS[2];
    let mut elf = seed_elf(name);
    let t = Pclntab::from_elf(&elf).unwrap();
    let mut frames = Vec::new();
    let (pc, entry, callee) = t
        .funcs()
        .find_map(|f| {
            (f.entry..f.end).find_map(|pc| {
                frames.clear();
                t.frames(pc, &mut frames).ok()?;
                (frames.len() == 3 && frames[0].function != frames[1].function)
                    .then(|| (pc, f.entry, frames[1].function.to_owned()))
            })
        })
        .expect("an inlined pc");
    drop(t);
    let tab = table_offset(md);
    let funcname = u64::from_le_bytes(elf[tab + 32..][..8].try_into().unwrap()) as usize;
    let needle: Vec<u8> = [&[0u8][..], callee.as_bytes(), &[0]].concat();
    let names = &elf[tab + funcname..];
    let name_off = (names
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + 1) as u32;
    // Go 1.20+ records: {funcID u8, pad [3]u8, nameOff i32, parentPc i32, startLine i32}.
    let mut patched = 0;
    let mut at = tab;
    while at + 16 <= elf.len() {
        if elf[at + 4..at + 8] == name_off.to_le_bytes() && elf[at + 1..at + 4] == [0, 0, 0] {
            elf[at + 8..at + 12].copy_from_slice(&((pc - entry) as u32).to_le_bytes());
            patched += 1;
        }
        at += 4;
    }
    assert!(patched > 0);
    let t = Pclntab::from_elf(&elf).unwrap();
    let start = Instant::now();
    let mut frames = Vec::new();
    let r = t.frames(pc, &mut frames);
    assert!(
        matches!(r, Err(Error::InlineTooDeep { .. })),
        "{r:?} {frames:?}"
    );
    assert!(frames.is_empty());
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// Random byte corruption (fixed seed): every look-up returns, quickly.
#[test]
fn random_corruption() {
    let mut rng = Rng::new(0xbad);
    for &(name, _, md) in SEEDS {
        let elf = seed_elf(name);
        let tab = table_offset(md);
        for _ in 0..150 {
            let mut e = elf.clone();
            for _ in 0..1 + rng.next() % 64 {
                // Bias towards the header and functab, where a byte matters most.
                let span = if rng.next().is_multiple_of(2) {
                    4096
                } else {
                    e.len() - tab
                };
                let at = tab + (rng.next() as usize % span).min(e.len() - tab - 1);
                e[at] = rng.next() as u8;
            }
            let start = Instant::now();
            exercise(&e);
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{name}: slow input"
            );
        }
    }
}
