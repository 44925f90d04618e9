//! goprobe's developer commands: `cargo xtask setup|build|demo|test|ci|fuzz|bench|structure`.
//!
//! The only place that knows how to drive the toolchain: the nightly compiler and bpf-linker for
//! the eBPF crate, the Go toolchains the tests build their programs with.

mod bench;
mod bench_alloc;
mod bench_cost;
mod bench_goroutines;
mod bench_overhead;
mod bench_support;
mod demo;
mod install;
mod setup;
mod structure;
mod thirdparty;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, test and demo goprobe")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what this machine lacks (idempotent; a no-op when all is there).
    Setup,
    /// Setup, then a release build: target/release/goprobe.
    Build,
    /// Build, start the bundled demo Go service, attach goprobe to it and print the report.
    Demo {
        /// Seconds to watch the demo.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Setup, then every test tier: unit tests and root integration tests with real BPF.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// fmt check, clippy -D warnings (host crates and the eBPF crate), `structure`, `test`, then
    /// 30 s of `fuzz`.
    Ci,
    /// Fuzz the .gopclntab reader (gopclntab/fuzz, cargo-fuzz on nightly; installs cargo-fuzz
    /// if missing). New inputs go to target/fuzz/corpus/pclntab; crashes to
    /// gopclntab/fuzz/artifacts/.
    Fuzz {
        /// How long to run.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
    },
    /// Benchmarks of the .gopclntab reader against blazesym and `go tool addr2line`; results
    /// in target/bench/results.md.
    Bench,
    /// Checks goprobe's layers from its source: each top-level module uses only lower-ranked
    /// ones (the table in xtask/src/structure.rs), no cycles between modules or files.
    Structure,
    /// The soak test (goprobe/tests/soak.rs) for longer: `goprobe agent` beside a stream of
    /// new stacks and of Go programs starting and exiting; prints the agent's memory, its BPF
    /// maps' memory and its losses over time, and checks that they stay bounded.
    Soak {
        /// How long the soak runs (the test in `cargo xtask test` runs about 7).
        #[arg(long, default_value_t = 60.0)]
        minutes: f64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Setup => setup::all(),
        Cmd::Build => {
            setup::bpf_toolchain()?;
            build_release()
        }
        Cmd::Demo { seconds } => {
            setup::all()?;
            build_release()?;
            demo::run(seconds)
        }
        Cmd::Test { args } => {
            setup::all()?;
            test(&args)
        }
        Cmd::Ci => ci(),
        Cmd::Fuzz { seconds } => fuzz(seconds),
        Cmd::Bench => {
            setup::go_toolchains()?;
            crate::thirdparty::install()?;
            bench::run()
        }
        Cmd::Structure => structure::run(),
        Cmd::Soak { minutes } => {
            setup::all()?;
            let args = ["-p", "goprobe", "--test", "soak", "--", "--nocapture"];
            test_with(
                &args.map(String::from),
                &[("GOPROBE_SOAK_MINUTES", minutes.to_string())],
            )
        }
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

/// `cargo` with PATH extended so that bpf-linker (in ~/.cargo/bin) is found by aya-build.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root())
        .env("PATH", setup::path_with_cargo_bin());
    cmd
}

/// Runs `cmd`, failing with its command line when it fails.
pub fn exec(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn build_release() -> Result<()> {
    exec(cargo().args(["build", "--release", "--locked", "-p", "goprobe"]))
}

/// Builds every Go test program with every Go release into target/testprogs/<version>/:
/// `gcstress` and `demo` as `go build` makes them, `gcstress-nodwarf` without DWARF
/// (`-ldflags=-w`: goprobe falls back to its layout table) and, with the newest release,
/// `gcstress-race` (`-race`, cgo-linked); `signals` (the stack-attributed signals' workloads)
/// plain and stripped (`signals-sw`); and the symbolization programs (`build_symprogs`).
/// `doctor` is built only with the newest release (plain, `doctor-nl` without optimisations,
/// `doctor-race`) and with each of `setup::EXTRA_GO` (plain); `overhead` (the target-overhead
/// bench's workloads) only with the newest release.
fn build_testprogs() -> Result<PathBuf> {
    let out = root().join("target/testprogs");
    let newest = setup::GO_VERSIONS.last().copied().unwrap_or_default();
    for &version in setup::GO_VERSIONS {
        let dir = out.join(version);
        std::fs::create_dir_all(&dir)?;
        let go = |args: &[&str], cgo: bool| setup::go_build(version, cgo, args);
        let o = |name: &str| dir.join(name).display().to_string();
        go(
            &["-o", &format!("{}/", dir.display()), "./gcstress", "./demo"],
            false,
        )?;
        go(
            &["-ldflags=-w", "-o", &o("gcstress-nodwarf"), "./gcstress"],
            false,
        )?;
        go(
            &["-buildmode=pie", "-o", &o("gcstress-pie"), "./gcstress"],
            false,
        )?;
        if version == newest {
            go(&["-race", "-o", &o("gcstress-race"), "./gcstress"], true)?;
            go(&["-o", &o("doctor"), "./doctor"], false)?;
            go(
                &["-gcflags=all=-N -l", "-o", &o("doctor-nl"), "./doctor"],
                false,
            )?;
            go(&["-race", "-o", &o("doctor-race"), "./doctor"], true)?;
        }
        if version == newest {
            go(&["-o", &o("overhead"), "./overhead"], false)?;
        }
        go(&["-o", &o("signals"), "./signals"], false)?;
        go(
            &["-ldflags=-s -w", "-o", &o("signals-sw"), "./signals"],
            false,
        )?;
        build_symprogs(version, &dir)?;
    }
    for &version in setup::EXTRA_GO {
        let dir = out.join(version);
        std::fs::create_dir_all(&dir)?;
        let o = dir.join("doctor").display().to_string();
        setup::go_build(version, false, &["-o", &o, "./doctor"])?;
    }
    Ok(out)
}

/// The symbolization programs for goprobe-gopclntab's golden tests, in every variant whose
/// table differs: `symtest` plain, stripped (`-s -w`), PIE (internal linking), stripped PIE;
/// `symcgo` (cgo, external linking) plain, stripped, PIE and stripped PIE.
fn build_symprogs(version: &str, dir: &Path) -> Result<()> {
    let o = |name: &str| dir.join(name).display().to_string();
    for (name, flags, cgo, pkg) in [
        ("symtest", &[][..], false, "./symtest"),
        ("symtest-sw", &["-ldflags=-s -w"][..], false, "./symtest"),
        ("symtest-pie", &["-buildmode=pie"][..], false, "./symtest"),
        (
            "symtest-pie-sw",
            &["-buildmode=pie", "-ldflags=-s -w"][..],
            false,
            "./symtest",
        ),
        ("symcgo", &[][..], true, "./symcgo"),
        ("symcgo-sw", &["-ldflags=-s -w"][..], true, "./symcgo"),
        // Externally linked PIE: pointers in the table and moduledata are relocations.
        ("symcgo-pie", &["-buildmode=pie"][..], true, "./symcgo"),
        (
            "symcgo-pie-sw",
            &["-buildmode=pie", "-ldflags=-s -w"][..],
            true,
            "./symcgo",
        ),
    ] {
        let out = o(name);
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["-o", &out, pkg]);
        setup::go_build(version, cgo, &args)?;
    }
    Ok(())
}

/// `version=path-of-go` for every Go release, `:`-separated: tests that compare with the Go
/// toolchain (`go tool addr2line`) run the same release that built the program.
fn go_bins() -> String {
    setup::GO_VERSIONS
        .iter()
        .map(|v| format!("{v}={}", setup::go_bin(v).display()))
        .collect::<Vec<_>>()
        .join(":")
}

fn test(args: &[String]) -> Result<()> {
    test_with(args, &[])
}

/// `test` with extra environment variables for the tests.
fn test_with(args: &[String], env: &[(&str, String)]) -> Result<()> {
    let testprogs = build_testprogs()?;
    // NB: integration tests attach uprobes and load BPF: they need root (CI runs as root).
    // Two test threads: each test drives a Go program and a goprobe process on 2 cores.
    exec(
        cargo()
            .args([
                "test",
                "--locked",
                // Every test binary runs even when one fails (a flake must not hide the rest);
                // cargo still exits non-zero.
                "--no-fail-fast",
                "--workspace",
                "--exclude",
                "goprobe-ebpf",
            ])
            .args(args)
            .env("GOPROBE_TESTPROGS", testprogs)
            .env("GOPROBE_GO_BINS", go_bins())
            .envs(thirdparty::test_env())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_TEST_THREADS",
                std::env::var("RUST_TEST_THREADS").unwrap_or_else(|_| "2".into()),
            ),
    )
}

