//! Properties over generated inputs (a seeded generator; the seed is printed so that a
//! failure can be replayed with MTLS_GUARD_SEED):
//! - render(parse(dn)) parses back to the same DN, and rendering is printable ASCII;
//! - evaluate never passes when a section fails, and its reasons are exactly the union of
//!   the reasons of the sections on their own.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mtls_guard::dn::{self, Attr, AttrValue, Dn, Rdn};
use mtls_guard::policy::{evaluate, Presented, Reason};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn seed() -> u64 {
    let s = std::env::var("MTLS_GUARD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("seed {s} (set MTLS_GUARD_SEED to replay)");
    s
}

const TYPES: &[&str] = &[
    "2.5.4.3",
    "2.5.4.10",
    "2.5.4.11",
    "2.5.4.6",
    "0.9.2342.19200300.100.1.25",
    "1.2.840.113549.1.9.1",
    "1.3.6.1.4.1.99999.7",
];
const CHARS: &[char] = &[
    'a', 'Z', '0', ' ', ',', '+', '"', '\\', '<', '>', ';', '#', '=', '\n', '\r', '\0', '\u{7f}',
    'é', '東', '\u{202e}', '.', '-',
];

fn random_value(rng: &mut Rng) -> String {
    (0..rng.below(12))
        .map(|_| CHARS[rng.below(CHARS.len())])
        .collect()
}

fn random_dn(rng: &mut Rng) -> Dn {
    let rdns = (0..1 + rng.below(5))
        .map(|_| {
            Rdn((0..1 + rng.below(3))
                .map(|_| Attr {
                    oid: TYPES[rng.below(TYPES.len())].to_string(),
                    value: AttrValue::Text(random_value(rng)),
                })
                .collect())
        })
        .collect();
    Dn { rdns }
}

#[test]
fn rendered_dns_parse_back_to_the_same_dn() {
    let mut rng = Rng(seed());
    for i in 0..5_000 {
        let dn = random_dn(&mut rng);
        let text = dn.render();
        assert!(
            text.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "case {i}: not printable: {text:?}"
        );
        let back =
            dn::parse(&text).unwrap_or_else(|e| panic!("case {i}: {text:?} does not parse: {e}"));
        assert_eq!(back, dn, "case {i}: {text:?}");
        assert!(back.matches(&dn));
        assert_eq!(back.render(), text);
    }
}

#[test]
fn evaluate_fails_exactly_when_a_section_fails() {
    let cert = mtls_guard::cert::parse(include_bytes!("fixtures/ec256_spiffe.pem")).unwrap();
    let pin = cert.spki_pin();
    let at = 1_800_000_000;
    // (section JSON, passes on this certificate)
    let sections: Vec<(String, bool)> = vec![
        (format!(r#""pins":[{{"id":"a","spki_sha256":"{pin}"}},{{"id":"b","cert_sha256":"{}"}}]"#, "00".repeat(32)), true),
        (r#""pins":[{"id":"a","cert_sha256":"0000000000000000000000000000000000000000000000000000000000000000"}]"#.into(), false),
        (r#""subject":{"attributes":{"CN":["orders"]}}"#.into(), true),
        (r#""subject":{"dn":["CN=billing,O=Example Corp,C=US"]}"#.into(), false),
        (r#""issuer":{"dn":["CN=Example Internal CA,O=Example Corp"]}"#.into(), true),
        (r#""issuer":{"attributes":{"O":["Impostor*"]}}"#.into(), false),
        (r#""san":{"dns":["*.prod.svc.cluster.local"]}"#.into(), true),
        (r#""san":{"dns":["orders.prod.svc.cluster.local"],"ip":["10.0.0.1"]}"#.into(), false),
        (r#""spiffe":{"trust_domain":"example.org","path_prefix":"/ns/prod/"}"#.into(), true),
        (r#""spiffe":{"trust_domain":"example.org","path_prefix":"/ns/dev/"}"#.into(), false),
        (r#""validity":{"min_remaining_days":30}"#.into(), true),
        (r#""validity":{"min_remaining_days":3000}"#.into(), false),
        (r#""revoked_serials":["ff:ff"]"#.into(), true),
        (r#""revoked_serials":["10:01"]"#.into(), false),
    ];
    let key = |s: &str| s.split('"').nth(1).unwrap().to_string();
    let reasons_of = |json: &str| {
        let (cfg, _) = mtls_guard::config::parse(json.as_bytes(), at)
            .unwrap_or_else(|e| panic!("{json}: {e}"));
        evaluate(&cfg.default, Presented::Cert(&cert), at)
    };
    let mut rng = Rng(seed());
    for _ in 0..2_000 {
        // A random subset with at most one entry per key.
        let mut chosen: Vec<&(String, bool)> = Vec::new();
        for s in &sections {
            if rng.below(3) == 0 && !chosen.iter().any(|c| key(&c.0) == key(&s.0)) {
                chosen.push(s);
            }
        }
        let json = format!(
            "{{{}}}",
            chosen
                .iter()
                .map(|c| c.0.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let verdict = reasons_of(&json);
        let all_pass = chosen.iter().all(|c| c.1);
        assert_eq!(verdict.passed(), all_pass, "{json}");
        let mut union: Vec<Reason> = Vec::new();
        for c in &chosen {
            union.extend(reasons_of(&format!("{{{}}}", c.0)).reasons.iter());
        }
        union.sort();
        union.dedup();
        assert_eq!(verdict.reasons.iter().collect::<Vec<_>>(), union, "{json}");
    }
}
