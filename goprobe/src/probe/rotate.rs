//! Keeping the kernel's per-stack state bounded however long the agent runs: the double-buffered
//! per-stack rows are taken one generation at a time ([`Probes::take`], see
//! `goprobe_common::generation`), and stacks no row has referenced for a while are deleted from
//! `STACKS` ([`Probes::evict_stacks`]).
//!
//! `goprobe attach` never takes: its window keeps every row in the kernel (bounded by the maps'
//! sizes, what does not fit counted in `lost_events`/`lost_stacks`) and reads them at the end.

use std::collections::{HashMap as StdHashMap, HashSet};

use aya::{
    Pod,
    maps::{Array, HashMap, MapError},
};
use goprobe_common::{
    AllocSampleKey, AssistKey, CallerStack, CycleKey, GoroutineKey, SiteCounts, SiteKey,
    StackFrames,
};

use super::Probes;

/// Takes after which a stack that no row referenced is deleted from `STACKS`: a row's stack
/// may be looked up by user space one take after the row was counted (its generation is taken
/// then), so two takes with no reference mean nobody will ask for it.
const UNREFERENCED_TAKES: u64 = 2;

/// The least time between a flip and the take of the generation it left: a program runs for
/// microseconds, so one that read the old generation has written by then.
const MIN_FLIP_AGE: std::time::Duration = std::time::Duration::from_millis(10);

/// Assist cycles kept per process in `ASSIST_BY_CYCLE` (the agent reads none; an assist in
/// progress may still add to the previous cycle).
const ASSIST_CYCLES_KEPT: u32 = 2;

/// What one take did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TakeStats {
    /// Rows read and deleted (all per-stack maps).
    pub rows: u64,
}

/// User-space state of the rotation: the generation written now, the take count, and when each
/// stack id was last referenced (one entry per `STACKS` entry, so bounded by it).
#[derive(Debug, Default)]
pub(super) struct Rotation {
    /// Whether rows are taken ([`Probes::take`] was called once): per-stack reads then serve
    /// the last take's rows.
    pub(super) on: bool,
    generation: u32,
    flipped_at: Option<std::time::Instant>,
    takes: u64,
    last_referenced: StdHashMap<u64, u64>,
    /// Stacks deleted from `STACKS` since load.
    pub(super) evicted: u64,
}

impl Probes {
    /// Whether per-stack reads serve the last take's rows (an interval, `goprobe agent`) rather
    /// than everything since attach.
    pub fn rows_taken(&self) -> bool {
        self.rotation.on
    }
}

/// The rows of generation `generation` of per-stack hash map `map`, read and deleted, by process.
fn take_rows<K: Pod + 'static, V: Pod + 'static>(
    probes: &mut Probes,
    map: &'static str,
    generation: u32,
    gen_of: fn(&K) -> u32,
    tgid: fn(&K) -> u32,
) -> Result<super::targets::Rows<K, V>, MapError> {
    let mut rows: super::targets::Rows<K, V> = StdHashMap::new();
    let Some(m) = probes.ebpf.map_mut(map) else {
        return Ok(rows);
    };
    let mut m = HashMap::<_, K, V>::try_from(m)?;
    let quiet: Vec<(K, V)> = m
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, _)| gen_of(k) == generation)
        .collect();
    for (k, v) in quiet {
        // NB: no program writes this generation since the previous flip, one take ago (a
        // program reads `GENERATION` once and runs for microseconds), so nothing is added
        // between this read and the delete.
        let _ = m.remove(&k);
        rows.entry(tgid(&k)).or_default().push((k, v));
    }
    Ok(rows)
}

impl Probes {
    /// Takes the per-stack rows of the generation no program writes now (read, deleted, served
    /// to the per-stack reads — [`Self::sites`], [`Self::alloc_samples`],
    /// [`Self::assist_totals`] — until the next take), then flips the generation. Each row is
    /// served by exactly one take: a session that reads after each take sees each count once.
    pub fn take(&mut self) -> Result<TakeStats, MapError> {
        self.rotation.on = true;
        if let Some(at) = self.rotation.flipped_at {
            // Two takes in a row (shutdown): the programs that read the old generation just
            // before the last flip finish first.
            std::thread::sleep(MIN_FLIP_AGE.saturating_sub(at.elapsed()));
        }
        let quiet = self.rotation.generation ^ 1;
        let sites =
            take_rows::<SiteKey, SiteCounts>(self, "SITES", quiet, |k| k.generation, |k| k.tgid)?;
        let alloc = take_rows::<AllocSampleKey, u64>(
            self,
            "ALLOC_SAMPLES",
            quiet,
            |k| k.generation,
            |k| k.tgid,
        )?;
        let assist = take_rows::<AssistKey, u64>(
            self,
            "ASSIST_BY_STACK",
            quiet,
            |k| k.generation,
            |k| k.tgid,
        )?;
        fn count<T>(r: &StdHashMap<u32, Vec<T>>) -> u64 {
            r.values().map(Vec::len).sum::<usize>() as u64
        }
        let stats = TakeStats {
            rows: count(&sites) + count(&alloc) + count(&assist),
        };
        {
            let now = std::time::Instant::now();
            let mut cache = self.snapshots.borrow_mut();
            cache.insert("SITES", (now, Box::new(sites)));
            cache.insert("ALLOC_SAMPLES", (now, Box::new(alloc)));
            cache.insert("ASSIST_BY_STACK", (now, Box::new(assist)));
        }
        self.prune_assist_cycles();
        if let Some(m) = self.ebpf.map_mut("GENERATION") {
            let mut a = Array::<_, u32>::try_from(m)?;
            a.set(0, quiet, 0)?;
            self.rotation.generation = quiet;
            self.rotation.flipped_at = Some(std::time::Instant::now());
        }
        self.rotation.takes += 1;
        Ok(stats)
    }

