//! What `/proc/<pid>` says about a process: does it exist, is it a kernel thread, its executable,
//! where that executable is mapped, and reads of its memory (and the one write goprobe makes, see
//! [`memprofile`]).
//!
//! The executable is read through `/proc/<pid>/exe`, a magic link that resolves inside the
//! process's own mount namespace, so processes in containers work without path translation.

use std::{
    fs, io,
    os::unix::fs::{FileExt, MetadataExt},
    path::PathBuf,
};

pub mod cgroup;
pub mod memprofile;

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
        let mem = fs::File::open(format!("/proc/{}/mem", self.pid))
            .map_err(|source| self.mem_error(source))?;
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

    /// Opens `/proc/<pid>/mem` for reading and writing words; see [`Memory`].
    pub fn open_memory(&self) -> Result<Memory, TargetError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{}/mem", self.pid))
            .map_err(|source| self.mem_error(source))?;
        Ok(Memory {
            pid: self.pid,
            file,
        })
    }

    fn mem_error(&self, source: io::Error) -> TargetError {
        if source.kind() == io::ErrorKind::PermissionDenied {
            TargetError::PermissionDenied { pid: self.pid }
        } else {
            TargetError::Proc {
                pid: self.pid,
                what: "mem",
                source,
            }
        }
    }
}

/// An open `/proc/<pid>/mem`, for 8-byte words.
///
/// NB: the file stays bound to the address space it was opened on (fs/proc/base.c
/// `__mem_open` takes the mm): once the process exits, reads and writes fail instead of
/// reaching a new process that got the same pid.
#[derive(Debug)]
pub struct Memory {
    pid: u32,
    file: fs::File,
}

impl Memory {
    /// Reads the little-endian 8-byte word at `addr`.
    pub fn read_u64(&self, addr: u64) -> Result<u64, TargetError> {
        let mut b = [0u8; 8];
        self.file
            .read_exact_at(&mut b, addr)
            .map_err(|source| self.error(source))?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes the 8-byte word at `addr` (8-aligned: one store, no torn value for a reader).
    pub fn write_u64(&self, addr: u64, value: u64) -> Result<(), TargetError> {
        if !addr.is_multiple_of(8) {
            return Err(self.error(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr:#x} is not 8-byte aligned"),
            )));
        }
        self.file
            .write_all_at(&value.to_le_bytes(), addr)
            .map_err(|source| self.error(source))
    }

    fn error(&self, source: io::Error) -> TargetError {
        TargetError::Proc {
            pid: self.pid,
            what: "mem",
            source,
        }
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

/// Page faults the kernel counted for one process since it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    pub minor: u64,
    pub major: u64,
    /// When the process started (field 22, clock ticks since boot): tells a process from a
    /// later one that got its pid.
    pub start_ticks: u64,
}

/// Minor and major page faults the kernel counted for process `pid` since it started
/// (`/proc/<pid>/stat` fields 10 and 12).
///
/// NB: for a thread-group leader, /proc/<pid>/stat is `whole`: fs/proc/array.c `do_task_stat`
/// starts from `sig->min_flt` / `maj_flt`, where kernel/exit.c `__exit_signal` adds each exited
/// thread's counts, and adds every live thread's `t->min_flt` / `maj_flt` (`__for_each_thread`,
/// under `sig->stats_lock` since Linux 6.8, so an exiting thread is counted once): the same sum
/// as getrusage(RUSAGE_SELF) (kernel/sys.c `getrusage`). Children's faults (`cminflt`) are not
/// in it. mm/memory.c `mm_account_fault` counts a fault there when it completes, whether or not
/// a perf event samples it.
pub fn faults(pid: u32) -> io::Result<Faults> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_faults(&stat).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc stat"))
}

/// minflt (field 10), majflt (12) and starttime (22) of a /proc/<pid>/stat line.
fn parse_faults(stat: &str) -> Option<Faults> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ") ": state is field 3.
    let n = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(Faults {
        minor: n(10)?,
        major: n(12)?,
        start_ticks: n(22)?,
    })
}

/// A `Name:   123 kB` line of /proc/meminfo or /proc/<pid>/status, in bytes.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields_of_status() {
        let status = "VmRSS:\t   2048 kB\nVmSwap:\t      4 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(2 << 20));
        assert_eq!(kib_field(status, "VmSwap:"), Some(4096));
        assert_eq!(kib_field(status, "VmPTE:"), None);
    }

    #[test]
    fn fault_fields_of_stat() {
        let s = "42 (a) b) S 1 42 42 0 -1 4194560 1234 7 56 0 10 20 0 0 20 0 9 0 777 0";
        let want = Faults {
            minor: 1234,
            major: 56,
            start_ticks: 777,
        };
        assert_eq!(parse_faults(s), Some(want));
        assert_eq!(parse_faults("42 (x) S 1"), None);
    }

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_stat(s), Some(("a b) c".to_owned(), 4194560)));
        let k = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0";
        assert_ne!(parse_stat(k).unwrap().1 & PF_KTHREAD, 0);
    }

    #[test]
    fn writes_and_reads_back_a_word() {
        let word = Box::new(std::sync::atomic::AtomicU64::new(7));
        let addr = word.as_ptr() as u64;
        let mem = Process::open(std::process::id())
            .unwrap()
            .open_memory()
            .unwrap();
        assert_eq!(mem.read_u64(addr).unwrap(), 7);
        mem.write_u64(addr, 524288).unwrap();
        assert_eq!(word.load(std::sync::atomic::Ordering::SeqCst), 524288);
        assert!(mem.write_u64(addr + 4, 0).is_err());
    }

    #[test]
    fn this_process_is_not_a_kernel_thread() {
        let p = Process::open(std::process::id()).unwrap();
        assert!(p.exe_path().unwrap().exists());
        assert!(p.exe_base().unwrap().is_some());
    }
}
