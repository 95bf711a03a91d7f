//! `make bench-envoy` (part of `make bench`): the cost of the filter on real Envoy, side by
//! side with what it is compared to, in ONE run.
//!
//! Starts one upstream Envoy (mutual TLS required, `direct_response`; one listener with
//! one certificate, one with 1,000 SNI-selected certificates) and one gateway Envoy per
//! variant (`--concurrency 1` each, all alive at once), then drives each gateway with
//! `wrk` on 127.0.0.1 in interleaved rounds (the order rotates every round) and reports
//! medians. Also reads the hot-path and criterion results of the other `make bench` steps
//! and writes the report between the markers in BENCHMARKS.md.
//!
//! Settings (environment): BENCH_DURATION (s per run, 10), BENCH_ROUNDS (3), BENCH_WARMUP
//! (s per variant, 3), BENCH_CONNECTIONS (16), BENCH_WRK_THREADS (1), BENCH_CERTS (1000),
//! BENCH_ROTATION_CACHE (1024), BENCH_VARIANTS (ids, comma-separated; all by default),
//! BENCH_FILTER_WASM, BENCH_NOOP_WASM, BENCH_OUT (results directory), BENCH_REPORT
//! (markdown file to update; empty: none), BENCH_HOTPATH_NATIVE, BENCH_HOTPATH_WASM,
//! BENCH_CRITERION_DIR, BENCH_COMMAND (the command line to print in the report).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../spec/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{envoy_bin, http_get, workdir, Envoy, Pki};

/// SNI and Host names of the rotation certificates: `uNNNN.<ROTATION_DOMAIN>`.
const ROTATION_DOMAIN: &str = "bench.internal";
const SPIFFE_ID: &str = "spiffe://example.org/ns/prod/sa/orders";
const SUBJECT_DN: &str = "CN=orders.internal,O=Example Corp,C=US";
const REPORT_BEGIN: &str = "<!-- bench:begin (written by `make bench`; edit around it) -->";
const REPORT_END: &str = "<!-- bench:end -->";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn env_path(name: &str, default: PathBuf) -> PathBuf {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default)
}

struct Settings {
    duration: u64,
    rounds: usize,
    warmup: u64,
    connections: u32,
    wrk_threads: u32,
    certs: usize,
    rotation_cache: usize,
    variants: Option<Vec<String>>,
    filter_wasm: PathBuf,
    noop_wasm: PathBuf,
    out: PathBuf,
    report: Option<PathBuf>,
    hotpath_native: PathBuf,
    hotpath_wasm: PathBuf,
    criterion_dir: PathBuf,
    command: String,
}

