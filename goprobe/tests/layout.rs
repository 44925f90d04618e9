//! The per-release runtime layout table agrees with the DWARF of real binaries built by each
//! Go release: a new Go release is a table edit plus this test.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use goprobe::analysis::{
    binary::{elf::ElfInfo, version::GoVersion},
    layout::{self, dwarf::DwarfFields},
};

fn check(go: &str) {
    let data = std::fs::read(support::testprog("gcstress", go)).unwrap();
    let elf = ElfInfo::parse(&data, &[]).unwrap();
    let version = GoVersion::parse(elf.go_version.as_deref().unwrap()).unwrap();
    assert!(
        support::is_release(&version.raw, go),
        "{version} is not Go {go}"
    );
    let table = layout::for_minor(version.minor).unwrap();
    let fields = DwarfFields::read(&data)
        .unwrap()
        .expect("test programs keep their DWARF");
    // NB: workType.pauseStart exists only up to Go 1.21 (removed in 1.22 src/runtime/mgc.go);
    // every other field goprobe reads exists in every supported release: 7 for the pauses, 10
    // per cycle (workType tSweepTerm…tEnd, heap0…heap2; gcControllerState gcPercent,
    // memoryLimit, lastHeapGoal), 3 for the goroutine count (schedt ngsys, gFree; p gFree); 5
    // for the span-refill allocation sampler (mcache alloc, tinyAllocs; mspan allocCount,
    // allocCountBeforeCache, elemsize).
    let expected = if table.work_pause_start.is_some() {
        8
    } else {
        7
    } + 10
        + 3
        + 5;
    assert_eq!(
        fields.len(),
        expected,
        "Go {go}: fields found in DWARF: {fields:?}"
    );
    assert_eq!(
        fields.apply(table),
        table,
        "Go {go}: the table disagrees with DWARF {fields:?}"
    );
    assert!(
        table.sched.verified,
        "Go {go}: a tested release has verified goroutine-count offsets"
    );
    assert!(
        table.alloc.complete().is_some(),
        "Go {go}: a tested release has every allocation offset in its table"
    );
    assert!(
        table.cycle.gcc_last_heap_goal.is_some(),
        "Go {go}: a tested release has a verified lastHeapGoal offset"
    );
}

#[test]
fn go1_19_table_matches_dwarf() {
    check("1.19");
}

#[test]
fn go1_21_table_matches_dwarf() {
    check("1.21.13");
}

#[test]
fn go1_23_table_matches_dwarf() {
    check("1.23.9");
}

#[test]
fn go1_25_table_matches_dwarf() {
    check("1.25.5");
}

#[test]
fn go1_27_table_matches_dwarf() {
    check("1.27.3");
}
