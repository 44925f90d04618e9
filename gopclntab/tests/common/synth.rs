//! A minimal ELF around a bare table (and moduledata): shared by the tests (`common`) and the
//! fuzz target (`fuzz/fuzz_targets/pclntab.rs`, through `#[path]`), so seeds mean the same to
//! both.

/// Where `elf_around` maps its pieces (the same as the fuzz target's, whose seeds are rebased).
pub const TEXT: u64 = 0x40_1000;
pub const TABLE: u64 = 0x200_0000;
pub const MODULEDATA: u64 = 0x300_0000;

/// A minimal ELF64 (no section headers): an executable segment for the text (no file bytes),
/// the table read-only at `TABLE`, moduledata writable at `MODULEDATA`.
pub fn elf_around(moduledata: &[u8], table: &[u8]) -> Vec<u8> {
    const PHOFF: usize = 64;
    const PHNUM: usize = 3;
    let data_off = PHOFF + PHNUM * 56;
    let mut out = Vec::new();
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&62u16.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&TEXT.to_le_bytes());
    out.extend_from_slice(&(PHOFF as u64).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, PHNUM as u16, 64, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let segs = [
        (5u32, 0usize, TEXT, 0usize, 0x100_0000u64),
        (
            4,
            data_off + moduledata.len(),
            TABLE,
            table.len(),
            table.len() as u64,
        ),
        (
            6,
            data_off,
            MODULEDATA,
            moduledata.len(),
            moduledata.len() as u64,
        ),
    ];
    for (flags, off, vaddr, filesz, memsz) in segs {
        out.extend_from_slice(&1u32.to_le_bytes());
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
