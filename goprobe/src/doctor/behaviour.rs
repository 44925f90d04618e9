//! How a Go process behaved over doctor's window: GC rate and pause share, mark assist share
//! of its CPU, allocation rate, heap against goal and limit, CPU throttling and whether GC
//! pauses fell into throttled periods, the goroutine count's trend and the page-fault rate.
//! Most numbers come from goprobe's [`Report`] of the window; CPU time, page faults and the
//! cgroup's throttling counters from /proc and cgroupfs, sampled by a [`Sampler`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    analysis::process::cgroup::{self, CpuStat},
    report::Report,
};

/// One reading of the process and its cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub t_unix_ns: i64,
    pub cpu_stat: Option<CpuStat>,
    /// utime + stime of the process, ns.
    pub cpu_ns: Option<u64>,
    /// minflt + majflt of the process.
    pub faults: Option<u64>,
}

impl Sample {
    /// Reads process `pid` (in the cgroups `lines`) now.
    pub fn read(pid: u32, lines: &[cgroup::CgroupLine]) -> Self {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let fields = stat.as_deref().and_then(stat_fields);
        // SAFETY: sysconf has no preconditions.
        let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
            .unwrap_or(100)
            .max(1);
        Self {
            t_unix_ns: now_unix_ns(),
            cpu_stat: cgroup::cpu_stat(lines),
            cpu_ns: fields.map(|f| (f.utime + f.stime) * (1_000_000_000 / hz)),
            faults: fields.map(|f| f.minflt + f.majflt),
        }
    }
}

fn now_unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct StatFields {
    minflt: u64,
    majflt: u64,
    utime: u64,
    stime: u64,
}

/// NB: /proc/<pid>/stat fields after the `(comm)`, which may hold spaces: state is field 3,
/// minflt 10, majflt 12, utime 14, stime 15 (proc(5)).
fn stat_fields(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(StatFields {
        minflt: n(10)?,
        majflt: n(12)?,
        utime: n(14)?,
        stime: n(15)?,
    })
}

/// Samples a process every `interval` on a thread until [`Sampler::stop`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(pid: u32, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let lines = cgroup::of_process(pid);
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                samples.push(Sample::read(pid, &lines));
                thread::sleep(interval);
            }
            samples.push(Sample::read(pid, &lines));
            samples
        });
        Self { stop, handle }
    }

    /// Stops sampling and returns the samples, oldest first.
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// What the process did over the window.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Behaviour {
    /// The window: from all probes attached to detach.
    pub window_start_unix_ns: i64,
    pub window_end_unix_ns: i64,
    pub window_s: f64,
    pub gc_cycles: u64,
    pub gc_cycles_per_s: f64,
    /// Stop-the-world time (GC and other) over the window.
    pub pause_ns: u64,
    /// `pause_ns` as a share of wall time (0–1).
    pub pause_share: f64,
    pub max_pause_ns: u64,
    /// Process CPU time (user + system) over the window.
    pub process_cpu_ns: Option<u64>,
    /// Goroutine time in mark assists.
    pub assist_ns: u64,
    /// `assist_ns` as a share of `process_cpu_ns` (0–1).
    pub assist_share: Option<f64>,
    pub alloc_bytes_per_s: Option<f64>,
    /// Heap marked live, and the goal, at the window's last cycle.
    pub heap_marked_bytes: Option<u64>,
    pub heap_goal_bytes: Option<u64>,
    pub throttling: Option<Throttling>,
    pub goroutines: Option<GoroutineTrend>,
    pub page_faults_per_s: Option<f64>,
}

/// CPU throttling of the process' cgroup over the window.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    /// `throttled_periods / periods` (0–1).
    pub throttled_share: f64,
    pub throttled_ns: u64,
    /// Stop-the-world pauses in the window, and how many overlapped a sampling interval in
    /// which the cgroup was throttled.
    pub pauses: u64,
    pub pauses_throttled: u64,
}

/// The goroutine count over the window.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GoroutineTrend {
    pub first: u64,
    pub last: u64,
    pub max: u64,
    /// (last − first) / seconds between the two samples.
    pub growth_per_s: f64,
    /// Share of consecutive samples that did not go down (0–1): a leak only rises.
    pub rising_share: f64,
    /// The creation site with the most goroutines created in the window, leaf (the function
    /// with the `go` statement) first, and its count.
    pub top_site: Option<Vec<String>>,
    pub top_site_count: u64,
}

