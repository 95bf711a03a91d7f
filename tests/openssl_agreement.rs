//! `cert` agrees with OpenSSL, the tool operators use, on every fact it reports: on the
//! committed fixtures and on certificates generated fresh for this run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use mtls_guard::cert;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn openssl(args: &[&str], input: Option<&Path>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    if let Some(p) = input {
        cmd.arg("-in").arg(p);
    }
    let out = cmd.output().expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .trim_end_matches('\n')
}

fn pin_by_openssl(pem: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        pem.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh runs");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// Compares every fact of `pem` with OpenSSL's view of it.
fn assert_agrees(pem: &Path) {
    let parsed = cert::parse(&std::fs::read(pem).expect("readable"))
        .unwrap_or_else(|e| panic!("{}: {e}", pem.display()));
    let names = openssl(
        &[
            "x509", "-noout", "-subject", "-issuer", "-nameopt", "RFC2253",
        ],
        Some(pem),
    );
    assert_eq!(
        parsed.subject_text,
        field(&names, "subject="),
        "subject of {}",
        pem.display()
    );
    assert_eq!(
        parsed.issuer_text,
        field(&names, "issuer="),
        "issuer of {}",
        pem.display()
    );

    let facts = openssl(
        &[
            "x509",
            "-noout",
            "-serial",
            "-dates",
            "-dateopt",
            "iso_8601",
            "-fingerprint",
            "-sha256",
        ],
        Some(pem),
    );
    let serial = field(&facts, "serial=").to_ascii_lowercase();
    assert_eq!(
        parsed.serial_hex().replace(':', ""),
        serial.trim_start_matches("00"),
        "serial of {}",
        pem.display()
    );
    let iso = |s: String| s.replace('T', " ");
    assert_eq!(
        iso(mtls_guard::timefmt::format_rfc3339(parsed.not_before)),
        field(&facts, "notBefore=")
    );
    assert_eq!(
        iso(mtls_guard::timefmt::format_rfc3339(parsed.not_after)),
        field(&facts, "notAfter=")
    );
    let fp = field(&facts, "sha256 Fingerprint=")
        .replace(':', "")
        .to_ascii_lowercase();
    assert_eq!(parsed.sha256_hex(), fp, "fingerprint of {}", pem.display());
    assert_eq!(
        parsed.spki_pin(),
        pin_by_openssl(pem),
        "pin of {}",
        pem.display()
    );

    let ext = openssl(&["x509", "-noout", "-ext", "subjectAltName"], Some(pem));
    let mut want = cert::Sans::default();
    for item in ext
        .lines()
        .skip(1)
        .flat_map(|l| l.split(", "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if let Some(v) = item.strip_prefix("DNS:") {
            want.dns.push(v.into());
        } else if let Some(v) = item.strip_prefix("URI:") {
            want.uri.push(v.into());
        } else if let Some(v) = item.strip_prefix("email:") {
            want.email.push(v.into());
        } else if let Some(v) = item.strip_prefix("IP Address:") {
            want.ip.push(v.parse::<IpAddr>().expect("ip"));
        } else {
            panic!("unexpected SAN {item}");
        }
    }
    assert_eq!(parsed.san, want, "SANs of {}", pem.display());
}

#[test]
fn inspect_agrees_with_openssl_on_committed_fixtures() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "pem") {
            assert_agrees(&path);
            seen += 1;
        }
    }
    assert!(seen >= 15, "only {seen} fixtures");
}

#[test]
fn key_types_are_named() {
    for (file, key) in [
        ("rsa2048", "rsa-2048"),
        ("rsa3072", "rsa-3072"),
        ("ec256_spiffe", "ec-p256"),
        ("ec384", "ec-p384"),
        ("ed25519", "ed25519"),
    ] {
        let c = cert::parse(&std::fs::read(fixtures().join(format!("{file}.pem"))).expect("read"))
            .expect("parse");
        assert_eq!(c.key, key, "{file}");
    }
}

