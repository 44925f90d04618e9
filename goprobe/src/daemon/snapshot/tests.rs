use super::{window::*, *};
use crate::report::sites::tests::stack;
use crate::signal::{Site, alloc::AllocCounts, gc::Stw};

fn site<V>(name: &str, value: V) -> Site<V> {
    Site {
        stack: stack(name),
        value,
    }
}

#[test]
fn sites_count_what_happened_since_the_baseline() {
    let base = [
        site("main.a", 100u64),
        site("main.b", 5),
        site("main.gone", 7),
    ];
    // main.a counted under two stacks that name the same frames; main.c is new.
    let now = [
        site("main.a", 90u64),
        site("main.a", 30),
        site("main.b", 5),
        site("main.c", 4),
    ];
    let mut d: Vec<(Vec<String>, u64)> = minus(&now, &base)
        .into_iter()
        .map(|s| (s.stack.names(), s.value))
        .collect();
    d.sort();
    assert_eq!(
        d,
        [
            (vec!["main.a".to_owned()], 20),
            (vec!["main.c".to_owned()], 4)
        ]
    );
    let alloc = minus(
        &[site(
            "main.a",
            AllocCounts {
                bytes: 10,
                objects: 3,
            },
        )],
        &[site(
            "main.a",
            AllocCounts {
                bytes: 12,
                objects: 1,
            },
        )],
    );
    assert_eq!(
        alloc[0].value,
        AllocCounts {
            bytes: 0,
            objects: 2
        },
        "never below zero"
    );
}

#[test]
fn the_rate_limit_allows_a_burst_then_refills() {
    let mut r = Recorder {
        baselines: VecDeque::new(),
        goroutines: VecDeque::new(),
        tokens: 3.0,
        tokens_at: Instant::now(),
    };
    assert!((0..3).all(|_| r.allow(3)));
    assert!(!r.allow(3));
    // 20 s later one token is back (3 a minute).
    r.tokens_at -= Duration::from_secs(20);
    assert!(r.allow(3));
    assert!(!r.allow(3));
    assert!(!r.allow(0), "0 a minute: never");
}

#[test]
fn cpu_time_of_a_live_process() {
    let t0 = cpu_ns(std::process::id()).unwrap();
    let mut x = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(50) {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    let t1 = cpu_ns(std::process::id()).unwrap();
    assert!(t1 > t0, "{t0} {t1}");
    assert_eq!(cpu_ns(u32::MAX), None);
}

#[test]
fn a_cycle_ends_at_work_t_end_else_its_last_pause() {
    let stw = |start, duration_ns| Stw {
        reason: "GCMarkTerm".into(),
        start_mono_ns: start,
        duration_ns,
        stopping_ns: None,
        caller: goprobe_common::CallerStack::NONE,
    };
    let mut c = Cycle {
        cycle: 1,
        trigger: "heap".into(),
        pause_ns: 30,
        stw: vec![stw(100, 10), stw(500, 20)],
        details: Default::default(),
        trigger_caller: goprobe_common::CallerStack::NONE,
    };
    assert_eq!(cycle_end(&c), 520);
    c.details.end_mono_ns = Some(600);
    assert_eq!(cycle_end(&c), 600);
}
