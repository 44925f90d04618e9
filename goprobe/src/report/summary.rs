//! The human summary printed when `goprobe attach` ends.

use std::{collections::BTreeMap, fmt::Write as _};

use super::Report;
use crate::{
    signal::gc::reason_text,
    text::{chain::caller_chain, duration::human_ns, percentile::percentile},
};

/// The most lines the summary takes: the top findings, not everything (report.json has that).
pub const MAX_LINES: usize = 25;

/// Renders the summary: with up to 3 sites per signal, fewer while it is longer than
/// [`MAX_LINES`], and cut with a pointer to report.json as the last resort.
pub fn render(r: &Report) -> String {
    let out = [3, 2]
        .into_iter()
        .map(|top| render_with(r, top))
        .find(|out| out.lines().count() <= MAX_LINES)
        .unwrap_or_else(|| render_with(r, 1));
    cap(out)
}

/// `out` cut to [`MAX_LINES`], keeping its last line (goprobe's own cost).
fn cap(out: String) -> String {
    let lines: Vec<&str> = out.lines().collect();
    if lines.len() <= MAX_LINES {
        return out;
    }
    let mut s = String::new();
    for l in &lines[..MAX_LINES - 2] {
        s.push_str(l);
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "… {} more lines: see report.json (--json or --out-dir)",
        lines.len() - (MAX_LINES - 1)
    );
    if let Some(last) = lines.last() {
        s.push_str(last);
        s.push('\n');
    }
    s
}

/// The summary with at most `top` sites per list and `top + 1` stop-the-world reasons besides
/// the two GC ones.
fn render_with(r: &Report, top: usize) -> String {
    let mut out = String::new();
    let secs = (r.window.end_unix_ns - r.window.start_unix_ns) as f64 / 1e9;
    let t = &r.target;
    let _ = writeln!(
        out,
        "goprobe: pid {} {} ({}), {secs:.1}s attached",
        t.pid, t.exe, t.go_version
    );
    let mut pauses: Vec<u64> = r.gc.cycles.iter().map(|c| c.pause_ns).collect();
    pauses.sort_unstable();
    let mut triggers: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &r.gc.cycles {
        *triggers.entry(c.trigger.as_str()).or_default() += 1;
    }
    let by_trigger: Vec<String> = triggers.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let total: u64 = pauses.iter().sum();
    let _ = writeln!(
        out,
        "GC cycles: {} ({}), total stop-the-world {}",
        pauses.len(),
        if by_trigger.is_empty() {
            "none".into()
        } else {
            by_trigger.join(", ")
        },
        human_ns(total)
    );
    if !pauses.is_empty() {
        let _ = writeln!(
            out,
            "pause per cycle: p50 {}  p99 {}  max {}",
            human_ns(percentile(&pauses, 50.0)),
            human_ns(percentile(&pauses, 99.0)),
            human_ns(*pauses.last().unwrap_or(&0)),
        );
    }
    let mut by_reason: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let all =
        r.gc.cycles
            .iter()
            .flat_map(|c| &c.stw)
            .chain(&r.gc.other_stw);
    for s in all {
        by_reason
            .entry(s.reason.as_str())
            .or_default()
            .push(s.duration_ns);
    }
    if !by_reason.is_empty() {
        let _ = writeln!(out, "stop-the-world by reason:");
        // The GC reasons first, then the others by total time.
        let mut rows: Vec<(&str, Vec<u64>)> = by_reason.into_iter().collect();
        rows.sort_by_key(|(reason, d)| (!is_gc(reason), std::cmp::Reverse(d.iter().sum::<u64>())));
        let gc_rows = rows.iter().filter(|(r, _)| is_gc(r)).count();
        rows.truncate(gc_rows + top + 1);
        for (reason, mut d) in rows {
            d.sort_unstable();
            let _ = writeln!(
                out,
                "  {:<24} {:>6}  p50 {:>9}  p99 {:>9}  max {:>9}",
                reason_text(reason),
                d.len(),
                human_ns(percentile(&d, 50.0)),
                human_ns(percentile(&d, 99.0)),
                human_ns(*d.last().unwrap_or(&0)),
            );
        }
    }
    render_stacks(r, top, &mut out);
    if let Some(alloc) = &r.alloc {
        super::alloc::render_summary(alloc, top, &mut out);
    }
    super::goroutines::render(r.goroutines.as_ref(), top, &mut out);
    super::perf::render_summary(r, top, &mut out);
    let a = &r.goprobe;
    let (hits, run_ns) = a
        .programs
        .iter()
        .fold((0, 0), |(h, n), p| (h + p.hits, n + p.run_ns));
    let bpf = if run_ns > 0 {
        format!(", BPF {} in {hits} runs", human_ns(run_ns))
    } else {
        String::new()
    };
    let skipped: Vec<String> = a
        .budget
        .iter()
        .filter(|b| b.skipped > 0)
        .map(|b| format!("{} {}", b.signal, b.skipped))
        .collect();
    let skipped = if skipped.is_empty() {
        String::new()
    } else {
        format!(", over budget (skipped) {}", skipped.join(" "))
    };
    let _ = writeln!(
        out,
        "goprobe itself: attach {} ms, cpu {} ms, max rss {} KiB, lost events {}, lost stacks {}{bpf}{skipped}",
        a.attach_ms, a.cpu_ms, a.max_rss_kb, a.lost_events, a.lost_stacks
    );
    out
}

