//! The filter's flow against a scripted host: outcomes (status, headers, metrics, logs),
//! never the order of host calls.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mtls_guard::filter::{configure, Flow, HostKind, StreamState, Worker};
use mtls_guard::host::testing::FakeHost;
use mtls_guard::host::Level;
use mtls_guard::policy::Action;

const GOOD: &[u8] = include_bytes!("fixtures/ec256_spiffe.pem");
const IMPOSTOR: &[u8] = include_bytes!("fixtures/impostor.pem");
const AT: i64 = 1_800_000_000;

fn pin(pem: &[u8]) -> String {
    mtls_guard::cert::parse(pem).unwrap().spki_pin()
}

fn digest(pem: &[u8]) -> Vec<u8> {
    mtls_guard::cert::parse(pem)
        .unwrap()
        .sha256_hex()
        .into_bytes()
}

fn envoy(pem: &[u8]) -> FakeHost {
    FakeHost::new(AT)
        .with_property("upstream.peer_certificate", pem)
        .with_property("upstream.sha256_peer_certificate_digest", &digest(pem))
        .with_property("upstream.address", b"127.0.0.1:8443")
        .with_response_header(":status", "200")
        .with_response_header("content-type", "text/plain")
}

fn config(mode: &str) -> String {
    format!(
        r#"{{"mode":"{mode}","route_label":"orders","pins":[{{"id":"current","spki_sha256":"{}"}},{{"id":"next","cert_sha256":"{}"}}],"spiffe":{{"trust_domain":"example.org"}}}}"#,
        pin(GOOD),
        "00".repeat(32)
    )
}

fn run(host: &FakeHost, worker: &mut Worker) -> (Flow, Option<mtls_guard::filter::Checked>) {
    let mut inst = configure(host).expect("config accepted");
    inst.on_response_headers(host, worker, &mut StreamState::default())
}

#[test]
fn legitimate_upstream_passes_with_identity_headers_and_metrics() {
    let host = envoy(GOOD).with_config(&config("enforce"));
    let (flow, checked) = run(&host, &mut Worker::default());
    assert_eq!(flow, Flow::Continue);
    let checked = checked.unwrap();
    assert_eq!(
        (checked.action, checked.matched_pin.as_deref()),
        (Action::Pass, Some("current"))
    );
    assert_eq!(
        host.response_header("x-upstream-verify").as_deref(),
        Some("SUCCESS")
    );
    assert_eq!(
        host.response_header("x-upstream-cert-subject").as_deref(),
        Some("CN=orders,O=Example Corp,C=US")
    );
    assert_eq!(
        host.response_header("x-upstream-cert-issuer").as_deref(),
        Some("CN=Example Internal CA,O=Example Corp")
    );
    assert_eq!(
        host.response_header("x-upstream-spiffe-id").as_deref(),
        Some("spiffe://example.org/ns/prod/sa/orders")
    );
    assert_eq!(
        host.response_header("x-upstream-cert-serial").as_deref(),
        Some("10:01")
    );
    assert_eq!(
        host.response_header("x-upstream-cert-not-after").as_deref(),
        Some("2028-01-01T00:00:00Z")
    );
    assert_eq!(
        host.response_header("x-upstream-cert-spki-sha256"),
        Some(pin(GOOD))
    );
    assert_eq!(
        host.response_header("x-upstream-cert-sha256")
            .map(String::into_bytes),
        Some(digest(GOOD))
    );
    assert_eq!(
        host.metric("mtls_guard_checks_total.route.orders.outcome.pass.reason.none"),
        Some(1)
    );
    assert_eq!(
        host.metric("mtls_guard_pin_matches_total.route.orders.pin.current"),
        Some(1)
    );
    assert_eq!(
        host.metric("mtls_guard_cert_not_after_seconds.route.orders"),
        Some(1_830_297_600)
    );
    assert!(host.sent.borrow().is_none());
    assert!(
        host.logs_at_or_above(Level::Warn).is_empty(),
        "{:?}",
        host.logs_at_or_above(Level::Warn)
    );
}

