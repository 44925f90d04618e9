//! The OpenTelemetry resource of a profiled process (docs/metrics.md "Resource attributes").

use std::path::Path;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use crate::analysis::process::cgroup;

/// What the resource says about one process.
#[derive(Clone, Debug)]
pub struct ProcessInfo<'a> {
    pub pid: u32,
    pub exe: &'a Path,
    /// As the binary carries it: `go1.27.3`.
    pub go_version: &'a str,
    /// `--service-name`; else `OTEL_SERVICE_NAME`, else the executable's file name.
    pub service_name: Option<&'a str>,
    /// More attributes (`goprobe agent`: Kubernetes metadata of the process).
    pub attributes: &'a [(&'static str, String)],
}

/// The host's name, as `uname -n` prints it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The resource of process `p`.
pub fn of_process(p: &ProcessInfo<'_>) -> Resource {
    let exe_name = p.exe.file_name().map_or_else(
        || p.exe.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let service = p
        .service_name
        .map(str::to_owned)
        .or_else(|| {
            std::env::var("OTEL_SERVICE_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| exe_name.clone());
    let host = host_name();
    let mut attrs = vec![
        KeyValue::new("service.instance.id", format!("{host}:{}", p.pid)),
        KeyValue::new("process.pid", i64::from(p.pid)),
        KeyValue::new("process.executable.name", exe_name),
        KeyValue::new("process.executable.path", p.exe.display().to_string()),
        KeyValue::new("process.runtime.name", "go"),
        KeyValue::new("process.runtime.version", p.go_version.to_owned()),
        KeyValue::new("host.name", host),
    ];
    if let Some(id) = cgroup::container_id(&cgroup::of_process(p.pid)) {
        attrs.push(KeyValue::new("container.id", id));
    }
    attrs.extend(
        p.attributes
            .iter()
            .map(|(k, v)| KeyValue::new(*k, v.clone())),
    );
    Resource::builder_empty()
        .with_service_name(service)
        .with_attributes(attrs)
        .build()
}
