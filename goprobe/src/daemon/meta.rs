//! Kubernetes metadata of a process, for its OpenTelemetry resource and Prometheus labels: from
//! its environment (downward API variables, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`)
//! and its cgroup path (pod uid). The container id comes from [`crate::analysis::process::cgroup`].

use std::collections::BTreeMap;

/// Resource attributes of process `pid` (sorted by key; empty outside Kubernetes).
pub fn of_process(pid: u32, cgroups: &[String]) -> Vec<(&'static str, String)> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    attributes(&env, cgroups)
}

/// The environment variables a pod spec commonly fills from the downward API
/// (`valueFrom.fieldRef`), per attribute, first found wins.
const DOWNWARD: &[(&str, &[&str])] = &[
    ("k8s.pod.name", &["POD_NAME", "K8S_POD_NAME", "MY_POD_NAME"]),
    (
        "k8s.namespace.name",
        &[
            "POD_NAMESPACE",
            "K8S_NAMESPACE",
            "K8S_POD_NAMESPACE",
            "MY_POD_NAMESPACE",
        ],
    ),
    ("k8s.pod.uid", &["POD_UID", "K8S_POD_UID", "MY_POD_UID"]),
    (
        "k8s.node.name",
        &["NODE_NAME", "K8S_NODE_NAME", "MY_NODE_NAME"],
    ),
    (
        "k8s.container.name",
        &["CONTAINER_NAME", "K8S_CONTAINER_NAME"],
    ),
];

/// Attributes from a NUL-separated environment block and cgroup paths.
pub fn attributes(environ: &[u8], cgroups: &[String]) -> Vec<(&'static str, String)> {
    let env: BTreeMap<&str, &str> = environ
        .split(|&b| b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
        .collect();
    // OTEL_RESOURCE_ATTRIBUTES=k8s.pod.name=x,k8s.namespace.name=y (the OTel operator sets it).
    let otel: BTreeMap<&str, &str> = env
        .get("OTEL_RESOURCE_ATTRIBUTES")
        .map(|v| {
            v.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for &(attr, vars) in DOWNWARD {
        let value = otel
            .get(attr)
            .copied()
            .or_else(|| vars.iter().find_map(|v| env.get(v).copied()))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .or_else(|| (attr == "k8s.pod.uid").then(|| pod_uid(cgroups)).flatten());
        if let Some(v) = value {
            out.push((attr, v));
        }
    }
    if let Some(s) = env.get("OTEL_SERVICE_NAME").filter(|s| !s.is_empty()) {
        out.push(("service.name", (*s).to_owned()));
    }
    out
}

/// The pod uid in a kubelet cgroup path: `/kubepods/burstable/pod<uid>/…` (cgroupfs driver) or
/// `kubepods-burstable-pod<uid_with_underscores>.slice` (systemd driver).
pub fn pod_uid(cgroups: &[String]) -> Option<String> {
    cgroups.iter().flat_map(|p| p.split('/')).find_map(|c| {
        let c = c.strip_suffix(".slice").unwrap_or(c);
        let uid = c.rsplit_once("pod").map(|(_, u)| u)?.replace('_', "-");
        let ok = uid.len() == 36
            && uid
                .bytes()
                .enumerate()
                .all(|(i, b)| matches!(i, 8 | 13 | 18 | 23) == (b == b'-'))
            && uid.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
        ok.then_some(uid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    #[test]
    fn downward_api_and_otel_variables() {
        let env = b"PATH=/bin\0POD_NAME=api-7d9\0POD_NAMESPACE=shop\0OTEL_SERVICE_NAME=api\0";
        let a = attributes(env, &[]);
        assert_eq!(
            a,
            [
                ("k8s.pod.name", "api-7d9".to_owned()),
                ("k8s.namespace.name", "shop".to_owned()),
                ("service.name", "api".to_owned()),
            ]
        );
        let env =
            b"OTEL_RESOURCE_ATTRIBUTES=k8s.pod.name=web-1, k8s.namespace.name=prod\0POD_NAME=x\0";
        let a = attributes(env, &[]);
        assert_eq!(a[0], ("k8s.pod.name", "web-1".to_owned()));
        assert_eq!(a[1], ("k8s.namespace.name", "prod".to_owned()));
        assert!(attributes(b"HOME=/root\0", &[]).is_empty());
    }

    #[test]
    fn pod_uid_from_either_cgroup_driver() {
        let cgroupfs = format!("/kubepods/burstable/pod{UID}/0123abcd");
        assert_eq!(pod_uid(&[cgroupfs]).as_deref(), Some(UID));
        let systemd = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-ab.scope",
            UID.replace('-', "_")
        );
        assert_eq!(
            pod_uid(std::slice::from_ref(&systemd)).as_deref(),
            Some(UID)
        );
        assert_eq!(
            attributes(b"", &[systemd]),
            [("k8s.pod.uid", UID.to_owned())]
        );
        assert_eq!(pod_uid(&["/user.slice/user-0.slice".into()]), None);
        assert_eq!(pod_uid(&["/kubepods/podnotauid".into()]), None);
    }
}
