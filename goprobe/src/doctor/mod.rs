//! `goprobe doctor`: the deployment mistakes that make Go services slow, found from what the
//! process is configured with ([`settings`]), how its runtime behaved over a short window
//! ([`behaviour`]) and rules that join the two ([`findings`]). docs/doctor.md explains each
//! finding.

pub mod behaviour;
pub mod findings;
pub mod settings;

use std::collections::BTreeMap;

pub use behaviour::Behaviour;
pub use settings::Settings;

/// How much a finding costs the service, most first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High,
    Medium,
    Low,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        })
    }
}

/// One diagnosed problem.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Finding {
    /// Stable id (`gomaxprocs_exceeds_cpu_quota`), documented in docs/doctor.md.
    pub id: &'static str,
    pub severity: Severity,
    /// The numbers the finding rests on, by name.
    pub evidence: BTreeMap<&'static str, serde_json::Value>,
    /// The evidence as one line for people.
    pub summary: String,
    /// What to change.
    pub fix: String,
}

/// What `goprobe doctor --json` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DoctorReport {
    /// Most severe first.
    pub findings: Vec<Finding>,
    pub settings: Settings,
    pub behaviour: Behaviour,
}

impl DoctorReport {
    /// Runs every rule on `settings` and `behaviour`.
    pub fn new(settings: Settings, behaviour: Behaviour) -> Self {
        Self {
            findings: findings::all(&settings, &behaviour),
            settings,
            behaviour,
        }
    }
}
