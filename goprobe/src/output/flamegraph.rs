//! Flamegraphs (`NAME.svg`) drawn by inferno, coloured so Go code reads at a glance: the Go
//! runtime red, the standard library blue, the program's own code and its dependencies green,
//! C (cgo, shared libraries) yellow.

use std::collections::HashMap;

use inferno::flamegraph::{self, Options, color::Color, color::PaletteMap};

use super::{
    OutputError, Profile, folded,
    render::{File, Input, Output},
    timeline, views,
};
use crate::{
    report::TargetInfo,
    symbolize::FrameKind,
    text::{html::escape, utc::utc},
};

/// The `svg` output: a flamegraph per profile and view (`NAME.svg`, `NAME-objects.svg` …), then
/// the stop-the-world timeline ([`timeline::FILE`]).
pub struct Svg;

impl Output for Svg {
    fn name(&self) -> &'static str {
        "svg"
    }

    fn profile(&self, input: &Input<'_>, p: &Profile) -> Result<Vec<File>, OutputError> {
        let mut files = Vec::new();
        for (suffix, index) in views::of(p) {
            let svg = render(p, index, &input.report.target).map_err(|source| {
                OutputError::Flamegraph {
                    name: p.spec.name.to_owned(),
                    source,
                }
            })?;
            files.push((format!("{}{suffix}.svg", p.spec.name), svg));
        }
        Ok(files)
    }

    fn finish(&self, input: &Input<'_>, _written: &[String]) -> Result<Vec<File>, OutputError> {
        let svg = timeline::render(input.report);
        Ok(vec![(timeline::FILE.to_owned(), svg.into_bytes())])
    }
}

/// Which code a frame is in, for its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Runtime,
    Std,
    User,
    Native,
}

/// The category of a Go function name (`net/http.(*conn).serve`, `main.main`, …).
///
/// NB: standard-library import paths have no dot in their first element (`net/http`, `fmt`),
/// module paths do (`github.com/…`, `golang.org/x/…`); `main` is the program itself.
pub fn category(function: &str, kind: FrameKind) -> Category {
    if kind != FrameKind::Go {
        return Category::Native;
    }
    // The package path ends at the first '.' after the last '/'.
    let last_slash = function.rfind('/').map_or(0, |i| i + 1);
    let pkg_end = function[last_slash..]
        .find('.')
        .map_or(function.len(), |i| last_slash + i);
    let pkg = &function[..pkg_end];
    let first = pkg.split('/').next().unwrap_or(pkg);
    if pkg == "runtime"
        || pkg.starts_with("runtime/")
        || pkg.starts_with("internal/runtime/")
        || pkg == "internal/runtime"
    {
        Category::Runtime
    } else if pkg == "main" || first.contains('.') {
        Category::User
    } else {
        Category::Std
    }
}

/// The colour of a frame: its category's hue, shaded by a hash of the name so that neighbours
/// differ.
fn colour(name: &str, c: Category) -> Color {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let v = (h % 40) as u8; // 0..40
    let (r, g, b) = match c {
        Category::Runtime => (215 + v / 2, 80 + v, 60 + v / 2),
        Category::Std => (70 + v, 140 + v, 215 + v / 2),
        Category::User => (80 + v, 185 + v / 2, 90 + v),
        Category::Native => (215 + v / 2, 190 + v / 2, 60 + v),
    };
    Color { r, g, b }
}

/// Renders sample type `index` of `p` as an interactive SVG.
pub fn render(p: &Profile, index: usize, target: &TargetInfo) -> std::io::Result<Vec<u8>> {
    let folded = folded::render(p, index);
    let mut palette = PaletteMap::default();
    let mut kinds: HashMap<&str, FrameKind> = HashMap::new();
    for s in &p.samples {
        for l in &s.locations {
            for f in l.frames.iter() {
                kinds.entry(&f.function).or_insert(f.kind);
            }
        }
    }
    for (name, kind) in &kinds {
        palette.insert(*name, colour(name, category(name, *kind)));
    }
    let unit = p
        .spec
        .sample_types
        .get(index)
        .map_or("samples", |t| t.unit.as_str());
    let kind = p
        .spec
        .sample_types
        .get(index)
        .map_or("", |t| t.kind.as_str());
    let exe = target.exe.rsplit('/').next().unwrap_or(&target.exe);
    let mut opts = Options::default();
    opts.title = format!(
        "{} ({kind}) — {exe} pid {} ({})",
        p.spec.title, target.pid, target.go_version
    );
    opts.subtitle = Some(format!(
        "{} · {} s · red: Go runtime · blue: standard library · green: program code · \
         yellow: C/cgo",
        utc(p.start_unix_ns),
        (p.duration_ns as f64 / 1e9 * 10.0).round() / 10.0,
    ));
    opts.count_name = unit.to_owned();
    opts.name_type = "Function:".to_owned();
    opts.palette_map = Some(&mut palette);
    opts.deterministic = true;
    let mut out = Vec::new();
    if folded.is_empty() {
        // inferno refuses empty input; an empty profile is still a valid (blank) picture.
        flamegraph::from_lines(&mut opts, ["[nothing recorded] 0"], &mut out)
            .or_else(|_| blank(&mut out, &opts.title))?;
        return Ok(out);
    }
    flamegraph::from_lines(&mut opts, folded.lines(), &mut out)?;
    Ok(out)
}

/// A minimal SVG saying there is nothing to draw.
fn blank(out: &mut Vec<u8>, title: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    out.clear();
    write!(
        out,
        "<?xml version=\"1.0\" standalone=\"no\"?>\n<svg version=\"1.1\" width=\"1200\" \
         height=\"80\" xmlns=\"http://www.w3.org/2000/svg\"><text x=\"600\" y=\"30\" \
         text-anchor=\"middle\" font-family=\"Verdana\" font-size=\"17\">{}</text><text \
         x=\"600\" y=\"60\" text-anchor=\"middle\" font-family=\"Verdana\" \
         font-size=\"12\">nothing was recorded in the window</text></svg>\n",
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_packages_fall_into_categories() {
        let go = |f| category(f, FrameKind::Go);
        assert_eq!(go("runtime.mallocgc"), Category::Runtime);
        assert_eq!(go("internal/runtime/maps.(*Map).Get"), Category::Runtime);
        assert_eq!(go("net/http.(*conn).serve"), Category::Std);
        assert_eq!(go("fmt.Fprintf"), Category::Std);
        assert_eq!(go("main.hotAlloc"), Category::User);
        assert_eq!(go("main.main.func1"), Category::User);
        assert_eq!(
            go("github.com/prometheus/client_golang/prometheus.(*Registry).Gather"),
            Category::User
        );
        assert_eq!(
            go("golang.org/x/net/http2.(*Framer).ReadFrame"),
            Category::User
        );
        assert_eq!(category("malloc", FrameKind::Native), Category::Native);
    }
}
