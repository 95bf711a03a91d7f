//! Config bytes -> `config::parse`. A refused config yields a message; an accepted one
//! holds the documented bounds (parse, don't validate twice: nothing downstream re-checks
//! them), and every policy in it, live and shadow, is evaluated against fixed
//! certificates and each non-certificate outcome, down to what `explain` prints.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mtls_guard::config::{self, Policy, MAX_CACHE_ENTRIES, MAX_LABEL_LEN};
use mtls_guard::filter::verify_value;
use mtls_guard::metrics;
use mtls_guard::policy::{
    action_for, canary_bucket, canary_enforces, evaluate, Action, Presented, Reason,
};
use mtls_guard::timefmt;

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The bounds the README documents for a validated policy.
fn check_bounds(p: &Policy) {
    assert!(is_label(&p.route_label), "{:?}", p.route_label);
    assert!((400..=599).contains(&p.deny_status), "{}", p.deny_status);
    assert!(p.enforce_percent <= 100);
    assert!(p.quarantine_seconds <= 86_400);
    assert!(p.min_remaining_days <= 3650);
    let prefix_ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    assert!(prefix_ok(&p.header_prefix, 48), "{:?}", p.header_prefix);
    assert!(
        prefix_ok(&p.request_id_header, 64),
        "{:?}",
        p.request_id_header
    );
    for pin in &p.pins {
        assert!(is_label(&pin.id), "{:?}", pin.id);
    }
    for (i, pin) in p.pins.iter().enumerate() {
        assert!(p.pins.iter().skip(i + 1).all(|q| q.id != pin.id));
    }
    // Metric names carry the label and pin ids: printable, no spaces, under Kong's limit.
    let pins: Vec<&str> = p.pins.iter().map(|x| x.id.as_str()).collect();
    for name in metrics::all_names(&p.route_label, &pins) {
        assert!(name.bytes().all(|b| (0x21..0x7f).contains(&b)), "{name:?}");
        assert!(name.len() + "pw:mtls_guard:".len() < 256, "{name}");
    }
}

/// The policy with every section that decides pass or fail switched off.
fn bare(p: &Policy) -> Policy {
    let mut b = p.clone();
    b.pins.clear();
    b.subject = None;
    b.issuer = None;
    b.san = None;
    b.spiffe = None;
    b.reject_expired = false;
    b.min_remaining_days = 0;
    b.revoked_serials.clear();
    b.revoked_sha256.clear();
    b.shadow = None;
    b
}

/// "evaluate never returns pass with a failing section": the reasons of the whole policy
/// are exactly the union of the reasons of each section evaluated on its own.
fn check_sections_compose(p: &Policy, presented: Presented<'_>) {
    let whole = evaluate(p, presented, common::NOW);
    let base = bare(p);
    let sections: [Box<dyn Fn(&mut Policy)>; 8] = [
        Box::new(|b| b.pins = p.pins.clone()),
        Box::new(|b| b.subject = p.subject.clone()),
        Box::new(|b| b.issuer = p.issuer.clone()),
        Box::new(|b| b.san = p.san.clone()),
        Box::new(|b| b.spiffe = p.spiffe.clone()),
        Box::new(|b| b.reject_expired = p.reject_expired),
        Box::new(|b| b.min_remaining_days = p.min_remaining_days),
        Box::new(|b| {
            b.revoked_serials = p.revoked_serials.clone();
            b.revoked_sha256 = p.revoked_sha256.clone();
        }),
    ];
    let mut union = evaluate(&base, presented, common::NOW).reasons;
    for set in &sections {
        let mut one = base.clone();
        set(&mut one);
        let v = evaluate(&one, presented, common::NOW);
        for r in v.reasons.iter() {
            union.insert(r);
        }
        if !v.passed() {
            assert!(!whole.passed(), "a failing section, yet the policy passes");
        }
    }
    assert_eq!(whole.reasons, union);
}

