//! Fuzzes every entry point of goprobe-gopclntab. The first input byte picks what the rest is:
//! 0: a whole ELF file; 1: a bare table, wrapped into an ELF here (so mutations reach the table
//! instead of the ELF headers); 2: `u16 len`, a moduledata image of that length, then a bare
//! table (Go 1.26+ tables need moduledata for their text start). See `elf_around`.
#![no_main]

use goprobe_gopclntab::{Pclntab, infer_go_version};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/synth.rs"]
#[allow(dead_code)]
mod synth;
use synth::elf_around;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let elf;
    let bytes: &[u8] = match mode {
        1 => {
            elf = elf_around(&[], rest);
            &elf
        }
        2 if rest.len() >= 2 => {
            let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            elf = elf_around(&rest[2..2 + n], &rest[2 + n..]);
            &elf
        }
        _ => rest,
    };
    exercise(bytes);
});

fn exercise(elf: &[u8]) {
    let table = Pclntab::from_elf(elf).ok();
    let _ = infer_go_version(elf, table.as_ref());
    let Some(t) = table else {
        return;
    };
    let _ = (t.layout(), t.text_start(), t.len(), t.has_inline_info());
    let mut frames = Vec::new();
    // Bounded work per input: the first functions, their entries and a few interior pcs.
    for f in t.funcs().take(512) {
        for pc in [
            f.entry,
            f.entry.wrapping_add(f.end.saturating_sub(f.entry) / 2),
            f.end.saturating_sub(1),
        ] {
            frames.clear();
            let _ = t.frames(pc, &mut frames);
            let _ = t.find_func(pc);
        }
    }
    let _ = t.func_by_name("runtime.main");
    let _ = t.find_func(0);
    let _ = t.find_func(u64::MAX);
}