impl Settings {
    fn from_env() -> Settings {
        let root = support::root();
        let target = env_path("CARGO_TARGET_DIR", root.join("target"));
        let out = env_path("BENCH_OUT", target.join("bench/out"));
        Settings {
            duration: env_or("BENCH_DURATION", 10u64).max(1),
            rounds: env_or("BENCH_ROUNDS", 3usize).max(1),
            warmup: env_or("BENCH_WARMUP", 3u64),
            connections: env_or("BENCH_CONNECTIONS", 16u32).max(1),
            wrk_threads: env_or("BENCH_WRK_THREADS", 1u32).max(1),
            certs: env_or("BENCH_CERTS", 1000usize).clamp(1, 9999),
            rotation_cache: env_or("BENCH_ROTATION_CACHE", 1024usize),
            variants: std::env::var("BENCH_VARIANTS")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
            filter_wasm: env_path("BENCH_FILTER_WASM", root.join("dist/mtls_guard.wasm")),
            noop_wasm: env_path("BENCH_NOOP_WASM", out.join("noop_filter.wasm")),
            report: match std::env::var("BENCH_REPORT") {
                Ok(v) if v.is_empty() => None,
                Ok(v) => Some(PathBuf::from(v)),
                Err(_) => Some(root.join("BENCHMARKS.md")),
            },
            hotpath_native: env_path("BENCH_HOTPATH_NATIVE", out.join("hotpath-native.json")),
            hotpath_wasm: env_path("BENCH_HOTPATH_WASM", out.join("hotpath-wasm.json")),
            criterion_dir: env_path("BENCH_CRITERION_DIR", target.join("criterion")),
            command: std::env::var("BENCH_COMMAND").unwrap_or_else(|_| "make bench".into()),
            out,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Filter {
    None,
    Noop,
    Guard {
        cache_entries: usize,
        stamp: bool,
        /// The full policy of variant 4; false: the two pins only.
        full: bool,
    },
}

struct Variant {
    id: &'static str,
    title: String,
    filter: Filter,
    /// Envoy's own SPKI pin and SAN checks in the cluster's validation_context.
    native_checks: bool,
    /// Host header rotated over the 1,000-certificate listener (auto_sni).
    rotation: bool,
}

fn variants(s: &Settings) -> Vec<Variant> {
    let n = s.certs;
    let all = vec![
        Variant {
            id: "1",
            title: "Envoy, no Wasm filter".into(),
            filter: Filter::None,
            native_checks: false,
            rotation: false,
        },
        Variant {
            id: "2",
            title: "no-op Wasm filter".into(),
            filter: Filter::Noop,
            native_checks: false,
            rotation: false,
        },
        Variant {
            id: "3",
            title: "Envoy native checks (verify_certificate_spki + match_typed_subject_alt_names)"
                .into(),
            filter: Filter::None,
            native_checks: true,
            rotation: false,
        },
        Variant {
            id: "4",
            title: "mtls-guard, full policy, cache warm".into(),
            filter: Filter::Guard {
                cache_entries: 256,
                stamp: true,
                full: true,
            },
            native_checks: false,
            rotation: false,
        },
        Variant {
            id: "4h",
            title: "as 4, `headers.stamp: false` (diagnostic: the cost of the 8 headers)".into(),
            filter: Filter::Guard {
                cache_entries: 256,
                stamp: false,
                full: true,
            },
            native_checks: false,
            rotation: false,
        },
        Variant {
            id: "4p",
            title: "as 4h with the two pins only (diagnostic: the filter's floor)".into(),
            filter: Filter::Guard {
                cache_entries: 256,
                stamp: false,
                full: false,
            },
            native_checks: false,
            rotation: false,
        },
        Variant {
            id: "5",
            title: "mtls-guard, full policy, `cache_entries: 0`".into(),
            filter: Filter::Guard {
                cache_entries: 0,
                stamp: true,
                full: true,
            },
            native_checks: false,
            rotation: false,
        },
        Variant {
            id: "6",
            title: format!("mtls-guard, {n} certificates in rotation, cache 256"),
            filter: Filter::Guard {
                cache_entries: 256,
                stamp: true,
                full: true,
            },
            native_checks: false,
            rotation: true,
        },
        Variant {
            id: "6b",
            title: format!(
                "mtls-guard, {n} certificates in rotation, `cache_entries: {}`",
                s.rotation_cache
            ),
            filter: Filter::Guard {
                cache_entries: s.rotation_cache,
                stamp: true,
                full: true,
            },
            native_checks: false,
            rotation: true,
        },
        Variant {
            id: "6r",
            title: format!("no Wasm filter, {n} certificates in rotation (baseline of 6, 6b)"),
            filter: Filter::None,
            native_checks: false,
            rotation: true,
        },
    ];
    match &s.variants {
        Some(ids) => all
            .into_iter()
            .filter(|v| ids.iter().any(|i| i == v.id))
            .collect(),
        None => all,
    }
}

// ------------------------------------------------------------------------------------
// Certificates

struct Certs {
    ca: PathBuf,
    gateway_cert: PathBuf,
    gateway_key: PathBuf,
    upstream_key: PathBuf,
    orders: PathBuf,
    rotation: Vec<(String, PathBuf)>,
    pin: String,
}

fn make_certs(dir: &Path, count: usize) -> Certs {
    let pki = Pki::new(dir);
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
    let up = dir.join("upstream-certs");
    let ca_key = pki.key("ca");
    let status = Command::new(support::root().join("bench/certs.sh"))
        .arg(&up)
        .arg(pki.cert("ca"))
        .arg(&ca_key)
        .arg(count.to_string())
        .arg(ROTATION_DOMAIN)
        .status()
        .expect("bench/certs.sh runs");
    assert!(status.success(), "bench/certs.sh failed");
    let orders = up.join("orders.pem");
    let pin = mtls_guard::cert::parse(&std::fs::read(&orders).expect("orders.pem"))
        .expect("orders.pem parses")
        .spki_pin();
    let rotation = (0..count)
        .map(|i| {
            let name = format!("u{i:04}");
            let path = up.join("rot").join(format!("{name}.pem"));
            (format!("{name}.{ROTATION_DOMAIN}"), path)
        })
        .collect();
    Certs {
        ca: pki.cert("ca"),
        gateway_cert: pki.cert("gateway"),
        gateway_key: pki.key("gateway"),
        upstream_key: up.join("key.pem"),
        orders,
        rotation,
        pin,
    }
}

// ------------------------------------------------------------------------------------
// Envoy configurations

fn router() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

fn admin() -> Value {
    json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}})
}

/// The upstream's HTTP side: every request answered by Envoy itself, 200 "ok".
fn direct_response_hcm(stat_prefix: &str) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "route_config": {"name": "direct", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}
            ]}]},
            "http_filters": [router()]
        }
    })
}

/// Server side of the upstream's mutual TLS: this certificate, client certificate required
/// and verified against the bench CA.
fn downstream_tls(cert: &Path, key: &Path, ca: &Path) -> Value {
    json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}],
                "validation_context": {"trusted_ca": {"filename": ca}}
            }
        }
    })
}

fn upstream_config(c: &Certs) -> Value {
    let single = json!({
        "name": "single",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{
            "transport_socket": downstream_tls(&c.orders, &c.upstream_key, &c.ca),
            "filters": [direct_response_hcm("single")]
        }]
    });
    let chains: Vec<Value> = c
        .rotation
        .iter()
        .map(|(sni, cert)| {
            json!({
                "filter_chain_match": {"server_names": [sni]},
                "transport_socket": downstream_tls(cert, &c.upstream_key, &c.ca),
                "filters": [direct_response_hcm("rotation")]
            })
        })
        .collect();
    let rotation = json!({
        "name": "rotation",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"}}],
        "filter_chains": chains
    });
    json!({"admin": admin(), "static_resources": {"listeners": [single, rotation]}})
}

