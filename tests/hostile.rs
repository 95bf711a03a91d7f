//! Hostile certificates, built byte by byte: control characters and bidi marks in names
//! and SANs, thousands of SANs, size bounds, odd serials and dates, legacy string types,
//! duplicate extensions, look-alike SPIFFE IDs. Each must give a reasoned verdict, and no
//! stamped header or log line may carry a raw control character.
//!
//! The filter does not verify signatures (the gateway did that during the handshake), so
//! these certificates carry a dummy one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mtls_guard::cert::{self, CertError};
use mtls_guard::filter::{configure, StreamState, Worker};
use mtls_guard::host::testing::FakeHost;
use mtls_guard::policy::{evaluate, Presented, Reason};

// ---- a minimal DER writer --------------------------------------------------------------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let be = (n as u32).to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &a in &arcs[2..] {
        let mut groups = vec![(a & 0x7f) as u8];
        let mut v = a >> 7;
        while v > 0 {
            groups.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        groups.reverse();
        body.extend(groups);
    }
    tlv(0x06, &body)
}

const UTF8: u8 = 0x0c;
const PRINTABLE: u8 = 0x13;
const T61: u8 = 0x14;
const BMP: u8 = 0x1e;
const CN: &str = "2.5.4.3";
const O: &str = "2.5.4.10";

fn bmp(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect()
}

/// A name from RDNs in DER order (least specific first): (oid, string tag, raw bytes).
fn name(rdns: &[&[(&str, u8, &[u8])]]) -> Vec<u8> {
    seq(&rdns
        .iter()
        .map(|rdn| {
            tlv(
                0x31,
                &rdn.iter()
                    .map(|(o, tag, v)| seq(&[oid(o), tlv(*tag, v)]))
                    .collect::<Vec<_>>()
                    .concat(),
            )
        })
        .collect::<Vec<_>>())
}

enum San<'a> {
    Dns(&'a [u8]),
    Uri(&'a [u8]),
    Ip(&'a [u8]),
}

fn san_ext(entries: &[San]) -> Vec<u8> {
    let names: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| match e {
            San::Dns(v) => tlv(0x82, v),
            San::Uri(v) => tlv(0x86, v),
            San::Ip(v) => tlv(0x87, v),
        })
        .collect();
    seq(&[oid("2.5.29.17"), tlv(0x04, &seq(&names))])
}

struct Spec<'a> {
    serial: Vec<u8>,
    subject: Vec<u8>,
    not_before: Vec<u8>,
    not_after: Vec<u8>,
    extensions: Vec<Vec<u8>>,
    _p: std::marker::PhantomData<&'a ()>,
}

fn utc(s: &str) -> Vec<u8> {
    tlv(0x17, s.as_bytes())
}

fn generalized(s: &str) -> Vec<u8> {
    tlv(0x18, s.as_bytes())
}

fn base<'a>() -> Spec<'a> {
    Spec {
        serial: vec![0x01, 0x02],
        subject: name(&[
            &[(O, PRINTABLE, b"Example Corp")],
            &[(CN, UTF8, b"orders.internal")],
        ]),
        not_before: utc("260101000000Z"),
        not_after: utc("280101000000Z"),
        extensions: vec![san_ext(&[San::Dns(b"orders.internal")])],
        _p: std::marker::PhantomData,
    }
}

fn build(spec: &Spec) -> Vec<u8> {
    let ed25519 = seq(&[oid("1.3.101.112")]);
    let mut key = vec![0u8];
    key.extend_from_slice(&[7u8; 32]);
    let spki = seq(&[ed25519.clone(), tlv(0x03, &key)]);
    let issuer = name(&[
        &[(O, PRINTABLE, b"Example Corp")],
        &[(CN, PRINTABLE, b"Example Internal CA")],
    ]);
    let mut tbs_items = vec![
        tlv(0xa0, &tlv(0x02, &[2])),
        tlv(0x02, &spec.serial),
        ed25519.clone(),
        issuer,
        seq(&[spec.not_before.clone(), spec.not_after.clone()]),
        spec.subject.clone(),
        spki,
    ];
    if !spec.extensions.is_empty() {
        tbs_items.push(tlv(0xa3, &seq(&spec.extensions)));
    }
    let mut sig = vec![0u8];
    sig.extend_from_slice(&[9u8; 64]);
    seq(&[seq(&tbs_items), ed25519, tlv(0x03, &sig)])
}

