//! The decision: a pure function of (policy, what the upstream presented, now).

use crate::cert::{spiffe_parts, PeerCert};
use crate::config::{DnPolicy, Mode, PinKind, Policy, SanPolicy, SpiffePolicy};
use crate::dn::{self, NormDn};

/// Why a certificate failed. The declaration order is the stable order in which reasons
/// are reported everywhere (metrics, headers, logs, deny body).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    NoCertificate = 0,
    HandshakeFailed,
    UnparseableCertificate,
    PinMismatch,
    SubjectMismatch,
    IssuerMismatch,
    SanMismatch,
    SpiffeMismatch,
    Expired,
    NotYetValid,
    ExpiringSoon,
    Revoked,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::NoCertificate,
        Reason::HandshakeFailed,
        Reason::UnparseableCertificate,
        Reason::PinMismatch,
        Reason::SubjectMismatch,
        Reason::IssuerMismatch,
        Reason::SanMismatch,
        Reason::SpiffeMismatch,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::ExpiringSoon,
        Reason::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoCertificate => "no_certificate",
            Reason::HandshakeFailed => "handshake_failed",
            Reason::UnparseableCertificate => "unparseable_certificate",
            Reason::Revoked => "revoked",
            Reason::PinMismatch => "pin_mismatch",
            Reason::SubjectMismatch => "subject_mismatch",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::SanMismatch => "san_mismatch",
            Reason::SpiffeMismatch => "spiffe_mismatch",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::ExpiringSoon => "expiring_soon",
        }
    }
}

/// A set of reasons, iterated in the stable order. Copy, no allocation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reasons(u16);

impl Reasons {
    pub fn insert(&mut self, r: Reason) {
        self.0 |= 1 << (r as u16);
    }
    pub fn contains(self, r: Reason) -> bool {
        self.0 & (1 << (r as u16)) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.contains(*r))
    }
    /// The first reason in the stable order: the one labelled on `checks_total`.
    pub fn primary(self) -> Option<Reason> {
        self.iter().next()
    }
}

/// What the host gave us for this response.
#[derive(Clone, Copy, Debug)]
pub enum Presented<'a> {
    Cert(&'a PeerCert),
    /// TLS upstream, no certificate visible (plain HTTP, or a host that hides it).
    Missing,
    /// The host's own handshake/verification failed.
    HandshakeFailed,
    /// Bytes arrived but are not a certificate.
    Unparseable,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub reasons: Reasons,
    /// Index into `policy.pins` of the first active pin that matched.
    pub matched_pin: Option<usize>,
    pub mode: Mode,
    /// No certificate, and the policy allowed that (`require_certificate: false`).
    pub no_certificate_allowed: bool,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.reasons.is_empty()
    }

    /// The action the mode implies: `pass`, `rejected` or `reported`.
    pub fn action(&self) -> Action {
        match (self.passed(), self.mode) {
            (true, _) => Action::Pass,
            (false, Mode::Enforce) => Action::Rejected,
            (false, Mode::Report) => Action::Reported,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Pass,
    Rejected,
    Reported,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pass, Action::Rejected, Action::Reported];
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Rejected => "rejected",
            Action::Reported => "reported",
        }
    }
}

/// The canary bucket (0-99) of a request id: FNV-1a 64 of its bytes, modulo 100. Stable
/// across workers, restarts and hosts, so a retried request gets the same treatment.
pub fn canary_bucket(request_id: &[u8]) -> u8 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in request_id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % 100) as u8
}

/// Whether a failing response with this request id is rejected under `enforce_percent`.
/// Without a request id the failure is enforced: a canary never weakens a request it
/// cannot place.
pub fn canary_enforces(enforce_percent: u8, request_id: Option<&[u8]>) -> bool {
    match (enforce_percent, request_id) {
        (100.., _) => true,
        (0, _) => false,
        (_, None) => true,
        (p, Some(id)) => canary_bucket(id) < p,
    }
}

/// The action taken on a verdict: the mode, narrowed by the canary share in enforce mode.
pub fn action_for(verdict: &Verdict, policy: &Policy, request_id: Option<&[u8]>) -> Action {
    match verdict.action() {
        Action::Rejected if !canary_enforces(policy.enforce_percent, request_id) => {
            Action::Reported
        }
        a => a,
    }
}

