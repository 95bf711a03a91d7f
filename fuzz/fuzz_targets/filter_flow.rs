//! The whole flow of `mtls_guard::filter` against `FakeHost`, with the fuzz input as the
//! upstream's certificate property (Envoy's `upstream.peer_certificate`, Kong's
//! `ngx.kong_upstream_ssl_server_raw_cert`) and fixed configs. Whatever the bytes: every
//! header we stamp or send is printable ASCII (no CR, LF, NUL: no header injection), the
//! upstream's own prefixed headers are gone, the verify header tells the verdict, and no
//! log line carries a control character.
#![no_main]

mod common;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mtls_guard::cert::{self, PeerCert};
use mtls_guard::filter::{configure, Checked, Flow, StreamState, Worker};
use mtls_guard::host::testing::FakeHost;
use mtls_guard::policy::Action;

fn spki_pin(pem: &[u8]) -> String {
    cert::parse(pem).map(|c| c.spki_pin()).unwrap_or_default()
}

/// Envoy: enforce every section, canary, quarantine and a shadow policy.
static ENVOY_CONFIG: LazyLock<String> = LazyLock::new(|| {
    serde_json::json!({
        "mode": "enforce",
        "route_label": "orders",
        "pins": [
            {"id": "current", "spki_sha256": spki_pin(common::GOOD_PEM)},
            {"id": "next", "cert_sha256": "00".repeat(32), "not_before": "2026-06-01T00:00:00Z"}
        ],
        "subject": {"attributes": {"CN": ["orders*"], "O": ["Example*"]}},
        "issuer": {"dn": ["CN=Example Internal CA,O=Example Corp"]},
        "san": {"dns": ["*.prod.svc.cluster.local", "orders.internal"]},
        "spiffe": {"trust_domain": "example.org", "path_prefix": "/ns/"},
        "validity": {"min_remaining_days": 14},
        "revoked_serials": ["0a:1b:2c"],
        "enforce_percent": 50,
        "quarantine_seconds": 60,
        "shadow": {"pins": [
            {"id": "s1", "spki_sha256": spki_pin(common::GOOD_PEM)},
            {"id": "s2", "spki_sha256": spki_pin(common::IMPOSTOR_PEM)}
        ]}
    })
    .to_string()
});

/// Kong: report by default with another prefix and no certificate required; one route
/// enforces a SAN policy.
static KONG_CONFIG: LazyLock<String> = LazyLock::new(|| {
    serde_json::json!({
        "mode": "report",
        "require_certificate": false,
        "headers": {"prefix": "x-mtls-"},
        "subject": {"dn": ["CN=orders,O=Example Corp,C=US"]},
        "routes": {
            "r1": {
                "mode": "enforce",
                "deny_status": 403,
                "headers": {"prefix": "x-mtls-"},
                "san": {"ip": ["10.1.2.3"], "email": ["many@example.org"], "uri": ["https://many.internal/"]}
            }
        }
    })
    .to_string()
});

const AT: i64 = common::NOW;

/// Headers an upstream sends to spoof an identity: all must be removed.
fn spoofing(host: FakeHost, prefix: &str) -> FakeHost {
    let upper = prefix.to_ascii_uppercase();
    host.with_response_header(":status", "200")
        .with_response_header("content-type", "text/plain")
        .with_response_header(&format!("{prefix}verify"), "SUCCESS")
        .with_response_header(&format!("{upper}CERT-SUBJECT"), "CN=forged")
        .with_response_header(&format!("{prefix}spiffe-id"), "spiffe://example.org/forged")
        .with_response_header(&format!("{prefix}forged"), "1")
}

fn envoy_host(data: &[u8], parsed: Option<&PeerCert>) -> FakeHost {
    let mut h = FakeHost::new(AT)
        .with_config(&ENVOY_CONFIG)
        .with_property("upstream.peer_certificate", data)
        .with_property("upstream.address", b"127.0.0.1:8443");
    // Envoy exposes the digest whenever it has a certificate; the filter keys its cache
    // on it.
    if let Some(c) = parsed {
        h = h.with_property(
            "upstream.sha256_peer_certificate_digest",
            c.sha256_hex().as_bytes(),
        );
    }
    spoofing(h, "x-upstream-")
}

fn kong_host(data: &[u8]) -> FakeHost {
    let h = FakeHost::new(AT)
        .with_config(&KONG_CONFIG)
        .with_property("ngx.upstream_scheme", b"https")
        .with_property("ngx.kong_upstream_ssl_server_raw_cert", data)
        .with_property("kong.route_name", b"r1");
    spoofing(h, "x-mtls-")
}

