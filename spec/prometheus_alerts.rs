//! A real Prometheus server (Debian's `prometheus` package) scrapes the real Envoy running
//! dist/mtls_guard.wasm, loads the shipped observability/prometheus/mtls-guard.rules.yml,
//! and the expiring-certificate alert fires for the route whose upstream certificate
//! expires in a few days, and only for that route.
//!
//! Also home of the metric-name dump that `scripts/check_kong.py` decodes with Kong's
//! label patterns (see `metric_names_for_the_kong_label_pattern_check`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// Days of validity left on the expiring upstream's certificate: under the shipped
/// warning threshold (14 days), over the critical one (3 days).
const EXPIRING_DAYS: i64 = 5;
const ALERT: &str = "MtlsGuardUpstreamCertificateExpiringSoon";
const CRITICAL_ALERT: &str = "MtlsGuardUpstreamCertificateExpiringVerySoon";

/// The Prometheus binary: $PROMETHEUS_BIN, else `prometheus` on PATH.
fn prometheus_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PROMETHEUS_BIN") {
        return PathBuf::from(p);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v prometheus"])
        .output()
        .expect("sh runs");
    let p = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    assert!(
        found.status.success() && p.exists(),
        "prometheus not found: `apt-get install prometheus` (make kong-setup does)"
    );
    p
}

/// A free loopback port (Prometheus takes a fixed listen address, not port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Prometheus {
    child: Option<Child>,
    dir: PathBuf,
    addr: String,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (Envoy's admin address) every second with
    /// the shipped rules, and waits until it is ready.
    fn start(dir: &Path, target: &str) -> Prometheus {
        let rules = root().join("observability/prometheus/mtls-guard.rules.yml");
        assert!(rules.exists(), "{} is missing", rules.display());
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: envoy\n    metrics_path: /stats/prometheus\n    \
             static_configs:\n      - targets: [\"{target}\"]\n",
            rules = rules.display()
        );
        let cfg_path = dir.join("prometheus.yml");
        std::fs::write(&cfg_path, config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_bin())
            .arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let mut p = Prometheus {
            child: Some(child),
            dir: dir.to_path_buf(),
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("prometheus exited with {status}:\n{}", p.log());
            }
            if http_get(&p.addr, "/-/ready", &[])
                .map(|r| r.status == 200)
                .unwrap_or(false)
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn api(&self, path: &str) -> Value {
        let r = http_get(&self.addr, path, &[]).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 200, "GET {path}: {}", r.body_text());
        let v = r.json();
        assert_eq!(v["status"], "success", "GET {path}: {v}");
        v["data"].clone()
    }

    fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(promql)));
        data["result"].as_array().cloned().unwrap_or_default()
    }

    fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn alerts_named<'a>(alerts: &'a [Value], name: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| a["labels"]["alertname"] == name)
        .collect()
}

