//! Frameless leaves in every binary of the agent: two different Go binaries (the `signals`
//! program built with two Go releases) spend their page faults and CPU time inside
//! `runtime.memmove` and `runtime.memclrNoHeapPointers`, whose frame-pointer walk skips the
//! immediate caller. The agent's profiles of the binary attached SECOND must name the same
//! callers of those leaves as `goprobe attach` to that binary alone: each binary's frameless
//! ranges are in the kernel, not only the first one's.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use support::{agent::Agent, names, start_testprog, testprog};

const FIRST: &str = "1.27.3";
const SECOND: &str = "1.25.5";
const LONG: Duration = Duration::from_secs(60);
const ARGS: &[&str] = &["-mode", "frameless", "-fault-pages", "4000"];

/// Samples per stack (leaf first): (stack, weight).
type Stacks = Vec<(Vec<String>, u64)>;

/// The weight of each immediate caller of `leaf` over the stacks whose leaf it is.
fn callers(stacks: &Stacks, leaf: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (s, w) in stacks {
        if s.first().map(String::as_str) == Some(leaf) {
            let caller = s.get(1).cloned().unwrap_or_default();
            *out.entry(caller).or_default() += w;
        }
    }
    out
}

/// The heaviest caller of `leaf` and its share of `leaf`'s weight.
fn top_caller(stacks: &Stacks, leaf: &str) -> (String, f64) {
    let c = callers(stacks, leaf);
    let total: u64 = c.values().sum();
    let (name, w) = c
        .iter()
        .max_by_key(|(_, w)| **w)
        .map(|(n, w)| (n.clone(), *w))
        .unwrap_or_default();
    (name, w as f64 / total.max(1) as f64)
}

fn go_bin() -> PathBuf {
    let bins = std::env::var("GOPROBE_GO_BINS")
        .expect("GOPROBE_GO_BINS is not set: run the tests via `cargo xtask test`");
    bins.split(':')
        .filter_map(|kv| kv.split_once('='))
        .find(|(v, _)| *v == FIRST)
        .map(|(_, p)| PathBuf::from(p))
        .expect("Go in GOPROBE_GO_BINS")
}

