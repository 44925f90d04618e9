//! `cargo xtask structure`: goprobe's layers, checked from the source text.
//!
//! Every top-level module of the library has a rank in [`RANKS`]; a module may use modules of a
//! lower rank, modules of its own rank only while the module graph stays free of cycles, and
//! never a higher rank. [`FORBIDDEN`] adds rules that hold whatever the ranks say. Cycles are
//! looked for between top-level modules and between the files of each. The uses are read from the text
//! (see [`parse`]): `crate::…`, `super::…`, `self::…` and, in the binary, `goprobe::…` paths
//! outside comments and string literals. Bare paths (`child::x` after `mod child;`) are not
//! read: a module using its own children is not a layering question.

mod cycles;
mod parse;

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context as _, Result, bail};

use cycles::cycles;
use parse::{Anchor, UsedPath};

/// The binary (`main.rs` and `cli/`), as a module of the table.
const BINARY: &str = "bin";

/// Top-level modules, ranked bottom (0) to top. Keep it true: a module missing here is a
/// violation, so a new module needs a row.
const RANKS: &[(&str, u8)] = &[
    ("text", 0), // leaf helpers: bytes, durations, percentiles, caller chains, html, utc
    ("clock", 0),
    ("privileges", 0),
    ("analysis", 1), // what a process/binary is: ELF, DWARF layouts, /proc, cgroup
    ("probe", 2),    // loading/attaching BPF programs, reading BPF maps
    ("symbolize", 2),
    ("discover", 2),
    ("signal", 3), // one module per signal: the probes' maps read once, typed records
    ("report", 4),
    ("live", 4),
    ("output", 4),
    ("export", 4),
    ("doctor", 4),
    ("session", 5), // the engine: one observed process, the watch loop
    ("daemon", 6),  // goprobe agent's library side
    (BINARY, 7),
];

/// Uses forbidden whatever the ranks say: (module, modules it must not use).
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("report", &["probe"]),
    ("output", &["probe"]),
    ("export", &["probe"]),
    ("live", &["probe"]),
    (
        "signal",
        &[
            "report", "output", "export", "live", "doctor", "session", "daemon",
        ],
    ),
];

/// Where goprobe's sources are, from the workspace root.
const SRC: &str = "goprobe/src";

/// Checks goprobe/src and prints one line per violation, then a closing line.
pub fn run() -> Result<()> {
    let src = crate::root().join(SRC);
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files)?;
    files.sort();
    let outcome = check(&files);
    for v in &outcome.violations {
        println!("{v}");
    }
    let n = outcome.violations.len();
    if n > 0 {
        println!("structure: {n} violations");
        bail!(
            "goprobe's module structure has {n} violations; the rules are in xtask/src/structure.rs"
        );
    }
    println!(
        "structure: ok ({} files, {} module edges)",
        files.len(),
        outcome.module_edges
    );
    Ok(())
}

/// Every `.rs` file under `dir`, as (path relative to `base` with `/`, contents).
fn read_tree(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            read_tree(base, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let rel = path
                .strip_prefix(base)?
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, text));
        }
    }
    Ok(())
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// One line each, file and line first.
    pub violations: Vec<String>,
    /// Distinct (module, module it uses) pairs between top-level modules.
    pub module_edges: usize,
}

/// The crate a file belongs to: goprobe/src holds the library's and the binary's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Crate {
    Library,
    Binary,
}

/// One source file: its path under goprobe/src, crate and module path (`report::live`).
struct File {
    rel: String,
    krate: Crate,
    module: Vec<String>,
}

impl File {
    /// The top-level module it is in; `None` for lib.rs, the crate root.
    fn top(&self) -> Option<&str> {
        match self.krate {
            Crate::Binary => Some(BINARY),
            Crate::Library => self.module.first().map(String::as_str),
        }
    }
}

/// The first use seen of an edge: file, line and the path as written.
type Evidence = (String, usize, String);