/// Evaluates `policy` against what the upstream presented, at unix time `now`.
pub fn evaluate(policy: &Policy, presented: Presented<'_>, now: i64) -> Verdict {
    let mut v = Verdict {
        reasons: Reasons::default(),
        matched_pin: None,
        mode: policy.mode,
        no_certificate_allowed: false,
    };
    let cert = match presented {
        Presented::Cert(c) => c,
        Presented::Missing => {
            if policy.require_certificate {
                v.reasons.insert(Reason::NoCertificate);
            } else {
                v.no_certificate_allowed = true;
            }
            return v;
        }
        Presented::HandshakeFailed => {
            v.reasons.insert(Reason::HandshakeFailed);
            return v;
        }
        Presented::Unparseable => {
            v.reasons.insert(Reason::UnparseableCertificate);
            return v;
        }
    };

    if policy.revoked_serials.contains(&cert.serial) || policy.revoked_sha256.contains(&cert.sha256)
    {
        v.reasons.insert(Reason::Revoked);
    }

    if !policy.pins.is_empty() {
        v.matched_pin = policy.pins.iter().position(|p| {
            p.active_at(now)
                && match &p.kind {
                    PinKind::Spki(h) => *h == cert.spki_sha256,
                    PinKind::Cert(h) => *h == cert.sha256,
                }
        });
        if v.matched_pin.is_none() {
            v.reasons.insert(Reason::PinMismatch);
        }
    }

    if let Some(p) = &policy.subject {
        if !dn_policy_holds(p, &cert.subject_norm) {
            v.reasons.insert(Reason::SubjectMismatch);
        }
    }
    if let Some(p) = &policy.issuer {
        if !dn_policy_holds(p, &cert.issuer_norm) {
            v.reasons.insert(Reason::IssuerMismatch);
        }
    }
    if let Some(p) = &policy.san {
        if !san_policy_holds(p, cert) {
            v.reasons.insert(Reason::SanMismatch);
        }
    }
    if let Some(p) = &policy.spiffe {
        if !spiffe_policy_holds(p, cert) {
            v.reasons.insert(Reason::SpiffeMismatch);
        }
    }

    // RFC 5280 section 4.1.2.5: the validity period includes both notBefore and notAfter.
    if policy.reject_expired {
        if now > cert.not_after {
            v.reasons.insert(Reason::Expired);
        } else if now < cert.not_before {
            v.reasons.insert(Reason::NotYetValid);
        }
    }
    if policy.min_remaining_days > 0 && now <= cert.not_after {
        let remaining = cert.not_after - now;
        if remaining < i64::from(policy.min_remaining_days) * 86_400 {
            v.reasons.insert(Reason::ExpiringSoon);
        }
    }
    v
}

fn dn_policy_holds(p: &DnPolicy, name: &NormDn) -> bool {
    let dn_ok = p.dn.is_empty() || p.dn.iter().any(|d| d.matches(name));
    let attrs_ok = p.attributes.iter().all(|(oid, patterns)| {
        name.texts_of(oid)
            .any(|v| patterns.iter().any(|pat| dn::glob_folded(pat, v)))
    });
    dn_ok && attrs_ok
}

/// RFC 6125 section 6.4: exact match after case folding, or a `*.` pattern matching
/// exactly one left-most label.
fn dns_matches(pattern: &str, name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    match pattern.strip_prefix("*.") {
        Some(suffix) => match name.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest.eq_ignore_ascii_case(suffix),
            None => false,
        },
        None => pattern.eq_ignore_ascii_case(name),
    }
}

fn san_policy_holds(p: &SanPolicy, cert: &PeerCert) -> bool {
    let dns_ok = p.dns.is_empty()
        || cert
            .san
            .dns
            .iter()
            .any(|n| p.dns.iter().any(|pat| dns_matches(pat, n)));
    let uri_ok = p.uri.is_empty() || cert.san.uri.iter().any(|u| p.uri.contains(u));
    let ip_ok = p.ip.is_empty() || cert.san.ip.iter().any(|ip| p.ip.contains(ip));
    let email_ok = p.email.is_empty()
        || cert
            .san
            .email
            .iter()
            .any(|e| p.email.iter().any(|want| want.eq_ignore_ascii_case(e)));
    dns_ok && uri_ok && ip_ok && email_ok
}

