//! Metric names and their label encoding.
//!
//! proxy-wasm metrics have no labels, so labels travel inside the name as `.key.value`
//! pairs after a base name, e.g.
//! `mtls_guard_checks_total.route.orders.outcome.rejected.reason.pin_mismatch`.
//! Both hosts turn them back into Prometheus labels with regexes whose first capture is
//! the `.key.value` part to cut from the name and whose second is the value:
//! - Kong (3.9+) applies `metrics.label_patterns` from `mtls_guard.meta.json` to
//!   `pw:mtls_guard:<name>` and cuts the name at the first label; it exports
//!   `pw_mtls_guard_mtls_guard_checks_total{route=..,outcome=..,reason=..}`.
//! - Envoy applies `stats_config.stats_tags` to `wasmcustom.<name>` and exports
//!   `mtls_guard_checks_total{route=..,outcome=..,reason=..}`.
//!
//! Label values are bounded: route labels and pin ids are `[A-Za-z0-9_-]{1,64}` (checked
//! at configure time), outcomes and reasons are fixed words. Names stay far below Kong's
//! 256-byte limit.

use crate::policy::{Action, Reason};

pub const CHECKS: &str = "mtls_guard_checks_total";
pub const PIN_MATCHES: &str = "mtls_guard_pin_matches_total";
pub const CERT_NOT_AFTER: &str = "mtls_guard_cert_not_after_seconds";
pub const NO_CERT_SOURCE: &str = "mtls_guard_no_cert_source_total";
pub const SHADOW_DISAGREEMENTS: &str = "mtls_guard_shadow_disagreements_total";
pub const QUARANTINE_REJECTIONS: &str = "mtls_guard_quarantine_rejections_total";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Every base name with its type and label keys, in order.
pub const FAMILIES: &[(&str, Kind, &[&str])] = &[
    (CHECKS, Kind::Counter, &["route", "outcome", "reason"]),
    (PIN_MATCHES, Kind::Counter, &["route", "pin"]),
    (CERT_NOT_AFTER, Kind::Gauge, &["route"]),
    (NO_CERT_SOURCE, Kind::Counter, &["route"]),
    (SHADOW_DISAGREEMENTS, Kind::Counter, &["route", "passed"]),
    (QUARANTINE_REJECTIONS, Kind::Counter, &["route"]),
];

/// (label, regex) pairs for Kong's `metrics.label_patterns` (PCRE via `ngx.re.match`).
///
/// Each pattern is anchored to the structure of the name (base name, then `.route.`,
/// then `.outcome.` ...), so a route label or pin id that happens to be one of the
/// encoding's words (a route called `outcome`) cannot be mistaken for another label.
pub const KONG_LABEL_PATTERNS: &[(&str, &str)] = &[
    (
        "route",
        r"^pw:[a-z0-9_]+:mtls_guard_[a-z_]+(\.route\.([A-Za-z0-9_-]+))",
    ),
    (
        "outcome",
        r"^pw:[a-z0-9_]+:mtls_guard_[a-z_]+\.route\.[A-Za-z0-9_-]+(\.outcome\.([a-z]+))",
    ),
    (
        "reason",
        r"^pw:[a-z0-9_]+:mtls_guard_[a-z_]+\.route\.[A-Za-z0-9_-]+\.outcome\.[a-z]+(\.reason\.([a-z_]+))",
    ),
    (
        "pin",
        r"^pw:[a-z0-9_]+:mtls_guard_[a-z_]+\.route\.[A-Za-z0-9_-]+(\.pin\.([A-Za-z0-9_-]+))",
    ),
    (
        "passed",
        r"^pw:[a-z0-9_]+:mtls_guard_[a-z_]+\.route\.[A-Za-z0-9_-]+(\.passed\.([a-z]+))",
    ),
];

