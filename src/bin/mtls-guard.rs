//! `mtls-guard`: the operator CLI. Same parsing and policy code as the filter.
//!
//! Exit codes: 0 ok/pass, 1 policy failure (`explain`), 2 bad input or usage.

use std::io::Write;
use std::process::ExitCode;

use mtls_guard::policy::{action_for, canary_bucket, canary_enforces, evaluate, Presented, Reason};
use mtls_guard::{cert, config, timefmt};

const USAGE: &str = "usage:
  mtls-guard inspect CERT.pem
  mtls-guard pin CERT.pem
  mtls-guard check-config CONFIG.json
  mtls-guard explain --config CONFIG.json [--route NAME] [--at RFC3339] [--request-id ID] CERT.pem
(`-` reads standard input)";

/// A failure that ends the command with exit code 2 and a one-line reason.
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

fn read_input(path: &str) -> Result<Vec<u8>, Fail> {
    use std::io::Read;
    let limit = (cert::MAX_CERT_INPUT as u64).max(1 << 20) + 1;
    let mut buf = Vec::new();
    let result = if path == "-" {
        std::io::stdin().take(limit).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut buf))
    };
    result.map_err(|e| Fail(format!("{path}: {e}")))?;
    Ok(buf)
}

fn load_cert(path: &str) -> Result<cert::PeerCert, Fail> {
    let bytes = read_input(path)?;
    cert::parse(&bytes).map_err(|e| Fail(format!("{path}: {e}")))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn load_config(path: &str, at: i64) -> Result<(config::Config, Vec<config::ConfigWarning>), Fail> {
    let bytes = read_input(path)?;
    config::parse(&bytes, at).map_err(|e| Fail(format!("{path}: {e}")))
}

fn print_json(v: &serde_json::Value) -> Result<(), Fail> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn run(args: &[String]) -> Result<u8, Fail> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(Fail(USAGE.into()));
    };
    match (cmd.as_str(), rest) {
        ("inspect", [path]) => {
            print_json(&load_cert(path)?.to_json())?;
            Ok(0)
        }
        ("pin", [path]) => {
            let pin = load_cert(path)?.spki_pin();
            writeln!(std::io::stdout().lock(), "{pin}")?;
            Ok(0)
        }
        ("check-config", [path]) => {
            let (cfg, warnings) = load_config(path, now())?;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            eprintln!(
                "ok: {} (default policy, {} route override{})",
                path,
                cfg.routes.len(),
                if cfg.routes.len() == 1 { "" } else { "s" }
            );
            Ok(0)
        }
        ("explain", rest) => explain(rest),
        ("help" | "--help" | "-h", _) => {
            writeln!(std::io::stdout().lock(), "{USAGE}")?;
            Ok(0)
        }
        _ => Err(Fail(format!("unknown command or wrong arguments\n{USAGE}"))),
    }
}

fn explain(args: &[String]) -> Result<u8, Fail> {
    let (mut config_path, mut route, mut at, mut cert_path) = (None, None, None, None);
    let mut request_id: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| Fail(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--config" => config_path = Some(value("--config")?),
            "--route" => route = Some(value("--route")?),
            "--request-id" => request_id = Some(value("--request-id")?),
            "--at" => {
                let v = value("--at")?;
                at =
                    Some(timefmt::parse_rfc3339(&v).ok_or_else(|| {
                        Fail(format!("--at: `{v}` is not an RFC 3339 date-time"))
                    })?);
            }
            s if s.starts_with("--") => return Err(Fail(format!("unknown option {s}\n{USAGE}"))),
            _ if cert_path.is_none() => cert_path = Some(a.clone()),
            _ => return Err(Fail(format!("unexpected argument {a}\n{USAGE}"))),
        }
    }
    let (Some(config_path), Some(cert_path)) = (config_path, cert_path) else {
        return Err(Fail(format!(
            "explain needs --config and a certificate\n{USAGE}"
        )));
    };
    let at = at.unwrap_or_else(now);
    let (cfg, _) = load_config(&config_path, at)?;
    let cert = load_cert(&cert_path)?;
    let policy = cfg.policy_for(route.as_deref());
    let verdict = evaluate(policy, Presented::Cert(&cert), at);
    let reasons: Vec<&str> = verdict.reasons.iter().map(Reason::as_str).collect();
    let id = request_id.as_deref().map(str::as_bytes);
    let action = action_for(&verdict, policy, id);
    let mut out = serde_json::json!({
        "outcome": if verdict.passed() { "pass" } else { "fail" },
        "reasons": reasons,
        "mode": policy.mode.as_str(),
        "action": action.as_str(),
        "matched_pin": verdict.matched_pin.and_then(|i| policy.pins.get(i)).map(|p| p.id.as_str()),
        "route_label": policy.route_label,
        "at": timefmt::format_rfc3339(at),
    });
    if policy.enforce_percent < 100 || request_id.is_some() {
        insert(
            &mut out,
            "canary",
            serde_json::json!({
                "enforce_percent": policy.enforce_percent,
                "request_id": request_id,
                "bucket": id.map(canary_bucket),
                "enforced": canary_enforces(policy.enforce_percent, id),
            }),
        );
    }
    if let Some(shadow) = &policy.shadow {
        let sv = evaluate(shadow, Presented::Cert(&cert), at);
        insert(
            &mut out,
            "shadow",
            serde_json::json!({
                "outcome": if sv.passed() { "pass" } else { "fail" },
                "reasons": sv.reasons.iter().map(Reason::as_str).collect::<Vec<_>>(),
                "matched_pin": sv.matched_pin.and_then(|i| shadow.pins.get(i)).map(|p| p.id.as_str()),
                "agrees": sv.passed() == verdict.passed(),
            }),
        );
    }
    print_json(&out)?;
    Ok(if verdict.passed() { 0 } else { 1 })
}

fn insert(obj: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(map) = obj.as_object_mut() {
        map.insert(key.to_string(), value);
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(Fail(msg)) => {
            eprintln!("mtls-guard: {msg}");
            ExitCode::from(2)
        }
    }
}
