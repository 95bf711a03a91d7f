//! Native micro-benchmarks of the library (`make bench-micro`; criterion): certificate
//! parse, policy evaluation, DN normalisation, and the filter's response-headers callback
//! on a warm cache, both through the test double `FakeHost` (which records every call)
//! and through the lean host of `bench/hotpath` (which answers like Envoy and records
//! nothing), plus the same callback with the cache disabled.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../bench/hotpath/src/lean.rs"]
#[allow(dead_code)] // shared with bench/hotpath, which uses all of it
mod lean;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use mtls_guard::filter::{configure, Flow, Instance, StreamState, Worker};
use mtls_guard::host::testing::FakeHost;
use mtls_guard::host::Host;
use mtls_guard::policy::{evaluate, Presented};
use mtls_guard::{cert, config, dn};

use lean::{full_policy, LeanHost};

const EC256: &[u8] = include_bytes!("../tests/fixtures/ec256_spiffe.pem");
const RSA2048: &[u8] = include_bytes!("../tests/fixtures/rsa2048.pem");
/// Inside the fixtures' validity (2026-01-01 .. 2028-01-01).
const AT: i64 = 1_800_000_000;
const SUBJECT: &str = "CN=orders,O=Example Corp,C=US";

/// One response through the filter: a fresh stream, then its response-headers callback.
fn respond<H: Host>(inst: &mut Instance, host: &H, worker: &mut Worker) -> Flow {
    let mut stream = StreamState::default();
    inst.on_response_headers(host, worker, &mut stream).0
}

fn cert_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("cert_parse");
    g.bench_function("pem_ec256_spiffe", |b| {
        b.iter(|| cert::parse(black_box(EC256)))
    });
    g.bench_function("pem_rsa2048", |b| {
        b.iter(|| cert::parse(black_box(RSA2048)))
    });
    let der = cert::to_der(EC256).unwrap();
    g.bench_function("der_ec256_spiffe", |b| {
        b.iter(|| cert::parse_der(black_box(&der)))
    });
    g.finish();
}

fn policy_evaluate(c: &mut Criterion) {
    let facts = cert::parse(EC256).unwrap();
    let (cfg, _) =
        config::parse(full_policy(&facts.spki_pin(), SUBJECT, 256).as_bytes(), AT).unwrap();
    assert!(evaluate(&cfg.default, Presented::Cert(&facts), AT).passed());
    let mut g = c.benchmark_group("policy");
    g.bench_function("evaluate_full_policy", |b| {
        b.iter(|| {
            evaluate(
                black_box(&cfg.default),
                Presented::Cert(black_box(&facts)),
                AT,
            )
        })
    });
    let (pins_only, _) = config::parse(
        format!(
            r#"{{"pins":[{{"id":"a","spki_sha256":"{}"}},{{"id":"b","spki_sha256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}]}}"#,
            facts.spki_pin()
        )
        .as_bytes(),
        AT,
    )
    .unwrap();
    g.bench_function("evaluate_pins_only", |b| {
        b.iter(|| {
            evaluate(
                black_box(&pins_only.default),
                Presented::Cert(black_box(&facts)),
                AT,
            )
        })
    });
    g.finish();
}

fn dn_normalisation(c: &mut Criterion) {
    let facts = cert::parse(EC256).unwrap();
    let configured = dn::parse("cn = orders ,  o=Example Corp,C=us").unwrap();
    assert!(configured.matches(&facts.subject));
    let mut g = c.benchmark_group("dn");
    g.bench_function("parse_render", |b| {
        b.iter(|| {
            dn::parse(black_box("commonName=orders, O=Example Corp, C=US")).map(|d| d.render())
        })
    });
    g.bench_function("match_normalised", |b| {
        b.iter(|| configured.matches(black_box(&facts.subject)))
    });
    g.finish();
}

fn filter_paths(c: &mut Criterion) {
    let facts = cert::parse(EC256).unwrap();
    let pin = facts.spki_pin();
    let digest = facts.sha256_hex();
    let mut g = c.benchmark_group("filter");

    // The test double: records property reads, headers and metrics (bounded below).
    let fake = FakeHost::new(AT)
        .with_config(&full_policy(&pin, SUBJECT, 256))
        .with_property("upstream.peer_certificate", EC256)
        .with_property("upstream.sha256_peer_certificate_digest", digest.as_bytes())
        .with_property("upstream.address", b"127.0.0.1:8443")
        .with_response_header(":status", "200")
        .with_response_header("content-type", "text/plain");
    let mut inst = configure(&fake).unwrap();
    let mut worker = Worker::default();
    assert_eq!(respond(&mut inst, &fake, &mut worker), Flow::Continue);
    assert_eq!(
        fake.response_header("x-upstream-verify").as_deref(),
        Some("SUCCESS")
    );
    g.bench_function("cache_hit_fakehost", |b| {
        b.iter(|| {
            // The double logs every property read; keep that log from growing.
            fake.property_reads.borrow_mut().clear();
            respond(&mut inst, &fake, &mut worker)
        })
    });

    let lean = LeanHost::new(AT, &full_policy(&pin, SUBJECT, 256), EC256, &digest);
    let mut inst = configure(&lean).unwrap();
    let mut worker = Worker::default();
    assert_eq!(respond(&mut inst, &lean, &mut worker), Flow::Continue);
    g.bench_function("cache_hit_lean_host", |b| {
        b.iter(|| respond(&mut inst, &lean, &mut worker))
    });

    let lean0 = LeanHost::new(AT, &full_policy(&pin, SUBJECT, 0), EC256, &digest);
    let mut inst0 = configure(&lean0).unwrap();
    let mut worker0 = Worker::default();
    assert_eq!(respond(&mut inst0, &lean0, &mut worker0), Flow::Continue);
    g.bench_function("cache_off_lean_host", |b| {
        b.iter(|| respond(&mut inst0, &lean0, &mut worker0))
    });
    g.finish();
}

fn config_short() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config_short();
    targets = cert_parse, policy_evaluate, dn_normalisation, filter_paths
}
criterion_main!(benches);
