//! Golden files for the profile encodings: a fixed profile (inlined frames, C frames, two
//! mappings, two sample types, a stack-less sample) rendered as folded stacks and as pprof, and
//! compared byte for byte with goprobe/tests/golden/. `GOPROBE_BLESS=1 cargo xtask test -- --test
//! output_golden` rewrites the files after an intended change; review the diff.
//!
//! The pprof golden file is also read back by the real `go tool pprof` of the newest test Go
//! release, so a blessed file is one Go's own tooling accepts.

use std::{path::PathBuf, process::Command, sync::Arc};

use goprobe::{
    output::{
        Location, MappingInfo, Profile, Sample,
        profile::Spec,
        {folded, pprof},
    },
    symbolize::{Frame, FrameKind},
};

fn frame(function: &str, file: &str, line: u32, inlined: bool, kind: FrameKind) -> Frame {
    Frame {
        function: function.into(),
        file: Some(file.into()),
        line,
        inlined,
        kind,
    }
}

fn go(function: &str, line: u32) -> Frame {
    frame(function, "/src/main.go", line, false, FrameKind::Go)
}

fn profile() -> Profile {
    let leaf: Arc<[Frame]> = vec![
        // An inlined call, then the function containing the address.
        frame("main.small", "/src/util.go", 7, true, FrameKind::Go),
        go("main.hotAlloc", 42),
    ]
    .into();
    let caller: Arc<[Frame]> = vec![go("main.main", 12)].into();
    let c: Arc<[Frame]> = vec![frame("malloc", "malloc.c", 3011, false, FrameKind::Native)].into();
    let loc = |address, frames: &Arc<[Frame]>| Location {
        address,
        frames: frames.clone(),
    };
    Profile {
        spec: Spec::alloc(),
        samples: vec![
            Sample {
                locations: vec![loc(0x401010, &leaf), loc(0x402020, &caller)],
                values: vec![3, 4096],
            },
            Sample {
                locations: vec![loc(0x7f00_0000_1000, &c), loc(0x402020, &caller)],
                values: vec![1, 64],
            },
            // Same names as the first: merged in folded output, separate in pprof.
            Sample {
                locations: vec![loc(0x401014, &leaf), loc(0x402020, &caller)],
                values: vec![2, 100],
            },
            Sample {
                locations: Vec::new(),
                values: vec![5, 500],
            },
        ],
        mappings: vec![
            MappingInfo {
                start: 0x400000,
                limit: 0x500000,
                file_offset: 0,
                path: "/app/server".into(),
                build_id: "abc/def".into(),
            },
            MappingInfo {
                start: 0x7f00_0000_0000,
                limit: 0x7f00_0010_0000,
                file_offset: 0x1000,
                path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                build_id: "0123456789abcdef".into(),
            },
        ],
        start_unix_ns: 1_795_456_000_000_000_000,
        duration_ns: 10_000_000_000,
    }
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with the golden file `name`, or rewrites it under `GOPROBE_BLESS=1`.
fn check(name: &str, actual: &[u8]) {
    let path = golden(name);
    if std::env::var_os("GOPROBE_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with GOPROBE_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from {} ({} vs {} bytes); if the change is intended, rerun with \
         GOPROBE_BLESS=1 and review the diff",
        path.display(),
        actual.len(),
        expected.len()
    );
}

#[test]
fn folded_matches_golden() {
    let p = profile();
    check("alloc.folded", folded::render(&p, 1).as_bytes());
    check("alloc-objects.folded", folded::render(&p, 0).as_bytes());
}

#[test]
fn pprof_matches_golden_and_go_reads_it() {
    let p = profile();
    check("alloc.pb", &pprof::encode(&p));
    let Some(go) = newest_go() else {
        panic!("GOPROBE_GO_BINS is not set: run these tests via `cargo xtask test`");
    };
    let dir = std::env::temp_dir().join(format!("goprobe-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("alloc.pb.gz");
    std::fs::write(&file, pprof::encode_gz(&p)).expect("write profile");
    let out = Command::new(&go)
        .args(["tool", "pprof", "-raw"])
        .arg(&file)
        .output()
        .expect("run go tool pprof");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "go tool pprof -raw failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sample types, the inlined frame with its line, the C frame and both build ids.
    for want in [
        "alloc_objects/count",
        "alloc_space/bytes[dflt]",
        "main.small /src/util.go:7:0",
        "main.hotAlloc /src/main.go:42:0",
        "malloc malloc.c:3011:0",
        "abc/def",
        "0123456789abcdef",
    ] {
        assert!(
            text.contains(want),
            "no {want:?} in pprof -raw output:\n{text}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The `go` of the newest Go release the tests use (`GOPROBE_GO_BINS`, set by `cargo xtask test`).
fn newest_go() -> Option<PathBuf> {
    let bins = std::env::var("GOPROBE_GO_BINS").ok()?;
    bins.rsplit(':')
        .find_map(|kv| kv.split_once('='))
        .map(|(_, p)| PathBuf::from(p))
}