#[test]
fn der_and_url_encoded_pem_give_the_same_facts() {
    let pem = std::fs::read(fixtures().join("rsa2048.pem")).expect("read");
    let der = std::fs::read(fixtures().join("rsa2048.der")).expect("read");
    let encoded: String = String::from_utf8(pem.clone())
        .expect("ascii")
        .chars()
        .map(|c| match c {
            '\n' => "%0A".to_string(),
            ' ' => "%20".to_string(),
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    let a = cert::parse(&pem).expect("pem");
    assert_eq!(cert::parse(&der).expect("der"), a);
    assert_eq!(cert::parse(encoded.as_bytes()).expect("url-encoded pem"), a);
    let mut chain = pem.clone();
    chain.extend_from_slice(&std::fs::read(fixtures().join("ca.pem")).expect("read"));
    assert_eq!(
        cert::parse(&chain).expect("bundle"),
        a,
        "the first certificate of a bundle is the leaf"
    );
}

#[test]
fn spiffe_id_only_when_exactly_one() {
    let load =
        |f: &str| cert::parse(&std::fs::read(fixtures().join(f)).expect("read")).expect("parse");
    assert_eq!(
        load("ec256_spiffe.pem").spiffe_id.as_deref(),
        Some("spiffe://example.org/ns/prod/sa/orders")
    );
    assert_eq!(load("twospiffe.pem").spiffe_id, None);
    assert_eq!(load("rsa2048.pem").spiffe_id, None);
}

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

#[test]
fn inspect_agrees_with_openssl_on_fresh_random_certificates() {
    let seed = std::env::var("MTLS_GUARD_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    eprintln!("seed {seed} (set MTLS_GUARD_SEED to replay)");
    let mut rng = Lcg(seed);
    let dir = tempdir();
    let pki = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pki.sh");
    let run = |args: &[&str]| {
        let out = Command::new(&pki).args(args).output().expect("pki.sh runs");
        assert!(
            out.status.success(),
            "pki.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let d = dir.to_str().expect("utf-8 path");
    run(&["ca", d, "ca", "/O=Fresh Test/CN=Fresh CA \\+ Ops"]);
    let alphabet: Vec<char> = "abcXYZ019 ,+\";<>\\#=.-_é東".chars().collect();
    let keys = ["rsa:2048", "ec:P-256", "ec:P-384", "ed25519"];
    for i in 0..6 {
        let mut cn = String::new();
        for _ in 0..(3 + rng.next() % 12) {
            let c = *rng.pick(&alphabet);
            if c == '+' || c == '\\' {
                cn.push('\\');
            }
            cn.push(c);
        }
        let ou: String = (0..5)
            .map(|_| *rng.pick(&['q', 'r', ' ', 's', ',']))
            .collect();
        let subj = format!("/C=NL/O=Org {i}/OU={}+CN={cn}", ou.trim());
        let sans: Vec<String> = (0..(1 + rng.next() % 20))
            .map(|j| match rng.next() % 4 {
                0 => format!("DNS:h{j}.r{i}.example"),
                1 => format!("IP:10.{i}.{}.{j}", rng.next() % 250),
                2 => format!("URI:spiffe://fresh.test/ns/{i}/sa/{j}"),
                _ => format!("email:u{j}@r{i}.example"),
            })
            .collect();
        let name = format!("leaf{i}");
        let key = *rng.pick(&keys);
        let serial = format!("{:02x}{:08x}", 1 + rng.next() % 127, rng.next());
        run(&[
            "leaf",
            d,
            "ca",
            &name,
            &subj,
            key,
            &format!("subjectAltName={}", sans.join(",")),
            "20251231235959Z",
            "20990101000000Z",
            &serial,
        ]);
        assert_agrees(&dir.join(&name).join("cert.pem"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> PathBuf {
    let base = std::env::temp_dir().join(format!(
        "mtls-guard-test-{}-{}",
        std::process::id(),
        line!()
    ));
    std::fs::create_dir_all(&base).expect("temp dir");
    base
}
