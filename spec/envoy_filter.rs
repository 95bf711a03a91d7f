//! End-to-end: the real Envoy binary loads dist/mtls_guard.wasm and fronts real
//! mutual-TLS upstreams built from a PKI made with openssl for this run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use support::*;

const LEGIT_SUBJ: &str = "/C=US/O=Example Corp/CN=orders.internal";
const SANS: &str = "subjectAltName=DNS:orders.internal,URI:spiffe://example.org/ns/prod/sa/orders";

struct World {
    dir: PathBuf,
    pki: Pki,
    upstreams: Upstreams,
}

/// PKI + upstreams: legit, impostor (same CA and names, other key), expired, untrusted
/// (another CA), and a plain-HTTP one.
fn world(name: &str) -> World {
    let dir = workdir(name);
    let pki = Pki::new(&dir);
    pki.ca("ca", "/O=Example Corp/CN=Example Internal CA");
    pki.ca("otherca", "/O=Impostor Ltd/CN=Impostor CA");
    pki.leaf(
        "ca",
        "gateway",
        "/O=Example Corp/CN=gateway",
        "ec:P-256",
        "extendedKeyUsage=clientAuth",
        "",
        "",
    );
    pki.leaf("ca", "legit", LEGIT_SUBJ, "ec:P-256", SANS, "", "");
    pki.leaf("ca", "impostor", LEGIT_SUBJ, "ec:P-256", SANS, "", "");
    pki.leaf(
        "ca",
        "expired",
        LEGIT_SUBJ,
        "rsa:2048",
        SANS,
        &openssl_stamp(-400),
        &openssl_stamp(-10),
    );
    pki.leaf("otherca", "untrusted", LEGIT_SUBJ, "ec:P-256", SANS, "", "");
    let tls = |n: &str| Some((pki.cert(n), pki.key(n)));
    let specs = ["legit", "impostor", "expired", "untrusted"]
        .iter()
        .map(|n| UpstreamSpec {
            name: n.to_string(),
            tls: tls(n),
        })
        .chain([UpstreamSpec {
            name: "plain".into(),
            tls: None,
        }])
        .collect::<Vec<_>>();
    let upstreams = Upstreams::start(&dir, &pki.cert("ca"), &specs);
    World {
        dir,
        pki,
        upstreams,
    }
}

impl World {
    fn clusters(&self) -> Vec<Cluster> {
        ["legit", "impostor", "expired", "untrusted", "plain"]
            .iter()
            .map(|n| Cluster {
                name: n.to_string(),
                port: self.upstreams.port(n),
                tls: (*n != "plain").then(|| ClusterTls {
                    client_cert: self.pki.cert("gateway"),
                    client_key: self.pki.key("gateway"),
                    trusted_ca: self.pki.cert("ca"),
                    // Envoy accepts this one so that the filter is what catches it.
                    allow_expired: *n == "expired",
                    sni: "orders.internal".into(),
                }),
            })
            .collect()
    }
}