    /// Deletes the `ASSIST_BY_CYCLE` rows of all but each process' last cycles.
    fn prune_assist_cycles(&mut self) {
        let Some(m) = self.ebpf.map_mut("ASSIST_BY_CYCLE") else {
            return;
        };
        let Ok(mut m) = HashMap::<_, CycleKey, u64>::try_from(m) else {
            return;
        };
        let keys: Vec<CycleKey> = m.keys().filter_map(Result::ok).collect();
        let mut last: StdHashMap<u32, u32> = StdHashMap::new();
        for k in &keys {
            let e = last.entry(k.tgid).or_insert(k.cycle);
            *e = (*e).max(k.cycle);
        }
        for k in keys {
            if k.cycle.saturating_add(ASSIST_CYCLES_KEPT) <= last[&k.tgid] {
                let _ = m.remove(&k);
            }
        }
    }

    /// The stack ids the kernel's rows and pending callers reference now.
    fn referenced_stacks(&self) -> HashSet<u64> {
        let mut ids: HashSet<u64> = HashSet::new();
        let mut add = |s: &CallerStack| {
            if let Ok(id) = u64::try_from(s.id) {
                ids.insert(id);
            }
        };
        macro_rules! keys_of {
            ($ty:ident<$k:ty, $v:ty>, $map:literal, $stack:expr) => {
                if let Some(m) = self.ebpf.map($map)
                    && let Ok(m) = $ty::<_, $k, $v>::try_from(m)
                {
                    let stack: fn(&$k) -> &CallerStack = $stack;
                    for k in m.keys().filter_map(Result::ok) {
                        add(stack(&k));
                    }
                }
            };
        }
        keys_of!(HashMap<SiteKey, SiteCounts>, "SITES", |k| &k.stack);
        keys_of!(HashMap<AllocSampleKey, u64>, "ALLOC_SAMPLES", |k| &k.stack);
        keys_of!(HashMap<AssistKey, u64>, "ASSIST_BY_STACK", |k| &k.stack);
        for map in ["STW_CALLERS", "GC_START_CALLERS", "ASSIST_CALLERS"] {
            if let Some(m) = self.ebpf.map(map)
                && let Ok(m) = HashMap::<_, GoroutineKey, CallerStack>::try_from(m)
            {
                for (_, s) in m.iter().filter_map(Result::ok) {
                    add(&s);
                }
            }
        }
        ids
    }

    /// Deletes from `STACKS` the stacks no row or pending caller has referenced for
    /// [`UNREFERENCED_TAKES`] takes; returns how many. Call it after the last take's rows were
    /// named: their stacks may be among those deleted.
    pub fn evict_stacks(&mut self) -> usize {
        let referenced = self.referenced_stacks();
        let now = self.rotation.takes;
        let Some(m) = self.ebpf.map_mut("STACKS") else {
            return 0;
        };
        let Ok(mut m) = HashMap::<_, u64, StackFrames>::try_from(m) else {
            return 0;
        };
        let present: HashSet<u64> = m.keys().filter_map(Result::ok).collect();
        let seen = &mut self.rotation.last_referenced;
        seen.retain(|id, _| present.contains(id));
        let mut evicted = 0;
        for id in present {
            let last = seen.entry(id).or_insert(now);
            if referenced.contains(&id) {
                *last = now;
            } else if now.saturating_sub(*last) >= UNREFERENCED_TAKES && m.remove(&id).is_ok() {
                seen.remove(&id);
                evicted += 1;
            }
        }
        self.rotation.evicted += evicted as u64;
        evicted
    }

    /// Stacks deleted from `STACKS` since the probes were loaded.
    pub fn stacks_evicted(&self) -> u64 {
        self.rotation.evicted
    }

    /// How many takes there were.
    pub fn takes(&self) -> u64 {
        self.rotation.takes
    }
}
