//! Symbolization: addresses of a live process → frames named the way the Go runtime names them.
//!
//! Go text is resolved with goprobe's own `.gopclntab` reader (it works on stripped binaries and
//! gives inlined frames, like `go tool pprof`); everything else — cgo and shared libraries, the
//! vDSO — goes to blazesym (symbol tables and DWARF). Results are memoized per binary and file
//! offset, so each distinct pc of a binary is resolved once, whatever the process.
//!
//! One [`Symbolizer`] serves every signal of a session.

mod go;
pub mod maps;

use std::{collections::HashMap, path::Path, sync::Arc};

use blazesym::symbolize::{
    Input, Symbolized, Symbolizer as Blaze,
    source::{Elf, Process as BlazeProcess, Source},
};

use go::GoBinary;
use maps::Mapping;
use rustc_hash::FxHashMap;

/// Which kind of code a frame is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    /// Go code (from the binary's `.gopclntab`).
    Go,
    /// Native code: C from cgo, a shared library, the vDSO.
    Native,
    /// Not resolved: the name says where the address was.
    Unknown,
}

/// One frame. Inlined calls are frames of their own, as `go tool pprof` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub function: Arc<str>,
    pub file: Option<Arc<str>>,
    pub line: u32,
    pub inlined: bool,
    pub kind: FrameKind,
}

impl Frame {
    fn unknown(name: String) -> Self {
        Self {
            function: name.into(),
            file: None,
            line: 0,
            inlined: false,
            kind: FrameKind::Unknown,
        }
    }
}

/// One address of a stack and what is there: inlined frames first, then the function that
/// contains the address (as pprof's `Location.line` lists them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub address: u64,
    pub frames: Arc<[Frame]>,
}

/// A file's identity across processes: `(dev, inode)` as `/proc/<pid>/maps` prints them.
type FileKey = (u64, u64);

/// What results are cached by: the binary's build id when it has one (so copies of one build in
/// different containers, or replaced in place by the same build, share one cache), else the
/// file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum BinaryKey {
    BuildId(Arc<[u8]>),
    File(FileKey),
}

/// The GNU build id (`.note.gnu.build-id`), else Go's (`.note.go.buildid`, which every Go
/// linker writes and `-s -w` keeps).
fn build_id(path: &std::path::Path) -> Option<Arc<[u8]>> {
    use object::{Object as _, ObjectSection as _};
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: read-only private mapping; see analysis::Process::map_exe.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let elf = object::File::parse(&*map).ok()?;
    if let Ok(Some(id)) = elf.build_id() {
        return Some(id.into());
    }
    let note = elf.section_by_name(".note.go.buildid")?.data().ok()?;
    // NB: an ELF note: namesz, descsz, type (u32 each), "Go\0\0", then the id.
    note.get(16..).map(Into::into)
}

/// Addresses whose frames a [`Symbolizer`] keeps (a few hundred bytes each).
const MEMO_MAX: usize = 1 << 17;

/// Resolves addresses of processes. Not `Sync` (blazesym's resolvers use `Rc`): keep one per
/// thread.
pub struct Symbolizer {
    blaze: Blaze,
    maps: HashMap<u32, Vec<Mapping>>,
    /// Each file's binary, as a small id.
    files: HashMap<FileKey, u32>,
    /// Binary ids by build id (or file).
    ids: HashMap<BinaryKey, u32>,
    /// Go binaries by id; `None` for binaries that are not Go.
    go: HashMap<u32, Option<Arc<GoBinary>>>,
    /// Frames of `(binary id, file offset)`, leaf first: a warm look-up is one hash probe.
    memo: FxHashMap<(u32, u64), Arc<[Frame]>>,
    /// The last file mapping resolved: `(pid, start, end, file offset at start, binary id)`.
    /// Stacks are mostly one binary's text, so most look-ups skip the maps.
    last: Option<(u32, u64, u64, u64, u32)>,
    /// Function and file names, shared by all frames that carry them.
    names: std::collections::HashSet<Arc<str>>,
    /// Build ids as text, per file seen (kept for profiles written after the process exits).
    build_ids: HashMap<FileKey, String>,
}

