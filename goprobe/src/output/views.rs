//! The views of a profile: which of its sample types get their own flamegraph and folded file.

use super::Profile;

/// The views of `p`: its default sample type (no suffix) and any extra views (`-objects` for
/// allocations), as (file name suffix, sample type index).
pub fn of(p: &Profile) -> Vec<(&'static str, usize)> {
    let mut v = vec![("", p.spec.default_type)];
    v.extend(p.spec.extra_views.iter().copied());
    v
}
