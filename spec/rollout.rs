//! End-to-end on Envoy: safe rollout and rotation. Key rotation with the pin metrics
//! moving, canary enforcement by request id, a shadow policy, quarantine before the
//! upstream is contacted, and revocation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::json;
use support::*;

const SUBJ: &str = "/C=US/O=Example Corp/CN=orders.internal";
const SANS: &str = "subjectAltName=DNS:orders.internal,URI:spiffe://example.org/ns/prod/sa/orders";

struct Setup {
    dir: std::path::PathBuf,
    pki: Pki,
}

fn setup(name: &str) -> Setup {
    let dir = workdir(name);
    let pki = Pki::new(&dir);
    pki.ca("ca", "/O=Example Corp/CN=Example Internal CA");
    pki.leaf(
        "ca",
        "gateway",
        "/O=Example Corp/CN=gateway",
        "ec:P-256",
        "extendedKeyUsage=clientAuth",
        "",
        "",
    );
    for n in ["old", "new", "rogue"] {
        pki.leaf("ca", n, SUBJ, "ec:P-256", SANS, "", "");
    }
    Setup { dir, pki }
}

impl Setup {
    fn cluster(&self, name: &str, port: u16) -> Cluster {
        self.pki.mtls_cluster(name, port)
    }
}

#[test]
fn rotation_moves_pin_metrics_and_an_unpinned_key_is_rejected_at_once() {
    let s = setup("rotation");
    let up = Upstreams::start_with(
        &s.dir,
        &s.pki.cert("ca"),
        &[UpstreamSpec::tls(
            "svc",
            s.pki.cert("old"),
            s.pki.key("old"),
        )],
        true,
    );
    let config = json!({
        "route_label": "orders",
        "pins": [
            {"id": "old", "spki_sha256": s.pki.facts("old").spki_pin()},
            {"id": "new", "spki_sha256": s.pki.facts("new").spki_pin()}
        ]
    });
    let routes = vec![Route {
        name: "orders".into(),
        cluster: "svc".into(),
    }];
    let envoy = Envoy::start(
        &s.dir,
        &bootstrap(
            &[s.cluster("svc", up.port("svc"))],
            &routes,
            &config,
            "FAIL_CLOSED",
        ),
        1,
    )
    .unwrap();
    let pins = |pin: &str| {
        envoy.sample(
            "mtls_guard_pin_matches_total",
            &[("route", "orders"), ("pin", pin)],
        )
    };

    for _ in 0..4 {
        assert_eq!(envoy.get("/orders/a").status, 200);
    }
    assert_eq!((pins("old"), pins("new")), (Some(4.0), None));

    up.rotate("svc", &s.pki.cert("new"), &s.pki.key("new"));
    // A connection opened before the switch may still carry the old certificate; the new
    // key must show up within a few requests and then stay.
    let new_pin = s.pki.facts("new").spki_pin();
    let mut still_old = 0;
    while envoy.get("/orders/a").header("x-upstream-cert-spki-sha256") != Some(new_pin.as_str()) {
        still_old += 1;
        assert!(still_old < 5, "the rotated certificate never showed up");
    }
    for _ in 0..5 {
        let r = envoy.get("/orders/a");
        assert_eq!(r.status, 200, "{:?}", r.headers);
        assert_eq!(
            r.header("x-upstream-cert-spki-sha256"),
            Some(new_pin.as_str())
        );
    }
    assert_eq!(
        (pins("old"), pins("new")),
        (Some(4.0 + f64::from(still_old)), Some(6.0)),
        "traffic moved to the new key"
    );

    up.rotate("svc", &s.pki.cert("rogue"), &s.pki.key("rogue"));
    let served_before = up.count("svc");
    let r = envoy.get("/orders/a");
    assert_eq!(
        (r.status, r.header("x-upstream-verify")),
        (502, Some("FAILED:pin_mismatch")),
        "first response after the switch"
    );
    assert_eq!(
        up.count("svc"),
        served_before + 1,
        "without quarantine the request itself still reached the upstream"
    );
    envoy.assert_no_wasm_failure();
}

