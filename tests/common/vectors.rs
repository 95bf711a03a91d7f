// Policy vectors shared by the native run (tests/policy_vectors.rs) and the run inside a
// WebAssembly engine (tests/wasm_vectors.rs): the filter runs 32-bit, so the same
// decisions must come out there.

use mtls_guard::cert::{self, PeerCert};
use mtls_guard::config;
use mtls_guard::policy::{evaluate, Presented, Reason};

const SPIFFE: &[u8] = include_bytes!("../fixtures/ec256_spiffe.pem");
const IMPOSTOR: &[u8] = include_bytes!("../fixtures/impostor.pem");
const RSA: &[u8] = include_bytes!("../fixtures/rsa2048.pem");
const EXPIRED: &[u8] = include_bytes!("../fixtures/expired.pem");
const NOTYET: &[u8] = include_bytes!("../fixtures/notyet.pem");
const ESCAPED: &[u8] = include_bytes!("../fixtures/escaped.pem");
const UTF8: &[u8] = include_bytes!("../fixtures/utf8.pem");
const MANY: &[u8] = include_bytes!("../fixtures/manysans.pem");
const ED: &[u8] = include_bytes!("../fixtures/ed25519.pem");

/// 2027-01-15T00:00:00Z: inside the fixtures' usual 2026..2028 window.
pub const AT: i64 = 1_800_000_000 - 3_600 * 8;

fn load(pem: &[u8]) -> PeerCert {
    cert::parse(pem).expect("fixture parses")
}

struct Vector {
    name: &'static str,
    cert: &'static [u8],
    config: String,
    want: &'static [&'static str],
    pin: Option<&'static str>,
}

fn vectors() -> Vec<Vector> {
    let good_pin = load(SPIFFE).spki_pin();
    let bad_pin = load(IMPOSTOR).spki_pin();
    let rsa_fp = load(RSA).sha256_hex();
    let v = |name, cert, config: String, want, pin| Vector {
        name,
        cert,
        config,
        want,
        pin,
    };
    vec![
        v("spki pin of the legitimate key passes", SPIFFE, format!(r#"{{"pins":[{{"id":"current","spki_sha256":"{good_pin}"}},{{"id":"next","spki_sha256":"{bad_pin}","not_before":"2030-01-01T00:00:00Z"}}]}}"#), &[], Some("current")),
        v("impostor with the right names fails the pin", IMPOSTOR, format!(r#"{{"pins":[{{"id":"current","spki_sha256":"{good_pin}"}}]}}"#), &["pin_mismatch"], None),
        v("future pin does not count yet", IMPOSTOR, format!(r#"{{"pins":[{{"id":"next","spki_sha256":"{bad_pin}","not_before":"2030-01-01T00:00:00Z"}}]}}"#), &["pin_mismatch"], None),
        v("expired pin no longer counts", SPIFFE, format!(r#"{{"pins":[{{"id":"old","spki_sha256":"{good_pin}","not_after":"2026-06-01T00:00:00Z"}}]}}"#), &["pin_mismatch"], None),
        v("certificate fingerprint pin with colons", RSA, format!(r#"{{"pins":[{{"id":"fp","cert_sha256":"{}"}}]}}"#, colons(&rsa_fp)), &[], Some("fp")),
        v("issuer tells the impostor apart", IMPOSTOR, r#"{"issuer":{"dn":["CN=Example Internal CA,O=Example Corp"]}}"#.into(), &["issuer_mismatch"], None),
        v("subject dn matches case-insensitively", RSA, r#"{"subject":{"dn":["cn=ORDERS.internal, o=Example Corp, c=US"]}}"#.into(), &[], None),
        v("escaped subject matches its RFC 4514 form", ESCAPED, r#"{"subject":{"dn":["CN=\\#team \\\"a\\+b\\\"\\; x=y\\\\z\\ ,O=Acme\\, Inc. \\<Ops\\>,C=US"]}}"#.into(), &[], None),
        v("utf-8 subject matches written as UTF-8", UTF8, r#"{"subject":{"dn":["CN=Zürich 東京,O=Bücher AG,C=CH"]}}"#.into(), &[], None),
        v("utf-8 subject attribute glob", UTF8, r#"{"subject":{"attributes":{"CN":["zürich*"],"C":["ch"]}}}"#.into(), &[], None),
        v("spiffe id in trust domain and path", SPIFFE, r#"{"spiffe":{"trust_domain":"example.org","path_prefix":"/ns/prod/"}}"#.into(), &[], None),
        v("spiffe absent", RSA, r#"{"spiffe":{"trust_domain":"example.org"}}"#.into(), &["spiffe_mismatch"], None),
        v("dns wildcard over many sans", MANY, r#"{"san":{"dns":["*.many.internal"],"ip":["2001:db8::42"]}}"#.into(), &[], None),
        v("dns san mismatch", RSA, r#"{"san":{"dns":["billing.internal"]}}"#.into(), &["san_mismatch"], None),
        v("expired certificate", EXPIRED, "{}".into(), &["expired"], None),
        v("not yet valid certificate", NOTYET, "{}".into(), &["not_yet_valid"], None),
        v("expiring within the margin", SPIFFE, r#"{"validity":{"min_remaining_days":400}}"#.into(), &["expiring_soon"], None),
        v("revoked serial", SPIFFE, r#"{"revoked_serials":["10:01"]}"#.into(), &["revoked"], None),
        v("ed25519 key pin", ED, format!(r#"{{"pins":[{{"id":"ed","spki_sha256":"{}"}}]}}"#, load(ED).spki_pin()), &[], Some("ed")),
    ]
}

fn colons(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs every vector, asserting outcome, reasons and matched pin; returns how many ran.
pub fn run_all() -> usize {
    let all = vectors();
    for vec in &all {
        let (cfg, _) = config::parse(vec.config.as_bytes(), AT)
            .unwrap_or_else(|e| panic!("{}: {e}", vec.name));
        let c = load(vec.cert);
        let verdict = evaluate(&cfg.default, Presented::Cert(&c), AT);
        let got: Vec<&str> = verdict.reasons.iter().map(Reason::as_str).collect();
        assert_eq!(got, vec.want, "{}", vec.name);
        let pin = verdict
            .matched_pin
            .and_then(|i| cfg.default.pins.get(i))
            .map(|p| p.id.as_str());
        assert_eq!(pin, vec.pin, "{}", vec.name);
    }
    all.len()
}
