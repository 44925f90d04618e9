//! What a goprobe process leaves in the kernel and in its target: the BPF programs and links it
//! holds (by id, from its `/proc/<pid>/fdinfo`), the programs and links the kernel still has
//! (enumerated with aya), and the breakpoints uprobes write into the target's text.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::{FileExt as _, MetadataExt as _},
    time::{Duration, Instant},
};

/// The BPF objects one process holds open, by kernel id.
#[derive(Debug, Default, Clone)]
pub struct BpfIds {
    pub programs: BTreeSet<u32>,
    pub links: BTreeSet<u32>,
}

impl BpfIds {
    /// The programs and links process `pid` has file descriptors of. NB: the kernel prints
    /// `prog_id:` in the fdinfo of program fds (kernel/bpf/syscall.c `bpf_prog_show_fdinfo`) and
    /// of link fds (`bpf_link_show_fdinfo`, which also prints `link_id:`, Linux 5.8+).
    pub fn of_process(pid: u32) -> Self {
        let mut ids = Self::default();
        let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
            return ids;
        };
        for entry in dir.flatten() {
            let Ok(info) = fs::read_to_string(entry.path()) else {
                continue; // closed in between
            };
            for line in info.lines() {
                let mut kv = line.splitn(2, ':');
                let (Some(key), Some(value)) = (kv.next(), kv.next()) else {
                    continue;
                };
                let Ok(id) = value.trim().parse() else {
                    continue;
                };
                match key {
                    "prog_id" => ids.programs.insert(id),
                    "link_id" => ids.links.insert(id),
                    _ => false,
                };
            }
        }
        ids
    }

    /// The subset of these ids the kernel still has loaded.
    pub fn still_loaded(&self) -> Self {
        let loaded = loaded();
        Self {
            programs: self
                .programs
                .intersection(&loaded.programs)
                .copied()
                .collect(),
            links: self.links.intersection(&loaded.links).copied().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.programs.is_empty() && self.links.is_empty()
    }
}

/// Every BPF program and link loaded in the kernel now (all processes, every test running in
/// parallel). Objects that go away during the walk are skipped.
pub fn loaded() -> BpfIds {
    let programs = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect();
    let links = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .map(|l| l.id())
        .collect();
    BpfIds { programs, links }
}

/// The addresses in `pid`'s executable text (its executable mappings of `/proc/<pid>/exe`) whose
/// bytes in memory differ from the file: where a uprobe has put its breakpoint (`int3`, 0xCC;
/// kernel/events/uprobes.c `install_breakpoint`). Go text has no relocations, so an unprobed
/// process shows none. Each address with the byte found there.
pub fn text_changes(pid: u32) -> Vec<(u64, u8)> {
    let exe = format!("/proc/{pid}/exe");
    let file = fs::File::open(&exe).unwrap_or_else(|e| panic!("{exe}: {e}"));
    let inode = file.metadata().expect("stat exe").ino();
    let mem = fs::File::open(format!("/proc/{pid}/mem")).expect("open target memory");
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let mut changes = Vec::new();
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || !f[1].contains('x') || f[4].parse::<u64>().ok() != Some(inode) {
            continue;
        }
        let (start, end) = f[0].split_once('-').expect("range");
        let start = u64::from_str_radix(start, 16).expect("start");
        let end = u64::from_str_radix(end, 16).expect("end");
        let offset = u64::from_str_radix(f[2], 16).expect("offset");
        let mut in_file = vec![0; (end - start) as usize];
        let n = read_full(&file, &mut in_file, offset);
        in_file.truncate(n); // the last page may extend past the end of the file
        let mut in_mem = vec![0; n];
        mem.read_exact_at(&mut in_mem, start)
            .expect("read target text");
        changes.extend(
            in_mem
                .iter()
                .zip(&in_file)
                .enumerate()
                .filter(|(_, (m, f))| m != f)
                .map(|(i, (m, _))| (start + i as u64, *m)),
        );
    }
    changes
}

fn read_full(file: &fs::File, buf: &mut [u8], offset: u64) -> usize {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) => panic!("read exe: {e}"),
        }
    }
    done
}

/// Waits (up to 10 s: a link is released on a kernel work queue, and an uprobe's breakpoints are
/// removed when its last perf event goes) until none of `ids` is loaded and `target`'s text
/// equals its file again; panics with what is left otherwise.
pub fn assert_nothing_left(ids: &BpfIds, target: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = ids.still_loaded();
        let changes = text_changes(target);
        if left.is_empty() && changes.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: 10 s after goprobe ended, the kernel still has its programs {:?} and links \
             {:?}, and the target's text differs from its file at {} addresses (first: {:x?})",
            left.programs,
            left.links,
            changes.len(),
            changes.iter().take(5).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