impl Behaviour {
    /// The behaviour in `report`'s window, with `samples` taken around it.
    pub fn from_window(report: &Report, samples: &[Sample]) -> Self {
        let (w0, w1) = (report.window.start_unix_ns, report.window.end_unix_ns);
        let window_s = ((w1 - w0) as f64 / 1e9).max(1e-9);
        let gc = &report.gc;
        let pauses: Vec<(i64, u64)> = gc
            .cycles
            .iter()
            .flat_map(|c| &c.stw)
            .chain(&gc.other_stw)
            .map(|s| (s.start_unix_ns, s.duration_ns))
            .collect();
        let pause_ns: u64 = pauses.iter().map(|p| p.1).sum();
        // Samples inside the window (the first one at or before its start).
        let first = samples.iter().rposition(|s| s.t_unix_ns <= w0).unwrap_or(0);
        let last = samples
            .iter()
            .position(|s| s.t_unix_ns >= w1)
            .unwrap_or(samples.len().saturating_sub(1));
        let inside = samples.get(first..=last).unwrap_or(&[]);
        let delta = |f: fn(&Sample) -> Option<u64>| -> Option<u64> {
            let (a, b) = (f(inside.first()?)?, f(inside.last()?)?);
            Some(b.saturating_sub(a))
        };
        let process_cpu_ns = delta(|s| s.cpu_ns).filter(|_| inside.len() >= 2);
        let span_s = match (inside.first(), inside.last()) {
            (Some(a), Some(b)) if b.t_unix_ns > a.t_unix_ns => {
                Some((b.t_unix_ns - a.t_unix_ns) as f64 / 1e9)
            }
            _ => None,
        };
        let assist_ns = gc.assist.total_ns;
        let last_cycle = gc
            .cycles
            .iter()
            .rev()
            .find(|c| c.heap_marked_bytes.is_some());
        Self {
            window_start_unix_ns: w0,
            window_end_unix_ns: w1,
            window_s,
            gc_cycles: gc.cycles.len() as u64,
            gc_cycles_per_s: gc.cycles.len() as f64 / window_s,
            pause_ns,
            pause_share: pause_ns as f64 / (window_s * 1e9),
            max_pause_ns: pauses.iter().map(|p| p.1).max().unwrap_or(0),
            process_cpu_ns,
            assist_ns,
            assist_share: process_cpu_ns
                .filter(|&c| c > 0)
                .map(|c| assist_ns as f64 / c as f64),
            alloc_bytes_per_s: report
                .alloc
                .as_ref()
                .filter(|a| a.unavailable.is_none())
                .map(|a| a.bytes as f64 / window_s),
            heap_marked_bytes: last_cycle.and_then(|c| c.heap_marked_bytes),
            heap_goal_bytes: last_cycle.and_then(|c| c.heap_goal_bytes),
            throttling: throttling(inside, &pauses),
            goroutines: report.goroutines.as_ref().and_then(goroutine_trend),
            page_faults_per_s: delta(|s| s.faults).zip(span_s).map(|(n, s)| n as f64 / s),
        }
    }
}

/// Throttling between the first and last sample, and the pauses `(start, duration)` that
/// overlap a sampling interval in which `nr_throttled` grew.
fn throttling(samples: &[Sample], pauses: &[(i64, u64)]) -> Option<Throttling> {
    let stats: Vec<(i64, CpuStat)> = samples
        .iter()
        .filter_map(|s| Some((s.t_unix_ns, s.cpu_stat?)))
        .collect();
    let (first, last) = (stats.first()?.1, stats.last()?.1);
    let periods = last.nr_periods.saturating_sub(first.nr_periods);
    let throttled_periods = last.nr_throttled.saturating_sub(first.nr_throttled);
    let throttled: Vec<(i64, i64)> = stats
        .windows(2)
        .filter(|w| w[1].1.nr_throttled > w[0].1.nr_throttled)
        .map(|w| (w[0].0, w[1].0))
        .collect();
    let pauses_throttled = pauses
        .iter()
        .filter(|&&(start, d)| {
            let end = start + d as i64;
            throttled.iter().any(|&(a, b)| start < b && end > a)
        })
        .count() as u64;
    Some(Throttling {
        periods,
        throttled_periods,
        throttled_share: if periods > 0 {
            throttled_periods as f64 / periods as f64
        } else {
            0.0
        },
        throttled_ns: last.throttled_ns.saturating_sub(first.throttled_ns),
        pauses: pauses.len() as u64,
        pauses_throttled,
    })
}

fn goroutine_trend(g: &crate::report::Goroutines) -> Option<GoroutineTrend> {
    let (a, b) = (g.samples.first()?, g.samples.last()?);
    let span_s = (b.t_unix_ns - a.t_unix_ns) as f64 / 1e9;
    let steps = g.samples.windows(2).count();
    let rising = g
        .samples
        .windows(2)
        .filter(|w| w[1].count >= w[0].count)
        .count();
    let top = g.creation_sites.iter().max_by_key(|s| s.count);
    Some(GoroutineTrend {
        first: a.count,
        last: b.count,
        max: g.max,
        growth_per_s: if span_s > 0.0 {
            (b.count as f64 - a.count as f64) / span_s
        } else {
            0.0
        },
        rising_share: if steps > 0 {
            rising as f64 / steps as f64
        } else {
            0.0
        },
        top_site: top.map(|s| s.stack.clone()),
        top_site_count: top.map_or(0, |s| s.count),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 120 0 3 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(
            stat_fields(stat),
            Some(StatFields {
                minflt: 120,
                majflt: 3,
                utime: 250,
                stime: 50
            })
        );
        assert_eq!(stat_fields("42 (x) S 1"), None);
    }

    #[test]
    fn pauses_in_throttled_intervals() {
        let s = |t: i64, periods: u64, throttled: u64| Sample {
            t_unix_ns: t,
            cpu_stat: Some(CpuStat {
                nr_periods: periods,
                nr_throttled: throttled,
                throttled_ns: throttled * 1000,
            }),
            ..Sample::default()
        };
        // Throttled only between t=100 and t=200.
        let samples = [s(0, 10, 0), s(100, 20, 0), s(200, 30, 5), s(300, 40, 5)];
        let pauses = [(50, 10), (150, 10), (195, 20), (250, 10)];
        let t = throttling(&samples, &pauses).unwrap();
        assert_eq!(t.periods, 30);
        assert_eq!(t.throttled_periods, 5);
        assert_eq!(t.pauses, 4);
        assert_eq!(t.pauses_throttled, 2);
        assert!((t.throttled_share - 5.0 / 30.0).abs() < 1e-9);
        assert_eq!(throttling(&[Sample::default()], &pauses), None);
    }
}
