//! Tests of the output registry: names, parsing, and the files each format writes.

use std::{path::PathBuf, sync::Arc};

use super::*;
use crate::{
    output::{Location, Sample, profile::Spec},
    symbolize::{Frame, FrameKind},
};

fn alloc_profile() -> Profile {
    let frames: Arc<[Frame]> = vec![Frame {
        function: "main.main".into(),
        file: Some("/src/main.go".into()),
        line: 12,
        inlined: false,
        kind: FrameKind::Go,
    }]
    .into();
    Profile {
        spec: Spec::alloc(),
        samples: vec![Sample {
            locations: vec![Location {
                address: 0x401000,
                frames,
            }],
            values: vec![2, 4096],
        }],
        mappings: Vec::new(),
        start_unix_ns: 1_795_456_000_000_000_000,
        duration_ns: 1_000_000_000,
    }
}

fn report() -> Report {
    let json = serde_json::json!({
        "schema": "goprobe.report.v2",
        "target": {"pid": 7, "exe": "/app/server", "go_version": "go1.27.3", "stripped": false},
        "window": {"start_unix_ns": 1_795_456_000_000_000_000_i64,
                   "end_unix_ns": 1_795_456_001_000_000_000_i64},
        "goprobe": {"attach_ms": 1, "cpu_ms": 1, "max_rss_kb": 1, "lost_events": 0},
        "gc": {"cycles": [], "other_stw": [], "assist": {"total_ns": 0, "sites": []}},
    });
    serde_json::from_value(json).expect("report")
}

/// Writes `formats` for one allocation profile into a fresh directory; the names written, in
/// order, and the directory.
fn write(formats: &[&str]) -> (Vec<String>, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "goprobe-outputs-{}-{}",
        std::process::id(),
        formats.join("-")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = OutputConfig {
        dir: dir.clone(),
        formats: formats.iter().map(|f| f.parse().expect("format")).collect(),
    };
    let paths = write_all(&config, &report(), "{\"x\": 1}\n", &[alloc_profile()]).expect("write");
    let names = paths
        .iter()
        .map(|p| {
            assert_eq!(p.parent(), Some(dir.as_path()));
            let bytes = std::fs::read(p).expect("read back");
            assert!(!bytes.is_empty(), "{} is empty", p.display());
            p.file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    (names, dir)
}

#[test]
fn every_name_parses_and_is_unique() {
    let names: Vec<&str> = OUTPUTS.iter().map(|o| o.name()).collect();
    assert_eq!(names, ["json", "folded", "svg", "pprof", "html"]);
    for name in &names {
        let f: Format = name.parse().expect("known format");
        assert_eq!(f.name(), *name);
        assert_eq!(f.to_string(), *name);
    }
    assert_eq!(Format::all().count(), OUTPUTS.len());
    // index.html links what was written before it.
    assert_eq!(OUTPUTS.last().map(|o| o.name()), Some("html"));
}

#[test]
fn unknown_format_says_which_exist() {
    assert_eq!(
        "xml".parse::<Format>(),
        Err("unknown format `xml` (have json, folded, svg, pprof, html)".to_owned())
    );
    assert!("JSON".parse::<Format>().is_err());
    assert!("".parse::<Format>().is_err());
}

#[test]
fn each_format_writes_its_files() {
    let cases: [(&str, &[&str]); 5] = [
        ("json", &["report.json"]),
        ("folded", &["alloc.folded", "alloc-objects.folded"]),
        ("svg", &["alloc.svg", "alloc-objects.svg", "gc-pauses.svg"]),
        ("pprof", &["alloc.pb.gz"]),
        ("html", &["index.html"]),
    ];
    for (format, files) in cases {
        let (names, dir) = write(&[format]);
        assert_eq!(names, files, "--format {format}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// All formats: per profile its folded files, flamegraphs and pprof file, between report.json
/// and the timeline; index.html last, listing every file before it in that order.
#[test]
fn all_formats_write_in_order_and_the_index_lists_them() {
    let (names, dir) = write(&["html", "pprof", "svg", "folded", "json"]);
    let want = [
        "report.json",
        "alloc.folded",
        "alloc-objects.folded",
        "alloc.svg",
        "alloc-objects.svg",
        "alloc.pb.gz",
        "gc-pauses.svg",
        "index.html",
    ];
    assert_eq!(names, want);
    assert_eq!(
        std::fs::read_to_string(dir.join("report.json")).expect("json"),
        "{\"x\": 1}\n"
    );
    let index = std::fs::read_to_string(dir.join("index.html")).expect("index");
    let listed: Vec<&str> = index
        .lines()
        .filter_map(|l| l.strip_prefix("<li><a href=\""))
        .filter_map(|l| l.split('"').next())
        .collect();
    assert_eq!(listed, want[..want.len() - 1]);
    let _ = std::fs::remove_dir_all(dir);
}