fn pem(der: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    for chunk in b64.as_bytes().chunks(64) {
        out.extend_from_slice(chunk);
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END CERTIFICATE-----\n");
    out
}

// ---- checks -----------------------------------------------------------------------------

const AT: i64 = 1_800_000_000;

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Runs the certificate through the filter (Envoy-like host) and checks that every
/// header and log line is free of control characters. Returns the verify header.
fn through_filter(cert_pem: &[u8], config: &str) -> String {
    let host = FakeHost::new(AT)
        .with_config(config)
        .with_property("upstream.peer_certificate", cert_pem)
        .with_property("upstream.address", b"127.0.0.1:8443");
    let mut inst = configure(&host).expect("config");
    inst.on_response_headers(&host, &mut Worker::default(), &mut StreamState::default());
    for (k, v) in host.response.borrow().iter() {
        assert!(printable(k) && printable(v), "header {k:?}: {v:?}");
    }
    if let Some((_, headers, body)) = host.sent.borrow().as_ref() {
        assert!(headers.iter().all(|(k, v)| printable(k) && printable(v)));
        assert!(printable(&String::from_utf8_lossy(body)));
    }
    for (_, line) in host.logs.borrow().iter() {
        assert!(
            !line.bytes().any(|b| b < 0x20 || b == 0x7f),
            "log line {line:?}"
        );
    }
    // A rejection is a local reply that carries the verify header; otherwise it is
    // stamped on the upstream's response.
    if let Some((_, headers, _)) = host.sent.borrow().as_ref() {
        return headers
            .iter()
            .find(|(k, _)| k == "x-upstream-verify")
            .map(|(_, v)| v.clone())
            .expect("verify header");
    }
    host.response_header("x-upstream-verify")
        .expect("verify header")
}

fn reasons(der: &[u8], config: &str) -> Vec<&'static str> {
    let (cfg, _) = mtls_guard::config::parse(config.as_bytes(), AT).unwrap();
    match cert::parse(der) {
        Ok(c) => evaluate(&cfg.default, Presented::Cert(&c), AT)
            .reasons
            .iter()
            .map(Reason::as_str)
            .collect(),
        Err(_) => vec!["unparseable_certificate"],
    }
}

#[test]
fn control_characters_and_bidi_marks_in_names_never_reach_headers_raw() {
    let evil: &[u8] = "orders\r\nx-injected: 1\0\u{202e}lmth.exe\u{7f}\t".as_bytes();
    let mut spec = base();
    spec.subject = name(&[&[(O, UTF8, b"Example\nCorp")], &[(CN, UTF8, evil)]]);
    let der = build(&spec);
    let c = cert::parse(&der).unwrap();
    assert_eq!(
        c.subject_text,
        "CN=orders\\0D\\0Ax-injected: 1\\00\\E2\\80\\AElmth.exe\\7F\\09,O=Example\\0ACorp"
    );
    assert!(printable(&c.subject_text));
    // The exact name can still be pinned down in policy, written in its escaped form.
    let cfg = format!(
        r#"{{"subject":{{"dn":["{}"]}}}}"#,
        c.subject_text.replace('\\', "\\\\")
    );
    assert_eq!(through_filter(&pem(&der), &cfg), "SUCCESS");
    assert_eq!(
        through_filter(
            &pem(&der),
            r#"{"subject":{"attributes":{"CN":["orders"]}}}"#
        ),
        "FAILED:subject_mismatch"
    );
}

