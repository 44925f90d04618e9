//! Builds the eBPF object (`goprobe-ebpf`) with aya-build into `OUT_DIR/goprobe`.
//!
//! With `AYA_BUILD_SKIP=1` (for host-only checks on machines without the BPF toolchain) an empty
//! stub is written instead; loading it fails at run time with a clear error.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    if skip {
        std::fs::write(out_dir.join("goprobe"), []).context("write eBPF stub")?;
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "goprobe-ebpf")
        .ok_or_else(|| anyhow!("package goprobe-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    // aya-build watches the eBPF crate's own directory; the kernel/user types it compiles in
    // live beside it, and a changed constant there (a map size) must rebuild the object too.
    let common = root_dir
        .parent()
        .map(|p| p.join("goprobe-common"))
        .ok_or_else(|| anyhow!("no parent for {root_dir}"))?;
    println!("cargo:rerun-if-changed={common}");
    // NB: the eBPF crate needs nightly (-Z build-std=core); `cargo xtask setup` installs rust-src
    // and bpf-linker. Never a dated nightly: the installed `nightly` is the one we build with.
    aya_build::build_ebpf([package], Toolchain::Nightly)
}