/// Whether a stop-the-world reason is one of the two of every GC cycle.
fn is_gc(reason: &str) -> bool {
    reason == "GCMarkTerm" || reason == "GCSweepTerm"
}

/// "top assist sites" and "other STW by caller", `top` of each.
fn render_stacks(r: &Report, top: usize, out: &mut String) {
    let assist = &r.gc.assist;
    if assist.total_ns > 0 {
        let _ = writeln!(
            out,
            "mark assist: {} in total; top assist sites:",
            human_ns(assist.total_ns)
        );
        // Stacks that differ only below the program's own frames (recursion depth, runtime
        // allocation paths) are one site for people.
        let mut by_chain: BTreeMap<String, u64> = BTreeMap::new();
        for site in &assist.sites {
            *by_chain.entry(caller_chain(&site.stack, 3)).or_default() += site.ns;
        }
        let mut rows: Vec<_> = by_chain.into_iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        for (chain, ns) in rows.into_iter().take(top) {
            let _ = writeln!(
                out,
                "  {:>9} {:>5.1}%  {chain}",
                human_ns(ns),
                ns as f64 * 100.0 / assist.total_ns as f64,
            );
        }
    }
    let mut by_caller: BTreeMap<(&str, String), (usize, u64)> = BTreeMap::new();
    for s in &r.gc.other_stw {
        let caller = s
            .stack
            .as_deref()
            .map_or_else(|| "(no stack)".to_owned(), |st| caller_chain(st, 2));
        let e = by_caller
            .entry((reason_text(&s.reason), caller))
            .or_default();
        e.0 += 1;
        e.1 += s.duration_ns;
    }
    if !by_caller.is_empty() {
        let mut rows: Vec<_> = by_caller.into_iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1.1));
        let _ = writeln!(out, "other stop-the-world by caller:");
        for ((reason, caller), (n, ns)) in rows.into_iter().take(top) {
            let _ = writeln!(
                out,
                "  {reason:<24} {n:>6}  total {:>9}  {caller}",
                human_ns(ns)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report with many reasons and many sites of every signal: the summary stays within
    /// [`MAX_LINES`] and still ends with goprobe's own cost.
    #[test]
    fn a_busy_report_fits_in_the_line_budget() {
        let stack = |i: usize| serde_json::json!([format!("main.f{i}"), "main.main"]);
        let many = |f: &dyn Fn(usize) -> serde_json::Value| -> Vec<serde_json::Value> {
            (0..12).map(f).collect()
        };
        let stw = |reason: &str| serde_json::json!({"reason": reason, "start_unix_ns": 1, "duration_ns": 1000});
        let reasons = [
            "ReadMemStats",
            "GOMAXPROCS",
            "StartTrace",
            "StopTrace",
            "GoroutineProfile",
            "WriteHeapDump",
        ];
        let other: Vec<_> = reasons
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut s = stw(r);
                s["stack"] = stack(i);
                s
            })
            .collect();
        let json = serde_json::json!({
            "schema": "goprobe.report.v2",
            "target": {"pid": 1, "exe": "/x", "go_version": "go1.27.3", "stripped": false},
            "window": {"start_unix_ns": 0, "end_unix_ns": 10_000_000_000_i64},
            "goprobe": {"attach_ms": 1, "cpu_ms": 1, "max_rss_kb": 1, "lost_events": 0},
            "gc": {
                "cycles": [{"cycle": 1, "trigger": "heap", "pause_ns": 2000,
                            "stw": [stw("GCSweepTerm"), stw("GCMarkTerm")]}],
                "other_stw": other,
                "assist": {"total_ns": 12, "sites": many(&|i| serde_json::json!({"stack": stack(i), "ns": 1}))},
            },
            "alloc": {"mode": "sampled", "bytes": 12, "objects": 12,
                      "sites": many(&|i| serde_json::json!({"stack": stack(i), "bytes": 1, "objects": 1}))},
            "goroutines": {"samples": [], "max": 1, "created": 12, "exited": 0,
                           "creation_sites": many(&|i| serde_json::json!({"stack": stack(i), "count": 1}))},
            "page_faults": {"minor": 12, "major": 0,
                            "sites": many(&|i| serde_json::json!({"stack": stack(i), "minor": 1, "major": 0}))},
            "cpu": {"hz": 97, "samples": 12,
                    "sites": many(&|i| serde_json::json!({"stack": stack(i), "samples": 1}))},
        });
        let r: Report = serde_json::from_value(json).expect("report");
        let text = render(&r);
        assert!(text.lines().count() <= MAX_LINES, "{text}");
        assert!(
            text.lines()
                .last()
                .unwrap_or("")
                .starts_with("goprobe itself"),
            "{text}"
        );
        // With room, up to three sites per list.
        assert!(render_with(&r, 3).lines().count() > MAX_LINES);
    }
}