#[test]
fn control_characters_in_sans_and_spiffe_ids_are_never_stamped() {
    let mut spec = base();
    spec.extensions = vec![san_ext(&[
        San::Dns(b"orders.internal\r\nx-injected: 1"),
        San::Uri(b"spiffe://example.org/ns/prod\r\nx-injected: 1"),
    ])];
    let der = build(&spec);
    let verify = through_filter(&pem(&der), r#"{"spiffe":{"trust_domain":"example.org"}}"#);
    assert_eq!(verify, "FAILED:spiffe_mismatch");
    assert_eq!(
        reasons(&der, r#"{"san":{"dns":["orders.internal"]}}"#),
        ["san_mismatch"]
    );
}

#[test]
fn look_alike_spiffe_ids_are_not_spiffe_ids() {
    for uri in [
        "SPIFFE://example.org/ns/prod/sa/orders",
        "spiffe:/example.org/ns/prod/sa/orders",
        "spiffe://example.org@evil.example/ns/prod",
        "spiffe://example.org:443/ns/prod",
        "spiffe://example.org/ns/prod/../admin",
        "spiffe://example.org/ns/prod?x=1",
        "spiffe://example.org.evil.example/ns/prod",
        "https://example.org/spiffe://example.org/ns/prod",
    ] {
        let mut spec = base();
        spec.extensions = vec![san_ext(&[San::Uri(uri.as_bytes())])];
        let der = build(&spec);
        let c = cert::parse(&der).unwrap();
        let policy = r#"{"spiffe":{"trust_domain":"example.org","path_prefix":"/ns/prod"}}"#;
        assert_eq!(
            reasons(&der, policy),
            ["spiffe_mismatch"],
            "{uri} (spiffe_id {:?})",
            c.spiffe_id
        );
    }
}

#[test]
fn thousands_of_sans_within_the_bound_and_one_over_it() {
    let names: Vec<String> = (0..1500).map(|i| format!("h{i}.many.internal")).collect();
    let mut spec = base();
    spec.extensions = vec![san_ext(
        &names
            .iter()
            .map(|n| San::Dns(n.as_bytes()))
            .collect::<Vec<_>>(),
    )];
    let der = build(&spec);
    assert!(
        pem(&der).len() < cert::MAX_CERT_INPUT,
        "{} bytes",
        pem(&der).len()
    );
    assert_eq!(cert::parse(&pem(&der)).unwrap().san.dns.len(), 1500);
    assert_eq!(
        through_filter(&pem(&der), r#"{"san":{"dns":["h1499.many.internal"]}}"#),
        "SUCCESS"
    );

    let names: Vec<String> = (0..3000)
        .map(|i| format!("host{i:05}.many.internal"))
        .collect();
    let mut spec = base();
    spec.extensions = vec![san_ext(
        &names
            .iter()
            .map(|n| San::Dns(n.as_bytes()))
            .collect::<Vec<_>>(),
    )];
    let der = build(&spec);
    assert!(matches!(
        cert::parse(&pem(&der)),
        Err(CertError::TooLarge { .. })
    ));
    assert!(matches!(cert::parse(&der), Err(CertError::TooLarge { .. })));
    assert_eq!(
        through_filter(&pem(&der), "{}"),
        "FAILED:unparseable_certificate"
    );
}

#[test]
fn odd_serials_are_reported_and_revocable() {
    for (serial, hex) in [
        (vec![0x80, 0x01], "80:01"),
        (vec![0xff], "ff"),
        (vec![0x00, 0x8f, 0x01], "8f:01"),
        (
            [0x7f; 20].to_vec(),
            "7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f:7f",
        ),
        (vec![0x00], "00"),
    ] {
        let mut spec = base();
        spec.serial = serial.clone();
        let der = build(&spec);
        let c = cert::parse(&der).unwrap_or_else(|e| panic!("serial {serial:02x?}: {e}"));
        assert_eq!(c.serial_hex(), hex);
        assert_eq!(
            reasons(&der, &format!(r#"{{"revoked_serials":["{hex}"]}}"#)),
            ["revoked"],
            "{hex}"
        );
    }
}

#[test]
fn dates_past_2050_and_before_1970() {
    let mut spec = base();
    spec.not_before = utc("500101000000Z"); // UTCTime 50 means 1950 (RFC 5280 4.1.2.5.1)
    spec.not_after = generalized("20510101000000Z");
    let der = build(&spec);
    let c = cert::parse(&der).unwrap();
    assert_eq!(
        mtls_guard::timefmt::format_rfc3339(c.not_before),
        "1950-01-01T00:00:00Z"
    );
    assert_eq!(
        mtls_guard::timefmt::format_rfc3339(c.not_after),
        "2051-01-01T00:00:00Z"
    );
    assert!(c.not_before < 0);
    assert_eq!(reasons(&der, "{}"), Vec::<&str>::new());
    assert!(through_filter(&pem(&der), "{}").starts_with("SUCCESS"));
    let mut spec = base();
    spec.not_after = utc("491231235959Z"); // 2049
    assert_eq!(reasons(&build(&spec), "{}"), Vec::<&str>::new());
}

#[test]
fn legacy_string_types_are_decoded_and_matchable() {
    let mut spec = base();
    spec.subject = name(&[&[(O, T61, b"M\xfcller GmbH")], &[(CN, BMP, &bmp("Zürich"))]]);
    let der = build(&spec);
    let c = cert::parse(&der).unwrap();
    assert_eq!(c.subject_text, "CN=Z\\C3\\BCrich,O=M\\C3\\BCller GmbH");
    assert_eq!(
        reasons(&der, r#"{"subject":{"dn":["CN=Zürich,O=Müller GmbH"]}}"#),
        Vec::<&str>::new()
    );
    // An odd-length BMPString cannot be text: it is kept as DER and never matches text.
    let mut spec = base();
    spec.subject = name(&[&[(CN, BMP, b"\x00a\x00")]]);
    let der = build(&spec);
    let c = cert::parse(&der).unwrap();
    assert_eq!(c.subject_text, "CN=#1E03006100");
    assert_eq!(
        reasons(&der, r#"{"subject":{"attributes":{"CN":["*"]}}}"#),
        ["subject_mismatch"]
    );
}

#[test]
fn duplicate_extensions_and_malformed_ones_are_unparseable() {
    let mut spec = base();
    spec.extensions = vec![
        san_ext(&[San::Dns(b"a.example")]),
        san_ext(&[San::Dns(b"orders.internal")]),
    ];
    let der = build(&spec);
    assert!(
        cert::parse(&der).is_err(),
        "two SAN extensions must not be read as one"
    );
    assert_eq!(
        through_filter(&pem(&der), "{}"),
        "FAILED:unparseable_certificate"
    );

    let mut spec = base();
    spec.extensions = vec![seq(&[
        oid("2.5.29.17"),
        tlv(0x04, &[0x30, 0x05, 0x82, 0x10]),
    ])];
    assert_eq!(
        through_filter(&pem(&build(&spec)), "{}"),
        "FAILED:unparseable_certificate"
    );
}

#[test]
fn ip_sans_of_odd_length_are_ignored_not_misread() {
    let mut spec = base();
    spec.extensions = vec![san_ext(&[San::Ip(&[10, 0, 0]), San::Ip(&[10, 0, 0, 7])])];
    let der = build(&spec);
    let c = cert::parse(&der).unwrap();
    assert_eq!(
        c.san.ip,
        vec!["10.0.0.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        through_filter(&pem(&der), r#"{"san":{"ip":["10.0.0.7"]}}"#),
        "SUCCESS"
    );
    assert_eq!(
        through_filter(&pem(&der), r#"{"san":{"ip":["10.0.0.0"]}}"#),
        "FAILED:san_mismatch"
    );
}

#[test]
fn truncated_and_trailing_garbage_are_reasoned() {
    let der = build(&base());
    for cut in [1, 10, der.len() / 2, der.len() - 1] {
        assert!(cert::parse(&der[..cut]).is_err(), "truncated at {cut}");
    }
    let mut long = der.clone();
    long.extend_from_slice(b"junk");
    assert_eq!(cert::parse(&long), Err(CertError::TrailingData(4)));
    assert_eq!(
        through_filter(&pem(&long), "{}"),
        "FAILED:unparseable_certificate"
    );
}

#[test]
fn attribute_types_that_are_not_oids_make_the_certificate_unparseable() {
    let der = include_bytes!("../fuzz/regressions/cert_parse/subject-attribute-with-empty-oid.der");
    match cert::parse(der) {
        Err(CertError::Der(msg)) => assert!(msg.contains("not a valid OID"), "{msg}"),
        other => panic!("expected a reasoned refusal, got {other:?}"),
    }
    assert_eq!(
        through_filter(&pem(der), "{}"),
        "FAILED:unparseable_certificate"
    );
}

#[test]
fn stamped_names_parse_back_to_the_certificate_names_even_for_unnamed_types() {
    for pem in [
        include_bytes!("../fuzz/regressions/cert_parse/subject-with-unnamed-attribute-type.pem")
            .as_slice(),
        include_bytes!("fixtures/escaped.pem").as_slice(),
        include_bytes!("fixtures/utf8.pem").as_slice(),
    ] {
        let c = cert::parse(pem).unwrap();
        for (text, name) in [(&c.subject_text, &c.subject), (&c.issuer_text, &c.issuer)] {
            let back = mtls_guard::dn::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(
                back.matches(name),
                "{text} does not match the certificate's name"
            );
        }
    }
}