#[test]
fn canary_rejects_exactly_the_expected_request_ids() {
    let s = setup("canary");
    let up = Upstreams::start(
        &s.dir,
        &s.pki.cert("ca"),
        &[UpstreamSpec::tls(
            "rogue",
            s.pki.cert("rogue"),
            s.pki.key("rogue"),
        )],
    );
    let config = json!({
        "route_label": "orders",
        "enforce_percent": 30,
        "request_id_header": "x-canary-id",
        "pins": [{"id": "old", "spki_sha256": s.pki.facts("old").spki_pin()}, {"id": "new", "spki_sha256": s.pki.facts("new").spki_pin()}]
    });
    let routes = vec![Route {
        name: "orders".into(),
        cluster: "rogue".into(),
    }];
    let envoy = Envoy::start(
        &s.dir,
        &bootstrap(
            &[s.cluster("rogue", up.port("rogue"))],
            &routes,
            &config,
            "FAIL_CLOSED",
        ),
        2,
    )
    .unwrap();
    let ids: Vec<String> = (0..60).map(|i| format!("order-{i:04}")).collect();
    let mut rejected = 0;
    for round in 0..2 {
        for id in &ids {
            let r = envoy.get_with("/orders/a", &[("x-canary-id", id)]);
            let expect_reject = mtls_guard::policy::canary_bucket(id.as_bytes()) < 30;
            assert_eq!(
                r.status,
                if expect_reject { 502 } else { 200 },
                "{id} round {round}"
            );
            assert_eq!(r.header("x-upstream-verify"), Some("FAILED:pin_mismatch"));
            rejected += usize::from(expect_reject);
        }
    }
    assert!(
        (2 * 10..=2 * 28).contains(&rejected),
        "{rejected} of 120 rejected at 30%"
    );
    let n = |outcome: &str| {
        envoy.sample(
            "mtls_guard_checks_total",
            &[
                ("route", "orders"),
                ("outcome", outcome),
                ("reason", "pin_mismatch"),
            ],
        )
    };
    assert_eq!(n("rejected"), Some(rejected as f64));
    assert_eq!(n("reported"), Some((120 - rejected) as f64));
    envoy.assert_no_wasm_failure();
}

#[test]
fn shadow_policy_counts_disagreements_and_leaves_responses_alone() {
    let s = setup("shadow");
    let up = Upstreams::start(
        &s.dir,
        &s.pki.cert("ca"),
        &[UpstreamSpec::tls(
            "svc",
            s.pki.cert("old"),
            s.pki.key("old"),
        )],
    );
    // Live: the current key. Candidate (shadow): only the next key, plus a stricter SPIFFE path.
    let config = json!({
        "route_label": "orders",
        "pins": [{"id": "old", "spki_sha256": s.pki.facts("old").spki_pin()}, {"id": "new", "spki_sha256": s.pki.facts("new").spki_pin()}],
        "shadow": {
            "pins": [{"id": "new", "spki_sha256": s.pki.facts("new").spki_pin()}, {"id": "backup", "cert_sha256": "00".repeat(32)}],
            "spiffe": {"trust_domain": "example.org", "path_prefix": "/ns/prod/"}
        }
    });
    let routes = vec![Route {
        name: "orders".into(),
        cluster: "svc".into(),
    }];
    let envoy = Envoy::start(
        &s.dir,
        &bootstrap(
            &[s.cluster("svc", up.port("svc"))],
            &routes,
            &config,
            "FAIL_CLOSED",
        ),
        1,
    )
    .unwrap();
    for _ in 0..5 {
        let r = envoy.get("/orders/a");
        assert_eq!(
            (
                r.status,
                r.header("x-upstream-verify"),
                r.header("x-served-by")
            ),
            (200, Some("SUCCESS"), Some("svc"))
        );
    }
    let d = |side: &str| {
        envoy.sample(
            "mtls_guard_shadow_disagreements_total",
            &[("route", "orders"), ("passed", side)],
        )
    };
    assert_eq!((d("live"), d("shadow")), (Some(5.0), None));
    assert_eq!(
        envoy.sample(
            "mtls_guard_checks_total",
            &[("route", "orders"), ("outcome", "pass"), ("reason", "none")]
        ),
        Some(5.0)
    );
    envoy.assert_no_wasm_failure();
}

