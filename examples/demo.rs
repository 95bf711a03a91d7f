//! `make demo`: a throw-away PKI, a legitimate upstream and an impostor (a certificate
//! from the same trusted CA, but another identity and key), and Envoy running the filter
//! on two routes, one enforcing and one reporting. Prints what a client sees and what
//! Prometheus would scrape, then stops everything it started.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../spec/support/mod.rs"]
mod support;

use serde_json::json;
use support::*;

fn main() {
    let dir = workdir("demo");
    println!("mtls-guard demo (work files in {})\n", dir.display());

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
    pki.leaf(
        "ca",
        "orders",
        "/C=US/O=Example Corp/CN=orders.internal",
        "ec:P-256",
        "subjectAltName=DNS:orders.internal,URI:spiffe://example.org/ns/prod/sa/orders",
        "",
        "",
    );
    pki.leaf(
        "ca",
        "impostor",
        "/C=US/O=Example Corp/CN=billing.internal",
        "ec:P-256",
        "subjectAltName=DNS:billing.internal,URI:spiffe://example.org/ns/prod/sa/billing",
        "",
        "",
    );
    let orders = pki.facts("orders");
    println!("PKI: CA + gateway client cert + two upstream certs, both signed by the CA that Envoy trusts:");
    println!(
        "  orders    {}  pin {}",
        orders.subject_text,
        orders.spki_pin()
    );
    println!(
        "  impostor  {}  pin {}\n",
        pki.facts("impostor").subject_text,
        pki.facts("impostor").spki_pin()
    );

    let upstreams = Upstreams::start(
        &dir,
        &pki.cert("ca"),
        &[
            UpstreamSpec {
                name: "orders".into(),
                tls: Some((pki.cert("orders"), pki.key("orders"))),
            },
            UpstreamSpec {
                name: "impostor".into(),
                tls: Some((pki.cert("impostor"), pki.key("impostor"))),
            },
        ],
    );
    let clusters: Vec<Cluster> = ["orders", "impostor"]
        .iter()
        .map(|n| pki.mtls_cluster(n, upstreams.port(n)))
        .collect();

    let config = json!({
        "pins": [
            {"id": "current", "spki_sha256": orders.spki_pin()},
            {"id": "next", "spki_sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "not_before": "2027-06-01T00:00:00Z"}
        ],
        "subject": {"attributes": {"CN": ["orders.internal"], "O": ["Example Corp"]}},
        "spiffe": {"trust_domain": "example.org", "path_prefix": "/ns/prod/sa/orders"},
        "routes": {
            "orders-enforce": {"mode": "enforce"},
            "orders-report": {"mode": "report"}
        }
    });
    println!(
        "Filter configuration:\n{}\n",
        serde_json::to_string_pretty(&config).unwrap()
    );

    let routes: Vec<(String, String, String)> = [
        ("orders-enforce", "/enforce/orders/", "orders"),
        ("orders-enforce", "/enforce/impostor/", "impostor"),
        ("orders-report", "/report/orders/", "orders"),
        ("orders-report", "/report/impostor/", "impostor"),
    ]
    .iter()
    .map(|(n, p, c)| (n.to_string(), p.to_string(), c.to_string()))
    .collect();
    let envoy = match Envoy::start(
        &dir,
        &bootstrap_with_prefixes(&clusters, &routes, &config, "FAIL_CLOSED"),
        1,
    ) {
        Ok(e) => e,
        Err(log) => {
            eprintln!("Envoy failed to start:\n{log}");
            std::process::exit(1);
        }
    };

    let mut rejected_body = String::new();
    println!(
        "{:<16} {:<9} {:>6}  {:<21} {:<14} {:<10}",
        "route", "upstream", "status", "x-upstream-verify", "reason", "served by"
    );
    println!("{}", "-".repeat(80));
    for (route, prefix, upstream) in &routes {
        let r = envoy.get(&format!("{prefix}items/42"));
        let verify = r.header("x-upstream-verify").unwrap_or("-");
        println!(
            "{:<16} {:<9} {:>6}  {:<21} {:<14} {:<10}",
            route,
            upstream,
            r.status,
            verify,
            verify.strip_prefix("FAILED:").unwrap_or("-"),
            r.header("x-served-by").unwrap_or("(blocked)"),
        );
        if r.status == 502 {
            rejected_body = r.body_text();
        }
    }

    println!("\nBody of the rejection: {rejected_body}");
    let r = envoy.get("/enforce/orders/items/42");
    println!("\nIdentity headers stamped on a passing response (the upstream's own x-upstream-* copies are removed):");
    for (k, v) in r
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-upstream-"))
    {
        println!("  {k}: {v}");
    }

    println!("\nThe filter's series in Envoy's /stats/prometheus:");
    for line in envoy
        .prometheus()
        .lines()
        .filter(|l| l.starts_with("mtls_guard_"))
    {
        println!("  {line}");
    }
    envoy.assert_no_wasm_failure();
    drop(envoy);
    drop(upstreams);
    let _ = std::fs::remove_dir_all(&dir);
    println!("\nStopped Envoy and the upstreams; removed the work files.");
}