/// The mtls-guard configuration of variants 4, 5, 6: pins (with a backup), subject DN,
/// SPIFFE, validity, identity headers; metrics are always emitted.
fn guard_config(pin: &str, cache_entries: usize, stamp: bool, full: bool) -> Value {
    if !full {
        return json!({
            "route_label": "bench",
            "pins": [
                {"id": "current", "spki_sha256": pin},
                {"id": "backup", "spki_sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
            ],
            "headers": {"stamp": stamp},
            "cache_entries": cache_entries
        });
    }
    json!({
        "mode": "enforce",
        "route_label": "bench",
        "pins": [
            {"id": "current", "spki_sha256": pin},
            {"id": "backup", "spki_sha256": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
        ],
        "subject": {"dn": [SUBJECT_DN]},
        "spiffe": {"trust_domain": "example.org", "path_prefix": "/ns/prod/"},
        "validity": {"reject_expired": true, "min_remaining_days": 7},
        "headers": {"stamp": stamp},
        "cache_entries": cache_entries
    })
}

fn wasm_filter(name: &str, wasm: &Path, configuration: &str) -> Value {
    json!({
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                "failure_policy": "FAIL_CLOSED",
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration},
                "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm}}}
            }
        }
    })
}

fn gateway_config(v: &Variant, s: &Settings, c: &Certs, upstream_port: u16) -> Value {
    let mut http_filters = Vec::new();
    match v.filter {
        Filter::None => {}
        Filter::Noop => http_filters.push(wasm_filter("noop", &s.noop_wasm, "")),
        Filter::Guard {
            cache_entries,
            stamp,
            full,
        } => http_filters.push(wasm_filter(
            "mtls_guard",
            &s.filter_wasm,
            &guard_config(&c.pin, cache_entries, stamp, full).to_string(),
        )),
    }
    http_filters.push(router());

    let mut validation = json!({"trusted_ca": {"filename": c.ca}});
    if v.native_checks {
        // What an Envoy user would configure instead of the filter: pin the key and
        // require the SPIFFE ID and DNS name, checked once per upstream handshake.
        validation["verify_certificate_spki"] = json!([c.pin]);
        validation["match_typed_subject_alt_names"] = json!([
            {"san_type": "URI", "matcher": {"exact": SPIFFE_ID}},
            {"san_type": "DNS", "matcher": {"exact": "orders.internal"}}
        ]);
    }
    let mut tls = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": c.gateway_cert}, "private_key": {"filename": c.gateway_key}}],
            "validation_context": validation
        }
    });
    if !v.rotation {
        tls["sni"] = json!("orders.internal");
    }
    let mut cluster = json!({
        "name": "upstream",
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}}}]}]},
        "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls}
    });
    if v.rotation {
        // SNI from the request's Host: one connection pool, so one upstream certificate,
        // per name. Enough connections for every name to keep its own.
        cluster["typed_extension_protocol_options"] = json!({
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "upstream_http_protocol_options": {"auto_sni": true},
                "explicit_http_config": {"http_protocol_options": {}}
            }
        });
        cluster["circuit_breakers"] = json!({"thresholds": [{
            "max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000
        }]});
    }
    let stats_tags: Vec<Value> = mtls_guard::metrics::ENVOY_STATS_TAGS
        .iter()
        .map(|(tag, regex)| json!({"tag_name": tag, "regex": regex}))
        .collect();
    json!({
        "admin": admin(),
        "stats_config": {"stats_tags": stats_tags},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                            {"name": "bench", "match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "5s"}}
                        ]}]},
                        "http_filters": http_filters
                    }
                }]}]
            }],
            "clusters": [cluster]
        }
    })
}

// ------------------------------------------------------------------------------------
// Processes and measurements

/// Port of the named listener, from Envoy's admin interface.
fn listener_port(envoy: &Envoy, name: &str) -> u16 {
    let r = http_get(&envoy.admin, "/listeners?format=json", &[]).expect("admin answers");
    let v: Value = serde_json::from_slice(&r.body).expect("listeners json");
    v["listener_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["name"] == name)
        .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no listener {name}: {v}"))
}

/// PID of the Envoy started with this work dir (its command line names dir/envoy.json).
fn envoy_pid(dir: &Path) -> Option<u32> {
    let needle = dir.join("envoy.json");
    let needle = needle.to_string_lossy();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains(needle.as_ref()) && cmd.contains("--admin-address-path")).then_some(pid)
    })
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One GET with this Host, connection closed after; status and headers.
fn get_with_host(addr: &str, host: &str) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET / HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// `POST /logging?<logger>=<level>` on Envoy's admin interface.
fn set_log_level(envoy: &Envoy, logger: &str, level: &str) {
    let mut s = TcpStream::connect(&envoy.admin).expect("admin reachable");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "POST /logging?{logger}={level} HTTP/1.1\r\nhost: admin\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .expect("admin request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "setting the {logger} log level: {}",
        String::from_utf8_lossy(&raw)
    );
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Checks that the variant does what it claims before any load: 200, and for the filter
/// variants a full `SUCCESS` stamp; for rotation, distinct certificates per Host.
fn sanity_check(v: &Variant, gw: &Envoy, certs: usize) {
    let hosts: Vec<String> = if v.rotation {
        [0, 1, certs / 2, certs - 1]
            .iter()
            .map(|i| format!("u{i:04}.{ROTATION_DOMAIN}"))
            .collect()
    } else {
        vec!["orders.internal".into()]
    };
    let mut digests = Vec::new();
    for host in &hosts {
        let (status, headers) =
            get_with_host(&gw.listener, host).unwrap_or_else(|e| panic!("variant {}: {e}", v.id));
        assert_eq!(
            status,
            200,
            "variant {} ({host}): status {status}, headers {headers:?}\n{}",
            v.id,
            gw.log()
        );
        if let Filter::Guard { stamp: true, .. } = v.filter {
            assert_eq!(
                header(&headers, "x-upstream-verify"),
                Some("SUCCESS"),
                "variant {}: {headers:?}",
                v.id
            );
            for h in [
                "x-upstream-cert-subject",
                "x-upstream-cert-sha256",
                "x-upstream-spiffe-id",
            ] {
                assert!(header(&headers, h).is_some(), "variant {}: no {h}", v.id);
            }
            digests.extend(header(&headers, "x-upstream-cert-sha256").map(str::to_string));
        }
    }
    digests.sort();
    digests.dedup();
    if v.rotation && matches!(v.filter, Filter::Guard { stamp: true, .. }) {
        assert_eq!(
            digests.len(),
            hosts.len(),
            "variant {}: the rotation must present a distinct certificate per Host",
            v.id
        );
    }
}

