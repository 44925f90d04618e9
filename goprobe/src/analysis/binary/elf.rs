//! Reading a Go executable: its Go version from `.go.buildinfo`, its runtime symbols from
//! `.symtab`, and the bytes behind a virtual address.

use std::collections::HashMap;

use super::buildinfo::{self, BuildInfo};

use object::{Object, ObjectKind, ObjectSegment, ObjectSymbol, SymbolKind};

/// NB: UPX writes its `l_info` header, with this magic, right after the program headers, and
/// a trailer with it at the end of the file (upx src/stub/src/include/linux.h, `struct l_info`).
const UPX_MAGIC: &[u8] = b"UPX!";
/// How far from each end of the file goprobe looks for the UPX magic.
const UPX_WINDOW: usize = 1024;

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
    /// The whole build info, when the binary has one.
    pub build_info: Option<BuildInfo>,
    /// The packer that compressed this executable (`"UPX"`), if any.
    pub packer: Option<&'static str>,
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
            build_info: None,
            packer: is_upx(data).then_some("UPX"),
            is_go: false,
            has_symtab: file.section_by_name(".symtab").is_some(),
            is_pie: file.kind() == ObjectKind::Dynamic,
            first_load_vaddr,
            symbols: HashMap::new(),
            segments,
        };
        let build_info = buildinfo::read(&file, &|va, len| info.bytes_at(data, va, len));
        if let Some(build_info) = build_info {
            info.is_go = true;
            info.go_version = Some(build_info.go_version.clone());
            info.build_info = Some(build_info);
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

    /// [`Self::parse`]; if that fails, the parse of a copy of `data` without section headers
    /// ([`without_section_headers`]), returned too: the file's bytes are then read from it.
    ///
    /// The kernel runs an executable from its program headers alone, so a running Go program
    /// may have section headers no parser accepts (past the end of the file, say); read as if
    /// it had none, it is a Go binary whose sections were stripped, which goprobe handles.
    pub fn parse_or_repair(
        data: &[u8],
        wanted: &[&str],
    ) -> Result<(Self, Option<Vec<u8>>), object::Error> {
        match Self::parse(data, wanted) {
            Ok(info) => Ok((info, None)),
            Err(e) => {
                let copy = without_section_headers(data).ok_or(e)?;
                let info = Self::parse(&copy, wanted).map_err(|_| e)?;
                tracing::debug!(
                    "unreadable ELF section headers ({e}); reading the file without them"
                );
                Ok((info, Some(copy)))
            }
        }
    }

    /// File offset of a link-time virtual address.
    pub fn file_offset(&self, vaddr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(va, _, size)| vaddr >= *va && vaddr < va + size)
            .map(|(va, off, _)| vaddr - va + off)
    }

    /// The `len` bytes at link-time virtual address `vaddr`, all inside one segment's file part.
    pub fn bytes_at<'d>(&self, data: &'d [u8], vaddr: u64, len: u64) -> Option<&'d [u8]> {
        let &(va, off, _) = self.segments.iter().find(|(va, _, size)| {
            vaddr >= *va && vaddr.saturating_add(len) <= va.saturating_add(*size)
        })?;
        let off = usize::try_from(vaddr - va + off).ok()?;
        data.get(off..off.checked_add(usize::try_from(len).ok()?)?)
    }
}

/// A copy of ELF64 little-endian file `data` with its section header table dropped from the
/// file header, `None` if `data` is not such a file.
///
/// NB: `Elf64_Ehdr` (include/uapi/linux/elf.h): `e_ident[EI_CLASS]` at 4 (2 = 64-bit),
/// `e_ident[EI_DATA]` at 5 (1 = little-endian), `e_shoff` at 0x28, `e_shnum` at 0x3c and
/// `e_shstrndx` at 0x3e; the kernel's ELF loader (fs/binfmt_elf.c) reads program headers only.
pub fn without_section_headers(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 0x40 || !data.starts_with(b"\x7fELF") || data[4] != 2 || data[5] != 1 {
        return None;
    }
    let mut copy = data.to_vec();
    copy[0x28..0x30].fill(0);
    copy[0x3c..0x40].fill(0);
    Some(copy)
}

/// Whether `data` looks packed by UPX: the magic near the start or the end of the file.
fn is_upx(data: &[u8]) -> bool {
    let head = &data[..data.len().min(UPX_WINDOW)];
    let tail = &data[data.len().saturating_sub(UPX_WINDOW)..];
    [head, tail]
        .iter()
        .any(|w| w.windows(UPX_MAGIC.len()).any(|x| x == UPX_MAGIC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_binary_is_not_go() {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = ElfInfo::parse(&data, &["runtime.main"]).unwrap();
        assert!(!info.is_go);
        assert_eq!(info.go_version, None);
    }

    #[test]
    fn section_headers_past_the_end_can_be_dropped() {
        let mut data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let past = (data.len() as u64 + 4096).to_le_bytes();
        data[0x28..0x30].copy_from_slice(&past);
        assert!(ElfInfo::parse(&data, &[]).is_err());
        let copy = without_section_headers(&data).unwrap();
        let info = ElfInfo::parse(&copy, &[]).unwrap();
        assert!(!info.has_symtab);
        assert!(without_section_headers(b"\x7fELF\x01\x01").is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(ElfInfo::parse(b"\x7fELF\x02\x01\x01garbage", &[]).is_err());
        assert!(ElfInfo::parse(&[], &[]).is_err());
    }
}