#[test]
fn prometheus_fires_the_expiring_certificate_alert_for_the_route_that_needs_it() {
    let dir = workdir("alerts");
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
    let sans = "subjectAltName=DNS:orders.internal";
    pki.leaf(
        "ca",
        "healthy",
        "/O=Example Corp/CN=orders.internal",
        "ec:P-256",
        sans,
        "",
        "",
    );
    pki.leaf(
        "ca",
        "expiring",
        "/O=Example Corp/CN=orders.internal",
        "ec:P-256",
        sans,
        &openssl_stamp(-30),
        &openssl_stamp(EXPIRING_DAYS),
    );
    let names = ["healthy", "expiring"];
    let specs: Vec<UpstreamSpec> = names
        .iter()
        .map(|n| UpstreamSpec {
            name: n.to_string(),
            tls: Some((pki.cert(n), pki.key(n))),
        })
        .collect();
    let upstreams = Upstreams::start(&dir, &pki.cert("ca"), &specs);
    let clusters: Vec<Cluster> = names
        .iter()
        .map(|n| Cluster {
            name: n.to_string(),
            port: upstreams.port(n),
            tls: Some(ClusterTls {
                client_cert: pki.cert("gateway"),
                client_key: pki.key("gateway"),
                trusted_ca: pki.cert("ca"),
                allow_expired: false,
                sni: "orders.internal".into(),
            }),
        })
        .collect();
    let routes: Vec<Route> = names
        .iter()
        .map(|n| Route {
            name: n.to_string(),
            cluster: n.to_string(),
        })
        .collect();
    // Report mode: the alert is about what the upstreams present, whatever the policy.
    let config = json!({"mode": "report", "routes": {"healthy": {}, "expiring": {}}});
    let envoy = Envoy::start(
        &dir,
        &bootstrap(&clusters, &routes, &config, "FAIL_CLOSED"),
        1,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3 {
        for n in names {
            let r = envoy.get(&format!("/{n}/x"));
            assert_eq!(r.status, 200, "{n}: {r:?}");
            assert_eq!(r.header("x-upstream-verify"), Some("SUCCESS"), "{n}");
        }
    }
    let expiring_not_after = pki.facts("expiring").not_after;
    assert_eq!(
        envoy.sample(
            "mtls_guard_cert_not_after_seconds",
            &[("route", "expiring")]
        ),
        Some(expiring_not_after as f64),
        "{}",
        envoy.prometheus()
    );
    envoy.assert_no_wasm_failure();

    let prometheus = Prometheus::start(&dir, &envoy.admin);

    // The shipped rule groups are loaded.
    let mut groups: Vec<String> = prometheus.api("/api/v1/rules")["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_string())
        .collect();
    groups.sort();
    assert_eq!(groups, ["mtls-guard.alerts", "mtls-guard.recording"]);

    // Wait (bounded) for the alert: scrapes and evaluations run every second.
    let deadline = Instant::now() + Duration::from_secs(60);
    let alerts = loop {
        let alerts = prometheus.alerts();
        let firing = alerts_named(&alerts, ALERT)
            .iter()
            .any(|a| a["state"] == "firing" && a["labels"]["route"] == "expiring");
        if firing {
            break alerts;
        }
        assert!(
            Instant::now() < deadline,
            "{ALERT} did not fire within 60 s; alerts: {alerts:?}\ntargets: {}\nlog:\n{}",
            prometheus.api("/api/v1/targets"),
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };

    let expiring = alerts_named(&alerts, ALERT);
    assert_eq!(
        expiring.len(),
        1,
        "only the expiring route alerts: {alerts:?}"
    );
    let a = expiring[0];
    assert_eq!(a["labels"]["severity"], "warning");
    assert_eq!(a["labels"]["job"], "envoy");
    assert_eq!(a["labels"]["instance"], envoy.admin.as_str());
    let summary = a["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("Upstream certificate on route expiring expires in 4.9")
            || summary.starts_with("Upstream certificate on route expiring expires in 5.0"),
        "{summary}"
    );
    assert!(
        alerts_named(&alerts, CRITICAL_ALERT).is_empty(),
        "{EXPIRING_DAYS} days is above the critical threshold: {alerts:?}"
    );
    assert!(
        !alerts.iter().any(|a| a["labels"]["route"] == "healthy"),
        "the healthy route must not alert: {alerts:?}"
    );

    // The recording rule computes the same days left from the scraped gauge (its group
    // is evaluated on its own schedule: wait for its first result, bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let days = loop {
        let days = prometheus.query(r#"mtls_guard:cert_remaining_days{route="expiring"}"#);
        if !days.is_empty() || Instant::now() > deadline {
            break days;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(days.len(), 1, "{days:?}");
    let left: f64 = days[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!((4.9..=5.01).contains(&left), "days left: {left}");
    let healthy = prometheus.query(r#"mtls_guard:cert_remaining_days{route="healthy"}"#);
    let left: f64 = healthy[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(left > 300.0, "healthy days left: {left}");
}

/// Route labels and pin ids that are also words of the name encoding: a decoder that
/// is not anchored to the name's structure gives them wrong labels.
const TRICKY_LABELS: &[&str] = &[
    "orders",
    "route",
    "outcome",
    "reason",
    "pin",
    "passed",
    "pass",
    "none",
    "rejected",
    "Orders-v2_x",
];

/// Every metric name the filter can emit, for scripts/check_kong.py, which decodes them
/// with the meta file's label patterns under PCRE (as Kong does) and compares the
/// labels with the `.key.value` pairs of the name. Written to $MTLS_GUARD_METRIC_NAMES_OUT
/// when set; the invariants below hold either way.
#[test]
fn metric_names_for_the_kong_label_pattern_check() {
    use mtls_guard::metrics::{all_names, FAMILIES, KONG_LABEL_PATTERNS};
    let long_route = "r".repeat(64);
    let long_pin = "p".repeat(64);
    let mut routes: Vec<&str> = TRICKY_LABELS.to_vec();
    routes.push(&long_route);
    let mut pins: Vec<&str> = vec!["current", "next"];
    pins.extend_from_slice(TRICKY_LABELS);
    pins.push(&long_pin);

    let mut names = Vec::new();
    for route in &routes {
        names.extend(all_names(route, &pins));
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "duplicate metric names");
    for n in &names {
        assert!(
            FAMILIES.iter().any(|(base, ..)| n.starts_with(base)),
            "{n} has no family"
        );
        assert!(format!("pw:mtls_guard:{n}").len() < 256, "{n} too long");
    }
    for (base, ..) in FAMILIES {
        assert!(
            names.iter().any(|n| n.starts_with(&format!("{base}."))),
            "all_names never emits {base}"
        );
    }

    if let Ok(out) = std::env::var("MTLS_GUARD_METRIC_NAMES_OUT") {
        let families: Vec<Value> = FAMILIES
            .iter()
            .map(|(base, kind, keys)| {
                json!({"name": base, "kind": format!("{kind:?}").to_lowercase(), "labels": keys})
            })
            .collect();
        let patterns: Vec<Value> = KONG_LABEL_PATTERNS
            .iter()
            .map(|(label, pattern)| json!({"label": label, "pattern": pattern}))
            .collect();
        let dump = json!({"families": families, "kong_label_patterns": patterns, "names": names});
        std::fs::write(&out, serde_json::to_vec_pretty(&dump).unwrap()).unwrap();
    }
}