#[derive(Clone, Debug)]
struct Run {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

fn wrk(s: &Settings, v: &Variant, addr: &str, seconds: u64) -> Run {
    let dir = support::root().join("bench/wrk");
    let script = if v.rotation {
        dir.join("rotate.lua")
    } else {
        dir.join("report.lua")
    };
    let mut cmd = Command::new("timeout");
    // Bounded: wrk stops itself after `seconds`; timeout kills it if it does not.
    cmd.args([
        "--kill-after=5",
        &(seconds + 30).to_string(),
        "wrk",
        "-t",
        &s.wrk_threads.to_string(),
        "-c",
        &s.connections.to_string(),
        "-d",
        &format!("{seconds}s"),
        "--timeout",
        "5s",
        "-s",
    ])
    .arg(&script)
    .arg(format!("http://{addr}/"));
    if v.rotation {
        cmd.args(["--", &s.certs.to_string(), ROTATION_DOMAIN]);
    }
    let out = cmd.output().expect("wrk runs (apt-get install wrk)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .unwrap_or_else(|| {
            panic!(
                "variant {}: wrk printed no result ({}):\n{stdout}\n{}",
                v.id,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let j: Value = serde_json::from_str(line).expect("wrk result json");
    let num = |k: &str| j[k].as_f64().unwrap_or(0.0);
    let errors = [
        "errors_connect",
        "errors_read",
        "errors_write",
        "errors_status",
        "errors_timeout",
    ]
    .iter()
    .map(|k| j[*k].as_u64().unwrap_or(0))
    .sum();
    Run {
        rps: num("requests") / (num("duration_us") / 1e6).max(1e-9),
        p50_us: num("p50_us"),
        p99_us: num("p99_us"),
        errors,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|_| "not found".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn file_size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

/// Size after `wasm-opt -Oz` (Debian's binaryen), when it is installed: informational.
fn wasm_opt_size(wasm: &Path, out: &Path) -> Option<u64> {
    let target = out.join("mtls_guard.opt.wasm");
    let ok = Command::new("wasm-opt")
        .args(["-Oz", "--all-features", "--strip-debug"])
        .arg(wasm)
        .arg("-o")
        .arg(&target)
        .output()
        .ok()?
        .status
        .success();
    if ok {
        file_size(&target)
    } else {
        None
    }
}

// ------------------------------------------------------------------------------------
// Report

struct Measured {
    id: String,
    title: String,
    runs: Vec<Run>,
    rss_before_kib: Option<u64>,
    rss_after_kib: Option<u64>,
}

impl Measured {
    fn rps(&self) -> f64 {
        median(self.runs.iter().map(|r| r.rps).collect())
    }
    fn p50(&self) -> f64 {
        median(self.runs.iter().map(|r| r.p50_us).collect())
    }
    fn p99(&self) -> f64 {
        median(self.runs.iter().map(|r| r.p99_us).collect())
    }
    fn errors(&self) -> u64 {
        self.runs.iter().map(|r| r.errors).sum()
    }
}

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// criterion medians (ns) by `group/function`, from `<dir>/**/new/estimates.json`.
fn criterion_medians(dir: &Path) -> BTreeMap<String, f64> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, f64>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            let est = p.join("new/estimates.json");
            if let Some(v) = read_json(&est) {
                if let Some(ns) = v["median"]["point_estimate"].as_f64() {
                    let name = p
                        .strip_prefix(base)
                        .map(|r| r.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    out.insert(name, ns);
                }
            } else if p.file_name().is_some_and(|n| n != "report") {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**not met**"
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Context {
    date: String,
    commit: String,
    nproc: usize,
    cpu: String,
    kernel: String,
    memory: String,
    envoy: String,
    wrk: String,
    rustc: String,
    node: String,
    filter_size: Option<u64>,
    filter_opt_size: Option<u64>,
    noop_size: Option<u64>,
}

fn report(s: &Settings, ctx: &Context, m: &[Measured]) -> String {
    let by = |id: &str| m.iter().find(|x| x.id == id);
    let mut r = String::new();
    let _ = writeln!(r, "Measured {} on commit `{}`.\n", ctx.date, ctx.commit);
    let _ = writeln!(r, "- Machine: {} CPUs ({}), {}, Linux {}. **Shared** with other work while measuring: read the ratios of variants measured side by side, not the absolute numbers.", ctx.nproc, ctx.cpu, ctx.memory, ctx.kernel);
    let _ = writeln!(
        r,
        "- Versions: {}; {}; {}; Node {}.",
        ctx.envoy, ctx.wrk, ctx.rustc, ctx.node
    );
    let _ = writeln!(r, "- Command: `{}`", s.command);
    let _ = writeln!(r, "- Load: `wrk -t{} -c{} -d{}s` on 127.0.0.1, plain HTTP/1.1 keep-alive to the gateway; gateway and upstream Envoy `--concurrency 1`; {} rounds, order rotated each round, {} s warm-up per variant; medians over rounds.\n", s.wrk_threads, s.connections, s.duration, s.rounds, s.warmup);

    let _ = writeln!(r, "### Envoy, side by side\n");
    let _ = writeln!(
        r,
        "| # | variant | req/s (median) | p50 | p99 | req/s per round | errors |"
    );
    let _ = writeln!(r, "|---|---|---:|---:|---:|---|---:|");
    for x in m {
        let rounds: Vec<String> = x.runs.iter().map(|r| format!("{:.0}", r.rps)).collect();
        let _ = writeln!(
            r,
            "| {} | {} | {:.0} | {:.0} µs | {:.0} µs | {} | {} |",
            x.id,
            x.title,
            x.rps(),
            x.p50(),
            x.p99(),
            rounds.join(" / "),
            x.errors()
        );
    }
    let _ = writeln!(r);

    let ratio = |a: &str, b: &str| -> Option<f64> { Some(by(a)?.rps() / by(b)?.rps()) };
    // The same ratio within each round (the two ran minutes apart at most), then the
    // median over rounds: steadier than the ratio of medians when the load of the
    // machine drifts.
    let paired = |a: &str, b: &str| -> String {
        match (by(a), by(b)) {
            (Some(x), Some(y)) => {
                let per: Vec<f64> = x
                    .runs
                    .iter()
                    .zip(&y.runs)
                    .map(|(p, q)| p.rps / q.rps)
                    .collect();
                let shown: Vec<String> = per.iter().map(|v| format!("{v:.2}")).collect();
                format!("{:.3} ({})", median(per), shown.join(" / "))
            }
            _ => "?".into(),
        }
    };
    let _ = writeln!(
        r,
        "| ratio (req/s) | ratio of medians | per round: median (rounds) | target |"
    );
    let _ = writeln!(r, "|---|---:|---:|---|");
    let mut targets: Vec<(String, Option<bool>)> = Vec::new();
    let rotation_label = format!("6b/6r (rotation, cache {} / no filter)", s.rotation_cache);
    let rows: [(&str, &str, &str, Option<f64>); 9] = [
        ("4", "2", "4/2 (filter / no-op filter)", Some(0.95)),
        ("4", "3", "4/3 (filter / Envoy native checks)", Some(0.85)),
        ("5", "2", "5/2 (no cache / no-op filter)", None),
        (
            "4h",
            "2",
            "4h/2 (filter without the identity headers / no-op filter)",
            None,
        ),
        (
            "4p",
            "2",
            "4p/2 (filter, pins only, no headers / no-op filter)",
            None,
        ),
        ("2", "1", "2/1 (no-op Wasm / no filter)", None),
        ("3", "1", "3/1 (Envoy native checks / no filter)", None),
        ("6", "6r", "6/6r (rotation, cache 256 / no filter)", None),
        ("6b", "6r", &rotation_label, None),
    ];
    for (a, b, label, target) in rows {
        let Some(x) = ratio(a, b) else { continue };
        let want = target.map_or("—".into(), |t| format!("≥ {t}"));
        let _ = writeln!(r, "| {label} | {x:.3} | {} | {want} |", paired(a, b));
        if let Some(t) = target {
            targets.push((
                format!(
                    "variant {a} ≥ {t} × variant {b} req/s (ratio of medians {x:.3}; per round {})",
                    paired(a, b)
                ),
                Some(x >= t),
            ));
        }
    }
    if let (Some(a), Some(b)) = (by("4"), by("2")) {
        let d = a.p99() - b.p99();
        let _ = writeln!(r, "| p99(4) − p99(2) | {d:+.0} µs | | ≤ 100 µs |");
        targets.push((
            format!("variant 4 p99 within 100 µs of variant 2 ({d:+.0} µs)"),
            Some(d <= 100.0),
        ));
    }
    let _ = writeln!(r);

    let _ = writeln!(r, "### Memory (gateway Envoy RSS)\n");
    let _ = writeln!(
        r,
        "| # | variant | RSS after start | RSS after all rounds | growth |"
    );
    let _ = writeln!(r, "|---|---|---:|---:|---:|");
    for x in m {
        let f = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        let growth = match (x.rss_before_kib, x.rss_after_kib) {
            (Some(a), Some(b)) => format!("{:+.1} MiB", (b as f64 - a as f64) / 1024.0),
            _ => "?".into(),
        };
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {} |",
            x.id,
            x.title,
            f(x.rss_before_kib),
            f(x.rss_after_kib),
            growth
        );
    }
    let hot_native = read_json(&s.hotpath_native);
    let hot_wasm = read_json(&s.hotpath_wasm);
    let entry_bytes = hot_wasm
        .as_ref()
        .and_then(|h| h["cache_entry_heap_bytes"].as_f64());
    if let Some(b) = entry_bytes {
        let _ = writeln!(
            r,
            "\nHeap per cache entry, measured inside Wasm by `bench/hotpath` (1,000 distinct keys into a cache of 1,024): **{b:.0} bytes**, so {} entries ≈ {:.2} MiB and {} entries ≈ {:.2} MiB of linear memory per worker.",
            256,
            b * 256.0 / 1048576.0,
            s.rotation_cache,
            b * s.rotation_cache as f64 / 1048576.0
        );
        // The rotation itself (1,000 upstream TLS connections in the gateway) grows RSS
        // without any filter (6r); what the filter adds on top is its cache.
        let growth = |x: &Measured| -> Option<f64> {
            Some((x.rss_after_kib? as f64 - x.rss_before_kib? as f64) / 1024.0)
        };
        if let Some(base) = by("6r").and_then(growth) {
            for (id, entries) in [("6", 256usize), ("6b", s.rotation_cache)] {
                let Some(g) = by(id).and_then(growth) else {
                    continue;
                };
                let cached = entries.min(s.certs);
                let bound = b * cached as f64 / 1048576.0;
                // Slack: Wasm memory grows in 64 KiB pages, the allocator and the hash
                // map round up.
                let ok = g - base <= bound + 2.0;
                let _ = writeln!(
                    r,
                    "- {id}: RSS growth {g:+.1} MiB, the same rotation without a filter (6r) {base:+.1} MiB: the filter adds {:+.1} MiB for {cached} cached certificates (bound {cached} × {b:.0} B = {bound:.2} MiB, + 2 MiB slack)",
                    g - base
                );
                targets.push((
                    format!("RSS with the filter under {} certificates within the cache bound (variant {id}: {:+.1} MiB over 6r, bound {bound:.2} MiB + 2 MiB)", s.certs, g - base),
                    Some(ok),
                ));
            }
        }
    }
    let _ = writeln!(r);

    let _ = writeln!(r, "### Size\n");
    let kb = |b: Option<u64>| {
        b.map_or("?".into(), |b| {
            format!("{b} bytes ({:.0} KiB)", b as f64 / 1024.0)
        })
    };
    let _ = writeln!(
        r,
        "- `mtls_guard.wasm` as `make build` ships it (release: LTO, `opt-level = \"z\"`, stripped, then `wasm-opt -Oz`): {}",
        kb(ctx.filter_size)
    );
    if let Some(o) = ctx.filter_opt_size {
        let _ = writeln!(
            r,
            "- `wasm-opt -Oz` run once more on the shipped file (a check that nothing is left to gain): {}",
            kb(Some(o))
        );
    }
    let _ = writeln!(
        r,
        "- no-op filter (same SDK and profile): {}",
        kb(ctx.noop_size)
    );
    if let Some(sz) = ctx.filter_size {
        targets.push((
            format!(".wasm at most 500 KB ({:.0} KB)", sz as f64 / 1000.0),
            Some(sz <= 500_000),
        ));
    }
    let _ = writeln!(r);

    if let (Some(n), Some(w)) = (&hot_native, &hot_wasm) {
        let _ = writeln!(r, "### Hot path, native vs inside Wasm (`bench/hotpath`)\n");
        let _ = writeln!(r, "The same program (the filter's release profile), built natively and for wasm32-wasip1 and run under Node's WASI (V8, the engine of Envoy's release build); median ns per operation.\n");
        let _ = writeln!(r, "| operation | native | Wasm (V8) | Wasm / native |");
        let _ = writeln!(r, "|---|---:|---:|---:|");
        let cases = [
            ("filter_cache_hit", "filter callback, cache hit (lean host)"),
            (
                "filter_cache_off",
                "filter callback, cache disabled (parse per response)",
            ),
            (
                "evaluate_full_policy",
                "policy evaluation (full policy, parsed certificate)",
            ),
            ("dn_match", "DN comparison (normalised)"),
            ("dn_parse_render", "DN parse + render (RFC 4514)"),
            ("parse_pem_ec256", "cold parse, PEM, EC P-256 + SPIFFE"),
            ("parse_pem_rsa2048", "cold parse, PEM, RSA 2048"),
        ];
        for (k, label) in cases {
            if let (Some(a), Some(b)) = (n["ns_per_op"][k].as_f64(), w["ns_per_op"][k].as_f64()) {
                let _ = writeln!(
                    r,
                    "| {label} | {} | {} | {:.2} |",
                    fmt_ns(a),
                    fmt_ns(b),
                    b / a
                );
            }
        }
        let in_eval = w["evaluate_allocations_per_call"].as_f64().map_or(String::new(), |n| {
            format!(", of which {n} in the policy evaluation and the rest the buffers the host hands over (the digest property, the header names)")
        });
        let _ = writeln!(
            r,
            "\nPer cache-hit response: {} allocations, {} bytes allocated (Wasm){in_eval}; with the cache disabled: {} allocations, {} bytes.\n",
            w["cache_hit_allocations_per_response"],
            w["cache_hit_bytes_allocated_per_response"],
            w["cache_off_allocations_per_response"],
            w["cache_off_bytes_allocated_per_response"]
        );
        if let Some(p) = w["ns_per_op"]["parse_pem_ec256"].as_f64() {
            let rsa = w["ns_per_op"]["parse_pem_rsa2048"].as_f64().unwrap_or(0.0);
            targets.push((
                format!(
                    "cold parse under 100 µs inside Wasm ({} EC, {} RSA)",
                    fmt_ns(p),
                    fmt_ns(rsa)
                ),
                Some(p.max(rsa) < 100_000.0),
            ));
        }
    }

    let crit = criterion_medians(&s.criterion_dir);
    // Cache-hit evaluation natively: criterion's median when there is one (the standard
    // harness), else the hot-path program's.
    let hit = crit
        .get("filter/cache_hit_lean_host")
        .map(|ns| (*ns, "criterion `filter/cache_hit_lean_host`"))
        .or_else(|| {
            hot_native
                .as_ref()
                .and_then(|n| n["ns_per_op"]["filter_cache_hit"].as_f64())
                .map(|ns| (ns, "bench/hotpath `filter_cache_hit`"))
        });
    if let Some((ns, source)) = hit {
        let policy = crit
            .get("policy/evaluate_full_policy")
            .copied()
            .or_else(|| {
                hot_native
                    .as_ref()
                    .and_then(|n| n["ns_per_op"]["evaluate_full_policy"].as_f64())
            });
        targets.push((
            format!(
                "cache-hit evaluation under 2 µs natively (whole filter callback {} by {source}; policy evaluation alone {})",
                fmt_ns(ns),
                policy.map_or("?".into(), fmt_ns)
            ),
            Some(ns < 2000.0),
        ));
    }
    if !crit.is_empty() {
        let _ = writeln!(
            r,
            "### Micro-benchmarks, native (`cargo bench --bench micro`, criterion medians)\n"
        );
        let _ = writeln!(r, "| benchmark | median |");
        let _ = writeln!(r, "|---|---:|");
        for (k, ns) in &crit {
            let _ = writeln!(r, "| `{k}` | {} |", fmt_ns(*ns));
        }
        let _ = writeln!(r);
    }

    let _ = writeln!(r, "### Targets of issue 5\n");
    for (t, ok) in targets {
        let v = match ok {
            Some(b) => verdict(b),
            None => "see above",
        };
        let _ = writeln!(r, "- {t}: {v}");
    }
    r
}

fn write_report(path: &Path, section: &str) {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(REPORT_BEGIN), old.find(REPORT_END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{REPORT_BEGIN}\n{section}{}", &old[..b], &old[e..])
        }
        _ => format!("{old}\n{REPORT_BEGIN}\n{section}{REPORT_END}\n"),
    };
    std::fs::write(path, new).expect("write report");
}

fn context(s: &Settings) -> Context {
    Context {
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        commit: command_line(
            "git",
            &[
                "-C",
                &support::root().to_string_lossy(),
                "describe",
                "--always",
                "--dirty",
            ],
        ),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpu_model(),
        kernel: command_line("uname", &["-r"]),
        memory: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
            .map_or("? memory".into(), |k| {
                format!("{:.0} GiB RAM", k / 1048576.0)
            }),
        envoy: command_line(&envoy_bin().to_string_lossy(), &["--version"])
            .split_once("version:")
            .map_or_else(|| "envoy ?".into(), |(_, v)| format!("Envoy {}", v.trim())),
        wrk: command_line("wrk", &["-v"])
            .split(" Copyright")
            .next()
            .unwrap_or("wrk")
            .to_string(),
        rustc: command_line("rustc", &["--version"]),
        node: command_line("node", &["--version"]),
        filter_size: file_size(&s.filter_wasm),
        filter_opt_size: wasm_opt_size(&s.filter_wasm, &s.out),
        noop_size: file_size(&s.noop_wasm),
    }
}

/// `BENCH_FROM_JSON=<envoy.json>`: render the report of an earlier run again (with the
/// current hot-path and criterion results) without measuring.
fn render_saved(mut s: Settings, path: &Path) {
    let raw = read_json(path).unwrap_or_else(|| panic!("cannot read {}", path.display()));
    let st = &raw["settings"];
    let num = |k: &str| st[k].as_u64();
    s.duration = num("duration").unwrap_or(s.duration);
    s.rounds = num("rounds").map_or(s.rounds, |v| v as usize);
    s.warmup = num("warmup").unwrap_or(s.warmup);
    s.connections = num("connections").map_or(s.connections, |v| v as u32);
    s.wrk_threads = num("wrk_threads").map_or(s.wrk_threads, |v| v as u32);
    s.certs = num("certs").map_or(s.certs, |v| v as usize);
    s.rotation_cache = num("rotation_cache").map_or(s.rotation_cache, |v| v as usize);
    if let Some(c) = st["command"].as_str() {
        s.command = c.to_string();
    }
    let measured: Vec<Measured> = raw["variants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let series = |k: &str| -> Vec<f64> {
                v[k].as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_f64)
                    .collect()
            };
            let (rps, p50, p99) = (series("rps"), series("p50_us"), series("p99_us"));
            let mut runs: Vec<Run> = (0..rps.len())
                .map(|i| Run {
                    rps: rps[i],
                    p50_us: p50.get(i).copied().unwrap_or(f64::NAN),
                    p99_us: p99.get(i).copied().unwrap_or(f64::NAN),
                    errors: 0,
                })
                .collect();
            if let Some(first) = runs.first_mut() {
                first.errors = v["errors"].as_u64().unwrap_or(0);
            }
            Measured {
                id: v["id"].as_str().unwrap_or("?").to_string(),
                title: v["title"].as_str().unwrap_or("?").to_string(),
                runs,
                rss_before_kib: v["rss_before_kib"].as_u64(),
                rss_after_kib: v["rss_after_kib"].as_u64(),
            }
        })
        .collect();
    let ctx: Context =
        serde_json::from_value(raw["context"].clone()).unwrap_or_else(|_| context(&s));
    let section = report(&s, &ctx, &measured);
    println!("{section}");
    if let Some(p) = &s.report {
        write_report(p, &section);
        eprintln!("bench: wrote {}", p.display());
    }
}

fn main() {
    let s = Settings::from_env();
    if let Some(saved) = std::env::var_os("BENCH_FROM_JSON").filter(|v| !v.is_empty()) {
        render_saved(s, Path::new(&saved));
        return;
    }
    for (what, p) in [("filter", &s.filter_wasm), ("no-op filter", &s.noop_wasm)] {
        if !p.exists() {
            eprintln!(
                "bench: the {what} {} is missing (make bench builds it)",
                p.display()
            );
            std::process::exit(2);
        }
    }
    if Command::new("wrk").arg("-v").output().is_err() {
        eprintln!("bench: wrk is missing (apt-get install -y wrk; make bench does)");
        std::process::exit(2);
    }
    std::fs::create_dir_all(&s.out).expect("out dir");
    let vs = variants(&s);
    let started = Instant::now();
    let dir = workdir("bench");
    eprintln!("bench: work dir {}", dir.display());

    eprintln!("bench: issuing {} upstream certificates", s.certs);
    let certs = make_certs(&dir, s.certs);

    let up_dir = dir.join("upstream");
    std::fs::create_dir_all(&up_dir).expect("dir");
    let upstream = Envoy::start(&up_dir, &upstream_config(&certs), 1)
        .unwrap_or_else(|e| panic!("upstream Envoy: {e}"));
    let single_port = listener_port(&upstream, "single");
    let rotation_port = listener_port(&upstream, "rotation");

    let mut gateways: Vec<(PathBuf, Envoy)> = Vec::new();
    for v in &vs {
        let d = dir.join(format!("gateway-{}", v.id));
        std::fs::create_dir_all(&d).expect("dir");
        let port = if v.rotation {
            rotation_port
        } else {
            single_port
        };
        let gw = Envoy::start(&d, &gateway_config(v, &s, &certs, port), 1)
            .unwrap_or_else(|e| panic!("gateway for variant {}: {e}", v.id));
        // The harness starts Envoy with wasm:debug; production runs at info, where the
        // filter must not log (or format) anything per request.
        set_log_level(&gw, "wasm", "info");
        sanity_check(v, &gw, s.certs);
        gateways.push((d, gw));
    }
    eprintln!(
        "bench: {} gateways up and checked after {:.0} s",
        gateways.len(),
        started.elapsed().as_secs_f64()
    );

    let mut measured: Vec<Measured> = vs
        .iter()
        .zip(&gateways)
        .map(|(v, (d, _))| Measured {
            id: v.id.to_string(),
            title: v.title.clone(),
            runs: Vec::new(),
            rss_before_kib: envoy_pid(d).and_then(rss_kib),
            rss_after_kib: None,
        })
        .collect();

    if s.warmup > 0 {
        for (v, (_, gw)) in vs.iter().zip(&gateways) {
            // Rotation variants need every upstream connection up and, for 6b, the cache
            // full before measuring.
            let secs = if v.rotation {
                s.warmup.max(5)
            } else {
                s.warmup
            };
            let w = wrk(&s, v, &gw.listener, secs);
            eprintln!("bench: warm-up {:>3}: {:>8.0} req/s", v.id, w.rps);
        }
    }
    for round in 0..s.rounds {
        for k in 0..vs.len() {
            let i = (k + round) % vs.len();
            let (v, (_, gw)) = (&vs[i], &gateways[i]);
            let run = wrk(&s, v, &gw.listener, s.duration);
            eprintln!(
                "bench: round {} variant {:>3}: {:>8.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs  errors {}",
                round + 1,
                v.id,
                run.rps,
                run.p50_us,
                run.p99_us,
                run.errors
            );
            measured[i].runs.push(run);
        }
    }
    for (m, (d, gw)) in measured.iter_mut().zip(&gateways) {
        m.rss_after_kib = envoy_pid(d).and_then(rss_kib);
        gw.assert_no_wasm_failure_if_guard(&m.id);
    }

    let ctx = context(&s);
    let section = report(&s, &ctx, &measured);
    let raw = json!({
        "settings": {"duration": s.duration, "rounds": s.rounds, "warmup": s.warmup, "connections": s.connections, "wrk_threads": s.wrk_threads, "certs": s.certs, "rotation_cache": s.rotation_cache, "command": s.command},
        "context": ctx,
        "variants": measured.iter().map(|m| json!({
            "id": m.id, "title": m.title,
            "rps": m.runs.iter().map(|r| r.rps).collect::<Vec<_>>(),
            "p50_us": m.runs.iter().map(|r| r.p50_us).collect::<Vec<_>>(),
            "p99_us": m.runs.iter().map(|r| r.p99_us).collect::<Vec<_>>(),
            "errors": m.errors(),
            "rss_before_kib": m.rss_before_kib, "rss_after_kib": m.rss_after_kib,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        s.out.join("envoy.json"),
        serde_json::to_vec_pretty(&raw).expect("json"),
    )
    .expect("write envoy.json");
    std::fs::write(s.out.join("report.md"), &section).expect("write report.md");
    println!("{section}");
    if let Some(p) = &s.report {
        write_report(p, &section);
        eprintln!("bench: wrote {}", p.display());
    }
    drop(gateways);
    drop(upstream);
    eprintln!("bench: done in {:.0} s", started.elapsed().as_secs_f64());
}

trait GuardChecks {
    fn assert_no_wasm_failure_if_guard(&self, id: &str);
}

impl GuardChecks for Envoy {
    /// The filter variants must have run without a trap or panic the whole time.
    fn assert_no_wasm_failure_if_guard(&self, id: &str) {
        if ["4", "4h", "4p", "5", "6", "6b"].contains(&id) {
            self.assert_no_wasm_failure();
        }
    }
}
