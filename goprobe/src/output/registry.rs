//! The outputs goprobe writes: each format is one [`Output`] in its own module and one line in
//! [`OUTPUTS`]; `--format` names ([`Format`]) come from that list, and [`write_all`] walks it.

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use super::{
    OutputError, Profile, flamegraph, folded, index, json, pprof,
    render::{File, Input, Output},
};
use crate::report::Report;

/// Every output, in the order they write (see [`Output`]); `html` last, since it links the rest.
pub const OUTPUTS: &[&dyn Output] = &[
    &json::Json,
    &folded::Folded,
    &flamegraph::Svg,
    &pprof::Pprof,
    &index::Html,
];

/// One output format, by the name of its [`Output`] (`goprobe attach --format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Format(&'static str);

impl Format {
    /// Every format, in [`OUTPUTS`] order.
    pub fn all() -> impl Iterator<Item = Format> {
        OUTPUTS.iter().map(|o| Format(o.name()))
    }

    /// The format's `--format` name.
    pub fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::all().find(|f| f.0 == s).ok_or_else(|| {
            let have: Vec<&str> = Format::all().map(Format::name).collect();
            format!("unknown format `{s}` (have {})", have.join(", "))
        })
    }
}

/// What to write and where.
#[derive(Clone, Debug)]
pub struct OutputConfig {
    pub dir: PathBuf,
    pub formats: BTreeSet<Format>,
}

/// The files written so far: their names (for `index.html`) and paths (for the caller).
struct Written<'a> {
    dir: &'a Path,
    names: Vec<String>,
    paths: Vec<PathBuf>,
}

impl Written<'_> {
    fn put(&mut self, files: Vec<File>) -> Result<(), OutputError> {
        for (name, bytes) in files {
            let path = self.dir.join(&name);
            std::fs::write(&path, bytes).map_err(|source| OutputError::Write {
                path: path.clone(),
                source,
            })?;
            self.names.push(name);
            self.paths.push(path);
        }
        Ok(())
    }
}

/// Writes every asked-for output of `report` and `profiles` into `config.dir` (which must
/// exist); returns the paths written, in order.
pub fn write_all(
    config: &OutputConfig,
    report: &Report,
    report_json: &str,
    profiles: &[Profile],
) -> Result<Vec<PathBuf>, OutputError> {
    let input = Input {
        report,
        report_json,
        profiles,
    };
    let chosen: Vec<&dyn Output> = OUTPUTS
        .iter()
        .copied()
        .filter(|o| config.formats.contains(&Format(o.name())))
        .collect();
    let mut written = Written {
        dir: &config.dir,
        names: Vec::new(),
        paths: Vec::new(),
    };
    for o in &chosen {
        written.put(o.start(&input)?)?;
    }
    for p in profiles {
        for o in &chosen {
            written.put(o.profile(&input, p)?)?;
        }
    }
    for o in &chosen {
        let files = o.finish(&input, &written.names)?;
        written.put(files)?;
    }
    Ok(written.paths)
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
