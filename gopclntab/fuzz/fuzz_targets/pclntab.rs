//! Fuzzes every entry point of goprobe-gopclntab. The first input byte picks what the rest is:
//! 0: a whole ELF file; 1: a bare table, wrapped into an ELF here (so mutations reach the table
//! instead of the ELF headers); 2: `u16 len`, a moduledata image of that length, then a bare
//! table (Go 1.26+ tables need moduledata for their text start). See `elf_around`.
#![no_main]

use goprobe_gopclntab::{Pclntab, infer_go_version};
use libfuzzer_sys::fuzz_target;

/// Where the wrapped pieces are mapped; the seeds' moduledata words are rebased to these.
const TEXT: u64 = 0x40_1000;
const TEXT_SIZE: u64 = 0x100_0000;
const TABLE: u64 = 0x200_0000;
const MODULEDATA: u64 = 0x300_0000;

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

/// A minimal ELF64 (no section headers): an executable segment for the text (no file bytes),
/// the table read-only at `TABLE`, moduledata writable at `MODULEDATA`.
fn elf_around(moduledata: &[u8], table: &[u8]) -> Vec<u8> {
    const PHOFF: usize = 64;
    const PHNUM: usize = 3;
    let data_off = PHOFF + PHNUM * 56;
    let mut out = Vec::with_capacity(data_off + moduledata.len() + table.len());
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&TEXT.to_le_bytes()); // e_entry
    out.extend_from_slice(&(PHOFF as u64).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, PHNUM as u16, 64, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let segs = [
        (5u32, 0usize, TEXT, 0usize, TEXT_SIZE),
        (4, data_off + moduledata.len(), TABLE, table.len(), table.len() as u64),
        (6, data_off, MODULEDATA, moduledata.len(), moduledata.len() as u64),
    ];
    for (flags, off, vaddr, filesz, memsz) in segs {
        out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(off as u64).to_le_bytes());
        out.extend_from_slice(&vaddr.to_le_bytes());
        out.extend_from_slice(&vaddr.to_le_bytes());
        out.extend_from_slice(&(filesz as u64).to_le_bytes());
        out.extend_from_slice(&memsz.to_le_bytes());
        out.extend_from_slice(&0x1000u64.to_le_bytes());
    }
    out.extend_from_slice(moduledata);
    out.extend_from_slice(table);
    out
}
