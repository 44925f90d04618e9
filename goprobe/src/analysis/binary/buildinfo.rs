//! Go build info (`.go.buildinfo`): the Go version a binary was built with and its build
//! settings (`CGO_ENABLED`, `-buildmode`, `-ldflags`, `-race`, …), the same data as
//! `go version -m`. Present even in `-ldflags="-s -w"` binaries.

use object::{Object, ObjectSection, ObjectSegment};

/// NB: `.go.buildinfo` starts with this 14-byte magic, then ptrSize (1 B) and flags (1 B)
/// (src/debug/buildinfo/buildinfo.go, Go 1.13+). The header is 32 bytes, 16-byte aligned.
const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
/// NB: flag bit 1 (`flagsVersionInl`, Go 1.18+): version and modinfo are varint-prefixed strings
/// right after the header; before 1.18 the header holds pointers to Go string headers.
const FLAG_INLINE: u8 = 0x2;
/// NB: modinfo is framed by two 16-byte sentinels (src/runtime/debug/mod.go, `modinfoStart`).
const MODINFO_FRAME: usize = 16;
/// The most bytes of a string goprobe reads out of build info.
const MAX_STRING: u64 = 1 << 20;

/// What the build info says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// `go1.27.3`, or a devel string.
    pub go_version: String,
    /// The main package path (`path` line), empty when absent.
    pub path: String,
    /// `build` lines: `("CGO_ENABLED", "1")`, `("-buildmode", "pie")`, …
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    /// The value of one build setting.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the binary was built with cgo (`CGO_ENABLED=1`).
    pub fn cgo(&self) -> Option<bool> {
        self.setting("CGO_ENABLED").map(|v| v == "1")
    }
}

/// Reads the build info of an ELF file: from the `.go.buildinfo` section, or, when section
/// headers are gone, by scanning writable `PT_LOAD` data at 16-byte alignment for the magic (as
/// `debug/buildinfo` does).
/// `at(vaddr, len)` reads the file's bytes at a virtual address (for the pre-1.18 form's pointers).
pub fn read<'d>(
    file: &object::File<'_>,
    at: &dyn Fn(u64, u64) -> Option<&'d [u8]>,
) -> Option<BuildInfo> {
    if let Some(section) = file.section_by_name(".go.buildinfo") {
        return section.data().ok().and_then(|b| parse(b, at));
    }
    // NB: the Go linker puts build info in writable data (src/cmd/link/internal/ld/data.go,
    // `.go.buildinfo` in the data segment); scanning only writable segments keeps a copy of the
    // magic in some other program's read-only data (a string constant) from counting.
    file.segments().find_map(|seg| {
        let writable = match seg.flags() {
            object::SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_W != 0,
            _ => false,
        };
        if !writable {
            return None;
        }
        let bytes = seg.data().ok()?;
        (0..bytes.len().saturating_sub(HEADER_LEN))
            .step_by(16)
            .find(|&i| bytes[i..].starts_with(MAGIC))
            .and_then(|i| parse(&bytes[i..], at))
    })
}

/// Parses build info that starts at `b[0]`; `at(vaddr, len)` reads memory for the pre-1.18 form.
fn parse<'d>(b: &[u8], at: &dyn Fn(u64, u64) -> Option<&'d [u8]>) -> Option<BuildInfo> {
    let header = b.get(..HEADER_LEN)?;
    if !header.starts_with(MAGIC) {
        return None;
    }
    let ptr_size = usize::from(header[14]);
    let flags = header[15];
    if !matches!(ptr_size, 4 | 8) || flags & !0x3 != 0 {
        return None;
    }
    let (version, modinfo) = if flags & FLAG_INLINE != 0 {
        let (version, n) = varint_string(b.get(HEADER_LEN..)?)?;
        let modinfo = varint_string(b.get(HEADER_LEN + n..)?).map(|(m, _)| m);
        (version, modinfo.unwrap_or_default())
    } else {
        // Pre-1.18: two pointers to Go string headers {data *byte; len int}, little-endian.
        let go_string = |field: usize| -> Option<String> {
            let ptr = read_ptr(header.get(16 + field * ptr_size..16 + (field + 1) * ptr_size)?)?;
            let hdr = at(ptr, 2 * ptr_size as u64)?;
            let data = read_ptr(hdr.get(..ptr_size)?)?;
            let len = read_ptr(hdr.get(ptr_size..2 * ptr_size)?)?;
            String::from_utf8(at(data, len.min(MAX_STRING))?.to_vec()).ok()
        };
        (go_string(0)?, go_string(1).unwrap_or_default())
    };
    // Every Go toolchain writes `go1.N…` or `devel go1.N-…`: anything else is not build info.
    if !version.contains("go1.") {
        return None;
    }
    let mut info = BuildInfo {
        go_version: version,
        ..BuildInfo::default()
    };
    let modinfo = modinfo
        .get(MODINFO_FRAME..modinfo.len().saturating_sub(MODINFO_FRAME))
        .unwrap_or("");
    for line in modinfo.lines() {
        let mut f = line.splitn(2, '\t');
        match (f.next(), f.next()) {
            (Some("path"), Some(p)) => info.path = p.to_owned(),
            (Some("build"), Some(kv)) => {
                if let Some((k, v)) = kv.split_once('=') {
                    info.settings.push((k.to_owned(), unquote(v)));
                }
            }
            _ => {}
        }
    }
    Some(info)
}

/// NB: `go version -m` quotes values with spaces or special characters using Go's strconv
/// (src/runtime/debug/mod.go `quoteValue`); unquote the common case.
fn unquote(v: &str) -> String {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
        .unwrap_or_else(|| v.to_owned())
}

fn varint_string(b: &[u8]) -> Option<(String, usize)> {
    let (len, n) = read_uvarint(b)?;
    let len = usize::try_from(len.min(MAX_STRING)).ok()?;
    let bytes = b.get(n..n.checked_add(len)?)?;
    Some((String::from_utf8_lossy(bytes).into_owned(), n + len))
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
    fn inline_form() {
        let mut b = MAGIC.to_vec();
        b.extend([8, FLAG_INLINE]);
        b.resize(HEADER_LEN, 0);
        b.push(9);
        b.extend(b"go1.21.13");
        let modinfo = format!(
            "{}path\tx/y\nbuild\tCGO_ENABLED=1\nbuild\t-ldflags=\"-s -w\"\n{}",
            "0".repeat(16),
            "1".repeat(16)
        );
        b.push(u8::try_from(modinfo.len()).unwrap());
        b.extend(modinfo.as_bytes());
        let info = parse(&b, &|_, _| None).unwrap();
        assert_eq!(info.go_version, "go1.21.13");
        assert_eq!(info.path, "x/y");
        assert_eq!(info.cgo(), Some(true));
        assert_eq!(info.setting("-ldflags"), Some("-s -w"));
        // Truncated: no panic, no version.
        assert!(parse(&b[..HEADER_LEN + 4], &|_, _| None).is_none());
    }
}
