//! The ELF image a table lives in: reads by link-time virtual address through the PT_LOAD
//! segments, section and symbol look-ups, and R_*_RELATIVE addends for pointers that an
//! externally linked PIE leaves as zero in the file.

use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SegmentFlags};

use crate::Error;

/// `PF_X` and `PF_W` in `p_flags`.
const PF_X: u32 = 1;
const PF_W: u32 = 2;
/// `r_type` of a relative relocation: x86-64 and arm64 (`R_X86_64_RELATIVE`, `R_AARCH64_RELATIVE`).
const R_X86_64_RELATIVE: u32 = 8;
const R_AARCH64_RELATIVE: u32 = 1027;
/// Size of one `Elf64_Rela`.
const RELA64: usize = 24;

/// One PT_LOAD segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    pub flags: u32,
}

impl Segment {
    pub fn executable(&self) -> bool {
        self.flags & PF_X != 0
    }
    pub fn writable(&self) -> bool {
        self.flags & PF_W != 0
    }
}

/// A parsed ELF file: segments copied out (a handful), everything else borrowed.
pub(crate) struct Image<'a> {
    pub data: &'a [u8],
    pub file: object::File<'a>,
    pub segments: Vec<Segment>,
    /// Raw `.rela.dyn` entries (64-bit little-endian ELF only), empty when absent.
    rela: &'a [u8],
    /// Relative relocations sorted by offset, built on first use.
    relative_index: std::sync::OnceLock<Vec<(u64, u64)>>,
}

impl<'a> Image<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, Error> {
        let file = object::File::parse(data).map_err(Error::Elf)?;
        if !file.is_little_endian() {
            return Err(Error::BigEndian);
        }
        let segments = file
            .segments()
            .filter_map(|s| {
                let SegmentFlags::Elf { p_flags } = s.flags() else {
                    return None;
                };
                let (offset, filesz) = s.file_range();
                Some(Segment {
                    vaddr: s.address(),
                    memsz: s.size(),
                    offset,
                    filesz,
                    flags: p_flags,
                })
            })
            .collect();
        let rela = if file.is_64() {
            file.section_by_name(".rela.dyn")
                .and_then(|s| s.data().ok())
                .unwrap_or_default()
        } else {
            &[]
        };
        Ok(Image {
            data,
            file,
            segments,
            rela,
            relative_index: std::sync::OnceLock::new(),
        })
    }

    /// The file bytes of `[vaddr, vaddr + len)`, if one segment holds them all in the file.
    pub fn bytes(&self, vaddr: u64, len: u64) -> Option<&'a [u8]> {
        let seg = self.segment_of(vaddr)?;
        let rel = vaddr - seg.vaddr;
        if rel.checked_add(len)? > seg.filesz {
            return None;
        }
        let start = usize::try_from(seg.offset.checked_add(rel)?).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        self.data.get(start..end)
    }

    /// The file bytes from `vaddr` to the end of its segment's file data.
    pub fn bytes_to_segment_end(&self, vaddr: u64) -> Option<&'a [u8]> {
        let seg = self.segment_of(vaddr)?;
        self.bytes(vaddr, seg.filesz.checked_sub(vaddr - seg.vaddr)?)
    }

    /// The segment whose file-backed part contains `vaddr`.
    pub fn segment_of(&self, vaddr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
    }

    /// Whether `vaddr` lies in an executable segment.
    pub fn in_exec(&self, vaddr: u64) -> bool {
        self.segments
            .iter()
            .any(|s| s.executable() && vaddr >= s.vaddr && vaddr - s.vaddr < s.memsz)
    }

    /// A pointer-sized little-endian word at `vaddr`. A zero word is looked up in `.rela.dyn`:
    /// an externally linked PIE stores the value only as a relative relocation's addend.
    pub fn ptr(&self, vaddr: u64, ptr_size: u8) -> Option<u64> {
        let b = self.bytes(vaddr, u64::from(ptr_size))?;
        let v = read_uint(b, 0, ptr_size)?;
        if v != 0 {
            return Some(v);
        }
        Some(self.relative_addend(vaddr).unwrap_or(0))
    }

    /// The addend of a relative relocation at `vaddr`, if there is one.
    pub fn relative_addend(&self, vaddr: u64) -> Option<u64> {
        if self.rela.is_empty() {
            return None;
        }
        // One allocation of at most `.rela.dyn`'s size / 24 entries, then O(log n) look-ups.
        let index = self.relative_index.get_or_init(|| {
            let mut v: Vec<(u64, u64)> = self.relatives().collect();
            v.sort_unstable();
            v
        });
        let i = index.binary_search_by_key(&vaddr, |r| r.0).ok()?;
        Some(index[i].1)
    }

    /// Every relative relocation as (r_offset, addend).
    pub fn relatives(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.rela.chunks_exact(RELA64).filter_map(|e| {
            let off = read_uint(e, 0, 8)?;
            let info = read_uint(e, 8, 8)?;
            let addend = read_uint(e, 16, 8)?;
            let ty = (info & 0xffff_ffff) as u32;
            (ty == R_X86_64_RELATIVE || ty == R_AARCH64_RELATIVE).then_some((off, addend))
        })
    }

    /// A section's address and bytes.
    pub fn section(&self, name: &str) -> Option<(u64, &'a [u8])> {
        let s = self.file.section_by_name(name)?;
        let data = s.data().ok()?;
        (!data.is_empty()).then_some((s.address(), data))
    }

    /// The address of a symbol in `.symtab` (absent after `strip` or `-ldflags=-s`).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.file
            .symbols()
            .find(|s| s.name_bytes().ok() == Some(name.as_bytes()))
            .map(|s| s.address())
    }
}

/// A little-endian unsigned integer of `size` (4 or 8) bytes at `off`.
pub(crate) fn read_uint(b: &[u8], off: usize, size: u8) -> Option<u64> {
    match size {
        4 => read_u32(b, off).map(u64::from),
        8 => {
            let s = b.get(off..off.checked_add(8)?)?;
            Some(u64::from_le_bytes(s.try_into().ok()?))
        }
        _ => None,
    }
}

/// A little-endian `u32` at `off`.
pub(crate) fn read_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}
