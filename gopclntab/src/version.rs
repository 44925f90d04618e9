//! The Go version of a binary without `.go.buildinfo` (esbuild ships without it): the string
//! `runtime.buildVersion` points to, else the range of releases the table layout implies.
//!
//! NB: Go 1.16–1.27, runtime/extern.go `buildVersion` is a `string` variable the linker
//! initialises (cmd/link/internal/ld/main.go `-X runtime.buildVersion`): a (pointer, length)
//! header in a writable data section pointing at read-only bytes `go1.N[.P][ X:experiments]`.
//! A string literal that merely contains `go1.` (a comment in a message, a tag list) is rarely
//! a whole string of that shape, and is ranked below the one matching the table layout.

use crate::{Layout, Pclntab, image::Image, image::read_uint};

/// What [`infer_go_version`] could tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionHint {
    /// The runtime's own version string, e.g. `go1.27.3`.
    Exact(String),
    /// Only the release range the table layout implies: `go1.{min}` to `go1.{max}` (open
    /// ended when `max` is `None`).
    Range {
        /// Lowest minor release.
        min: u32,
        /// Highest minor release, if bounded.
        max: Option<u32>,
    },
    /// Neither a version string nor a table.
    Unknown,
}

/// Release range (minor versions) of a layout.
pub fn layout_range(layout: Layout) -> (u32, Option<u32>) {
    match layout {
        Layout::Go116 => (16, Some(17)),
        Layout::Go118 => (18, Some(19)),
        Layout::Go120 => (20, Some(25)),
        Layout::Go126 => (26, None),
    }
}

/// The Go version of `elf`: `runtime.buildVersion` if it can be found, else the range implied
/// by `table`'s layout, else [`VersionHint::Unknown`].
pub fn infer_go_version(elf: &[u8], table: Option<&Pclntab<'_>>) -> VersionHint {
    let range = table.map(|t| layout_range(t.layout()));
    let ptr_size = table.map_or(8, |t| t.ptr_size());
    let found = Image::parse(elf)
        .ok()
        .and_then(|img| build_version(&img, ptr_size, range));
    match (found, range) {
        (Some(v), _) => VersionHint::Exact(v),
        (None, Some((min, max))) => VersionHint::Range { min, max },
        (None, None) => VersionHint::Unknown,
    }
}

/// Minor version of a string shaped like `go1.N[.P][rcN|betaN][ X:...]`, if it is one.
pub fn parse_minor(s: &[u8]) -> Option<u32> {
    let rest = s.strip_prefix(b"go1.")?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 3 {
        return None;
    }
    let minor: u32 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let mut tail = &rest[digits..];
    if let Some(t) = tail.strip_prefix(b".") {
        let d = t.iter().take_while(|c| c.is_ascii_digit()).count();
        if d == 0 {
            return None;
        }
        tail = &t[d..];
    }
    for pre in [&b"rc"[..], b"beta"] {
        if let Some(t) = tail.strip_prefix(pre) {
            let d = t.iter().take_while(|c| c.is_ascii_digit()).count();
            tail = &t[d..];
        }
    }
    let ok = tail.is_empty()
        || (tail.starts_with(b" ") && tail.iter().all(|c| c.is_ascii_graphic() || *c == b' '));
    ok.then_some(minor)
}

/// Scans the writable segments for string headers pointing at version-shaped strings.
fn build_version(
    img: &Image<'_>,
    ptr_size: u8,
    range: Option<(u32, Option<u32>)>,
) -> Option<String> {
    let p = usize::from(ptr_size);
    let mut found: Vec<(String, u32)> = Vec::new();
    for seg in img.segments.iter().filter(|s| s.writable()) {
        let Some(data) = img.bytes_to_segment_end(seg.vaddr) else {
            continue;
        };
        let words = data.len() / p;
        for i in 0..words.saturating_sub(1) {
            let Some(len) = read_uint(data, (i + 1) * p, ptr_size) else {
                break;
            };
            if !(5..=64).contains(&len) {
                continue;
            }
            let mut ptr = read_uint(data, i * p, ptr_size).unwrap_or(0);
            if ptr == 0 {
                let at = seg.vaddr.wrapping_add((i * p) as u64);
                // Externally linked PIEs keep pointers only as relocation addends.
                ptr = match img.relative_addend(at) {
                    Some(a) => a,
                    None => continue,
                };
            }
            let Some(s) = img.bytes(ptr, len) else {
                continue;
            };
            if let Some(minor) = parse_minor(s)
                && let Ok(s) = std::str::from_utf8(s)
            {
                found.push((s.to_owned(), minor));
            }
        }
    }
    let fits = |m: u32| range.is_none_or(|(lo, hi)| m >= lo && hi.is_none_or(|hi| m <= hi));
    // Prefer a version in the layout's range, then one with a patch release, then the newest.
    found
        .into_iter()
        .max_by_key(|(s, m)| (fits(*m), s.matches('.').count() >= 2, *m))
        .map(|(s, _)| s)
}
