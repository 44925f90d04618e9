//! `cargo xtask bench`: builds an unstripped `cmd/go` with the newest Go release (a large Go
//! binary with DWARF, for blazesym), then runs goprobe-gopclntab's comparison bench
//! (gopclntab/benches/compare.rs), which writes target/bench/results.md; then goprobe's process
//! symbolizer on a live hugo server (agent/examples/symbolize_bench.rs), appended to it.

use std::process::Command;

use anyhow::Result;

use crate::{cargo, exec, root, setup, thirdparty};

pub fn run() -> Result<()> {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    // `GOPROBE_BENCH_ONLY=alloc`: only the allocation-probe case (xtask/src/bench_alloc.rs).
    if std::env::var("GOPROBE_BENCH_ONLY").as_deref() == Ok("alloc") {
        return crate::bench_alloc::run(&dir);
    }
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
    )?;
    process_symbolizer(&dir)?;
    crate::bench_alloc::run(&dir)
}

/// The agent's `Symbolizer` (memo over the gopclntab) on a live hugo: what every signal pays.
fn process_symbolizer(dir: &std::path::Path) -> Result<()> {
    exec(cargo().args([
        "build",
        "--release",
        "--locked",
        "-p",
        "goprobe",
        "--example",
        "symbolize_bench",
    ]))?;
    let site = dir.join("hugo-site");
    if !site.exists() {
        exec(
            Command::new(thirdparty::hugo())
                .args(["new", "site"])
                .arg(&site),
        )?;
    }
    let mut hugo = Command::new(thirdparty::hugo())
        .args([
            "server",
            "--bind",
            "127.0.0.1",
            "--port",
            "19399",
            "--source",
        ])
        .arg(&site)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = Command::new(root().join("target/release/examples/symbolize_bench"))
        .arg(hugo.id().to_string())
        .output();
    let _ = hugo.kill();
    let _ = hugo.wait();
    let out = out?;
    anyhow::ensure!(
        out.status.success(),
        "symbolize_bench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let section = format!(
        "\n## goprobe's process symbolizer on a live hugo server\n\n\
         Cold: a new `Symbolizer`, first address (maps, build id, table). Fill: 10,000 distinct \
         pcs, first time each. Warm: the same pcs again, 100 rounds (the memo every signal \
         hits).\n\n\
         | process | cold | fill | warm | frames per round |\n|---|---|---|---|---|\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let results = dir.join("results.md");
    let mut text = std::fs::read_to_string(&results).unwrap_or_default();
    text.push_str(&section);
    std::fs::write(&results, &text)?;
    print!("{section}");
    Ok(())
}