/// Checks `files` (path under goprobe/src, contents).
pub fn check(files: &[(String, String)]) -> Outcome {
    let overrides = path_overrides(files);
    let parsed: Vec<File> = files
        .iter()
        .map(|(rel, _)| file(rel, overrides.get(rel)))
        .collect();
    let index: BTreeMap<(Crate, Vec<String>), usize> = parsed
        .iter()
        .enumerate()
        .map(|(i, f)| ((f.krate, f.module.clone()), i))
        .collect();
    let mut out = Outcome::default();
    let mut module_edges: BTreeMap<(String, String), Evidence> = BTreeMap::new();
    let mut file_edges: BTreeMap<(String, String), Evidence> = BTreeMap::new();
    for (f, (_, text)) in parsed.iter().zip(files) {
        if let Some(top) = f.top().filter(|t| rank(t).is_none()) {
            out.violations.push(format!(
                "{SRC}/{}:1 is in module {top}, which is not in the table of \
                 xtask/src/structure.rs: add it there with a rank",
                f.rel
            ));
        }
        for used in parse::used_paths(text, f.krate == Crate::Binary) {
            let Some((krate, abs)) = absolute(f, &used) else {
                continue;
            };
            let evidence = (f.rel.clone(), used.line, used.text());
            // File cycles across top-level modules are module cycles: reported once, as those.
            let inside = |t: &usize| parsed[*t].rel != f.rel && parsed[*t].top() == f.top();
            if let Some(target) = resolve(&index, krate, &abs).filter(inside) {
                let key = (f.rel.clone(), parsed[target].rel.clone());
                file_edges.entry(key).or_insert_with(|| evidence.clone());
            }
            let used_top = match krate {
                Crate::Binary => BINARY,
                Crate::Library => match abs.first() {
                    Some(t) => t.as_str(),
                    None => continue,
                },
            };
            let Some(own) = f.top().filter(|&own| own != used_top) else {
                continue;
            };
            if let Some(why) = rule_broken(own, used_top) {
                out.violations.push(format!(
                    "{SRC}/{}:{} uses {used_top} ({why})",
                    f.rel, used.line
                ));
            }
            let key = (own.to_string(), used_top.to_string());
            module_edges.entry(key).or_insert(evidence);
        }
    }
    out.violations.dedup();
    out.module_edges = module_edges.len();
    for cycle in cycles(&module_edges.keys().cloned().collect()) {
        out.violations
            .push(describe("modules", &cycle, &module_edges, |m| m.into()));
    }
    for cycle in cycles(&file_edges.keys().cloned().collect()) {
        out.violations
            .push(describe("files", &cycle, &file_edges, |f| {
                format!("{SRC}/{f}")
            }));
    }
    out
}

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|&(_, r)| r)
}

/// Why `own` must not use `used`, if it must not.
fn rule_broken(own: &str, used: &str) -> Option<String> {
    let forbidden = FORBIDDEN
        .iter()
        .any(|(m, not)| *m == own && not.contains(&used));
    if forbidden {
        return Some(format!("{own} must not use {used}"));
    }
    match (rank(own), rank(used)) {
        (_, None) => Some(format!(
            "{used} is not in the table of xtask/src/structure.rs: add it there with a rank"
        )),
        (Some(r), Some(u)) if u > r => Some(format!(
            "{own}, rank {r}, must not use {used}, rank {u}: a higher rank"
        )),
        _ => None,
    }
}

/// The file's crate and module path, from its path under goprobe/src (or `declared`, the
/// module path a `#[path]` attribute gives it).
fn file(rel: &str, declared: Option<&Vec<String>>) -> File {
    let krate = if rel == "main.rs" || rel.starts_with("cli/") {
        Crate::Binary
    } else {
        Crate::Library
    };
    let mut module: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(Into::into)
        .collect();
    if module.last().is_some_and(|m| m == "mod") || matches!(rel, "lib.rs" | "main.rs") {
        module.pop();
    }
    let module = declared.cloned().unwrap_or(module);
    File {
        rel: rel.into(),
        krate,
        module,
    }
}

/// Files named by `#[path = "…"] mod name;`: their path → the module path they have.
fn path_overrides(files: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (rel, text) in files {
        let declaring = file(rel, None);
        let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
        for (at, _) in text.match_indices("#[path = \"") {
            let rest = &text[at + 10..];
            let Some((target, rest)) = rest.split_once('"') else {
                continue;
            };
            let Some(name) = rest
                .split_once("mod ")
                .and_then(|(_, r)| r.split(';').next())
            else {
                continue;
            };
            let path = if dir.is_empty() {
                target.to_string()
            } else {
                format!("{dir}/{target}")
            };
            let mut module = declaring.module.clone();
            module.push(name.trim().to_string());
            out.insert(path, module);
        }
    }
    out
}

/// The crate and absolute module path `used` names, or `None` when `super` climbs out of the
/// crate.
fn absolute(f: &File, used: &UsedPath) -> Option<(Crate, Vec<String>)> {
    let (krate, mut abs) = match used.anchor {
        Anchor::Crate => (f.krate, Vec::new()),
        Anchor::Library => (Crate::Library, Vec::new()),
        Anchor::Relative { ups } => {
            let mut here: Vec<String> = f.module.iter().chain(&used.inline).cloned().collect();
            here.truncate(here.len().checked_sub(ups)?);
            (f.krate, here)
        }
    };
    abs.extend(used.segments.iter().cloned());
    Some((krate, abs))
}

