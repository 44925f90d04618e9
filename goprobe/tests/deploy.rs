//! The deployment files in deploy/: the Kubernetes manifests validate against the API schemas
//! (kubernetes-validate, no cluster), the systemd unit passes `systemd-analyze verify`, and the
//! example configuration parses to the defaults it documents.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::{path::PathBuf, process::Command};

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn kubernetes_manifests_validate() {
    let validate = std::env::var_os("GOPROBE_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .expect("GOPROBE_KUBERNETES_VALIDATE: run the tests with `cargo xtask test`");
    let manifests: Vec<PathBuf> = std::fs::read_dir(deploy().join("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(manifests.len() >= 2, "{manifests:?}");
    let out = Command::new(validate)
        .args(["--strict", "--kubernetes-version", "1.31.0"])
        .args(&manifests)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for kind in ["daemonset/goprobe-agent", "deployment/orders"] {
        assert!(
            text.contains(&format!("{kind} against")),
            "{kind} not checked: {text}"
        );
    }
    // The capabilities granted are the ones goprobe's own check asks for.
    for m in &manifests {
        let yaml = std::fs::read_to_string(m).unwrap();
        assert!(
            yaml.contains(r#"add: ["SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"]"#),
            "{}",
            m.display()
        );
        assert!(!yaml.contains("privileged: true"), "{}", m.display());
    }
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(deploy().join("systemd/goprobe-agent.service")).unwrap();
    assert!(
        unit.contains("AmbientCapabilities=CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH\n")
    );
    assert!(unit.contains("NoNewPrivileges=yes"));
    // systemd-analyze checks that ExecStart is executable: point it at the binary under test.
    let dir = std::env::temp_dir().join(format!("goprobe-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("goprobe-agent.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/goprobe", env!("CARGO_BIN_EXE_goprobe")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn example_config_is_the_defaults() {
    let text = std::fs::read_to_string(deploy().join("goprobe.toml")).unwrap();
    let config = goprobe::daemon::Config::parse(&text).unwrap();
    assert_eq!(config.signals, goprobe::daemon::config::Signals::default());
    assert_eq!(
        config.max_targets(),
        goprobe::daemon::config::DEFAULT_MAX_TARGETS
    );
    assert_eq!(config.select, goprobe::daemon::config::Select::default());
    assert_eq!(
        config.snapshots,
        goprobe::daemon::config::Snapshots::default()
    );
}
