//! `cargo xtask bench`: builds an unstripped `cmd/go` with the newest Go release (a large Go
//! binary with DWARF, for blazesym), then runs goprobe-gopclntab's comparison bench
//! (gopclntab/benches/compare.rs), which writes target/bench/results.md; prints it.

use std::process::Command;

use anyhow::Result;

use crate::{cargo, exec, root, setup, thirdparty};

pub fn run() -> Result<()> {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let newest = setup::GO_VERSIONS.last().copied().unwrap_or_default();
    let unstripped = dir.join("go-unstripped");
    let t = root().join("target");
    // NB: cmd/go builds offline: its dependencies are vendored in GOROOT/src/cmd/vendor.
    exec(
        Command::new(setup::go_bin(newest))
            .current_dir(&dir)
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", t.join("go-cache"))
            .env("GOPATH", t.join("gopath"))
            .args(["build", "-o"])
            .arg(&unstripped)
            .arg("cmd/go"),
    )?;
    exec(
        cargo()
            .args([
                "bench",
                "--locked",
                "-p",
                "goprobe-gopclntab",
                "--bench",
                "compare",
            ])
            .env("GOPROBE_HUGO", thirdparty::hugo())
            .env("GOPROBE_BENCH_UNSTRIPPED", &unstripped)
            .env("GOPROBE_BENCH_GO", setup::go_bin(newest))
            .env("GOPROBE_BENCH_OUT", dir.join("results.md")),
    )
}
