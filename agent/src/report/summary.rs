//! The human summary printed when `goprobe attach` ends.

use std::{collections::BTreeMap, fmt::Write as _};

use super::Report;
use crate::signal::gc::reason_text;

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Formats nanoseconds for people: `850ns`, `12.3µs`, `4.56ms`, `1.20s`.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

/// Renders the summary.
pub fn render(r: &Report) -> String {
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
        for (reason, mut d) in by_reason {
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
    render_stacks(r, &mut out);
    if let Some(alloc) = &r.alloc {
        super::alloc::render_summary(alloc, &mut out);
    }
    let a = &r.agent;
    let _ = writeln!(
        out,
        "goprobe itself: attach {} ms, cpu {} ms, max rss {} KiB, lost events {}, lost stacks {}",
        a.attach_ms, a.cpu_ms, a.max_rss_kb, a.lost_events, a.lost_stacks
    );
    out
}

/// The first frame of `stack` outside package runtime (the code that called into it), else the
/// outermost frame.
pub fn caller_frame(stack: &[String]) -> &str {
    stack
        .iter()
        .find(|f| !f.starts_with("runtime."))
        .or(stack.last())
        .map_or("(no stack)", String::as_str)
}

/// The frames of `stack` outside package runtime, recursion collapsed, joined leaf first with
/// `←` (at most `max`): `main.build ← main.allocHeavy`.
pub fn caller_chain(stack: &[String], max: usize) -> String {
    let mut chain: Vec<&str> = Vec::new();
    for f in stack.iter().filter(|f| !f.starts_with("runtime.")) {
        if chain.last() != Some(&f.as_str()) {
            chain.push(f);
        }
    }
    if chain.is_empty() {
        return caller_frame(stack).to_owned();
    }
    chain.truncate(max);
    chain.join(" ← ")
}

/// How many assist sites and STW callers the summary lists.
const TOP: usize = 5;

/// "top assist sites" and "other STW by caller".
fn render_stacks(r: &Report, out: &mut String) {
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
        for (chain, ns) in rows.into_iter().take(TOP) {
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
        for ((reason, caller), (n, ns)) in rows.into_iter().take(TOP) {
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

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn caller_is_first_frame_outside_runtime() {
        let s = |v: &[&str]| v.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let stack = s(&[
            "runtime.stopTheWorld",
            "runtime.ReadMemStats",
            "main.f",
            "main.main",
        ]);
        assert_eq!(caller_frame(&stack), "main.f");
        assert_eq!(
            caller_frame(&s(&["runtime.a", "runtime.goexit"])),
            "runtime.goexit"
        );
        assert_eq!(caller_frame(&[]), "(no stack)");
        let rec = s(&[
            "runtime.gcAssistAlloc",
            "main.build",
            "main.build",
            "main.alloc",
            "main.main",
        ]);
        assert_eq!(caller_chain(&rec, 2), "main.build ← main.alloc");
        assert_eq!(caller_chain(&s(&["runtime.a"]), 2), "runtime.a");
    }

    #[test]
    fn human_units() {
        assert_eq!(human_ns(850), "850ns");
        assert_eq!(human_ns(12_345), "12.3µs");
        assert_eq!(human_ns(4_560_000), "4.56ms");
        assert_eq!(human_ns(1_200_000_000), "1.20s");
    }
}