/// X.509-SVID section 2: exactly one URI SAN, a SPIFFE ID.
fn spiffe_policy_holds(p: &SpiffePolicy, cert: &PeerCert) -> bool {
    let [only] = cert.san.uri.as_slice() else {
        return false;
    };
    match spiffe_parts(only) {
        Some((td, path)) => {
            td == p.trust_domain
                && p.path_prefix
                    .as_deref()
                    .is_none_or(|pre| path.starts_with(pre))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::Sans;
    use crate::config;

    const NOW: i64 = 1_800_000_000; // 2027-01-15

    fn cert() -> PeerCert {
        let subject = dn::parse("CN=orders.internal,O=Example Corp,C=US").unwrap();
        let issuer = dn::parse("CN=Example Internal CA,O=Example Corp").unwrap();
        PeerCert {
            subject_text: subject.render(),
            issuer_text: issuer.render(),
            subject_norm: subject.normalized(),
            issuer_norm: issuer.normalized(),
            subject,
            issuer,
            serial: vec![0x0c, 0xb9],
            not_before: NOW - 86_400,
            not_after: NOW + 10 * 86_400,
            sha256: [1; 32],
            spki_sha256: [2; 32],
            san: Sans {
                dns: vec![
                    "orders.internal".into(),
                    "api.orders.svc.cluster.local".into(),
                ],
                uri: vec!["spiffe://example.org/ns/prod/sa/orders".into()],
                ip: vec!["10.0.0.7".parse().unwrap()],
                email: vec!["ops@example.org".into()],
            },
            spiffe_id: Some("spiffe://example.org/ns/prod/sa/orders".into()),
            key: "ec-p256".into(),
        }
    }

    fn policy(json: &str) -> Policy {
        config::parse(json.as_bytes(), NOW)
            .unwrap_or_else(|e| panic!("{json}: {e}"))
            .0
            .default
    }

    fn reasons(v: &Verdict) -> Vec<&'static str> {
        v.reasons.iter().map(Reason::as_str).collect()
    }

    const SPKI: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="; // [2; 32]
    const OTHER: &str = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="; // [3; 32]

    #[test]
    fn each_section_passes_and_fails_on_its_own() {
        let c = cert();
        let certhex = "01".repeat(32);
        let table: &[(&str, &str, &[&str])] = &[
            ("empty policy", "{}", &[]),
            (
                "spki pin matches",
                &format!(r#"{{"pins":[{{"id":"a","spki_sha256":"{SPKI}"}}]}}"#),
                &[],
            ),
            (
                "spki pin differs",
                &format!(r#"{{"pins":[{{"id":"a","spki_sha256":"{OTHER}"}}]}}"#),
                &["pin_mismatch"],
            ),
            (
                "cert pin matches",
                &format!(r#"{{"pins":[{{"id":"a","cert_sha256":"{certhex}"}}]}}"#),
                &[],
            ),
            (
                "pin not yet active",
                &format!(
                    r#"{{"pins":[{{"id":"a","spki_sha256":"{SPKI}","not_before":"2027-06-01T00:00:00Z"}}]}}"#
                ),
                &["pin_mismatch"],
            ),
            (
                "pin window over",
                &format!(
                    r#"{{"pins":[{{"id":"a","spki_sha256":"{SPKI}","not_after":"2027-01-01T00:00:00Z"}}]}}"#
                ),
                &["pin_mismatch"],
            ),
            (
                "subject dn any-of",
                r#"{"subject":{"dn":["CN=x","cn=Orders.Internal, o=example corp, c=us"]}}"#,
                &[],
            ),
            (
                "subject dn differs",
                r#"{"subject":{"dn":["CN=orders.internal,O=Example Corp"]}}"#,
                &["subject_mismatch"],
            ),
            (
                "subject attributes glob",
                r#"{"subject":{"attributes":{"O":["Example*"],"CN":["orders*"]}}}"#,
                &[],
            ),
            (
                "subject attribute missing",
                r#"{"subject":{"attributes":{"OU":["*"]}}}"#,
                &["subject_mismatch"],
            ),
            (
                "subject dn ok but attribute fails",
                r#"{"subject":{"dn":["CN=orders.internal,O=Example Corp,C=US"],"attributes":{"C":["DE"]}}}"#,
                &["subject_mismatch"],
            ),
            (
                "issuer dn",
                r#"{"issuer":{"dn":["CN=Example Internal CA,O=Example Corp"]}}"#,
                &[],
            ),
            (
                "issuer differs",
                r#"{"issuer":{"dn":["CN=Other CA"]}}"#,
                &["issuer_mismatch"],
            ),
            ("dns exact", r#"{"san":{"dns":["ORDERS.internal."]}}"#, &[]),
            (
                "dns wildcard one label",
                r#"{"san":{"dns":["*.orders.svc.cluster.local"]}}"#,
                &[],
            ),
            (
                "dns wildcard not two labels",
                r#"{"san":{"dns":["*.svc.cluster.local"]}}"#,
                &["san_mismatch"],
            ),
            (
                "uri exact",
                r#"{"san":{"uri":["spiffe://example.org/ns/prod/sa/orders"]}}"#,
                &[],
            ),
            ("ip", r#"{"san":{"ip":["10.0.0.7"]}}"#, &[]),
            (
                "ip differs",
                r#"{"san":{"ip":["10.0.0.8"]}}"#,
                &["san_mismatch"],
            ),
            ("email", r#"{"san":{"email":["OPS@example.org"]}}"#, &[]),
            (
                "kinds are all-of",
                r#"{"san":{"dns":["orders.internal"],"ip":["::1"]}}"#,
                &["san_mismatch"],
            ),
            (
                "spiffe",
                r#"{"spiffe":{"trust_domain":"example.org","path_prefix":"/ns/prod/"}}"#,
                &[],
            ),
            (
                "spiffe other domain",
                r#"{"spiffe":{"trust_domain":"example.com"}}"#,
                &["spiffe_mismatch"],
            ),
            (
                "spiffe other path",
                r#"{"spiffe":{"trust_domain":"example.org","path_prefix":"/ns/dev/"}}"#,
                &["spiffe_mismatch"],
            ),
            (
                "expiring soon",
                r#"{"validity":{"min_remaining_days":30}}"#,
                &["expiring_soon"],
            ),
            (
                "enough days left",
                r#"{"validity":{"min_remaining_days":10}}"#,
                &[],
            ),
            (
                "revoked serial",
                r#"{"revoked_serials":["00:0C:B9"]}"#,
                &["revoked"],
            ),
            (
                "revoked fingerprint",
                &format!(r#"{{"revoked_sha256":["{certhex}"]}}"#),
                &["revoked"],
            ),
            ("other serial", r#"{"revoked_serials":["0cb8"]}"#, &[]),
            (
                "all failures reported in stable order",
                &format!(
                    r#"{{"pins":[{{"id":"a","spki_sha256":"{OTHER}"}}],"subject":{{"dn":["CN=x"]}},"issuer":{{"dn":["CN=y"]}},"san":{{"dns":["x.y"]}},"spiffe":{{"trust_domain":"x.org"}},"revoked_serials":["0cb9"],"validity":{{"min_remaining_days":60}}}}"#
                ),
                &[
                    "pin_mismatch",
                    "subject_mismatch",
                    "issuer_mismatch",
                    "san_mismatch",
                    "spiffe_mismatch",
                    "expiring_soon",
                    "revoked",
                ],
            ),
        ];
        for (name, json, want) in table {
            let v = evaluate(&policy(json), Presented::Cert(&c), NOW);
            assert_eq!(reasons(&v), *want, "{name}");
            assert_eq!(v.passed(), want.is_empty(), "{name}");
        }
    }

    #[test]
    fn validity_window_is_inclusive_at_both_ends() {
        let c = cert();
        let p = policy("{}");
        for (now, want) in [
            (c.not_before - 1, vec!["not_yet_valid"]),
            (c.not_before, vec![]),
            (c.not_after, vec![]),
            (c.not_after + 1, vec!["expired"]),
        ] {
            assert_eq!(
                reasons(&evaluate(&p, Presented::Cert(&c), now)),
                want,
                "at {now}"
            );
        }
        let lax = policy(r#"{"validity":{"reject_expired":false}}"#);
        assert!(evaluate(&lax, Presented::Cert(&c), c.not_after + 1).passed());
    }

    #[test]
    fn matched_pin_is_the_first_active_matching_one() {
        let c = cert();
        let p = policy(&format!(
            r#"{{"pins":[{{"id":"old","spki_sha256":"{SPKI}","not_after":"2027-01-01T00:00:00Z"}},{{"id":"other","spki_sha256":"{OTHER}"}},{{"id":"current","spki_sha256":"{SPKI}"}}]}}"#
        ));
        let v = evaluate(&p, Presented::Cert(&c), NOW);
        assert_eq!(
            v.matched_pin.map(|i| p.pins[i].id.as_str()),
            Some("current")
        );
        let before = evaluate(&p, Presented::Cert(&c), 1_790_000_000);
        assert_eq!(
            before.matched_pin.map(|i| p.pins[i].id.as_str()),
            Some("old")
        );
    }

    #[test]
    fn canary_is_deterministic_and_close_to_the_share() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("req-{i:05}")).collect();
        for percent in [0u8, 1, 25, 50, 99, 100] {
            let enforced = ids
                .iter()
                .filter(|id| canary_enforces(percent, Some(id.as_bytes())))
                .count();
            let expected = ids.len() * usize::from(percent) / 100;
            assert!(
                enforced.abs_diff(expected) <= 200,
                "{percent}%: {enforced} of {}",
                ids.len()
            );
        }
        assert_eq!(canary_bucket(b"abc"), canary_bucket(b"abc"));
        assert!(canary_enforces(30, None), "no request id: enforce");
        assert!(!canary_enforces(0, None));
        let p = policy(r#"{"enforce_percent":50}"#);
        let failing = evaluate(&p, Presented::Missing, NOW);
        let reject = ids
            .iter()
            .find(|id| canary_bucket(id.as_bytes()) < 50)
            .unwrap();
        let spare = ids
            .iter()
            .find(|id| canary_bucket(id.as_bytes()) >= 50)
            .unwrap();
        assert_eq!(
            action_for(&failing, &p, Some(reject.as_bytes())),
            Action::Rejected
        );
        assert_eq!(
            action_for(&failing, &p, Some(spare.as_bytes())),
            Action::Reported
        );
        let report = policy(r#"{"mode":"report","enforce_percent":100}"#);
        assert_eq!(
            action_for(&evaluate(&report, Presented::Missing, NOW), &report, None),
            Action::Reported
        );
    }

    #[test]
    fn spiffe_needs_exactly_one_uri_san() {
        let mut c = cert();
        c.san.uri.push("https://orders.example.org/".into());
        let p = policy(r#"{"spiffe":{"trust_domain":"example.org"}}"#);
        assert_eq!(
            reasons(&evaluate(&p, Presented::Cert(&c), NOW)),
            ["spiffe_mismatch"]
        );
    }

    #[test]
    fn missing_certificate_follows_require_certificate_and_mode_sets_action() {
        let strict = policy("{}");
        let v = evaluate(&strict, Presented::Missing, NOW);
        assert_eq!(
            (reasons(&v), v.action()),
            (vec!["no_certificate"], Action::Rejected)
        );
        let lax = policy(r#"{"require_certificate":false,"mode":"report"}"#);
        let v = evaluate(&lax, Presented::Missing, NOW);
        assert!(v.passed() && v.no_certificate_allowed);
        let report = policy(r#"{"mode":"report"}"#);
        assert_eq!(
            evaluate(&report, Presented::HandshakeFailed, NOW).action(),
            Action::Reported
        );
        assert_eq!(
            reasons(&evaluate(&report, Presented::Unparseable, NOW)),
            ["unparseable_certificate"]
        );
    }
}