/// What `mtls-guard explain` builds from a verdict (src/bin/mtls-guard.rs).
fn explain(policy: &Policy, presented: Presented<'_>, request_id: Option<&[u8]>) {
    let verdict = evaluate(policy, presented, common::NOW);
    if let Some(i) = verdict.matched_pin {
        assert!(i < policy.pins.len());
        assert!(!verdict.reasons.contains(Reason::PinMismatch));
    }
    match presented {
        Presented::Missing => assert_eq!(
            verdict.reasons.contains(Reason::NoCertificate),
            policy.require_certificate
        ),
        Presented::HandshakeFailed => {
            assert_eq!(verdict.reasons.primary(), Some(Reason::HandshakeFailed))
        }
        Presented::Unparseable => assert_eq!(
            verdict.reasons.primary(),
            Some(Reason::UnparseableCertificate)
        ),
        Presented::Cert(_) => {
            assert!(!verdict.no_certificate_allowed);
            if !policy.pins.is_empty() {
                assert_eq!(
                    verdict.matched_pin.is_none(),
                    verdict.reasons.contains(Reason::PinMismatch)
                );
            }
        }
    }
    let action = action_for(&verdict, policy, request_id);
    assert_eq!(action == Action::Pass, verdict.passed());
    let verify = verify_value(&verdict);
    common::assert_header_value("verify", &verify);
    let reasons: Vec<&str> = verdict.reasons.iter().map(Reason::as_str).collect();
    let out = serde_json::json!({
        "outcome": if verdict.passed() { "pass" } else { "fail" },
        "reasons": reasons,
        "mode": policy.mode.as_str(),
        "action": action.as_str(),
        "matched_pin": verdict.matched_pin.and_then(|i| policy.pins.get(i)).map(|p| p.id.as_str()),
        "route_label": policy.route_label,
        "at": timefmt::format_rfc3339(common::NOW),
        "canary": {
            "enforce_percent": policy.enforce_percent,
            "bucket": request_id.map(canary_bucket),
            "enforced": canary_enforces(policy.enforce_percent, request_id),
        },
    });
    assert!(!out.to_string().is_empty());
    if let Some(shadow) = &policy.shadow {
        let sv = evaluate(shadow, presented, common::NOW);
        let _ = sv.passed() == verdict.passed();
        let _ = verify_value(&sv);
    }
}

fuzz_target!(|data: &[u8]| {
    let (cfg, warnings) = match config::parse(data, common::NOW) {
        Ok(ok) => ok,
        Err(e) => {
            // Logged by the filter as "invalid configuration: {e}" and printed by
            // check-config: a key or value quoted in it must not forge log lines.
            assert!(e.path.starts_with('$'), "{e}");
            common::assert_log_line(&e.to_string());
            return;
        }
    };
    for w in &warnings {
        assert!(w.path.starts_with('$'), "{w}");
        common::assert_log_line(&w.to_string());
    }
    assert!(cfg.cache_entries <= MAX_CACHE_ENTRIES);
    let fixtures = &*common::FIXTURES;
    for policy in cfg.policies() {
        check_bounds(policy);
        if let Some(shadow) = &policy.shadow {
            assert!(shadow.shadow.is_none(), "shadows do not nest");
        }
        let mut presented = vec![
            Presented::Missing,
            Presented::HandshakeFailed,
            Presented::Unparseable,
        ];
        presented.extend(fixtures.iter().map(Presented::Cert));
        for p in presented {
            for id in [None, Some(&b"req-1"[..]), Some(&b""[..])] {
                explain(policy, p, id);
            }
            check_sections_compose(policy, p);
            if let Some(shadow) = &policy.shadow {
                check_sections_compose(shadow, p);
            }
        }
    }
    for (name, policy) in &cfg.routes {
        assert!(std::ptr::eq(cfg.policy_for(Some(name)), policy));
    }
    assert!(std::ptr::eq(cfg.policy_for(None), &cfg.default));
});
