//! Refreshing a process' metrics [`Snapshot`](super::metrics::Snapshot) from its signals'
//! records and the target's memory.

use std::time::{Duration, Instant};

use super::{
    TargetMetrics,
    topn::{TopN, charged_function},
};
use crate::{
    analysis::{Target, process::cgroup},
    signal::{Reading, Site, cost::Skipped},
};

/// Per-stack maps are read and named at most this often: a scrape every second must not
/// symbolize every second.
const SITES_EVERY: Duration = Duration::from_secs(5);
/// The cgroup's CPU quota is re-read this often (it can change while the process runs).
const CGROUP_EVERY: Duration = Duration::from_secs(30);

/// What goes into one refresh.
pub struct Inputs<'a> {
    pub target: &'a Target,
    /// The last goroutine count read, if any.
    pub goroutines: Option<u64>,
    /// As report.json counts them: kernel drops, unreadable pauses, full SITES map.
    pub lost_events: u64,
    /// Stacks the kernel side could not capture.
    pub lost_stacks: u64,
    /// Program runs each signal's per-second budget skipped.
    pub skipped: Skipped,
    /// Kernel memory of goprobe's BPF maps, bytes.
    pub bpf_map_bytes: u64,
    /// Stacks deleted from the kernel's stack map as unreferenced, since start.
    pub stacks_evicted: u64,
    /// Whether allocations are counted exactly (`--alloc exact`), not estimated.
    pub alloc_exact: bool,
    /// Reads the signals (allocations, assists, page faults) when the per-stack series are due.
    pub read: &'a mut dyn FnMut() -> Reading,
}

/// Keeps the bounded-cardinality series of one process between refreshes.
#[derive(Debug, Default)]
pub struct Refresher {
    assist: TopN,
    alloc_bytes: TopN,
    alloc_objects: TopN,
    sites_at: Option<Instant>,
    cgroup_at: Option<Instant>,
    /// Page faults absorbed so far (minor, major), once [`Self::absorb`] was called.
    absorbed: Option<(Option<(u64, u64)>, u64)>,
}

impl Refresher {
    /// Updates `metrics`' snapshot; per-stack totals only every few seconds unless `all`
    /// (the last refresh before the final export).
    pub fn refresh(&mut self, metrics: &TargetMetrics, mut i: Inputs<'_>, all: bool) {
        let pid = i.target.process.pid;
        let now = Instant::now();
        let due = |at: Option<Instant>, every| all || at.is_none_or(|t| now - t >= every);
        let gomaxprocs = i
            .target
            .vars
            .gomaxprocs
            .and_then(|a| i.target.process.read_u32(a).ok())
            .map(u64::from);
        let cpu_limit = due(self.cgroup_at, CGROUP_EVERY).then(|| {
            self.cgroup_at = Some(now);
            cgroup::cpu_limit(&cgroup::of_process(pid))
        });
        let sites = match self.absorbed {
            // The agent: the series grow by what each take absorbed.
            Some(absorbed) => Some(absorbed),
            None => due(self.sites_at, SITES_EVERY).then(|| {
                self.sites_at = Some(now);
                self.read_sites(&mut i)
            }),
        };
        let (cpu, rss) = own_usage();
        metrics.update(|s| {
            s.goroutines = i.goroutines.or(s.goroutines);
            s.gomaxprocs = gomaxprocs.or(s.gomaxprocs);
            if let Some(l) = cpu_limit {
                s.cpu_limit = l;
            }
            if let Some((page_faults, samples)) = sites {
                s.page_faults = page_faults;
                s.page_fault_samples = samples;
                s.assist_seconds = series(&self.assist);
                s.alloc_bytes = series(&self.alloc_bytes);
                s.alloc_objects = series(&self.alloc_objects);
                s.alloc_exact = i.alloc_exact;
            }
            s.lost_events = i.lost_events;
            s.lost_stacks = i.lost_stacks;
            s.budget_skipped = i.skipped.by_signal().collect();
            s.bpf_map_bytes = i.bpf_map_bytes;
            s.stacks_evicted = i.stacks_evicted;
            s.agent_cpu_seconds = cpu;
            s.agent_rss_bytes = rss;
            s.targets = 1;
        });
    }

    /// Adds `delta`, what one take of the per-stack rows counted (the agent), to the function
    /// series and the page fault totals; from then on [`Self::refresh`] publishes these and no
    /// longer reads.
    pub fn absorb(&mut self, delta: &Reading) {
        if let Some(a) = &delta.assist {
            self.assist
                .add(by_function(&a.by_stack, |&ns| ns as f64 * 1e-9));
        }
        if let Some(a) = delta.alloc.as_ref().filter(|a| a.unavailable.is_none()) {
            self.alloc_bytes
                .add(by_function(&a.sites, |c| c.bytes as f64));
            self.alloc_objects
                .add(by_function(&a.sites, |c| c.objects as f64));
        }
        // The totals are the kernel's own counts since attach (signal/pagefault.rs), not a
        // take's: the latest replaces the one before.
        let (before, samples) = self.absorbed.unwrap_or_default();
        let now = delta.page_faults.as_ref().map(|p| p.totals());
        self.absorbed = Some((
            now.map(|t| (t.minor, t.major)).or(before),
            samples + now.map_or(0, |t| t.samples),
        ));
    }

    /// Folds the per-stack records into the function series; returns the page fault totals
    /// (exact) and the samples the stacks were estimated from.
    fn read_sites(&mut self, i: &mut Inputs<'_>) -> (Option<(u64, u64)>, u64) {
        let reading = (i.read)();
        if let Some(a) = &reading.assist {
            self.assist
                .update(by_function(&a.by_stack, |&ns| ns as f64 * 1e-9));
        }
        if let Some(a) = reading.alloc.as_ref().filter(|a| a.unavailable.is_none()) {
            self.alloc_bytes
                .update(by_function(&a.sites, |c| c.bytes as f64));
            self.alloc_objects
                .update(by_function(&a.sites, |c| c.objects as f64));
        }
        match reading.page_faults {
            Some(p) => {
                let t = p.totals();
                (Some((t.minor, t.major)), t.samples)
            }
            None => (None, 0),
        }
    }
}

/// `sites`' values summed by the function each is charged to.
fn by_function<V>(sites: &[Site<V>], value: impl Fn(&V) -> f64) -> Vec<(String, f64)> {
    sum_by_key(
        sites
            .iter()
            .map(|s| {
                (
                    charged_function(&s.stack.names()).to_owned(),
                    value(&s.value),
                )
            })
            .collect(),
    )
}

fn sum_by_key(v: Vec<(String, f64)>) -> Vec<(String, f64)> {
    let mut m: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for (k, x) in v {
        *m.entry(k).or_default() += x;
    }
    m.into_iter().collect()
}

fn series(t: &TopN) -> Vec<(String, f64)> {
    t.series().map(|(f, v)| (f.to_owned(), v)).collect()
}

/// goprobe's CPU time (seconds) and resident memory (bytes) now.
pub fn own_usage() -> (f64, u64) {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    let cpu = secs(ru.ru_utime) + secs(ru.ru_stime);
    // /proc/self/statm: size resident shared … in pages.
    let rss_pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    // SAFETY: plain sysconf query.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    (cpu, rss_pages * page)
}
