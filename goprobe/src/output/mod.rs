//! Files people open: flamegraphs (SVG), pprof profiles, folded stacks, the GC pause timeline and
//! an index page, all derived from one attach's [`Report`] and its stack profiles.
//!
//! A [`Profile`] is one stack-attributed signal (allocations, assist time, page faults, CPU,
//! goroutine creation) with its stacks resolved to locations and frames; every format is
//! written from it, so the SVG, the pprof file and the folded file of a signal always agree.

pub mod flamegraph;
pub mod folded;
pub mod index;
pub mod pprof;
pub mod profile;
pub mod timeline;

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use crate::report::Report;
pub use crate::symbolize::{Frame, Location};

/// Why outputs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rendering the {name} flamegraph")]
    Flamegraph {
        name: String,
        source: std::io::Error,
    },
}

/// One output format (`goprobe attach --format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Format {
    /// `report.json`.
    Json,
    /// `NAME.svg` flamegraphs and `gc-pauses.svg`.
    Svg,
    /// `NAME.pb.gz` pprof profiles.
    Pprof,
    /// `NAME.folded` collapsed stacks.
    Folded,
    /// `index.html`, linking everything else.
    Html,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Json,
        Format::Svg,
        Format::Pprof,
        Format::Folded,
        Format::Html,
    ];

    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Svg => "svg",
            Format::Pprof => "pprof",
            Format::Folded => "folded",
            Format::Html => "html",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown format `{s}` (have json, svg, pprof, folded, html)"))
    }
}

/// A pprof value type: what a sample value counts, in which unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueType {
    pub kind: String,
    pub unit: String,
}

impl ValueType {
    pub fn new(kind: &str, unit: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            unit: unit.to_owned(),
        }
    }
}

/// One stack (leaf first) and its values, one per [`Profile::sample_types`] entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub locations: Vec<Location>,
    pub values: Vec<i64>,
}

impl Sample {
    /// Frame names, root first, as flamegraphs and folded files stack them.
    pub fn names_root_first(&self) -> impl Iterator<Item = &str> {
        self.locations
            .iter()
            .rev()
            .flat_map(|l| l.frames.iter().rev())
            .map(|f| &*f.function)
    }
}

/// A memory mapping of the profiled process that some location is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingInfo {
    pub start: u64,
    pub limit: u64,
    pub file_offset: u64,
    pub path: String,
    /// The build id as text: GNU build ids in hex, Go build ids as the linker prints them.
    pub build_id: String,
}

/// One stack-attributed signal of one process over the window.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// What the signal and its values are.
    pub spec: profile::Spec,
    pub samples: Vec<Sample>,
    pub mappings: Vec<MappingInfo>,
    pub start_unix_ns: i64,
    pub duration_ns: i64,
}

impl Profile {
    /// The sum of `sample_types[index]` over all samples.
    pub fn total(&self, index: usize) -> i64 {
        self.samples
            .iter()
            .map(|s| s.values.get(index).copied().unwrap_or(0))
            .sum()
    }
}

/// What to write and where.
#[derive(Clone, Debug)]
pub struct OutputConfig {
    pub dir: PathBuf,
    pub formats: BTreeSet<Format>,
}

/// Writes every asked-for output of `report` and `profiles` into `config.dir` (which must
/// exist); returns the paths written, in order.
pub fn write_all(
    config: &OutputConfig,
    report: &Report,
    report_json: &str,
    profiles: &[Profile],
) -> Result<Vec<PathBuf>, OutputError> {
    let mut written = Vec::new();
    let put = |written: &mut Vec<PathBuf>, name: String, bytes: &[u8]| {
        let path = config.dir.join(name);
        std::fs::write(&path, bytes).map_err(|source| OutputError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
        Ok::<(), OutputError>(())
    };
    let want = |f: Format| config.formats.contains(&f);
    if want(Format::Json) {
        put(&mut written, "report.json".into(), report_json.as_bytes())?;
    }
    for p in profiles {
        if want(Format::Folded) {
            for (suffix, index) in flamegraph::views(p) {
                put(
                    &mut written,
                    format!("{}{suffix}.folded", p.spec.name),
                    folded::render(p, index).as_bytes(),
                )?;
            }
        }
        if want(Format::Svg) {
            for (suffix, index) in flamegraph::views(p) {
                let svg = flamegraph::render(p, index, &report.target).map_err(|source| {
                    OutputError::Flamegraph {
                        name: p.spec.name.to_owned(),
                        source,
                    }
                })?;
                put(&mut written, format!("{}{suffix}.svg", p.spec.name), &svg)?;
            }
        }
        if want(Format::Pprof) {
            put(
                &mut written,
                format!("{}.pb.gz", p.spec.name),
                &pprof::encode_gz(p),
            )?;
        }
    }
    if want(Format::Svg) {
        put(
            &mut written,
            timeline::FILE.into(),
            timeline::render(report).as_bytes(),
        )?;
    }
    if want(Format::Html) {
        let files: Vec<String> = written.iter().filter_map(|p| file_name(p)).collect();
        put(
            &mut written,
            index::FILE.into(),
            index::render(report, profiles, &files).as_bytes(),
        )?;
    }
    Ok(written)
}

fn file_name(p: &Path) -> Option<String> {
    Some(p.file_name()?.to_string_lossy().into_owned())
}