#[test]
fn impostor_is_rejected_with_json_body_and_verify_header() {
    let host = envoy(IMPOSTOR).with_config(&config("enforce"));
    let (flow, checked) = run(&host, &mut Worker::default());
    assert_eq!(flow, Flow::Pause);
    assert_eq!(checked.unwrap().action, Action::Rejected);
    let (status, headers, body) = host.sent.borrow().clone().unwrap();
    assert_eq!(status, 502);
    assert!(headers.contains(&("content-type".into(), "application/json".into())));
    assert!(headers.contains(&("x-upstream-verify".into(), "FAILED:pin_mismatch".into())));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"message":"upstream certificate rejected","reason":"pin_mismatch"}"#
    );
    assert_eq!(
        host.metric("mtls_guard_checks_total.route.orders.outcome.rejected.reason.pin_mismatch"),
        Some(1)
    );
    assert_eq!(
        host.metric("mtls_guard_checks_total.route.orders.outcome.pass.reason.none"),
        None
    );
    assert!(
        host.logs_at_or_above(Level::Info)
            .iter()
            .all(|l| !l.contains("rejected")),
        "per-request logs stay at debug"
    );
}

#[test]
fn report_mode_lets_the_response_through_marked_and_counted() {
    let host = envoy(IMPOSTOR).with_config(&config("report"));
    let (flow, checked) = run(&host, &mut Worker::default());
    assert_eq!(
        (flow, checked.unwrap().action),
        (Flow::Continue, Action::Reported)
    );
    assert!(host.sent.borrow().is_none());
    assert_eq!(
        host.response_header("x-upstream-verify").as_deref(),
        Some("FAILED:pin_mismatch")
    );
    assert_eq!(
        host.metric("mtls_guard_checks_total.route.orders.outcome.reported.reason.pin_mismatch"),
        Some(1)
    );
}

#[test]
fn spoofed_prefixed_headers_from_the_upstream_are_removed() {
    let host = envoy(GOOD)
        .with_config(r#"{"headers":{"prefix":"x-peer-"}}"#)
        .with_response_header("x-peer-verify", "SUCCESS")
        .with_response_header("X-Peer-Cert-Subject", "CN=admin")
        .with_response_header("x-peer-anything", "1")
        .with_response_header("x-upstream-verify", "kept: other prefix");
    run(&host, &mut Worker::default());
    let names: Vec<String> = host
        .response
        .borrow()
        .iter()
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "x-peer-anything" || n == "X-Peer-Cert-Subject"),
        "{names:?}"
    );
    assert_eq!(
        host.response_header("x-peer-verify").as_deref(),
        Some("SUCCESS")
    );
    assert_eq!(
        host.response_header("x-peer-cert-subject").as_deref(),
        Some("CN=orders,O=Example Corp,C=US")
    );
    assert_eq!(
        host.response_header("x-upstream-verify").as_deref(),
        Some("kept: other prefix")
    );
}

#[test]
fn handshake_failure_is_counted_without_a_second_reply() {
    let host = FakeHost::new(AT)
        .with_config("{}")
        .with_property(
            "upstream.transport_failure_reason",
            b"TLS_error:|268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
        )
        .with_property("upstream.address", b"127.0.0.1:1")
        .with_response_header(":status", "503");
    let (flow, checked) = run(&host, &mut Worker::default());
    assert_eq!(flow, Flow::Continue);
    assert_eq!(checked.unwrap().action, Action::Rejected);
    assert!(host.sent.borrow().is_none(), "the proxy already replied");
    assert_eq!(
        host.response_header("x-upstream-verify").as_deref(),
        Some("FAILED:handshake_failed")
    );
    assert_eq!(
        host.metric(
            "mtls_guard_checks_total.route.default.outcome.rejected.reason.handshake_failed"
        ),
        Some(1)
    );
}

#[test]
fn plain_http_upstream_is_no_certificate_and_local_replies_are_ignored() {
    let plain = FakeHost::new(AT)
        .with_config("{}")
        .with_property("upstream.address", b"127.0.0.1:8080");
    let (flow, checked) = run(&plain, &mut Worker::default());
    assert_eq!(
        (flow, checked.unwrap().first_reason()),
        (Flow::Pause, "no_certificate")
    );

    let lax = FakeHost::new(AT)
        .with_config(r#"{"require_certificate":false}"#)
        .with_property("upstream.address", b"127.0.0.1:8080");
    let (flow, _) = run(&lax, &mut Worker::default());
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        lax.response_header("x-upstream-verify").as_deref(),
        Some("NONE")
    );

    let local = FakeHost::new(AT).with_config("{}");
    let (flow, checked) = run(&local, &mut Worker::default());
    assert_eq!((flow, checked), (Flow::Continue, None));
    assert!(local.metrics.borrow().is_empty());
}