/// What must hold after one response went through the filter.
fn check(
    host: &FakeHost,
    envoy: bool,
    prefix: &str,
    parsed: Option<&PeerCert>,
    checked: Option<&Checked>,
) {
    let response = host.response.borrow();
    for (name, value) in response.iter() {
        common::assert_header_value(name, name);
        common::assert_header_value(name, value);
    }
    if let Some((status, headers, body)) = host.sent.borrow().as_ref() {
        assert!((400..=599).contains(status), "{status}");
        for (name, value) in headers {
            common::assert_header_value(name, name);
            common::assert_header_value(name, value);
        }
        assert!(serde_json::from_slice::<serde_json::Value>(body).is_ok());
    }
    for (_, line) in host.logs.borrow().iter() {
        common::assert_log_line(line);
    }
    let Some(checked) = checked else {
        return;
    };
    let expected_verify = |verify: Option<&str>| match checked.reasons.primary() {
        Some(r) => assert_eq!(verify, Some(format!("FAILED:{}", r.as_str())).as_deref()),
        None => assert!(matches!(verify, Some("SUCCESS" | "NONE")), "{verify:?}"),
    };
    if envoy {
        if let Some((_, headers, _)) = host.sent.borrow().as_ref() {
            // Envoy replaces the whole response, headers included, with the local reply.
            let verify = format!("{prefix}verify");
            expected_verify(
                headers
                    .iter()
                    .find(|(k, _)| *k == verify)
                    .map(|(_, v)| v.as_str()),
            );
            return;
        }
    }
    // The upstream's own prefixed headers are gone; ours tell the verdict.
    let ours = |suffix: &str| host.response_header(&format!("{prefix}{suffix}"));
    for (name, _) in response.iter() {
        let lower = name.to_ascii_lowercase();
        assert_ne!(lower, format!("{prefix}forged"), "spoofed header survived");
        if lower.starts_with(prefix) {
            assert_eq!(&lower, name, "upstream's {name} survived");
        }
    }
    expected_verify(ours("verify").as_deref());
    assert_eq!(checked.action == Action::Pass, checked.reasons.is_empty());
    assert_eq!(ours("cert-subject"), parsed.map(|c| c.subject_text.clone()));
    assert_eq!(ours("cert-issuer"), parsed.map(|c| c.issuer_text.clone()));
    let spiffe = parsed
        .and_then(|c| c.spiffe_id.clone())
        .filter(|s| s.bytes().all(|b| (0x21..0x7f).contains(&b)));
    assert_eq!(ours("spiffe-id"), spiffe);
}

/// Requests through one worker: (request id, seconds after AT). Under
/// `enforce_percent: 50`, `req-4` (bucket 30) is enforced and `req-1` (bucket 97) only
/// reported; a rejection of the first quarantines the second, and the third comes after
/// the 60 s window as the probe. The certificate cache serves every parse but the first.
const STREAMS: [(&str, i64); 3] = [("req-4", 0), ("req-1", 1), ("req-6", 120)];

fn drive(host: &mut FakeHost, envoy: bool, prefix: &str, parsed: Option<&PeerCert>) {
    let Some(mut instance) = configure(&*host) else {
        panic!("fixed config refused: {:?}", host.logs.borrow());
    };
    let mut worker = Worker::default();
    for (id, later) in STREAMS {
        host.time = AT + later;
        host.request_headers = vec![("x-request-id".into(), id.into())];
        let host = &*host;
        let mut stream = StreamState::default();
        let flow = instance.on_request_headers(host, &mut worker, &mut stream);
        if flow == Flow::Pause {
            // Quarantined before the upstream: the local reply is all there is.
            assert!(host.sent.borrow().is_some());
            check(host, envoy, prefix, parsed, None);
        } else {
            let (flow, checked) = instance.on_response_headers(host, &mut worker, &mut stream);
            if flow == Flow::Pause {
                assert_eq!(checked.as_ref().map(|c| c.action), Some(Action::Rejected));
            }
            check(host, envoy, prefix, parsed, checked.as_ref());
        }
        // The next response starts from what the upstream sends.
        host.sent.replace(None);
        let fresh = spoofing(FakeHost::default(), prefix);
        host.response.replace(fresh.response.take());
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = cert::parse(data).ok();
    let envoy = &mut envoy_host(data, parsed.as_ref());
    drive(envoy, true, "x-upstream-", parsed.as_ref());
    drive(&mut kong_host(data), false, "x-mtls-", parsed.as_ref());
});
