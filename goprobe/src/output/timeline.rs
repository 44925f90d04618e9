//! `gc-pauses.svg`: every stop-the-world of the window on a time line — x is when it happened,
//! the bar's height how long the world stood still, its colour why (the GC cycle's trigger, or
//! the non-GC reason) — so a person sees at once when the service stopped and why.

use std::fmt::Write as _;

use crate::{
    report::Report,
    text::{duration::human_ns, html::escape, utc::utc},
};

/// The file name.
pub const FILE: &str = "gc-pauses.svg";

const WIDTH: f64 = 1200.0;
const PLOT_TOP: f64 = 70.0;
const PLOT_HEIGHT: f64 = 260.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

/// Colours by trigger (GC pauses) and for other reasons.
const LEGEND: &[(&str, &str)] = &[
    ("heap", "#3b7dd8"),
    ("time", "#8e44ad"),
    ("forced", "#e67e22"),
    ("unknown", "#7f8c8d"),
    ("other (not GC)", "#c0392b"),
];

fn colour_of(trigger: Option<&str>) -> &'static str {
    let key = match trigger {
        Some("cycle") => "forced",
        Some(t) => t,
        None => "other (not GC)",
    };
    LEGEND
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("#7f8c8d", |(_, c)| c)
}

/// One bar: start (unix ns), duration, colour, tooltip.
struct Bar {
    t: i64,
    ns: u64,
    colour: &'static str,
    label: String,
}

/// One bar per stop-the-world of `r`, GC cycles' first, each with its hover text.
fn bars(r: &Report) -> Vec<Bar> {
    let mut bars = Vec::new();
    for c in &r.gc.cycles {
        for s in &c.stw {
            bars.push(Bar {
                t: s.start_unix_ns,
                ns: s.duration_ns,
                colour: colour_of(Some(&c.trigger)),
                label: format!(
                    "GC cycle {} ({} trigger), {}: {} at {}",
                    c.cycle,
                    c.trigger,
                    s.reason,
                    human_ns(s.duration_ns),
                    utc(s.start_unix_ns)
                ),
            });
        }
    }
    for s in &r.gc.other_stw {
        let caller = s
            .stack
            .as_ref()
            .and_then(|st| st.iter().find(|f| !f.starts_with("runtime.")))
            .map(|f| format!(", called from {f}"))
            .unwrap_or_default();
        bars.push(Bar {
            t: s.start_unix_ns,
            ns: s.duration_ns,
            colour: colour_of(None),
            label: format!(
                "{}: {} at {}{caller}",
                s.reason,
                human_ns(s.duration_ns),
                utc(s.start_unix_ns)
            ),
        });
    }
    bars
}

/// Renders the timeline of `r`'s stop-the-world pauses.
pub fn render(r: &Report) -> String {
    let bars = bars(r);
    let (start, end) = (
        r.window.start_unix_ns,
        r.window.end_unix_ns.max(r.window.start_unix_ns + 1),
    );
    let span = (end - start) as f64;
    let max_ns = bars.iter().map(|b| b.ns).max().unwrap_or(0).max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let height = PLOT_TOP + PLOT_HEIGHT + 70.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" \
         font-family=\"Verdana, sans-serif\" font-size=\"12\">\n<rect width=\"100%\" \
         height=\"100%\" fill=\"#ffffff\"/>\n"
    );
    let exe = r.target.exe.rsplit('/').next().unwrap_or(&r.target.exe);
    let total: u64 = bars.iter().map(|b| b.ns).sum();
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"17\">Stop-the-world pauses \
         — {} pid {} ({})</text>",
        WIDTH / 2.0,
        escape(exe),
        r.target.pid,
        escape(&r.target.go_version)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"44\" text-anchor=\"middle\" fill=\"#555\">{} pauses, {} stopped in \
         {:.1} s from {}; longest {}</text>",
        WIDTH / 2.0,
        bars.len(),
        human_ns(total),
        span / 1e9,
        utc(start),
        human_ns(if bars.is_empty() { 0 } else { max_ns })
    );
    // Axes and grid: y in pause duration, x in seconds since the window started.
    let base = PLOT_TOP + PLOT_HEIGHT;
    // No pause: one grid line, no duration scale to show.
    let y_steps = if bars.is_empty() { 0 } else { 4 };
    for i in 0..=y_steps {
        let y = base - PLOT_HEIGHT * f64::from(i) / 4.0;
        let ns = max_ns as f64 * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            human_ns(ns as u64)
        );
    }
    for i in 0..=10 {
        let x = LEFT + plot_w * f64::from(i) / 10.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{base}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{:.*}s</text>",
            base + 5.0,
            base + 19.0,
            if span < 10e9 { 2 } else { 1 },
            span / 1e9 * f64::from(i) / 10.0
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{:.1}\" y2=\"{base}\" stroke=\"#333\"/>",
        WIDTH - RIGHT
    );
    for b in &bars {
        let x = LEFT + plot_w * ((b.t - start) as f64 / span).clamp(0.0, 1.0);
        let h = (PLOT_HEIGHT * b.ns as f64 / max_ns as f64).max(2.0);
        let _ = writeln!(
            svg,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"3\" height=\"{h:.1}\" fill=\"{}\"><title>{}\
             </title></rect>",
            x - 1.5,
            base - h,
            b.colour,
            escape(&b.label)
        );
    }
    if bars.is_empty() {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">no \
             stop-the-world pause in the window</text>",
            WIDTH / 2.0,
            PLOT_TOP + PLOT_HEIGHT / 2.0
        );
    }
    let mut x = LEFT;
    let y = base + 45.0;
    for (name, c) in LEGEND {
        let _ = writeln!(
            svg,
            "<rect x=\"{x}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text \
             x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            y - 10.0,
            x + 16.0,
            if *name == "other (not GC)" {
                name.to_string()
            } else {
                format!("GC, {name} trigger")
            }
        );
        x += 190.0;
    }
    svg.push_str("</svg>\n");
    svg
}
