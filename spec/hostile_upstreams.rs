//! End-to-end on Envoy with `failure_policy: FAIL_CLOSED`: upstreams that die, stall,
//! spoof headers or fail the handshake, and configuration changes. The VM must never
//! panic or be reloaded.
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
const SANS: &str = "subjectAltName=DNS:orders.internal";

fn pki(dir: &std::path::Path) -> Pki {
    let pki = Pki::new(dir);
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
    pki.leaf("ca", "good", SUBJ, "ec:P-256", SANS, "", "");
    pki.leaf("ca", "rogue", SUBJ, "ec:P-256", SANS, "", "");
    pki.leaf("otherca", "untrusted", SUBJ, "ec:P-256", SANS, "", "");
    pki
}

fn cluster(pki: &Pki, name: &str, port: u16) -> Cluster {
    pki.mtls_cluster(name, port)
}

fn policy(pki: &Pki) -> serde_json::Value {
    json!({
        "pins": [
            {"id": "current", "spki_sha256": pki.facts("good").spki_pin()},
            {"id": "backup", "cert_sha256": "00".repeat(32)}
        ],
        "routes": {"good": {}, "rogue": {}, "dying": {}, "slow": {}, "slow_rogue": {}, "untrusted": {}}
    })
}

fn vm_health(envoy: &Envoy) -> (Option<u64>, Option<u64>, Option<u64>) {
    (
        envoy.stat("wasm.envoy.wasm.runtime.v8.created"),
        envoy.stat("wasm.mtls_guard.vm_reload"),
        envoy.stat("wasm.mtls_guard.vm_reload_failure"),
    )
}

#[test]
fn dying_slow_and_failing_upstreams_get_reasoned_verdicts_without_vm_failure() {
    let dir = workdir("hostile");
    let pki = pki(&dir);
    let main = Upstreams::start_full(
        &dir,
        &pki.cert("ca"),
        &[
            UpstreamSpec::tls("good", pki.cert("good"), pki.key("good")),
            UpstreamSpec::tls("rogue", pki.cert("rogue"), pki.key("rogue")),
            UpstreamSpec::tls("slow", pki.cert("good"), pki.key("good")),
            UpstreamSpec::tls("slow_rogue", pki.cert("rogue"), pki.key("rogue")),
            UpstreamSpec::tls("untrusted", pki.cert("untrusted"), pki.key("untrusted")),
        ],
        false,
        &[("slow", 1_500), ("slow_rogue", 1_500)],
    );
    let dying_dir = dir.join("dying");
    std::fs::create_dir_all(&dying_dir).unwrap();
    let dying = Upstreams::start(
        &dying_dir,
        &pki.cert("ca"),
        &[UpstreamSpec::tls(
            "dying",
            pki.cert("good"),
            pki.key("good"),
        )],
    );
    let mut clusters: Vec<Cluster> = ["good", "rogue", "slow", "slow_rogue", "untrusted"]
        .iter()
        .map(|n| cluster(&pki, n, main.port(n)))
        .collect();
    clusters.push(cluster(&pki, "dying", dying.port("dying")));
    let routes: Vec<Route> = clusters
        .iter()
        .map(|c| Route {
            name: c.name.clone(),
            cluster: c.name.clone(),
        })
        .collect();
    let envoy = Envoy::start(
        &dir,
        &bootstrap(&clusters, &routes, &policy(&pki), "FAIL_CLOSED"),
        2,
    )
    .unwrap();
    let health_at_start = vm_health(&envoy);
    assert_eq!((health_at_start.1, health_at_start.2), (Some(0), Some(0)));

    // The dying upstream serves, then its process is killed mid-run.
    assert_eq!(envoy.get("/dying/a").status, 200);
    drop(dying);
    for _ in 0..5 {
        let r = envoy.get("/dying/a");
        assert_eq!(
            r.status,
            503,
            "Envoy's own reply for a dead upstream: {}",
            r.body_text()
        );
        assert_eq!(
            r.header("x-upstream-verify"),
            Some("FAILED:handshake_failed"),
            "connection failures are the gateway's transport failures"
        );
    }
    // Everything else keeps working on the same workers.
    let t = std::time::Instant::now();
    let slow = envoy.get("/slow/a");
    assert!(t.elapsed() >= std::time::Duration::from_millis(1_400));
    assert_eq!(
        (slow.status, slow.header("x-upstream-verify")),
        (200, Some("SUCCESS"))
    );
    let slow_rogue = envoy.get("/slow_rogue/a");
    assert_eq!(
        (slow_rogue.status, slow_rogue.header("x-upstream-verify")),
        (502, Some("FAILED:pin_mismatch"))
    );
    let untrusted = envoy.get("/untrusted/a");
    assert_eq!(
        (untrusted.status, untrusted.header("x-upstream-verify")),
        (503, Some("FAILED:handshake_failed"))
    );
    // Spoofed identity headers from a legitimate upstream never survive.
    for _ in 0..20 {
        let r = envoy.get("/good/a");
        assert_eq!(r.headers_named("x-upstream-verify"), vec!["SUCCESS"]);
        assert_eq!(r.header("x-upstream-injected"), None);
        assert_eq!(envoy.get("/rogue/a").status, 502);
    }
    let text = envoy.prometheus();
    assert_eq!(
        sample(
            &text,
            "mtls_guard_checks_total",
            &[
                ("route", "dying"),
                ("outcome", "rejected"),
                ("reason", "handshake_failed")
            ]
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            "mtls_guard_checks_total",
            &[("route", "good"), ("outcome", "pass"), ("reason", "none")]
        ),
        Some(20.0)
    );

    assert_eq!(
        vm_health(&envoy),
        health_at_start,
        "no VM was created, reloaded or failed during the run"
    );
    envoy.assert_no_wasm_failure();
}

#[test]
fn a_configuration_change_takes_effect_on_restart() {
    let dir = workdir("reconfig");
    let pki = pki(&dir);
    let up = Upstreams::start(
        &dir,
        &pki.cert("ca"),
        &[UpstreamSpec::tls("good", pki.cert("good"), pki.key("good"))],
    );
    let clusters = [cluster(&pki, "good", up.port("good"))];
    let routes = [Route {
        name: "good".into(),
        cluster: "good".into(),
    }];

    let mut before = Envoy::start(
        &dir,
        &bootstrap(&clusters, &routes, &policy(&pki), "FAIL_CLOSED"),
        1,
    )
    .unwrap();
    assert_eq!(before.get("/good/a").status, 200);
    before.stop();

    // New pins that no longer include the upstream's key.
    let changed = json!({"pins": [
        {"id": "next", "spki_sha256": pki.facts("rogue").spki_pin()},
        {"id": "backup", "cert_sha256": "00".repeat(32)}
    ]});
    let after = Envoy::start(
        &dir,
        &bootstrap(&clusters, &routes, &changed, "FAIL_CLOSED"),
        1,
    )
    .unwrap();
    let r = after.get("/good/a");
    assert_eq!(
        (r.status, r.header("x-upstream-verify")),
        (502, Some("FAILED:pin_mismatch"))
    );
    after.assert_no_wasm_failure();
}
