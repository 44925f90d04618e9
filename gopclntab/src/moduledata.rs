//! `runtime.moduledata`: where the Go 1.26+ text start and every version's `gofunc` live.
//!
//! NB: Go 1.18–1.27, runtime/symtab.go `moduledata`. Word indices (pointer-sized words) that
//! hold on every release from 1.18 to 1.27: 0 `pcHeader`, 1 `funcnametab.ptr`, 20 `minpc`,
//! 21 `maxpc`, 22 `text`. `gofunc` is word 38 on Go 1.18/1.19 and 40 on Go 1.20–1.25; Go 1.27
//! moved it (word 43) without changing the pclntab magic, so for Go 1.26+ it is found by
//! value: since Go 1.26 the `go:func.*` data sits inside `.gopclntab`, after the functab, and
//! the smallest moduledata word that points there is `gofunc` (`findfunctab`, also there,
//! comes after it). Go 1.26 moved moduledata into its own section, `.go.module`.

use crate::{Layout, image::Image, locate::Header};

const WORD_FUNCNAMETAB: u64 = 1;
const WORD_MINPC: u64 = 20;
const WORD_TEXT: u64 = 22;
const WORD_GOFUNC_GO118: u64 = 38;
const WORD_GOFUNC_GO120: u64 = 40;
/// How many words to consider when moduledata has no section to bound it (Go 1.27 has 71).
const MAX_WORDS: u64 = 96;

/// Finds moduledata: `.go.module` (Go 1.26+), the `runtime.firstmoduledata` symbol, else a
/// scan of the writable segments for a word equal to the table's address (in the file, or as
/// a relative relocation's addend) followed by the function name table's address.
pub(crate) fn find(img: &Image<'_>, h: &Header<'_>) -> Option<u64> {
    if let Some((addr, _)) = img.section(".go.module")
        && valid(img, h, addr)
    {
        return Some(addr);
    }
    if let Some(addr) = img.symbol("runtime.firstmoduledata")
        && valid(img, h, addr)
    {
        return Some(addr);
    }
    let p = usize::from(h.ptr_size);
    for seg in img.segments.iter().filter(|s| s.writable()) {
        let Some(data) = img.bytes_to_segment_end(seg.vaddr) else {
            continue;
        };
        let hit = data
            .chunks_exact(p)
            .enumerate()
            .filter(|(_, w)| crate::image::read_uint(w, 0, h.ptr_size) == Some(h.vaddr))
            .map(|(i, _)| seg.vaddr.wrapping_add((i * p) as u64))
            .find(|&addr| valid(img, h, addr));
        if hit.is_some() {
            return hit;
        }
    }
    img.relatives()
        .filter(|&(_, addend)| addend == h.vaddr)
        .map(|(off, _)| off)
        .find(|&addr| valid(img, h, addr))
}

fn valid(img: &Image<'_>, h: &Header<'_>, md: u64) -> bool {
    let p = u64::from(h.ptr_size);
    img.ptr(md, h.ptr_size) == Some(h.vaddr)
        && img.ptr(md.wrapping_add(WORD_FUNCNAMETAB * p), h.ptr_size)
            == Some(h.vaddr.wrapping_add(h.funcname as u64))
}

/// Word `i` of moduledata.
fn word(img: &Image<'_>, h: &Header<'_>, md: u64, i: u64) -> Option<u64> {
    img.ptr(md.checked_add(i * u64::from(h.ptr_size))?, h.ptr_size)
}

/// The text start recorded in moduledata, checked against `minpc` (= text + first entry).
pub(crate) fn text_start(
    img: &Image<'_>,
    h: &Header<'_>,
    md: u64,
    first_entry: u64,
) -> Option<u64> {
    let text = word(img, h, md, WORD_TEXT)?;
    let minpc = word(img, h, md, WORD_MINPC)?;
    (text.checked_add(first_entry) == Some(minpc) && img.in_exec(text)).then_some(text)
}

/// `moduledata.gofunc`, the base of Go 1.18+ funcdata offsets.
pub(crate) fn gofunc(img: &Image<'_>, h: &Header<'_>, layout: Layout, md: u64) -> Option<u64> {
    let p = u64::from(h.ptr_size);
    let g = match layout {
        Layout::Go116 => return None,
        Layout::Go118 => word(img, h, md, WORD_GOFUNC_GO118)?,
        Layout::Go120 => word(img, h, md, WORD_GOFUNC_GO120)?,
        Layout::Go126 => {
            let lo = h.vaddr.wrapping_add(h.functab_end() as u64);
            let hi = h.vaddr.wrapping_add(h.tab.len() as u64);
            let words = img
                .section(".go.module")
                .filter(|&(a, _)| a == md)
                .map_or(MAX_WORDS, |(_, d)| d.len() as u64 / p);
            (0..words)
                .filter_map(|i| word(img, h, md, i))
                .filter(|&v| v >= lo && v < hi)
                .min()?
        }
    };
    img.bytes(g, 1).is_some().then_some(g)
}
