//! Soak: bounded load with wrk on 127.0.0.1 through Envoy running the filter, across a
//! legitimate and a rejected route at the same time. Zero wrong verdicts, zero 5xx other
//! than the intended rejections, no socket errors, RSS flat after warm-up, no VM failure.
//!
//! Duration: MTLS_GUARD_SOAK_SECONDS (default 20; `make soak` runs 300).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use serde_json::json;
use support::*;

struct WrkResult {
    tally: BTreeMap<String, u64>,
    errors: Vec<u64>,
}

fn wrk(target: &str, seconds: u64) -> std::process::Child {
    Command::new("wrk")
        .args([
            "-t1",
            "-c8",
            &format!("-d{seconds}s"),
            "--timeout",
            "5s",
            "-s",
        ])
        .arg(root().join("spec/support/tally.lua"))
        .arg(target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk runs (apt-get install wrk; make soak installs it)")
}

fn finish(child: std::process::Child) -> WrkResult {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tally_line = text
        .lines()
        .find_map(|l| l.strip_prefix("TALLY "))
        .unwrap_or_else(|| panic!("no tally in {text}"));
    let tally: BTreeMap<String, u64> = serde_json::from_str(tally_line).unwrap();
    let errors = text
        .lines()
        .find_map(|l| l.strip_prefix("ERRORS "))
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    WrkResult { tally, errors }
}

#[test]
fn soak_gives_zero_wrong_verdicts_and_flat_memory() {
    let seconds: u64 = std::env::var("MTLS_GUARD_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = workdir("soak");
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
    let sans = "subjectAltName=DNS:orders.internal,URI:spiffe://example.org/ns/prod/sa/orders";
    pki.leaf(
        "ca",
        "good",
        "/C=US/O=Example Corp/CN=orders.internal",
        "ec:P-256",
        sans,
        "",
        "",
    );
    pki.leaf(
        "ca",
        "rogue",
        "/C=US/O=Example Corp/CN=orders.internal",
        "ec:P-256",
        sans,
        "",
        "",
    );
    let up = Upstreams::start(
        &dir,
        &pki.cert("ca"),
        &[
            UpstreamSpec::tls("good", pki.cert("good"), pki.key("good")),
            UpstreamSpec::tls("rogue", pki.cert("rogue"), pki.key("rogue")),
        ],
    );
    let clusters: Vec<Cluster> = ["good", "rogue"]
        .iter()
        .map(|n| pki.mtls_cluster(n, up.port(n)))
        .collect();
    let config = json!({
        "pins": [{"id": "current", "spki_sha256": pki.facts("good").spki_pin()}, {"id": "backup", "cert_sha256": "00".repeat(32)}],
        "subject": {"attributes": {"CN": ["orders.internal"]}},
        "spiffe": {"trust_domain": "example.org", "path_prefix": "/ns/prod/"},
        "validity": {"min_remaining_days": 7},
        "routes": {"good": {}, "rogue": {}}
    });
    let routes = vec![
        Route {
            name: "good".into(),
            cluster: "good".into(),
        },
        Route {
            name: "rogue".into(),
            cluster: "rogue".into(),
        },
    ];
    let envoy = Envoy::start(
        &dir,
        &bootstrap(&clusters, &routes, &config, "FAIL_CLOSED"),
        2,
    )
    .unwrap();
    let base = format!("http://{}", envoy.listener);
    let vm_created = envoy.stat("wasm.envoy.wasm.runtime.v8.created");

    // Warm-up, then the measured run on both routes at once.
    let warm = (seconds / 5).clamp(3, 30);
    finish(wrk(&format!("{base}/good/w"), warm));
    finish(wrk(&format!("{base}/rogue/w"), warm));
    let rss_warm = envoy.rss_kib().unwrap();
    let good = wrk(&format!("{base}/good/soak"), seconds);
    let rogue = wrk(&format!("{base}/rogue/soak"), seconds);
    let (good, rogue) = (finish(good), finish(rogue));
    let rss_end = envoy.rss_kib().unwrap();

    let good_n: u64 = good.tally.values().sum();
    let rogue_n: u64 = rogue.tally.values().sum();
    eprintln!(
        "soak {seconds}s: {good_n} legitimate + {rogue_n} rejected-route responses; tallies {:?} {:?}; RSS {rss_warm} KiB after warm-up, {rss_end} KiB at the end",
        good.tally, rogue.tally
    );
    assert!(good_n > 0 && rogue_n > 0);
    assert_eq!(
        good.tally.keys().collect::<Vec<_>>(),
        vec!["200 SUCCESS"],
        "wrong verdicts on the legitimate route"
    );
    assert_eq!(
        rogue.tally.keys().collect::<Vec<_>>(),
        vec!["502 FAILED:pin_mismatch"],
        "wrong verdicts on the rejected route"
    );
    assert_eq!(
        good.errors,
        vec![0, 0, 0, 0, 0],
        "socket errors on the legitimate route (connect read write status timeout)"
    );
    assert_eq!(
        rogue.errors[..3],
        [0, 0, 0],
        "socket errors on the rejected route"
    );
    // The rejected route answers non-2xx by design: wrk counts those as status errors.
    assert_eq!(rogue.errors[3], rogue_n);

    let text = envoy.prometheus();
    let pass = sample(
        &text,
        "mtls_guard_checks_total",
        &[("route", "good"), ("outcome", "pass"), ("reason", "none")],
    )
    .unwrap();
    let rejected = sample(
        &text,
        "mtls_guard_checks_total",
        &[
            ("route", "rogue"),
            ("outcome", "rejected"),
            ("reason", "pin_mismatch"),
        ],
    )
    .unwrap();
    assert!(
        pass >= good_n as f64 && rejected >= rogue_n as f64,
        "metrics {pass}/{rejected} vs {good_n}/{rogue_n}"
    );

    // Flat memory: the certificate cache and metric ids are bounded; growth after warm-up
    // stays within allocator noise.
    assert!(
        rss_end <= rss_warm + 8 * 1024,
        "RSS grew from {rss_warm} KiB to {rss_end} KiB"
    );
    assert_eq!(
        envoy.stat("wasm.envoy.wasm.runtime.v8.created"),
        vm_created,
        "a VM was created during the soak"
    );
    assert_eq!(envoy.stat("wasm.mtls_guard.vm_reload"), Some(0));
    envoy.assert_no_wasm_failure();
}