fn ci() -> Result<()> {
    setup::all()?;
    exec(cargo().args(["fmt", "--all", "--check"]))?;
    exec(cargo().args([
        "clippy",
        "--locked",
        "--workspace",
        "--exclude",
        "goprobe-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The eBPF crate, checked for its real target the way aya-build compiles it.
    exec(
        Command::new("rustup")
            .current_dir(root())
            .env("PATH", setup::path_with_cargo_bin())
            .args([
                "run",
                "nightly",
                "cargo",
                "clippy",
                "--locked",
                "-p",
                "goprobe-ebpf",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--",
                "-D",
                "warnings",
            ])
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                "--cfg=bpf_target_arch=\"x86_64\"",
            )
            .env("CARGO_TARGET_DIR", root().join("target/ebpf-clippy")),
    )?;
    // Before the tests: a layering violation fails CI in seconds, not after the long tier.
    structure::run()?;
    test(&[])?;
    // A short fuzz run keeps the fuzz target building and replays its seeds and corpus; the long
    // runs are `cargo xtask fuzz --seconds N`.
    fuzz(30)
}

/// `cargo fuzz run pclntab` for `seconds`, on nightly, seeded from gopclntab/fuzz/seeds.
fn fuzz(seconds: u32) -> Result<()> {
    let has_fuzz = Command::new("cargo")
        .env("PATH", setup::path_with_cargo_bin())
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        eprintln!("xtask: installing cargo-fuzz");
        exec(
            Command::new("cargo")
                .env("PATH", setup::path_with_cargo_bin())
                .args(["install", "--locked", "cargo-fuzz"]),
        )?;
    }
    let dir = root().join("gopclntab/fuzz");
    let corpus = root().join("target/fuzz/corpus/pclntab");
    std::fs::create_dir_all(&corpus)?;
    exec(
        Command::new("rustup")
            .current_dir(&dir)
            .env("PATH", setup::path_with_cargo_bin())
            .env("CARGO_TARGET_DIR", root().join("target/fuzz"))
            .args(["run", "nightly", "cargo", "fuzz", "run", "pclntab"])
            .arg(&corpus)
            .arg(dir.join("seeds"))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .args(["-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1"]),
    )
}
