//! The operator CLI: JSON on stdout, exit codes 0/1/2, one-line errors, no panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mtls-guard"))
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("runs")
}

fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The CLI may stop reading early (size bound); a broken pipe here is fine.
    let _ = child.stdin.take().expect("stdin").write_all(input);
    child.wait_with_output().expect("wait")
}

fn temp(name: &str, content: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtls-guard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write");
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

#[test]
fn inspect_prints_the_documented_fields() {
    let o = run(&["inspect", &fixture("ec256_spiffe.pem")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    for key in [
        "subject",
        "issuer",
        "serial",
        "not_before",
        "not_after",
        "sha256",
        "spki_sha256",
        "san",
        "spiffe_id",
        "key",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["subject"], "CN=orders,O=Example Corp,C=US");
    assert_eq!(v["serial"], "10:01");
    assert_eq!(v["not_after"], "2028-01-01T00:00:00Z");
    assert_eq!(v["spiffe_id"], "spiffe://example.org/ns/prod/sa/orders");
    assert_eq!(v["key"], "ec-p256");
    assert_eq!(v["san"]["dns"][0], "orders.prod.svc.cluster.local");
}

#[test]
fn pin_prints_the_spki_pin_only() {
    let o = run(&["pin", &fixture("rsa2048.pem")]);
    let pin = String::from_utf8(o.stdout).expect("utf-8");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(pin.trim().len(), 44);
    assert!(pin.trim().ends_with('='));
}

#[test]
fn bad_certificate_inputs_exit_2_with_one_line() {
    let big = vec![b'A'; 70 * 1024];
    let pem = std::fs::read(fixture("rsa2048.pem")).expect("read");
    let truncated = &pem[..pem.len() / 2];
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("garbage", b"\x00\x01garbage\xff", "neither PEM nor DER"),
        ("truncated", truncated, "no `-----END CERTIFICATE-----`"),
        ("oversized", &big, "over the 65536-byte limit"),
        ("empty", b"", "empty input"),
        (
            "der garbage",
            b"\x30\x82\xff\xff\x00",
            "not a valid X.509 certificate",
        ),
    ];
    for (name, input, msg) in cases {
        for cmd in ["inspect", "pin"] {
            let o = run_stdin(&[cmd, "-"], input);
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{name}/{cmd}: {err}");
            assert!(err.contains(msg), "{name}/{cmd}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{name}/{cmd}: {err}");
            assert!(!err.contains("panicked"), "{name}/{cmd}");
            assert!(o.stdout.is_empty(), "{name}/{cmd}");
        }
    }
    let o = run(&["inspect", "/nonexistent/cert.pem"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/cert.pem"));
}

#[test]
fn check_config_accepts_valid_and_names_path_of_invalid() {
    let ok = temp(
        "ok.json",
        br#"{"mode":"report","san":{"dns":["orders.internal"]}}"#,
    );
    let o = run(&["check-config", ok.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    let bad = temp("bad.json", br#"{"pins":[{"id":"a","spki_sha256":"AAAA"}]}"#);
    let o = run(&["check-config", bad.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("$.pins[0].spki_sha256: must decode to 32 bytes (SHA-256), got 3"),
        "{}",
        stderr(&o)
    );

    let single = temp(
        "single.json",
        br#"{"pins":[{"id":"a","spki_sha256":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}]}"#,
    );
    let o = run(&["check-config", single.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("warning: $.pins: only one pin"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn explain_gives_verdict_reasons_and_exit_code() {
    let pin = String::from_utf8(run(&["pin", &fixture("ec256_spiffe.pem")]).stdout).expect("utf-8");
    let cfg = temp(
        "explain.json",
        format!(
            r#"{{"mode":"report","pins":[{{"id":"current","spki_sha256":"{}"}},{{"id":"backup","cert_sha256":"{}"}}],"spiffe":{{"trust_domain":"example.org"}},
               "routes":{{"strict":{{"mode":"enforce","issuer":{{"dn":["CN=Nobody"]}}}}}}}}"#,
            pin.trim(),
            "00".repeat(32)
        )
        .as_bytes(),
    );
    let cfg = cfg.to_str().expect("path");
    let at = "2027-01-15T00:00:00Z";

    let o = run(&[
        "explain",
        "--config",
        cfg,
        "--at",
        at,
        &fixture("ec256_spiffe.pem"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(
        (
            v["outcome"].as_str(),
            v["matched_pin"].as_str(),
            v["mode"].as_str()
        ),
        (Some("pass"), Some("current"), Some("report"))
    );

    let o = run(&[
        "explain",
        "--config",
        cfg,
        "--at",
        at,
        &fixture("impostor.pem"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["reasons"], serde_json::json!(["pin_mismatch"]));
    assert_eq!(v["action"], "reported");

    let o = run(&[
        "explain",
        "--config",
        cfg,
        "--route",
        "strict",
        "--at",
        at,
        &fixture("ec256_spiffe.pem"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["reasons"], serde_json::json!(["issuer_mismatch"]));
    assert_eq!(
        (v["mode"].as_str(), v["action"].as_str()),
        (Some("enforce"), Some("rejected"))
    );

    let o = run(&[
        "explain",
        "--config",
        cfg,
        "--at",
        "2040-01-01T00:00:00Z",
        &fixture("ec256_spiffe.pem"),
    ]);
    assert_eq!(json(&o)["reasons"], serde_json::json!(["expired"]));

    // Canary decision for a request id and the shadow verdict, as the filter would make them.
    let canary = temp(
        "canary.json",
        format!(
            r#"{{"enforce_percent":50,"pins":[{{"id":"current","spki_sha256":"{}"}},{{"id":"b","cert_sha256":"{}"}}],"shadow":{{"spiffe":{{"trust_domain":"example.com"}}}}}}"#,
            pin.trim(),
            "00".repeat(32)
        )
        .as_bytes(),
    );
    let canary = canary.to_str().expect("path");
    for id in ["req-1", "req-2", "req-3", "req-4", "req-5", "req-6"] {
        let o = run(&[
            "explain",
            "--config",
            canary,
            "--at",
            at,
            "--request-id",
            id,
            &fixture("impostor.pem"),
        ]);
        assert_eq!(o.status.code(), Some(1));
        let v = json(&o);
        let bucket = mtls_guard::policy::canary_bucket(id.as_bytes());
        assert_eq!(v["canary"]["bucket"], u64::from(bucket));
        assert_eq!(v["canary"]["enforced"], bucket < 50, "{v}");
        assert_eq!(
            v["action"],
            if bucket < 50 { "rejected" } else { "reported" }
        );
        assert_eq!(
            v["shadow"]["reasons"],
            serde_json::json!(["spiffe_mismatch"]),
            "a shadow policy stands alone"
        );
        assert_eq!(v["shadow"]["agrees"], true);
    }
    let o = run(&[
        "explain",
        "--config",
        canary,
        "--at",
        at,
        &fixture("ec256_spiffe.pem"),
    ]);
    let v = json(&o);
    assert_eq!(
        (
            v["outcome"].as_str(),
            v["shadow"]["outcome"].as_str(),
            v["shadow"]["agrees"].as_bool()
        ),
        (Some("pass"), Some("fail"), Some(false))
    );

    for args in [
        vec!["explain", &fixture("rsa2048.pem")],
        vec![
            "explain",
            "--config",
            cfg,
            "--at",
            "yesterday",
            &fixture("rsa2048.pem"),
        ],
        vec![
            "explain",
            "--config",
            cfg,
            "--bogus",
            &fixture("rsa2048.pem"),
        ],
        vec!["frobnicate"],
        vec![],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!stderr(&o).contains("panicked"), "{args:?}");
    }
}