fn explain(config: &Value, dir: &std::path::Path, route: &str, cert: &std::path::Path) -> Value {
    let path = dir.join("explain-config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mtls-guard"))
        .args([
            "explain",
            "--config",
            path.to_str().unwrap(),
            "--route",
            route,
            cert.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn envoy_enforces_per_route_policies_stamps_headers_and_counts() {
    let w = world("enforce");
    let legit = w.pki.facts("legit");
    let expired = w.pki.facts("expired");
    let backup = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let config = json!({
        "route_label": "default",
        "pins": [{"id": "current", "spki_sha256": legit.spki_pin()}, {"id": "backup", "spki_sha256": backup}],
        "subject": {"dn": ["CN=orders.internal,O=Example Corp,C=US"]},
        "issuer": {"dn": ["CN=Example Internal CA,O=Example Corp"]},
        "san": {"dns": ["orders.internal"]},
        "spiffe": {"trust_domain": "example.org", "path_prefix": "/ns/prod/"},
        "routes": {
            "pass": {},
            "spki_mismatch": {},
            "cert_pin": {"pins": [{"id": "fp", "cert_sha256": legit.sha256_hex()}, {"id": "backup", "spki_sha256": backup}]},
            "pin_expired": {"pins": [{"id": "old", "spki_sha256": legit.spki_pin(), "not_after": "2020-01-01T00:00:00Z"}, {"id": "backup", "spki_sha256": backup}]},
            "pin_future": {"pins": [{"id": "next", "spki_sha256": legit.spki_pin(), "not_before": "2099-01-01T00:00:00Z"}, {"id": "backup", "spki_sha256": backup}]},
            "subject_mismatch": {"subject": {"dn": ["CN=billing.internal,O=Example Corp,C=US"]}},
            "issuer_mismatch": {"issuer": {"dn": ["CN=Other CA,O=Example Corp"]}},
            "san_mismatch": {"san": {"dns": ["billing.internal"]}},
            "spiffe_mismatch": {"spiffe": {"trust_domain": "example.com"}},
            "expired": {"pins": [{"id": "exp", "spki_sha256": expired.spki_pin()}, {"id": "backup", "spki_sha256": backup}]},
            "report": {"mode": "report"},
            "plain": {},
            "untrusted": {},
            "custom_status": {"deny_status": 421, "headers": {"prefix": "x-peer-"}},
            // Labels that are words of the metric-name encoding must still decode right.
            "outcome": {"pins": [{"id": "route", "spki_sha256": legit.spki_pin()}, {"id": "pin", "spki_sha256": backup}]}
        }
    });
    // (route, cluster, status, verify header, served by upstream)
    let table: &[(&str, &str, u16, &str, Option<&str>)] = &[
        ("pass", "legit", 200, "SUCCESS", Some("legit")),
        ("outcome", "legit", 200, "SUCCESS", Some("legit")),
        ("unlisted", "legit", 200, "SUCCESS", Some("legit")),
        (
            "spki_mismatch",
            "impostor",
            502,
            "FAILED:pin_mismatch",
            None,
        ),
        ("cert_pin", "legit", 200, "SUCCESS", Some("legit")),
        ("pin_expired", "legit", 502, "FAILED:pin_mismatch", None),
        ("pin_future", "legit", 502, "FAILED:pin_mismatch", None),
        (
            "subject_mismatch",
            "legit",
            502,
            "FAILED:subject_mismatch",
            None,
        ),
        (
            "issuer_mismatch",
            "legit",
            502,
            "FAILED:issuer_mismatch",
            None,
        ),
        ("san_mismatch", "legit", 502, "FAILED:san_mismatch", None),
        (
            "spiffe_mismatch",
            "legit",
            502,
            "FAILED:spiffe_mismatch",
            None,
        ),
        ("expired", "expired", 502, "FAILED:expired", None),
        (
            "report",
            "impostor",
            200,
            "FAILED:pin_mismatch",
            Some("impostor"),
        ),
        ("plain", "plain", 502, "FAILED:no_certificate", None),
        (
            "untrusted",
            "untrusted",
            503,
            "FAILED:handshake_failed",
            None,
        ),
    ];
    let routes: Vec<Route> = table
        .iter()
        .map(|(r, c, ..)| Route {
            name: r.to_string(),
            cluster: c.to_string(),
        })
        .chain([Route {
            name: "custom_status".into(),
            cluster: "impostor".into(),
        }])
        .collect();
    let envoy = Envoy::start(
        &w.dir,
        &bootstrap(&w.clusters(), &routes, &config, "FAIL_CLOSED"),
        2,
    )
    .unwrap();

    const ROUNDS: usize = 3;
    for round in 0..ROUNDS {
        for (route, cluster, status, verify, served_by) in table {
            let r = envoy.get(&format!("/{route}/item"));
            let ctx = format!(
                "route {route} (round {round}): {} {:?} {}",
                r.status,
                r.headers,
                r.body_text()
            );
            assert_eq!(r.status, *status, "{ctx}");
            assert_eq!(r.headers_named("x-upstream-verify"), vec![*verify], "{ctx}");
            assert_eq!(r.header("x-served-by"), *served_by, "{ctx}");
            assert_eq!(
                r.header("x-upstream-injected"),
                None,
                "spoofed header must be stripped: {ctx}"
            );
            if *status == 502 {
                let reason = verify.trim_start_matches("FAILED:");
                assert_eq!(r.header("content-type"), Some("application/json"), "{ctx}");
                assert_eq!(
                    r.json(),
                    json!({"message": "upstream certificate rejected", "reason": reason}),
                    "{ctx}"
                );
            }
            if round == 0 && *cluster != "plain" && *cluster != "untrusted" {
                // The filter and the CLI agree on certificates neither has seen before.
                let e = explain(&config, &w.dir, route, &w.pki.cert(cluster));
                let cli_verify = match e["reasons"].as_array().and_then(|a| a.first()) {
                    Some(r) => format!("FAILED:{}", r.as_str().unwrap()),
                    None => "SUCCESS".into(),
                };
                assert_eq!(cli_verify, *verify, "explain disagrees on {route}: {e}");
            }
        }
    }

    // Identity headers on a passing response are the legit certificate's, once each;
    // the upstream's spoofed copies are gone.
    let r = envoy.get("/pass/x");
    assert_eq!(
        r.headers_named("x-upstream-cert-subject"),
        vec!["CN=orders.internal,O=Example Corp,C=US"]
    );
    assert_eq!(
        r.header("x-upstream-cert-issuer"),
        Some("CN=Example Internal CA,O=Example Corp")
    );
    assert_eq!(
        r.header("x-upstream-cert-sha256"),
        Some(legit.sha256_hex().as_str())
    );
    assert_eq!(
        r.header("x-upstream-cert-spki-sha256"),
        Some(legit.spki_pin().as_str())
    );
    assert_eq!(
        r.header("x-upstream-cert-serial"),
        Some(legit.serial_hex().as_str())
    );
    assert_eq!(
        r.header("x-upstream-cert-not-after"),
        Some(mtls_guard::timefmt::format_rfc3339(legit.not_after).as_str())
    );
    assert_eq!(
        r.header("x-upstream-spiffe-id"),
        Some("spiffe://example.org/ns/prod/sa/orders")
    );

    // Per-route deny status and header prefix; the x-upstream-* spoofs are not ours to
    // strip under another prefix, the x-peer-* namespace is.
    let r = envoy.get("/custom_status/x");
    assert_eq!(r.status, 421);
    assert_eq!(r.header("x-peer-verify"), Some("FAILED:pin_mismatch"));

    // Prometheus text from Envoy's admin endpoint, decoded by the shipped stats_tags.
    let text = envoy.prometheus();
    let n = (ROUNDS) as f64;
    let checks = |route: &str, outcome: &str, reason: &str| {
        sample(
            &text,
            "mtls_guard_checks_total",
            &[("route", route), ("outcome", outcome), ("reason", reason)],
        )
    };
    assert_eq!(checks("pass", "pass", "none"), Some(n + 1.0), "{text}");
    assert_eq!(checks("default", "pass", "none"), Some(n));
    assert_eq!(checks("spki_mismatch", "rejected", "pin_mismatch"), Some(n));
    assert_eq!(checks("report", "reported", "pin_mismatch"), Some(n));
    assert_eq!(checks("expired", "rejected", "expired"), Some(n));
    assert_eq!(checks("plain", "rejected", "no_certificate"), Some(n));
    assert_eq!(checks("untrusted", "rejected", "handshake_failed"), Some(n));
    assert_eq!(
        checks("custom_status", "rejected", "pin_mismatch"),
        Some(1.0)
    );
    let pins = |route: &str, pin: &str| {
        sample(
            &text,
            "mtls_guard_pin_matches_total",
            &[("route", route), ("pin", pin)],
        )
    };
    assert_eq!(pins("pass", "current"), Some(n + 1.0));
    assert_eq!(pins("cert_pin", "fp"), Some(n));
    assert_eq!(
        checks("outcome", "pass", "none"),
        Some(n),
        "a route labelled `outcome`"
    );
    assert_eq!(pins("outcome", "route"), Some(n), "a pin called `route`");
    assert_eq!(
        pins("spki_mismatch", "current"),
        None,
        "no pin matched the impostor"
    );
    let not_after = sample(
        &text,
        "mtls_guard_cert_not_after_seconds",
        &[("route", "pass")],
    );
    assert_eq!(not_after, Some(legit.not_after as f64));
    assert!(
        !text.contains("mtls_guard_checks_total.route"),
        "labels must be decoded, not left in names"
    );

    envoy.assert_no_wasm_failure();
}

#[test]
fn envoy_refuses_an_invalid_filter_config_naming_the_json_path() {
    let w = world("badconfig");
    let routes = vec![Route {
        name: "pass".into(),
        cluster: "legit".into(),
    }];
    let bad = json!({"pins": [{"id": "a", "spki_sha256": "dGhpcyBpcyBub3QgMzIgYnl0ZXM="}]});
    let result = Envoy::start(
        &w.dir,
        &bootstrap(&w.clusters(), &routes, &bad, "FAIL_CLOSED"),
        1,
    );
    let log = match result {
        Ok(envoy) => {
            // Envoy may start with the listener in a failed state; the request must not pass.
            let r = envoy.get("/pass/x");
            assert_ne!(
                r.status, 200,
                "a bad config must not let traffic through unchecked"
            );
            envoy.log()
        }
        Err(log) => log,
    };
    assert!(
        log.contains("$.pins[0].spki_sha256: must decode to 32 bytes (SHA-256), got 20"),
        "Envoy log does not carry the filter's error:\n{log}"
    );
}

#[test]
fn shipped_envoy_example_is_accepted_by_envoy_and_decodes_the_metric_names() {
    let text = std::fs::read_to_string(root().join("envoy/envoy-example.yaml")).unwrap();
    for (tag, regex) in mtls_guard::metrics::ENVOY_STATS_TAGS {
        assert!(
            text.contains(&format!("- tag_name: {tag}\n    regex: '{regex}'")),
            "envoy-example.yaml lacks the {tag} tag regex"
        );
    }
    // The filter configuration embedded in the example is one the filter accepts.
    let start = text.find("value: |").unwrap() + "value: |".len();
    let end = text[start..]
        .find("- name: envoy.filters.http.router")
        .unwrap()
        + start;
    let embedded = &text[start..end];
    if let Err(e) = mtls_guard::config::parse(embedded.as_bytes(), 1_800_000_000) {
        panic!("the example's filter config is refused: {e}\n{embedded}");
    }
    let w = world("example");
    let files = [
        ("/etc/mtls-guard/mtls_guard.wasm", wasm_path()),
        ("/etc/mtls-guard/gateway.pem", w.pki.cert("gateway")),
        ("/etc/mtls-guard/gateway-key.pem", w.pki.key("gateway")),
        ("/etc/mtls-guard/ca.pem", w.pki.cert("ca")),
    ];
    let mut local = text.clone();
    for (placeholder, real) in &files {
        local = local.replace(placeholder, real.to_str().unwrap());
    }
    let path = w.dir.join("envoy-example.yaml");
    std::fs::write(&path, local).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "envoy --mode validate refused the example:\n{all}"
    );
}