/// The stacks of a pprof file as `go tool pprof -traces` shows them, first sample type.
fn pprof_stacks(file: &Path) -> Stacks {
    let out = Command::new(go_bin())
        .args(["tool", "pprof", "-traces", "-sample_index=0"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut stacks = Vec::new();
    for block in text.split("-----------+").skip(1) {
        let mut lines = block.lines().skip(1).filter(|l| !l.trim().is_empty());
        let Some(first) = lines.next() else { continue };
        let mut words = first.split_whitespace();
        let (Some(w), Some(leaf)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(w) = w.parse::<u64>() else { continue };
        let mut s = vec![leaf.to_owned()];
        s.extend(lines.map(|l| l.split_whitespace().next().unwrap_or("").to_owned()));
        stacks.push((s, w));
    }
    stacks
}

/// A report's sites of one signal as stacks weighted by `field`.
fn report_stacks(report: &Value, signal: &str, field: &str) -> Stacks {
    report[signal]["sites"]
        .as_array()
        .unwrap_or_else(|| panic!("no {signal} sites: {report}"))
        .iter()
        .map(|s| {
            (
                names(&s["stack"]).into_iter().map(str::to_owned).collect(),
                s[field].as_u64().unwrap(),
            )
        })
        .collect()
}

fn unix_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The newest `signals-<pid>-<signal>-<ts>.pb.gz` in `dir` written after unix second `after`.
fn profile_after(dir: &Path, pid: u32, signal: &str, after: u64) -> PathBuf {
    let prefix = format!("signals-{pid}-{signal}-");
    let deadline = Instant::now() + LONG;
    loop {
        let newest = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| {
                let ts: u64 = n
                    .strip_prefix(&prefix)?
                    .strip_suffix(".pb.gz")?
                    .parse()
                    .ok()?;
                Some((ts, n))
            })
            .filter(|(ts, _)| *ts > after)
            .max();
        if let Some((_, n)) = newest {
            return dir.join(n);
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix}* after {after} in {dir:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The frameless leaves and who calls them in the `frameless` mode, per signal.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("pagefaults", "runtime.memmove", "main.touchCopy"),
    ("cpu", "runtime.memmove", "main.copyHot"),
    ("cpu", "runtime.memclrNoHeapPointers", "main.clearHot"),
];

/// Checks that `stacks` of `who` name `caller` as `leaf`'s caller for nearly all its weight.
fn check(who: &str, signal: &str, stacks: &Stacks, leaf: &str, caller: &str) -> (String, f64) {
    let (top, share) = top_caller(stacks, leaf);
    eprintln!(
        "{who} {signal}: {leaf} called from {:?}",
        callers(stacks, leaf)
    );
    assert_eq!(
        top,
        caller,
        "{who} {signal}: the top caller of {leaf} is {top} ({:.0}%), not {caller}",
        share * 100.0
    );
    assert!(
        share >= 0.8,
        "{who} {signal}: {caller} has only {:.0}% of {leaf}: {:?}",
        share * 100.0,
        callers(stacks, leaf)
    );
    (top, share)
}

#[test]
fn second_binary_in_the_agent_names_the_same_leaf_callers_as_attach() {
    let a_exe = testprog("signals", FIRST);
    let b_exe = testprog("signals", SECOND);
    let dir = std::env::temp_dir().join(format!("goprobe-frameless-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("goprobe.toml");
    std::fs::write(
        &cfg,
        format!(
            "[select]\ninclude_exe = [\"{}\", \"{}\"]\n[signals]\ncpu_hz = 97\n\
             page_faults = true\nalloc = \"off\"\n[export]\npprof_dir = \"{}\"\n\
             pprof_interval_s = 1\n",
            a_exe.display(),
            b_exe.display(),
            dir.join("pprof").display()
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&cfg);
    // The first binary is attached first (today the only one whose ranges the kernel had).
    let mut a = start_testprog("signals", FIRST, ARGS, &[]);
    agent.attached(a.pid(), LONG);
    let mut b = start_testprog("signals", SECOND, ARGS, &[]);
    agent.attached(b.pid(), LONG);
    a.send("start");
    b.send("start");
    a.wait_stdout("done", LONG);
    b.wait_stdout("done", LONG);
    let done = unix_s();
    let pprof = dir.join("pprof");
    let mut agent_stacks = BTreeMap::new();
    for signal in ["pagefaults", "cpu"] {
        for (who, p) in [("agent, first binary", &a), ("agent, second binary", &b)] {
            let file = profile_after(&pprof, p.pid(), signal, done + 1);
            agent_stacks.insert((who, signal), pprof_stacks(&file));
        }
    }
    drop((a, b));
    drop(agent);

    // The second binary alone, under `goprobe attach`.
    let mut c = start_testprog("signals", SECOND, ARGS, &[]);
    let probe = support::attach(c.pid(), &["--json", "--cpu-hz", "97", "--alloc", "off"]);
    c.send("start");
    c.wait_stdout("done", LONG);
    drop(c.stdin.take());
    let (status, _, err) = c.finish(LONG);
    assert!(status.success(), "signals: {err}");
    let (status, out, err) = probe.finish(LONG);
    assert!(status.success(), "goprobe attach: {err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let attach_stacks = |signal: &str| match signal {
        "pagefaults" => report_stacks(&report, "page_faults", "minor"),
        _ => report_stacks(&report, "cpu", "samples"),
    };

    for &(signal, leaf, caller) in EXPECTED {
        let alone = check("attach", signal, &attach_stacks(signal), leaf, caller);
        for who in ["agent, first binary", "agent, second binary"] {
            let got = check(who, signal, &agent_stacks[&(who, signal)], leaf, caller);
            assert_eq!(got.0, alone.0, "{who} {signal} {leaf}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