#[test]
fn envoy_local_replies_after_an_upstream_reset_are_not_judged() {
    // A pooled upstream connection reset before the response started: Envoy answers 503
    // itself; no upstream response reaches the client.
    let host = FakeHost::new(AT)
        .with_config("{}")
        .with_property("upstream.address", b"127.0.0.1:8443")
        .with_property(
            "response.code_details",
            b"upstream_reset_before_response_started{connection_termination}",
        )
        .with_response_header(":status", "503");
    let (flow, checked) = run(&host, &mut Worker::default());
    assert_eq!((flow, checked), (Flow::Continue, None));
    assert!(host.sent.borrow().is_none());
    // The same without a certificate but from the upstream itself is no_certificate.
    let plain = FakeHost::new(AT)
        .with_config("{}")
        .with_property("upstream.address", b"127.0.0.1:8080")
        .with_property("response.code_details", b"via_upstream");
    let (flow, checked) = run(&plain, &mut Worker::default());
    assert_eq!(
        (flow, checked.unwrap().first_reason()),
        (Flow::Pause, "no_certificate")
    );
}

#[test]
fn unparseable_certificate_is_a_reasoned_rejection() {
    let host = FakeHost::new(AT)
        .with_config("{}")
        .with_property(
            "upstream.peer_certificate",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .with_property("upstream.address", b"127.0.0.1:8443");
    let (flow, checked) = run(&host, &mut Worker::default());
    assert_eq!(
        (flow, checked.unwrap().first_reason()),
        (Flow::Pause, "unparseable_certificate")
    );
}

#[test]
fn per_route_overrides_follow_the_envoy_route_name() {
    let cfg = format!(
        r#"{{"mode":"report","routes":{{"strict":{{"mode":"enforce","route_label":"strict","pins":[{{"id":"p","spki_sha256":"{}"}}]}}}}}}"#,
        pin(GOOD)
    );
    let strict = envoy(IMPOSTOR)
        .with_config(&cfg)
        .with_property("xds.route_name", b"strict");
    let (flow, checked) = run(&strict, &mut Worker::default());
    assert_eq!(
        (flow, checked.unwrap().route_label.as_ref()),
        (Flow::Pause, "strict")
    );
    let other = envoy(IMPOSTOR)
        .with_config(&cfg)
        .with_property("xds.route_name", b"other");
    let (flow, checked) = run(&other, &mut Worker::default());
    assert_eq!(
        (flow, checked.unwrap().action),
        (Flow::Continue, Action::Pass)
    );
}

#[test]
fn certificates_are_parsed_once_per_worker_and_cache_is_bounded() {
    let host = envoy(GOOD).with_config(r#"{"cache_entries":2}"#);
    let mut inst = configure(&host).unwrap();
    let mut worker = Worker::default();
    for _ in 0..50 {
        inst.on_response_headers(&host, &mut worker, &mut StreamState::default());
    }
    assert_eq!((worker.cache.misses, worker.cache.hits), (1, 49));
    let reads = host
        .property_reads
        .borrow()
        .iter()
        .filter(|p| *p == "upstream.peer_certificate")
        .count();
    assert_eq!(reads, 1, "the PEM is fetched only on a cache miss");
    assert_eq!(
        host.metric("mtls_guard_checks_total.route.default.outcome.pass.reason.none"),
        Some(50)
    );

    for i in 0..10u8 {
        let h = envoy(GOOD).with_config("{}").with_property(
            "upstream.sha256_peer_certificate_digest",
            format!("{:064x}", i).as_bytes(),
        );
        inst.on_response_headers(&h, &mut worker, &mut StreamState::default());
    }
    assert_eq!(worker.cache.len(), 2);
}

#[test]
fn kong_without_certificate_source_warns_once_and_fails_closed() {
    let host = FakeHost::new(AT)
        .with_config(r#"{"route_label":"svc"}"#)
        .with_property("ngx.upstream_scheme", b"https");
    let mut inst = configure(&host).unwrap();
    let mut worker = Worker::default();
    for _ in 0..3 {
        let (flow, checked) =
            inst.on_response_headers(&host, &mut worker, &mut StreamState::default());
        assert_eq!(
            (flow, checked.unwrap().first_reason()),
            (Flow::Pause, "no_certificate")
        );
    }
    assert_eq!(worker.host, Some(HostKind::Kong));
    let warns = host.logs_at_or_above(Level::Warn);
    assert_eq!(warns.len(), 1, "{warns:?}");
    assert!(warns[0].contains("README.md#compatibility"));
    assert_eq!(
        host.metric("mtls_guard_no_cert_source_total.route.svc"),
        Some(3)
    );
    let nyi = host
        .property_reads
        .borrow()
        .iter()
        .filter(|p| p.starts_with("upstream.") && *p != "upstream.peer_certificate")
        .count();
    assert_eq!(
        nyi, 0,
        "Kong logs an NYI alert for every other upstream.* read"
    );
}

#[test]
fn kong_with_certificate_variable_is_judged() {
    let host = FakeHost::new(AT)
        .with_config(&config("enforce"))
        .with_property("ngx.upstream_scheme", b"https")
        .with_property("ngx.kong_upstream_ssl_server_raw_cert", GOOD);
    let (flow, checked) = run(&host, &mut Worker::default());
    assert_eq!(
        (flow, checked.unwrap().action),
        (Flow::Continue, Action::Pass)
    );
}

#[test]
fn failing_local_reply_is_logged_once_and_does_not_crash() {
    let mut host = envoy(IMPOSTOR).with_config(&config("enforce"));
    host.send_fails = Some(10);
    let mut inst = configure(&host).unwrap();
    let mut worker = Worker::default();
    for _ in 0..3 {
        assert_eq!(
            inst.on_response_headers(&host, &mut worker, &mut StreamState::default())
                .0,
            Flow::Continue
        );
    }
    assert_eq!(host.logs_at_or_above(Level::Error).len(), 1);
    assert_eq!(
        host.response_header("x-upstream-verify").as_deref(),
        Some("FAILED:pin_mismatch")
    );
}

#[test]
fn invalid_config_is_refused_with_path_in_the_log() {
    let host = FakeHost::new(AT).with_config(r#"{"pins":[{"id":"x","spki_sha256":"short"}]}"#);
    assert!(configure(&host).is_none());
    let errors = host.logs_at_or_above(Level::Error);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("$.pins[0].spki_sha256"), "{errors:?}");
}

#[test]
fn host_property_errors_do_not_crash() {
    let host = envoy(GOOD)
        .with_config("{}")
        .with_failing_property("upstream.sha256_peer_certificate_digest", 3);
    let (flow, checked) = run(&host, &mut Worker::default());
    assert_eq!(
        (flow, checked.unwrap().action),
        (Flow::Continue, Action::Pass)
    );
}

fn stream_with_id(id: &str) -> StreamState {
    StreamState {
        request_id: Some(id.as_bytes().to_vec()),
        ..Default::default()
    }
}

#[test]
fn canary_rejects_only_its_share_deterministically_per_request_id() {
    let host = envoy(IMPOSTOR).with_config(&config("enforce").replacen(
        '{',
        r#"{"enforce_percent":30,"#,
        1,
    ));
    let mut inst = configure(&host).unwrap();
    let mut worker = Worker::default();
    let ids: Vec<String> = (0..200).map(|i| format!("req-{i}")).collect();
    let mut rejected = Vec::new();
    for id in &ids {
        *host.sent.borrow_mut() = None;
        let (_, checked) = inst.on_response_headers(&host, &mut worker, &mut stream_with_id(id));
        let action = checked.unwrap().action;
        assert_eq!(action == Action::Rejected, host.sent.borrow().is_some());
        assert_eq!(
            action == Action::Rejected,
            mtls_guard::policy::canary_bucket(id.as_bytes()) < 30,
            "{id}"
        );
        if action == Action::Rejected {
            rejected.push(id.clone());
        }
    }
    assert!(
        (40..=80).contains(&rejected.len()),
        "{} of 200 rejected",
        rejected.len()
    );
    // The same ids get the same treatment again (a retried request is not re-rolled).
    for id in &rejected {
        let (_, checked) = inst.on_response_headers(&host, &mut worker, &mut stream_with_id(id));
        assert_eq!(checked.unwrap().action, Action::Rejected);
    }
    let reported =
        host.metric("mtls_guard_checks_total.route.orders.outcome.reported.reason.pin_mismatch");
    assert_eq!(reported, Some((200 - rejected.len()) as i64));
}

#[test]
fn canary_reads_the_request_id_in_the_request_phase() {
    let host = envoy(IMPOSTOR)
        .with_config(&config("enforce").replacen(
            '{',
            r#"{"enforce_percent":50,"request_id_header":"x-trace","#,
            1,
        ))
        .with_request_header("x-trace", "abc");
    let mut inst = configure(&host).unwrap();
    let mut stream = StreamState::default();
    assert_eq!(
        inst.on_request_headers(&host, &mut Worker::default(), &mut stream),
        Flow::Continue
    );
    assert_eq!(stream.request_id.as_deref(), Some(b"abc".as_slice()));
}

#[test]
fn shadow_policy_counts_disagreements_without_changing_the_response() {
    // Live: current pin. Shadow: a candidate pin set with only the impostor's key.
    let cfg = format!(
        r#"{{"route_label":"orders","pins":[{{"id":"current","spki_sha256":"{}"}},{{"id":"b","cert_sha256":"{}"}}],"shadow":{{"pins":[{{"id":"candidate","spki_sha256":"{}"}},{{"id":"b","cert_sha256":"{}"}}]}}}}"#,
        pin(GOOD),
        "00".repeat(32),
        pin(IMPOSTOR),
        "00".repeat(32)
    );
    let good = envoy(GOOD).with_config(&cfg);
    let mut inst = configure(&good).unwrap();
    let mut worker = Worker::default();
    for _ in 0..3 {
        let (flow, c) = inst.on_response_headers(&good, &mut worker, &mut StreamState::default());
        assert_eq!((flow, c.unwrap().action), (Flow::Continue, Action::Pass));
    }
    assert_eq!(
        good.metric("mtls_guard_shadow_disagreements_total.route.orders.passed.live"),
        Some(3)
    );
    let bad = envoy(IMPOSTOR).with_config(&cfg);
    let (flow, c) = inst.on_response_headers(&bad, &mut worker, &mut StreamState::default());
    assert_eq!(
        (flow, c.unwrap().action),
        (Flow::Pause, Action::Rejected),
        "live decision unaffected"
    );
    assert_eq!(
        bad.metric("mtls_guard_shadow_disagreements_total.route.orders.passed.shadow"),
        Some(1)
    );
    assert!(good
        .logs_at_or_above(Level::Info)
        .iter()
        .all(|l| !l.contains("shadow")));
}

#[test]
fn quarantine_rejects_before_the_upstream_then_probes_once() {
    let cfg = config("enforce").replacen('{', r#"{"quarantine_seconds":30,"#, 1);
    let mut host = envoy(IMPOSTOR).with_config(&cfg);
    let mut inst = configure(&host).unwrap();
    let mut worker = Worker::default();
    let request =
        |host: &FakeHost, inst: &mut mtls_guard::filter::Instance, worker: &mut Worker| {
            *host.sent.borrow_mut() = None;
            let mut s = StreamState::default();
            let flow = inst.on_request_headers(host, worker, &mut s);
            if flow == Flow::Pause {
                return ("blocked-before-upstream", s.probe);
            }
            let (flow, _) = inst.on_response_headers(host, worker, &mut s);
            (
                if flow == Flow::Pause {
                    "rejected"
                } else {
                    "passed"
                },
                s.probe,
            )
        };
    assert_eq!(request(&host, &mut inst, &mut worker), ("rejected", false));
    for _ in 0..5 {
        assert_eq!(
            request(&host, &mut inst, &mut worker).0,
            "blocked-before-upstream"
        );
    }
    let (status, headers, body) = host.sent.borrow().clone().unwrap();
    assert_eq!(status, 502);
    assert!(headers.contains(&("x-upstream-verify".into(), "FAILED:pin_mismatch".into())));
    assert!(String::from_utf8(body).unwrap().contains("quarantined"));
    assert_eq!(
        host.metric("mtls_guard_quarantine_rejections_total.route.orders"),
        Some(5)
    );

    // Window lapses: one probe goes to the (still wrong) upstream and re-arms it.
    host.time += 31;
    assert_eq!(request(&host, &mut inst, &mut worker), ("rejected", true));
    assert_eq!(
        request(&host, &mut inst, &mut worker).0,
        "blocked-before-upstream"
    );

    // The upstream is fixed: after the next window the probe passes and the route opens.
    let mut fixed = envoy(GOOD).with_config(&cfg);
    fixed.time = host.time + 31;
    assert_eq!(request(&fixed, &mut inst, &mut worker), ("passed", true));
    assert_eq!(request(&fixed, &mut inst, &mut worker), ("passed", false));
}

#[test]
fn report_mode_never_quarantines() {
    let cfg = config("report").replacen('{', r#"{"quarantine_seconds":30,"#, 1);
    let host = envoy(IMPOSTOR).with_config(&cfg);
    let mut inst = configure(&host).unwrap();
    let mut worker = Worker::default();
    for _ in 0..3 {
        let mut s = StreamState::default();
        assert_eq!(
            inst.on_request_headers(&host, &mut worker, &mut s),
            Flow::Continue
        );
        assert_eq!(
            inst.on_response_headers(&host, &mut worker, &mut s).0,
            Flow::Continue
        );
    }
}