/// (tag, regex) pairs for Envoy's `stats_config.stats_tags`: the same structure-anchored
/// patterns on `wasmcustom.<name>`; they match no other Envoy stat.
pub const ENVOY_STATS_TAGS: &[(&str, &str)] = &[
    (
        "route",
        r"^wasmcustom\.mtls_guard_[a-z_]+(\.route\.([A-Za-z0-9_-]+))",
    ),
    (
        "outcome",
        r"^wasmcustom\.mtls_guard_[a-z_]+\.route\.[A-Za-z0-9_-]+(\.outcome\.([a-z]+))",
    ),
    (
        "reason",
        r"^wasmcustom\.mtls_guard_[a-z_]+\.route\.[A-Za-z0-9_-]+\.outcome\.[a-z]+(\.reason\.([a-z_]+))",
    ),
    (
        "pin",
        r"^wasmcustom\.mtls_guard_[a-z_]+\.route\.[A-Za-z0-9_-]+(\.pin\.([A-Za-z0-9_-]+))",
    ),
    (
        "passed",
        r"^wasmcustom\.mtls_guard_[a-z_]+\.route\.[A-Za-z0-9_-]+(\.passed\.([a-z]+))",
    ),
];

pub fn checks(route: &str, action: Action, reason: Option<Reason>) -> String {
    format!(
        "{CHECKS}.route.{route}.outcome.{}.reason.{}",
        action.as_str(),
        reason.map_or("none", Reason::as_str)
    )
}

pub fn pin_matches(route: &str, pin: &str) -> String {
    format!("{PIN_MATCHES}.route.{route}.pin.{pin}")
}

pub fn cert_not_after(route: &str) -> String {
    format!("{CERT_NOT_AFTER}.route.{route}")
}

pub fn no_cert_source(route: &str) -> String {
    format!("{NO_CERT_SOURCE}.route.{route}")
}

/// `passed` is the side that passed: `live` (the shadow would fail) or `shadow`.
pub fn shadow_disagreements(route: &str, live_passed: bool) -> String {
    let side = if live_passed { "live" } else { "shadow" };
    format!("{SHADOW_DISAGREEMENTS}.route.{route}.passed.{side}")
}

pub fn quarantine_rejections(route: &str) -> String {
    format!("{QUARANTINE_REJECTIONS}.route.{route}")
}

/// Slot of a (action, primary reason) pair in a per-route array of metric ids:
/// 0 is pass, then one slot per reason for `rejected` and for `reported`.
pub fn check_slot(action: Action, reason: Option<Reason>) -> usize {
    let r = reason.map_or(0, |r| r as usize);
    match action {
        Action::Pass => 0,
        Action::Rejected => 1 + r,
        Action::Reported => 1 + Reason::ALL.len() + r,
    }
}

pub const CHECK_SLOTS: usize = 1 + 2 * Reason::ALL.len();

/// Every name the filter can emit for a route with the given pin ids (used by the
/// static checks of the label patterns).
pub fn all_names(route: &str, pins: &[&str]) -> Vec<String> {
    let mut out = vec![checks(route, Action::Pass, None)];
    for action in [Action::Rejected, Action::Reported] {
        for r in Reason::ALL {
            out.push(checks(route, action, Some(r)));
        }
    }
    out.extend(pins.iter().map(|p| pin_matches(route, p)));
    out.push(cert_not_after(route));
    out.push(no_cert_source(route));
    out.push(shadow_disagreements(route, true));
    out.push(shadow_disagreements(route, false));
    out.push(quarantine_rejections(route));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        seen.insert(check_slot(Action::Pass, None));
        for a in [Action::Rejected, Action::Reported] {
            for r in Reason::ALL {
                let s = check_slot(a, Some(r));
                assert!(s < CHECK_SLOTS);
                assert!(seen.insert(s), "duplicate slot {s}");
            }
        }
        assert_eq!(seen.len(), CHECK_SLOTS);
    }

    #[test]
    fn names_stay_under_kong_limit() {
        let route = "r".repeat(64);
        for name in all_names(&route, &["p".repeat(64).as_str()]) {
            assert!(name.len() + "pw:mtls_guard:".len() < 256, "{name}");
        }
    }
}