/// The file defining the deepest module on `abs` (`a::b::Item` → `a/b.rs` or `a/b/mod.rs`).
fn resolve(
    index: &BTreeMap<(Crate, Vec<String>), usize>,
    krate: Crate,
    abs: &[String],
) -> Option<usize> {
    (0..=abs.len())
        .rev()
        .find_map(|n| index.get(&(krate, abs[..n].to_vec())).copied())
}

/// `cycle between files a → b → a: a:3 super::b::X; b:7 super::a::Y`.
fn describe(
    what: &str,
    cycle: &[String],
    edges: &BTreeMap<(String, String), Evidence>,
    show: impl Fn(&str) -> String,
) -> String {
    let mut hops: Vec<String> = cycle.iter().map(|n| show(n)).collect();
    hops.push(show(&cycle[0]));
    let ties: Vec<String> = cycle
        .iter()
        .zip(cycle.iter().cycle().skip(1))
        .map(|(a, b)| {
            let (file, line, path) = &edges[&(a.clone(), b.clone())];
            format!("{SRC}/{file}:{line} {path}")
        })
        .collect();
    format!(
        "cycle between {what} {}: {}",
        hops.join(" → "),
        ties.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_files(files: &[(&str, &str)]) -> Vec<String> {
        let owned: Vec<(String, String)> = files
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        check(&owned).violations
    }

    #[test]
    fn ranks_and_rules() {
        let v = check_files(&[
            ("report/mod.rs", "use crate::{clock::Clock, probe::Probes};"),
            ("signal/mod.rs", "fn f() {\n    crate::doctor::run();\n}"),
            ("analysis/mod.rs", "use crate::symbolize::Frame;"),
            ("clock.rs", "mod tests { use super::*; }"),
            (
                "main.rs",
                "mod cli; use goprobe::daemon::Fleet; use cli::x;",
            ),
            ("cli/mod.rs", "use crate::cli; use goprobe::report;"),
        ]);
        assert_eq!(
            v,
            [
                "goprobe/src/report/mod.rs:1 uses probe (report must not use probe)",
                "goprobe/src/signal/mod.rs:2 uses doctor (signal must not use doctor)",
                "goprobe/src/analysis/mod.rs:1 uses symbolize (analysis, rank 1, must not use \
                 symbolize, rank 2: a higher rank)",
            ]
        );
    }

    #[test]
    fn unknown_modules_must_join_the_table() {
        let v = check_files(&[("gadget/mod.rs", ""), ("clock.rs", "use crate::widget::W;")]);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].starts_with("goprobe/src/gadget/mod.rs:1 is in module gadget"));
        assert!(v[1].starts_with("goprobe/src/clock.rs:1 uses widget (widget is not in the table"));
    }

    #[test]
    fn same_rank_modules_in_a_cycle() {
        let v = check_files(&[
            ("output/mod.rs", "use crate::report::Report;"),
            ("report/mod.rs", "fn f() { crate::output::write(); }"),
        ]);
        assert_eq!(
            v,
            [
                "cycle between modules output → report → output: goprobe/src/output/mod.rs:1 \
              crate::report::Report; goprobe/src/report/mod.rs:1 crate::output::write"
            ]
        );
    }

    #[test]
    fn file_cycles_resolve_to_the_deepest_module_file() {
        let v = check_files(&[
            ("report/mod.rs", "pub mod live; pub mod screen;"),
            ("report/live.rs", "use super::screen::Section;"),
            (
                "report/screen/mod.rs",
                "use crate::report::live::deep::Item;",
            ),
            (
                "report/summary.rs",
                "use super::Report;\nmod tests { use super::*; }",
            ),
            (
                "doctor/findings.rs",
                "#[path = \"findings_tests.rs\"]\nmod tests;",
            ),
            ("doctor/findings_tests.rs", "use super::*;"),
        ]);
        assert_eq!(
            v,
            [
                "cycle between files goprobe/src/report/live.rs → goprobe/src/report/screen/mod.rs \
              → goprobe/src/report/live.rs: goprobe/src/report/live.rs:1 super::screen::Section; \
              goprobe/src/report/screen/mod.rs:1 crate::report::live::deep::Item"
            ]
        );
    }
}
