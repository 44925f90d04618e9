//! `[export] pprof_dir`: every process' profiles (CPU, allocations, mark assists, goroutine
//! creation, page faults: whatever `[signals]` turned on) written as gzipped pprof files every
//! `pprof_interval_s`, the oldest files deleted beyond `pprof_max_mb`.

use std::{
    io,
    path::{Path, PathBuf},
    time::SystemTime,
};

use tracing::{debug, warn};

/// A directory of rotated pprof files.
pub struct PprofDir {
    dir: PathBuf,
    max_bytes: u64,
}

impl PprofDir {
    /// Creates `dir` if needed.
    pub fn new(dir: &Path, max_mb: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes: max_mb.saturating_mul(1 << 20),
        })
    }

    /// Writes `bytes` as `name` (through a temporary file, so a reader never sees half of it).
    pub fn write(&self, name: &str, bytes: &[u8]) {
        if let Err(e) = write_file(&self.dir, name, bytes) {
            warn!(dir = %self.dir.display(), "writing {name}: {e}");
        }
    }

    /// Deletes the oldest `.pb.gz` files until the directory's total is under the cap.
    pub fn rotate(&self) {
        rotate_dir(&self.dir, ".pb.gz", self.max_bytes, usize::MAX);
    }
}

/// Writes `bytes` as `dir/name` through a temporary file (`.name.tmp`), so that a reader never
/// sees half of it.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, dir.join(name)))
}

/// Deletes the oldest files of `dir` whose name ends with `suffix` until they are at most
/// `max_files` and `max_bytes` in total; other files are left alone.
pub fn rotate_dir(dir: &Path, suffix: &str, max_bytes: u64, max_files: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.path()))
        })
        .collect();
    files.sort();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    let mut count = files.len();
    for (_, len, path) in files {
        if total <= max_bytes && count <= max_files {
            break;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                debug!(path = %path.display(), "rotated out");
                total -= len;
                count -= 1;
            }
            Err(e) => warn!(path = %path.display(), "rotating: {e}"),
        }
    }
}

/// The file name of `signal`'s profile of process `pid` (`exe`) taken at `unix_s`.
pub fn file_name(exe: &str, pid: u32, signal: &str, unix_s: i64) -> String {
    format!("{}-{pid}-{signal}-{unix_s}.pb.gz", safe_name(exe))
}

/// `name` with every character but ASCII letters, digits, `-` and `_` replaced by `_`.
pub fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_newest_under_the_cap() {
        let dir = std::env::temp_dir().join(format!("goprobe-pprof-{}", std::process::id()));
        let d = PprofDir::new(&dir, 1).unwrap();
        let mb = vec![0u8; 400 << 10];
        for i in 0..5 {
            d.write(&file_name("api", 7, "cpu", i), &mb);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        d.write("notes.txt", &mb);
        d.rotate();
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["api-7-cpu-3.pb.gz", "api-7-cpu-4.pb.gz", "notes.txt"]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_caps_the_count_of_one_suffix() {
        let dir = std::env::temp_dir().join(format!("goprobe-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..4 {
            write_file(&dir, &format!("s{i}.json"), b"{}").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        write_file(&dir, "keep.pb.gz", b"x").unwrap();
        rotate_dir(&dir, ".json", u64::MAX, 2);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["keep.pb.gz", "s2.json", "s3.json"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_are_file_safe() {
        assert_eq!(
            file_name("my app/x", 1, "alloc", 9),
            "my_app_x-1-alloc-9.pb.gz"
        );
    }
}
