//! Reading a Go executable: its Go version from `.go.buildinfo`, its runtime symbols from
//! `.symtab`, and the bytes behind a virtual address.

use std::collections::HashMap;

use object::{Object, ObjectKind, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

/// NB: `.go.buildinfo` starts with this 14-byte magic, then ptrSize (1 B) and flags (1 B)
/// (src/debug/buildinfo/buildinfo.go, Go 1.13+). The header is 32 bytes, 16-byte aligned.
const BUILDINFO_MAGIC: &[u8] = b"\xff Go buildinf:";
const BUILDINFO_HEADER_LEN: usize = 32;
/// NB: flag bit 1 (`flagsVersionInl`, Go 1.18+): version and modinfo are varint-prefixed strings
/// right after the header; before 1.18 the header holds pointers to Go string headers.
const BUILDINFO_FLAG_INLINE: u8 = 0x2;

/// A Go function or variable from the symbol table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Link-time virtual address.
    pub address: u64,
    pub size: u64,
}

/// What goprobe needs to know about an ELF executable.
#[derive(Debug)]
pub struct ElfInfo {
    /// The Go version string from the build info (`go1.27.3`), if the build info has one.
    pub go_version: Option<String>,
    /// Whether the file has a `.gopclntab` section or Go build info: it was built by Go.
    pub is_go: bool,
    /// Whether `.symtab` is present (absent after `-ldflags=-s` or `strip`).
    pub has_symtab: bool,
    /// Position-independent executable (`ET_DYN`): addresses need the load bias.
    pub is_pie: bool,
    /// The lowest virtual address of a `PT_LOAD` segment with file offset 0.
    pub first_load_vaddr: u64,
    /// Symbols asked for by name that were found.
    pub symbols: HashMap<String, Symbol>,
    /// `(vaddr, file offset, file size)` of each `PT_LOAD` segment.
    segments: Vec<(u64, u64, u64)>,
}

impl ElfInfo {
    /// Parses `data` and looks up `wanted` symbols. `Err` carries the parser's message.
    pub fn parse(data: &[u8], wanted: &[&str]) -> Result<Self, object::Error> {
        let file = object::File::parse(data)?;
        let segments: Vec<(u64, u64, u64)> = file
            .segments()
            .map(|s| {
                let (off, size) = s.file_range();
                (s.address(), off, size)
            })
            .collect();
        let first_load_vaddr = segments
            .iter()
            .filter(|s| s.1 == 0)
            .map(|s| s.0)
            .min()
            .unwrap_or(0);
        let mut info = Self {
            go_version: None,
            is_go: false,
            has_symtab: file.section_by_name(".symtab").is_some(),
            is_pie: file.kind() == ObjectKind::Dynamic,
            first_load_vaddr,
            symbols: HashMap::new(),
            segments,
        };
        if let Some(bytes) = file
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
        {
            info.is_go = true;
            info.go_version = info.buildinfo_version(data, bytes);
        }
        if file.section_by_name(".gopclntab").is_some()
            || file.section_by_name(".data.rel.ro.gopclntab").is_some()
        {
            info.is_go = true;
        }
        for sym in file.symbols() {
            let Ok(name) = sym.name() else { continue };
            if wanted.contains(&name) && matches!(sym.kind(), SymbolKind::Text | SymbolKind::Data) {
                let s = Symbol {
                    address: sym.address(),
                    size: sym.size(),
                };
                info.symbols.insert(name.to_owned(), s);
            }
            if name == "runtime.main" {
                info.is_go = true;
            }
        }
        Ok(info)
    }

    /// File offset of a link-time virtual address.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(va, _, size)| vaddr >= *va && vaddr < va + size)
            .map(|(va, off, _)| vaddr - va + off)
    }

    /// The bytes of `len` bytes at link-time virtual address `vaddr`.
    pub fn bytes_at<'d>(&self, data: &'d [u8], vaddr: u64, len: u64) -> Option<&'d [u8]> {
        let off = usize::try_from(self.file_offset(vaddr)?).ok()?;
        data.get(off..off.checked_add(usize::try_from(len).ok()?)?)
    }

    fn buildinfo_version(&self, data: &[u8], section: &[u8]) -> Option<String> {
        let header = section.get(..BUILDINFO_HEADER_LEN)?;
        if !header.starts_with(BUILDINFO_MAGIC) {
            return None;
        }
        let ptr_size = usize::from(header[14]);
        let flags = header[15];
        if flags & BUILDINFO_FLAG_INLINE != 0 {
            let (len, n) = read_uvarint(section.get(BUILDINFO_HEADER_LEN..)?)?;
            let start = BUILDINFO_HEADER_LEN + n;
            let bytes = section.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
            return String::from_utf8(bytes.to_vec()).ok();
        }
        // Pre-1.18: a pointer to a Go string header {data *byte; len int}, little-endian.
        let ptr = read_ptr(header.get(16..16 + ptr_size)?)?;
        let hdr = self.bytes_at(data, ptr, 2 * ptr_size as u64)?;
        let str_ptr = read_ptr(&hdr[..ptr_size])?;
        let str_len = read_ptr(&hdr[ptr_size..])?;
        let bytes = self.bytes_at(data, str_ptr, str_len.min(64))?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

fn read_ptr(b: &[u8]) -> Option<u64> {
    match b.len() {
        4 => Some(u64::from(u32::from_le_bytes(b.try_into().ok()?))),
        8 => Some(u64::from_le_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

/// Decodes an unsigned LEB128 varint (Go's `binary.Uvarint`); returns the value and its length.
fn read_uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in b.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint() {
        assert_eq!(read_uvarint(&[0x09]), Some((9, 1)));
        assert_eq!(read_uvarint(&[0xac, 0x02]), Some((300, 2)));
        assert_eq!(read_uvarint(&[0x80; 11]), None);
        assert_eq!(read_uvarint(&[]), None);
    }

    #[test]
    fn a_rust_binary_is_not_go() {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = ElfInfo::parse(&data, &["runtime.main"]).unwrap();
        assert!(!info.is_go);
        assert_eq!(info.go_version, None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(ElfInfo::parse(b"\x7fELF\x02\x01\x01garbage", &[]).is_err());
        assert!(ElfInfo::parse(&[], &[]).is_err());
    }
}