#[test]
fn quarantine_blocks_before_the_upstream_and_recovers_after_the_window() {
    let s = setup("quarantine");
    let up = Upstreams::start_with(
        &s.dir,
        &s.pki.cert("ca"),
        &[UpstreamSpec::tls(
            "svc",
            s.pki.cert("rogue"),
            s.pki.key("rogue"),
        )],
        true,
    );
    let config = json!({
        "route_label": "orders",
        "quarantine_seconds": 2,
        "pins": [{"id": "old", "spki_sha256": s.pki.facts("old").spki_pin()}, {"id": "new", "spki_sha256": s.pki.facts("new").spki_pin()}]
    });
    let routes = vec![Route {
        name: "orders".into(),
        cluster: "svc".into(),
    }];
    let envoy = Envoy::start(
        &s.dir,
        &bootstrap(
            &[s.cluster("svc", up.port("svc"))],
            &routes,
            &config,
            "FAIL_CLOSED",
        ),
        1,
    )
    .unwrap();

    let r = envoy.get("/orders/a");
    assert_eq!(
        (r.status, r.header("x-upstream-verify")),
        (502, Some("FAILED:pin_mismatch"))
    );
    assert_eq!(up.count("svc"), 1);
    for _ in 0..10 {
        let r = envoy.get("/orders/a");
        assert_eq!(r.status, 502);
        assert!(r.body_text().contains("quarantined"), "{}", r.body_text());
    }
    assert_eq!(
        up.count("svc"),
        1,
        "quarantined requests never reached the upstream"
    );
    assert_eq!(
        envoy.sample(
            "mtls_guard_quarantine_rejections_total",
            &[("route", "orders")]
        ),
        Some(10.0)
    );

    // The operator fixes the upstream; after the window one probe goes through, passes,
    // and the route is open again.
    up.rotate("svc", &s.pki.cert("old"), &s.pki.key("old"));
    std::thread::sleep(std::time::Duration::from_millis(2_200));
    for i in 0..5 {
        let r = envoy.get("/orders/a");
        assert_eq!(
            (r.status, r.header("x-upstream-verify")),
            (200, Some("SUCCESS")),
            "request {i} after the window"
        );
    }
    assert_eq!(up.count("svc"), 6);
    envoy.assert_no_wasm_failure();
}

#[test]
fn revoked_serials_and_fingerprints_are_rejected() {
    let s = setup("revoked");
    let up = Upstreams::start(
        &s.dir,
        &s.pki.cert("ca"),
        &[
            UpstreamSpec::tls("a", s.pki.cert("old"), s.pki.key("old")),
            UpstreamSpec::tls("b", s.pki.cert("new"), s.pki.key("new")),
        ],
    );
    let config = json!({
        "revoked_serials": [s.pki.facts("old").serial_hex().to_uppercase()],
        "revoked_sha256": [s.pki.facts("new").sha256_hex()],
        "routes": {"a": {}, "b": {}}
    });
    let routes = vec![
        Route {
            name: "a".into(),
            cluster: "a".into(),
        },
        Route {
            name: "b".into(),
            cluster: "b".into(),
        },
    ];
    let clusters = [s.cluster("a", up.port("a")), s.cluster("b", up.port("b"))];
    let envoy = Envoy::start(
        &s.dir,
        &bootstrap(&clusters, &routes, &config, "FAIL_CLOSED"),
        1,
    )
    .unwrap();
    for route in ["a", "b"] {
        let r = envoy.get(&format!("/{route}/x"));
        assert_eq!(
            (r.status, r.header("x-upstream-verify")),
            (502, Some("FAILED:revoked")),
            "{route}"
        );
        assert_eq!(
            envoy.sample(
                "mtls_guard_checks_total",
                &[
                    ("route", route),
                    ("outcome", "rejected"),
                    ("reason", "revoked")
                ]
            ),
            Some(1.0)
        );
    }
    envoy.assert_no_wasm_failure();
}
