//! `index.html`: one offline page for the whole attach — the summary, a table of the signals
//! with their totals, and links to every file written (no scripts, no network).

use std::fmt::Write as _;

use super::{
    OutputError, Profile,
    render::{File, Input, Output},
    timeline, views,
};
use crate::{
    report::{Report, summary},
    text::{bytes, duration::human_ns, html::escape, utc::utc},
};

/// The file name.
pub const FILE: &str = "index.html";

/// The `html` output: [`FILE`], linking the files written before it.
pub struct Html;

impl Output for Html {
    fn name(&self) -> &'static str {
        "html"
    }

    fn finish(&self, input: &Input<'_>, written: &[String]) -> Result<Vec<File>, OutputError> {
        let page = render(input.report, input.profiles, written);
        Ok(vec![(FILE.to_owned(), page.into_bytes())])
    }
}

/// A total for people: bytes in KiB/MiB/GiB, nanoseconds as durations, counts as they are.
fn human_total(value: i64, unit: &str) -> String {
    let v = value.max(0) as u64;
    match unit {
        "bytes" => bytes::human_spaced(v),
        "nanoseconds" => human_ns(v),
        _ => v.to_string(),
    }
}

/// The page. `files` are the names of the files written next to it.
pub fn render(r: &Report, profiles: &[Profile], files: &[String]) -> String {
    let has = |f: &str| files.iter().any(|x| x == f);
    let exe = r.target.exe.rsplit('/').next().unwrap_or(&r.target.exe);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>goprobe: {} \
         pid {}</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:1250px}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;\
         text-align:left}}th{{background:#f3f3f3}}pre{{background:#f7f7f7;padding:1em;\
         overflow-x:auto}}img{{max-width:100%;border:1px solid #ddd}}</style></head><body>\n",
        escape(exe),
        r.target.pid
    );
    let _ = writeln!(
        h,
        "<h1>goprobe: {} (pid {}, {})</h1>\n<p>{} to {}</p>",
        escape(&r.target.exe),
        r.target.pid,
        escape(&r.target.go_version),
        utc(r.window.start_unix_ns),
        utc(r.window.end_unix_ns)
    );
    let _ = writeln!(
        h,
        "<h2>Summary</h2>\n<pre>{}</pre>",
        escape(&summary::render(r))
    );
    if has(timeline::FILE) {
        let _ = writeln!(
            h,
            "<h2>Stop-the-world pauses</h2>\n<p><a href=\"{0}\"><img src=\"{0}\" \
             alt=\"stop-the-world pauses over time\"></a></p>",
            timeline::FILE
        );
    }
    if !profiles.is_empty() {
        h.push_str(
            "<h2>Profiles</h2>\n<table><tr><th>signal</th><th>total</th><th>flamegraph</th>\
             <th>pprof</th><th>folded</th></tr>\n",
        );
        for p in profiles {
            for (suffix, index) in views::of(p) {
                let Some(t) = p.spec.sample_types.get(index) else {
                    continue;
                };
                let link = |file: String, text: &str| {
                    if has(&file) {
                        format!("<a href=\"{0}\">{text}</a>", escape(&file))
                    } else {
                        "–".to_owned()
                    }
                };
                let _ = writeln!(
                    h,
                    "<tr><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(p.spec.title),
                    escape(&t.kind),
                    human_total(p.total(index), &t.unit),
                    link(format!("{}{suffix}.svg", p.spec.name), "SVG"),
                    if suffix.is_empty() {
                        link(format!("{}.pb.gz", p.spec.name), "pb.gz")
                    } else {
                        "(same)".to_owned()
                    },
                    link(format!("{}{suffix}.folded", p.spec.name), "folded"),
                );
            }
        }
        h.push_str(
            "</table>\n<p>Open a <code>.pb.gz</code> with <code>go tool pprof -http=: \
             FILE</code>; flamegraph colours: red Go runtime, blue standard library, green \
             program code, yellow C/cgo.</p>\n",
        );
    }
    h.push_str("<h2>All files</h2>\n<ul>\n");
    for f in files {
        let _ = writeln!(h, "<li><a href=\"{0}\">{0}</a></li>", escape(f));
    }
    h.push_str("</ul>\n</body></html>\n");
    h
}
