//! What `/proc/<pid>` says about a process: does it exist, is it a kernel thread, its executable,
//! where that executable is mapped, and reads of its memory.
//!
//! The executable is read through `/proc/<pid>/exe`, a magic link that resolves inside the
//! process's own mount namespace, so processes in containers work without path translation.

use std::{
    fs, io,
    os::unix::fs::{FileExt, MetadataExt},
    path::PathBuf,
};

use super::TargetError;

/// NB: `PF_KTHREAD` in the `flags` field of /proc/<pid>/stat (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// A live process, checked to exist and to be a user-space process.
#[derive(Debug)]
pub struct Process {
    pub pid: u32,
    /// The command name (`comm`), for messages.
    pub comm: String,
}

impl Process {
    /// Checks that `pid` names a live user-space process.
    pub fn open(pid: u32) -> Result<Self, TargetError> {
        let stat = match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(TargetError::NoSuchProcess { pid });
            }
            Err(source) => {
                return Err(TargetError::Proc {
                    pid,
                    what: "stat",
                    source,
                });
            }
        };
        // NB: comm is parenthesised and may contain spaces or ')'; fields follow the last ')'.
        let (comm, flags) = parse_stat(&stat).ok_or(TargetError::NoSuchProcess { pid })?;
        if flags & PF_KTHREAD != 0 {
            return Err(TargetError::KernelThread { pid, comm });
        }
        Ok(Self { pid, comm })
    }

    /// `/proc/<pid>/exe`, the path to open the executable with (and to attach uprobes to).
    pub fn exe_link(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/exe", self.pid))
    }

    /// The executable's path as the process sees it, for reports.
    pub fn exe_path(&self) -> Result<PathBuf, TargetError> {
        fs::read_link(self.exe_link()).map_err(|e| self.exe_error(e))
    }

    /// Maps the whole executable read-only: a 100 MB binary costs page-table entries, not a
    /// copy, and only the pages goprobe reads are faulted in.
    pub fn map_exe(&self) -> Result<memmap2::Mmap, TargetError> {
        let file = fs::File::open(self.exe_link()).map_err(|e| self.exe_error(e))?;
        // SAFETY: a read-only private mapping. Executables are replaced (new inode: the old one
        // stays mapped), not rewritten in place; every reader of these bytes bounds-checks, so
        // a file changed under us yields wrong data or an error, never unsoundness in goprobe.
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| self.exe_error(e))
    }

    fn exe_error(&self, source: io::Error) -> TargetError {
        match source.kind() {
            io::ErrorKind::PermissionDenied => TargetError::PermissionDenied { pid: self.pid },
            io::ErrorKind::NotFound if self.is_gone() => {
                TargetError::NoSuchProcess { pid: self.pid }
            }
            _ => TargetError::Proc {
                pid: self.pid,
                what: "exe",
                source,
            },
        }
    }

    fn is_gone(&self) -> bool {
        !PathBuf::from(format!("/proc/{}", self.pid)).exists()
    }

    /// The address at which file offset 0 of the executable is mapped, i.e. the start of the
    /// first mapping of the executable's inode with file offset 0.
    pub fn exe_base(&self) -> Result<Option<u64>, TargetError> {
        let meta = fs::metadata(self.exe_link()).map_err(|e| self.exe_error(e))?;
        let maps = fs::read_to_string(format!("/proc/{}/maps", self.pid)).map_err(|source| {
            TargetError::Proc {
                pid: self.pid,
                what: "maps",
                source,
            }
        })?;
        Ok(maps.lines().find_map(|line| {
            let mut f = line.split_whitespace();
            let range = f.next()?;
            let _perms = f.next()?;
            let offset = u64::from_str_radix(f.next()?, 16).ok()?;
            let _dev = f.next()?;
            let inode: u64 = f.next()?.parse().ok()?;
            let start = u64::from_str_radix(range.split('-').next()?, 16).ok()?;
            (inode == meta.ino() && offset == 0).then_some(start)
        }))
    }

    /// Reads `buf.len()` bytes at `addr` of the process's memory.
    pub fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), TargetError> {
        let mem = fs::File::open(format!("/proc/{}/mem", self.pid)).map_err(|source| {
            if source.kind() == io::ErrorKind::PermissionDenied {
                TargetError::PermissionDenied { pid: self.pid }
            } else {
                TargetError::Proc {
                    pid: self.pid,
                    what: "mem",
                    source,
                }
            }
        })?;
        mem.read_exact_at(buf, addr)
            .map_err(|source| TargetError::Proc {
                pid: self.pid,
                what: "mem",
                source,
            })
    }

    /// Reads a little-endian u32 at `addr`.
    pub fn read_u32(&self, addr: u64) -> Result<u32, TargetError> {
        let mut b = [0u8; 4];
        self.read_memory(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
}

/// Parses `comm` and `flags` out of /proc/<pid>/stat.
fn parse_stat(stat: &str) -> Option<(String, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    // After ") ": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9).
    let flags = stat
        .get(close + 1..)?
        .split_whitespace()
        .nth(6)?
        .parse()
        .ok()?;
    Some((comm, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(s), Some(("a b) c".to_owned(), 4194560)));
        let k = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0";
        assert_ne!(parse_stat(k).unwrap().1 & PF_KTHREAD, 0);
    }

    #[test]
    fn this_process_is_not_a_kernel_thread() {
        let p = Process::open(std::process::id()).unwrap();
        assert!(p.exe_path().unwrap().exists());
        assert!(p.exe_base().unwrap().is_some());
    }
}
