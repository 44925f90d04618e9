//! `/proc/<pid>/maps`: which file (and where in it) an address of a process comes from.

use std::{fs, io, path::PathBuf};

/// One mapping of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset mapped at `start`.
    pub offset: u64,
    /// `(major << 32) | minor` of the device, as maps prints it; with `inode`, the file's
    /// identity.
    pub dev: u64,
    pub inode: u64,
    pub executable: bool,
    /// The path as the process sees it (`/usr/lib/x.so`), a pseudo name (`[vdso]`), or empty.
    pub path: String,
}

impl Mapping {
    /// Whether the mapping is backed by a file (not anonymous, not `[vdso]`/`[stack]`).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// The file offset of address `addr` in this mapping.
    pub fn file_offset(&self, addr: u64) -> u64 {
        addr - self.start + self.offset
    }

    /// A path that opens the mapped file from goprobe's mount namespace: the kernel's
    /// `map_files` link (root only; immune to the file being replaced or living in a
    /// container), else the path through the process's root.
    pub fn open_path(&self, pid: u32) -> PathBuf {
        let link = PathBuf::from(format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            self.start, self.end
        ));
        if fs::symlink_metadata(&link).is_ok() {
            link
        } else {
            PathBuf::from(format!("/proc/{pid}/root{}", self.path))
        }
    }
}

/// Reads the mappings of `pid`, sorted by address.
pub fn read(pid: u32) -> io::Result<Vec<Mapping>> {
    let text = fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut maps: Vec<Mapping> = text.lines().filter_map(parse_line).collect();
    maps.sort_by_key(|m| m.start);
    Ok(maps)
}

/// The index of the mapping that contains `addr`.
pub fn find(maps: &[Mapping], addr: u64) -> Option<usize> {
    let i = maps.partition_point(|m| m.start <= addr).checked_sub(1)?;
    maps.get(i).filter(|m| addr < m.end).map(|_| i)
}

/// `start-end perms offset major:minor inode   path`
fn parse_line(line: &str) -> Option<Mapping> {
    let mut f = line.splitn(6, ' ');
    let (start, end) = f.next()?.split_once('-')?;
    let perms = f.next()?;
    let offset = u64::from_str_radix(f.next()?, 16).ok()?;
    let (major, minor) = f.next()?.split_once(':')?;
    let inode = f.next()?.parse().ok()?;
    let path = f.next().unwrap_or("").trim_start().to_owned();
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        offset,
        dev: (u64::from_str_radix(major, 16).ok()? << 32) | u64::from_str_radix(minor, 16).ok()?,
        inode,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let m = parse_line(
            "7f1c2a000000-7f1c2a022000 r-xp 00028000 fd:01 1835031                    /usr/lib/x86_64-linux-gnu/libc.so.6",
        )
        .unwrap();
        assert_eq!(m.start, 0x7f1c2a000000);
        assert_eq!(m.offset, 0x28000);
        assert_eq!(m.dev, (0xfd << 32) | 1);
        assert!(m.executable && m.is_file());
        assert_eq!(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(m.file_offset(0x7f1c2a000010), 0x28010);
        let v = parse_line("7ffd5b1f0000-7ffd5b1f2000 r-xp 00000000 00:00 0  [vdso]").unwrap();
        assert!(!v.is_file() && v.executable);
        assert_eq!(v.path, "[vdso]");
        assert!(parse_line("garbage").is_none());
    }

    #[test]
    fn finds_this_process_text() {
        let maps = read(std::process::id()).unwrap();
        let here = finds_this_process_text as fn() as usize as u64;
        let m = &maps[find(&maps, here).unwrap()];
        assert!(m.executable && m.is_file());
        assert!(find(&maps, 0).is_none());
    }
}