/// Where an address of a process comes from, as profiles (pprof `Mapping`) describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    pub start: u64,
    pub end: u64,
    pub file_offset: u64,
    pub path: String,
    /// GNU build ids in hex, Go build ids as text; empty when the file has none.
    pub build_id: String,
}

/// A build id as text: Go's is printable already (`.note.go.buildid`), GNU's is hex.
fn build_id_text(id: &[u8]) -> String {
    if id.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(id).into_owned()
    } else {
        id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    pub fn new() -> Self {
        Self {
            blaze: Blaze::builder()
                .enable_code_info(true)
                .enable_inlined_fns(true)
                .enable_demangling(true)
                .build(),
            maps: HashMap::new(),
            files: HashMap::new(),
            ids: HashMap::new(),
            go: HashMap::new(),
            memo: FxHashMap::default(),
            last: None,
            names: std::collections::HashSet::new(),
            build_ids: HashMap::new(),
        }
    }

    /// How many Go binaries are open (one per build, however many files and processes).
    pub fn go_binaries(&self) -> usize {
        self.go.values().filter(|b| b.is_some()).count()
    }

    /// Frames of a user stack as the kernel records it (leaf first). Every address after the
    /// first is a return address, resolved at `addr - 1` (the call instruction), as Go's own
    /// traceback does. Inlined frames expand in place, so the result is leaf first too.
    pub fn stack(&mut self, pid: u32, addrs: &[u64]) -> Vec<Frame> {
        let mut out = Vec::with_capacity(addrs.len());
        for (i, &addr) in addrs.iter().enumerate() {
            let pc = if i == 0 { addr } else { addr.saturating_sub(1) };
            out.extend(self.frames(pid, pc).iter().cloned());
        }
        out
    }

    /// Frames at exactly `pc` of process `pid`, leaf (innermost inlined) first.
    pub fn frames(&mut self, pid: u32, pc: u64) -> Arc<[Frame]> {
        if let Some((p, start, end, offset, id)) = self.last
            && p == pid
            && (start..end).contains(&pc)
            && let Some(frames) = self.memo.get(&(id, pc - start + offset))
        {
            return frames.clone();
        }
        let Some(i) = self.mapping(pid, pc) else {
            return Arc::new([Frame::unknown(format!("{pc:#x}"))]);
        };
        let m = &self.maps[&pid][i];
        let (file, off) = ((m.dev, m.inode), m.file_offset(pc));
        if !m.is_file() {
            let m = m.clone();
            return self.pseudo(pid, pc, &m);
        }
        if let Some(&id) = self.files.get(&file) {
            self.last = Some((pid, m.start, m.end, m.offset, id));
            if let Some(frames) = self.memo.get(&(id, off)) {
                return frames.clone();
            }
        }
        let m = m.clone();
        let path = m.open_path(pid);
        let id = match self.files.get(&file) {
            Some(&id) => id,
            None => {
                let key = match build_id(&path) {
                    Some(b) => {
                        self.build_ids.insert(file, build_id_text(&b));
                        BinaryKey::BuildId(b)
                    }
                    None => BinaryKey::File(file),
                };
                let next = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
                let id = *self.ids.entry(key).or_insert(next);
                self.files.insert(file, id);
                self.last = Some((pid, m.start, m.end, m.offset, id));
                id
            }
        };
        if let Some(frames) = self.memo.get(&(id, off)) {
            return frames.clone();
        }
        let frames = self
            .go_frames(id, &path, off)
            .or_else(|| self.native_frames(&path, off))
            .unwrap_or_else(|| {
                let name = m.path.rsplit('/').next().unwrap_or("?");
                Arc::new([Frame::unknown(format!("{name}+{off:#x}"))])
            });
        if self.memo.len() >= MEMO_MAX {
            // Bounded: a long-running agent meets new addresses for ever (JIT-free, but many
            // binaries over weeks); starting over costs one look-up per address in use.
            self.memo.clear();
        }
        self.memo.insert((id, off), frames.clone());
        frames
    }

    /// The file mapping `addr` of process `pid` lies in, once an address of it was resolved;
    /// `None` for anonymous memory and pseudo mappings.
    pub fn mapping_info(&mut self, pid: u32, addr: u64) -> Option<MappingInfo> {
        let i = self.mapping(pid, addr)?;
        let m = &self.maps[&pid][i];
        if !m.is_file() {
            return None;
        }
        Some(MappingInfo {
            start: m.start,
            end: m.end,
            file_offset: m.offset,
            path: m.path.clone(),
            build_id: self
                .build_ids
                .get(&(m.dev, m.inode))
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Index of the mapping of `pc` in `self.maps[pid]`, re-reading the maps once if a new
    /// mapping appeared since.
    fn mapping(&mut self, pid: u32, pc: u64) -> Option<usize> {
        if let Some(i) = self.maps.get(&pid).and_then(|maps| maps::find(maps, pc)) {
            return Some(i);
        }
        let fresh = maps::read(pid).ok()?;
        // NB: an exited process not yet reaped (a zombie) has an empty /proc/<pid>/maps (no mm,
        // fs/proc/task_mmu.c): keep the maps read while it lived, which name its stacks.
        if fresh.is_empty() {
            return None;
        }
        let found = maps::find(&fresh, pc);
        self.maps.insert(pid, fresh);
        found
    }

    /// One shared copy of a name.
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.names.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        self.names.insert(a.clone());
        a
    }

    fn go_frames(&mut self, id: u32, path: &Path, off: u64) -> Option<Arc<[Frame]>> {
        let bin = self
            .go
            .entry(id)
            .or_insert_with(|| GoBinary::open(path).map(Arc::new))
            .clone()?;
        let vaddr = bin.vaddr_of(off)?;
        let mut raw = Vec::new();
        bin.table().frames(vaddr, &mut raw).ok()?;
        if raw.is_empty() {
            return None;
        }
        let frames: Vec<Frame> = raw
            .iter()
            .map(|f| Frame {
                function: self.intern(f.function),
                file: Some(self.intern(f.file)),
                line: f.line,
                inlined: f.inlined,
                kind: FrameKind::Go,
            })
            .collect();
        Some(frames.into())
    }

    fn native_frames(&self, path: &Path, off: u64) -> Option<Arc<[Frame]>> {
        let src = Source::Elf(Elf::new(path));
        let sym = self
            .blaze
            .symbolize_single(&src, Input::FileOffset(off))
            .ok()?;
        frames_of(sym)
    }

    /// The vDSO and other pseudo mappings: blazesym reads them from the live process.
    fn pseudo(&self, pid: u32, pc: u64, mapping: &Mapping) -> Arc<[Frame]> {
        let src = Source::Process(BlazeProcess::new(pid.into()));
        self.blaze
            .symbolize_single(&src, Input::AbsAddr(pc))
            .ok()
            .and_then(frames_of)
            .unwrap_or_else(|| {
                let name = if mapping.path.is_empty() {
                    "[anon]"
                } else {
                    &mapping.path
                };
                Arc::new([Frame::unknown(format!("{name}+{:#x}", pc - mapping.start))])
            })
    }
}

/// blazesym's answer as frames, leaf first (blazesym lists inlined callees outer to inner).
fn frames_of(sym: Symbolized<'_>) -> Option<Arc<[Frame]>> {
    let Symbolized::Sym(sym) = sym else {
        return None;
    };
    let code = |c: Option<&blazesym::symbolize::CodeInfo<'_>>| {
        (
            c.map(|c| Arc::<str>::from(c.file.to_string_lossy().as_ref())),
            c.and_then(|c| c.line).unwrap_or(0),
        )
    };
    let mut frames = Vec::with_capacity(sym.inlined.len() + 1);
    for inl in sym.inlined.iter().rev() {
        let (file, line) = code(inl.code_info.as_ref());
        frames.push(Frame {
            function: inl.name.as_ref().into(),
            file,
            line,
            inlined: true,
            kind: FrameKind::Native,
        });
    }
    let (file, line) = code(sym.code_info.as_deref());
    frames.push(Frame {
        function: sym.name.as_ref().into(),
        file,
        line,
        inlined: false,
        kind: FrameKind::Native,
    });
    Some(frames.into())
}
