//! The filter's flow, host-independent: read what the upstream presented, evaluate the
//! route's policy, strip and stamp headers, count, and reject in enforce mode. Decisions
//! come from `policy`; host access goes through [`Host`].

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::cert::{self, PeerCert};
use crate::config::{self, Config, Policy};
use crate::host::{Host, Level};
use crate::metrics::{self, Kind};
use crate::policy::{action_for, evaluate, Action, Presented, Reason, Reasons, Verdict};
use crate::timefmt::format_rfc3339;

pub const NAME: &str = "mtls_guard";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
const COMPAT_DOC: &str = "see README.md#compatibility";

// Property paths. Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes
const ENVOY_CERT: &[&str] = &["upstream", "peer_certificate"];
const ENVOY_DIGEST: &[&str] = &["upstream", "sha256_peer_certificate_digest"];
const ENVOY_FAILURE: &[&str] = &["upstream", "transport_failure_reason"];
const ENVOY_UPSTREAM_ADDRESS: &[&str] = &["upstream", "address"];
const ENVOY_ROUTE: &[&str] = &["xds", "route_name"];
const ENVOY_CODE_DETAILS: &[&str] = &["response", "code_details"];
// Kong: nginx variables through ngx_wasm_module; the certificate one needs
// lua-kong-nginx-module 0.17.0+.
const KONG_CERT: &[&str] = &["ngx", "kong_upstream_ssl_server_raw_cert"];
const KONG_SCHEME: &[&str] = &["ngx", "upstream_scheme"];
const KONG_ROUTE: &[&str] = &["kong", "route_name"];

/// Which proxy we run in, decided once per worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    Envoy,
    Kong,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CacheKey {
    Digest([u8; 32]),
    Pem(Vec<u8>),
}

/// A certificate's facts plus the header values derived from them, computed once.
#[derive(Debug)]
pub struct CertFacts {
    pub cert: PeerCert,
    sha256: String,
    spki: String,
    serial: String,
    not_after: String,
}

impl CertFacts {
    fn new(cert: PeerCert) -> Self {
        CertFacts {
            sha256: cert.sha256_hex(),
            spki: cert.spki_pin(),
            serial: cert.serial_hex(),
            not_after: format_rfc3339(cert.not_after),
            cert,
        }
    }
}

type Parsed = Result<Rc<CertFacts>, cert::CertError>;

fn parse_facts(input: &[u8]) -> Parsed {
    cert::parse(input).map(|c| Rc::new(CertFacts::new(c)))
}

/// Bounded per-worker cache of parsed certificates (FIFO eviction). Parse failures are
/// cached too, so a broken certificate costs one parse, not one per response.
#[derive(Default)]
pub struct CertCache {
    map: HashMap<CacheKey, Parsed>,
    order: VecDeque<CacheKey>,
    pub hits: u64,
    pub misses: u64,
}

impl CertCache {
    fn lookup(&mut self, key: &CacheKey) -> Option<Parsed> {
        let hit = self.map.get(key).cloned();
        match hit {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        hit
    }

    fn insert(&mut self, key: CacheKey, parsed: &Parsed, capacity: usize) {
        if capacity == 0 {
            return;
        }
        while self.order.len() >= capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.map.insert(key, parsed.clone());
    }

    /// Keyed by Envoy's digest: the PEM is fetched from the host only on a miss.
    fn by_digest(
        &mut self,
        digest: [u8; 32],
        capacity: usize,
        fetch_pem: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<Parsed> {
        let key = CacheKey::Digest(digest);
        if let Some(hit) = self.lookup(&key) {
            return Some(hit);
        }
        let parsed = parse_facts(&fetch_pem()?);
        self.insert(key, &parsed, capacity);
        Some(parsed)
    }

    /// Keyed by the PEM itself (no digest from the host): moved into the key, not copied.
    fn by_pem(&mut self, pem: Vec<u8>, capacity: usize) -> Parsed {
        let key = CacheKey::Pem(pem);
        if let Some(hit) = self.lookup(&key) {
            return hit;
        }
        let parsed = match &key {
            CacheKey::Pem(bytes) => parse_facts(bytes),
            CacheKey::Digest(_) => Err(cert::CertError::Empty),
        };
        self.insert(key, &parsed, capacity);
        parsed
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// State shared by every filter instance of one VM (one worker).
#[derive(Default)]
pub struct Worker {
    pub cache: CertCache,
    pub host: Option<HostKind>,
    warned_no_source: bool,
    warned_send_failed: bool,
    warned_metric_failed: bool,
}

#[derive(Clone, Copy, Debug, Default)]
enum Slot {
    #[default]
    Unset,
    Id(u32),
    Failed,
}

/// Per-policy names and metric ids, computed at configure time or on first use.
struct RouteState {
    label: Rc<str>,
    pin_ids: Vec<Rc<str>>,
    h_subject: String,
    h_issuer: String,
    h_sha256: String,
    h_spki: String,
    h_serial: String,
    h_not_after: String,
    h_spiffe: String,
    h_verify: String,
    checks: [Slot; metrics::CHECK_SLOTS],
    pins: Vec<Slot>,
    not_after: Slot,
    /// Last value recorded in the not_after gauge, to write it only when it changes.
    not_after_recorded: Option<i64>,
    no_source: Slot,
    /// [live passed, shadow passed]
    shadow_disagreements: [Slot; 2],
    quarantine_rejections: Slot,
    quarantine: Option<Quarantine>,
}

/// Quarantine of one route on one worker (`quarantine_seconds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quarantine {
    /// Requests are rejected before reaching the upstream until `until`.
    Until { until: i64, reason: Reason },
    /// The window lapsed and one probe request went through at `since`; others are
    /// rejected until its response is judged (or another window passes without one).
    Probing { since: i64, reason: Reason },
}

impl RouteState {
    fn new(p: &Policy) -> Self {
        let h = |s: &str| format!("{}{s}", p.header_prefix);
        RouteState {
            label: Rc::from(p.route_label.as_str()),
            pin_ids: p.pins.iter().map(|pin| Rc::from(pin.id.as_str())).collect(),
            h_subject: h("cert-subject"),
            h_issuer: h("cert-issuer"),
            h_sha256: h("cert-sha256"),
            h_spki: h("cert-spki-sha256"),
            h_serial: h("cert-serial"),
            h_not_after: h("cert-not-after"),
            h_spiffe: h("spiffe-id"),
            h_verify: h("verify"),
            checks: [Slot::Unset; metrics::CHECK_SLOTS],
            pins: vec![Slot::Unset; p.pins.len()],
            not_after: Slot::Unset,
            not_after_recorded: None,
            no_source: Slot::Unset,
            shadow_disagreements: [Slot::Unset; 2],
            quarantine_rejections: Slot::Unset,
            quarantine: None,
        }
    }
}

/// One configured filter instance (one root context).
pub struct Instance {
    pub config: Config,
    default_state: RouteState,
    route_states: HashMap<String, RouteState>,
    /// Some policy needs the request phase (canary share or quarantine).
    needs_request_phase: bool,
}

/// What one HTTP stream remembers between its request and response phases.
#[derive(Clone, Debug, Default)]
pub struct StreamState {
    pub request_id: Option<Vec<u8>>,
    /// This request is the quarantine probe of its route.
    pub probe: bool,
    /// The response was already handled (our own local reply may pass through again).
    pub done: bool,
}

/// What the host callback should return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// A local reply was sent; stop processing the upstream's response.
    Pause,
}

/// The result of one check, for tests and logs. Cheap to build (no allocation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub route_label: Rc<str>,
    pub action: Action,
    pub reasons: Reasons,
    pub matched_pin: Option<Rc<str>>,
}

impl Checked {
    /// The first failing reason's string, or "" on pass.
    pub fn first_reason(&self) -> &'static str {
        self.reasons.primary().map_or("", Reason::as_str)
    }
}

fn log_prefix() -> String {
    format!("{NAME} {VERSION}")
}

/// A per-request debug line, formatted only when the host keeps debug logs.
fn debug<H: Host>(host: &H, message: impl FnOnce() -> String) {
    if host.log_enabled(Level::Debug) {
        host.log(Level::Debug, &format!("{}: {}", log_prefix(), message()));
    }
}

/// Parses the plugin configuration; logs warnings and, on failure, the error with its
/// JSON path. The host refuses the configuration when this returns `None`.
pub fn configure<H: Host>(host: &H) -> Option<Instance> {
    let bytes = match host.plugin_config() {
        Ok(b) => b.unwrap_or_default(),
        Err(e) => {
            host.log(
                Level::Error,
                &format!(
                    "{}: cannot read the filter configuration: {e}",
                    log_prefix()
                ),
            );
            return None;
        }
    };
    match config::parse(&bytes, host.now()) {
        Ok((config, warnings)) => {
            for w in &warnings {
                host.log(
                    Level::Warn,
                    &format!("{}: configuration warning: {w}", log_prefix()),
                );
            }
            let default_state = RouteState::new(&config.default);
            let route_states = config
                .routes
                .iter()
                .map(|(k, p)| (k.clone(), RouteState::new(p)))
                .collect();
            host.log(
                Level::Info,
                &format!(
                    "{}: configured: mode {}, {} route override(s), cache {} entries",
                    log_prefix(),
                    config.default.mode.as_str(),
                    config.routes.len(),
                    config.cache_entries
                ),
            );
            let needs_request_phase = config
                .policies()
                .any(|p| p.quarantine_seconds > 0 || (1..100).contains(&p.enforce_percent));
            Some(Instance {
                config,
                default_state,
                route_states,
                needs_request_phase,
            })
        }
        Err(e) => {
            host.log(
                Level::Error,
                &format!("{}: invalid configuration: {e}", log_prefix()),
            );
            None
        }
    }
}

fn non_empty(v: Result<Option<Vec<u8>>, crate::host::HostError>) -> Option<Vec<u8>> {
    v.ok().flatten().filter(|b| !b.is_empty())
}

fn hex32(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let s = core::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

enum Seen {
    Cert(Rc<CertFacts>),
    Unparseable(cert::CertError),
    Missing,
    SourceUnavailable,
    HandshakeFailed,
    /// No upstream was involved (e.g. the proxy's own local reply): nothing to judge.
    NoUpstream,
}

fn detect_host<H: Host>(host: &H, worker: &mut Worker) -> HostKind {
    if let Some(k) = worker.host {
        return k;
    }
    // Kong's nginx template always sets $upstream_scheme; Envoy has no `ngx` properties.
    let kind = if non_empty(host.property(KONG_SCHEME)).is_some() {
        HostKind::Kong
    } else {
        HostKind::Envoy
    };
    worker.host = Some(kind);
    kind
}

fn read_presented<H: Host>(host: &H, worker: &mut Worker, capacity: usize) -> Seen {
    let parsed = |r: Parsed| match r {
        Ok(f) => Seen::Cert(f),
        Err(e) => Seen::Unparseable(e),
    };
    match detect_host(host, worker) {
        HostKind::Envoy => {
            if let Some(key) = non_empty(host.property(ENVOY_DIGEST))
                .as_deref()
                .and_then(hex32)
            {
                let fetched = worker
                    .cache
                    .by_digest(key, capacity, || non_empty(host.property(ENVOY_CERT)));
                if let Some(r) = fetched {
                    return parsed(r);
                }
            } else if let Some(pem) = non_empty(host.property(ENVOY_CERT)) {
                return parsed(worker.cache.by_pem(pem, capacity));
            }
            if non_empty(host.property(ENVOY_FAILURE)).is_some() {
                return Seen::HandshakeFailed;
            }
            if non_empty(host.property(ENVOY_UPSTREAM_ADDRESS)).is_none() {
                return Seen::NoUpstream;
            }
            // Envoy's own reply after the upstream went away (e.g. a reset of a pooled
            // connection before the response started): no upstream response reaches the
            // client, so there is nothing to judge. Only responses that came from the
            // upstream without a certificate are `no_certificate`.
            match non_empty(host.property(ENVOY_CODE_DETAILS)).as_deref() {
                Some(d) if d != b"via_upstream" => Seen::NoUpstream,
                _ => Seen::Missing,
            }
        }
        HostKind::Kong => {
            let pem = non_empty(host.property(KONG_CERT))
                .or_else(|| non_empty(host.property(ENVOY_CERT)));
            if let Some(pem) = pem {
                return parsed(worker.cache.by_pem(pem, capacity));
            }
            match non_empty(host.property(KONG_SCHEME)).as_deref() {
                Some(b"https") => Seen::SourceUnavailable,
                _ => Seen::Missing,
            }
        }
    }
}

fn route_name<H: Host>(host: &H, kind: HostKind) -> Option<String> {
    let path = match kind {
        HostKind::Envoy => ENVOY_ROUTE,
        HostKind::Kong => KONG_ROUTE,
    };
    non_empty(host.property(path)).and_then(|b| String::from_utf8(b).ok())
}

impl Instance {
    fn metric_id<H: Host>(
        host: &H,
        worker: &mut Worker,
        slot: &mut Slot,
        kind: Kind,
        name: impl FnOnce() -> String,
    ) -> Option<u32> {
        match *slot {
            Slot::Id(id) => Some(id),
            Slot::Failed => None,
            Slot::Unset => {
                let name = name();
                match host.define_metric(kind, &name) {
                    Ok(id) => {
                        *slot = Slot::Id(id);
                        Some(id)
                    }
                    Err(e) => {
                        *slot = Slot::Failed;
                        if !worker.warned_metric_failed {
                            worker.warned_metric_failed = true;
                            host.log(
                                Level::Warn,
                                &format!(
                                    "{}: cannot define metric {name}: {e}; metrics are incomplete",
                                    log_prefix()
                                ),
                            );
                        }
                        None
                    }
                }
            }
        }
    }

    /// The policy and per-worker state for a host route name.
    fn select(&mut self, route: Option<&str>) -> (&Policy, &mut RouteState) {
        match route.and_then(|r| self.config.routes.get(r).zip(self.route_states.get_mut(r))) {
            Some(pair) => pair,
            None => (&self.config.default, &mut self.default_state),
        }
    }

    fn current_route<H: Host>(&self, host: &H, worker: &Worker) -> Option<String> {
        if self.config.routes.is_empty() {
            return None;
        }
        route_name(host, worker.host.unwrap_or(HostKind::Envoy))
    }

    /// Handles the request-headers phase: remembers the request id for the canary and
    /// rejects requests to a quarantined route before they reach the upstream.
    pub fn on_request_headers<H: Host>(
        &mut self,
        host: &H,
        worker: &mut Worker,
        stream: &mut StreamState,
    ) -> Flow {
        if !self.needs_request_phase {
            return Flow::Continue;
        }
        let now = host.now();
        let route = self.current_route(host, worker);
        let (policy, state) = self.select(route.as_deref());
        if (1..100).contains(&policy.enforce_percent) {
            stream.request_id = host
                .request_header(&policy.request_id_header)
                .ok()
                .flatten()
                .map(String::into_bytes)
                .or_else(|| non_empty(host.property(&["ngx", "request_id"])));
        }
        let q = i64::from(policy.quarantine_seconds);
        let reason = match state.quarantine {
            None => return Flow::Continue,
            Some(Quarantine::Until { until, reason }) if now < until => reason,
            Some(Quarantine::Probing { since, reason }) if now < since + q => reason,
            Some(Quarantine::Until { reason, .. } | Quarantine::Probing { reason, .. }) => {
                // The window lapsed (or a probe never came back): let one request through.
                state.quarantine = Some(Quarantine::Probing { since: now, reason });
                stream.probe = true;
                return Flow::Continue;
            }
        };
        let label = &policy.route_label;
        if let Some(id) = Self::metric_id(
            host,
            worker,
            &mut state.quarantine_rejections,
            Kind::Counter,
            || metrics::quarantine_rejections(label),
        ) {
            let _ = host.increment_metric(id, 1);
        }
        let verify = failed(reason);
        let body = format!(
            "{{\"message\":\"upstream quarantined after a certificate rejection\",\"reason\":\"{}\"}}",
            reason.as_str()
        );
        let headers = [
            ("content-type", "application/json"),
            (state.h_verify.as_str(), verify),
        ];
        match host.send_response(u32::from(policy.deny_status), &headers, body.as_bytes()) {
            Ok(()) => {
                stream.done = true;
                Flow::Pause
            }
            Err(e) => {
                if !worker.warned_send_failed {
                    worker.warned_send_failed = true;
                    host.log(
                        Level::Error,
                        &format!("{}: cannot send a local response ({e}); quarantine only marks; {COMPAT_DOC}", log_prefix()),
                    );
                }
                Flow::Continue
            }
        }
    }

    /// Handles the response-headers phase of one response.
    pub fn on_response_headers<H: Host>(
        &mut self,
        host: &H,
        worker: &mut Worker,
        stream: &mut StreamState,
    ) -> (Flow, Option<Checked>) {
        if stream.done {
            return (Flow::Continue, None);
        }
        stream.done = true;
        let now = host.now();
        let seen = read_presented(host, worker, self.config.cache_entries);
        if matches!(seen, Seen::NoUpstream) {
            return (Flow::Continue, None);
        }
        let route = self.current_route(host, worker);
        let (policy, state) = self.select(route.as_deref());

        let presented = match &seen {
            Seen::Cert(f) => Presented::Cert(&f.cert),
            Seen::Unparseable(_) => Presented::Unparseable,
            Seen::HandshakeFailed => Presented::HandshakeFailed,
            Seen::Missing | Seen::SourceUnavailable | Seen::NoUpstream => Presented::Missing,
        };
        let verdict = evaluate(policy, presented, now);
        let action = action_for(&verdict, policy, stream.request_id.as_deref());
        let label = &policy.route_label;

        if let Seen::SourceUnavailable = seen {
            if !worker.warned_no_source {
                worker.warned_no_source = true;
                host.log(
                    Level::Warn,
                    &format!(
                        "{}: this Kong does not expose the upstream certificate to filters (needs lua-kong-nginx-module 0.17.0+); require_certificate={} applies; {COMPAT_DOC}",
                        log_prefix(),
                        policy.require_certificate
                    ),
                );
            }
            if let Some(id) =
                Self::metric_id(host, worker, &mut state.no_source, Kind::Counter, || {
                    metrics::no_cert_source(label)
                })
            {
                let _ = host.increment_metric(id, 1);
            }
        }
        if let Seen::Unparseable(e) = &seen {
            debug(host, || format!("unparseable upstream certificate: {e}"));
        }

        // Shadow policy: evaluated on the same certificate, never changes the response.
        if let Some(shadow) = &policy.shadow {
            let sv = evaluate(shadow, presented, now);
            if sv.passed() != verdict.passed() {
                let live_passed = verdict.passed();
                if let Some(slot) = state
                    .shadow_disagreements
                    .get_mut(usize::from(!live_passed))
                {
                    if let Some(id) = Self::metric_id(host, worker, slot, Kind::Counter, || {
                        metrics::shadow_disagreements(label, live_passed)
                    }) {
                        let _ = host.increment_metric(id, 1);
                    }
                }
                debug(host, || {
                    format!(
                        "route {label} shadow disagrees: live {}, shadow {}",
                        verify_value(&verdict),
                        verify_value(&sv)
                    )
                });
            }
        }

        // Metrics.
        let primary = verdict.reasons.primary();
        let slot = metrics::check_slot(action, primary);
        if let Some(s) = state.checks.get_mut(slot) {
            if let Some(id) = Self::metric_id(host, worker, s, Kind::Counter, || {
                metrics::checks(label, action, primary)
            }) {
                let _ = host.increment_metric(id, 1);
            }
        }
        if let (Some(i), Some(pin)) = (
            verdict.matched_pin,
            verdict.matched_pin.and_then(|i| policy.pins.get(i)),
        ) {
            if let Some(s) = state.pins.get_mut(i) {
                if let Some(id) = Self::metric_id(host, worker, s, Kind::Counter, || {
                    metrics::pin_matches(label, &pin.id)
                }) {
                    let _ = host.increment_metric(id, 1);
                }
            }
        }
        if let Seen::Cert(f) = &seen {
            if state.not_after_recorded != Some(f.cert.not_after) {
                if let Some(id) =
                    Self::metric_id(host, worker, &mut state.not_after, Kind::Gauge, || {
                        metrics::cert_not_after(label)
                    })
                {
                    let value = u64::try_from(f.cert.not_after).unwrap_or(0);
                    if host.record_metric(id, value).is_ok() {
                        state.not_after_recorded = Some(f.cert.not_after);
                    }
                }
            }
        }

        // Quarantine: a rejection closes the route on this worker for a while; a probe
        // that is not rejected opens it again.
        if policy.quarantine_seconds > 0 {
            if let (Action::Rejected, Some(reason)) = (action, primary) {
                state.quarantine = Some(Quarantine::Until {
                    until: now + i64::from(policy.quarantine_seconds),
                    reason,
                });
            } else if stream.probe {
                state.quarantine = None;
            }
        }

        let verify = verify_value(&verdict);
        let checked = Checked {
            route_label: state.label.clone(),
            action,
            reasons: verdict.reasons,
            matched_pin: verdict
                .matched_pin
                .and_then(|i| state.pin_ids.get(i))
                .cloned(),
        };
        if action != Action::Pass {
            debug(host, || {
                format!("route {} {}: {verify}", policy.route_label, action.as_str())
            });
        }

        // The host already answered with its own local reply: never send a second one.
        let host_replied = matches!(seen, Seen::HandshakeFailed);
        let reject = action == Action::Rejected && !host_replied;
        let envoy = worker.host == Some(HostKind::Envoy);
        let cert = match &seen {
            Seen::Cert(f) => Some(f.as_ref()),
            _ => None,
        };
        // Envoy replaces the whole response with the local reply and its headers: no need
        // to touch the upstream's headers first.
        if reject && envoy && send_deny(host, worker, policy, state, primary, verify) {
            return (Flow::Pause, Some(checked));
        }
        if envoy {
            write_headers_batched(host, policy, state, cert, verify);
        } else {
            write_headers_one_by_one(host, policy, state, cert, verify);
        }
        if reject && !envoy {
            // ngx_wasm_module ignores the headers argument of a local response sent in the
            // response phase, so set them through the header calls as well.
            let _ = host.set_response_header("content-type", "application/json");
            let _ = host.set_response_header(&state.h_verify, verify);
            if send_deny(host, worker, policy, state, primary, verify) {
                return (Flow::Pause, Some(checked));
            }
        }
        (Flow::Continue, Some(checked))
    }
}

/// Sends the deny reply; false (logged once per worker) when the host refuses it.
fn send_deny<H: Host>(
    host: &H,
    worker: &mut Worker,
    policy: &Policy,
    state: &RouteState,
    primary: Option<Reason>,
    verify: &str,
) -> bool {
    let reason = primary.map_or("unknown", Reason::as_str);
    let body = format!("{{\"message\":\"upstream certificate rejected\",\"reason\":\"{reason}\"}}");
    let headers = [
        ("content-type", "application/json"),
        (state.h_verify.as_str(), verify),
    ];
    match host.send_response(u32::from(policy.deny_status), &headers, body.as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            if !worker.warned_send_failed {
                worker.warned_send_failed = true;
                host.log(
                    Level::Error,
                    &format!(
                        "{}: cannot replace the upstream response ({e}); rejections are only marked; {COMPAT_DOC}",
                        log_prefix()
                    ),
                );
            }
            false
        }
    }
}

fn has_prefix(name: &[u8], prefix: &[u8]) -> bool {
    name.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// The identity headers to stamp, in order.
fn stamps<'a>(
    policy: &Policy,
    state: &'a RouteState,
    cert: Option<&'a CertFacts>,
    verify: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::with_capacity(8);
    if !policy.stamp_headers {
        return out;
    }
    if let Some(f) = cert {
        let c = &f.cert;
        out.push((state.h_subject.as_str(), c.subject_text.as_str()));
        out.push((state.h_issuer.as_str(), c.issuer_text.as_str()));
        out.push((state.h_sha256.as_str(), f.sha256.as_str()));
        out.push((state.h_spki.as_str(), f.spki.as_str()));
        out.push((state.h_serial.as_str(), f.serial.as_str()));
        out.push((state.h_not_after.as_str(), f.not_after.as_str()));
        if let Some(id) = c
            .spiffe_id
            .as_deref()
            .filter(|s| s.bytes().all(|b| (0x21..0x7f).contains(&b)))
        {
            out.push((state.h_spiffe.as_str(), id));
        }
    }
    out.push((state.h_verify.as_str(), verify));
    out
}

/// Envoy: read the header map once; when the upstream sent prefixed headers, drop them and
/// write the map back with ours in one call, otherwise just append ours.
fn write_headers_batched<H: Host>(
    host: &H,
    policy: &Policy,
    state: &RouteState,
    cert: Option<&CertFacts>,
    verify: &str,
) {
    let Ok(current) = host.response_headers_raw() else {
        return write_headers_one_by_one(host, policy, state, cert, verify);
    };
    let prefix = policy.header_prefix.as_bytes();
    let ours = stamps(policy, state, cert, verify);
    let spoofed = current.iter().any(|(k, _)| has_prefix(k, prefix));
    if !spoofed && ours.is_empty() {
        return;
    }
    if !spoofed {
        // The common case: nothing to remove, so append ours (Envoy's add does no lookup).
        for (k, v) in &ours {
            let _ = host.add_response_header(k, v);
        }
        return;
    }
    let mut out: Vec<(&[u8], &[u8])> = Vec::with_capacity(current.len() + ours.len());
    out.extend(
        current
            .iter()
            .filter(|(k, _)| !has_prefix(k, prefix))
            .map(|(k, v)| (k.as_slice(), v.as_slice())),
    );
    out.extend(ours.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
    if host.set_response_headers_raw(&out).is_err() {
        write_headers_one_by_one(host, policy, state, cert, verify);
    }
}

/// Other hosts: remove each prefixed header, then set each of ours.
fn write_headers_one_by_one<H: Host>(
    host: &H,
    policy: &Policy,
    state: &RouteState,
    cert: Option<&CertFacts>,
    verify: &str,
) {
    if let Ok(names) = host.response_header_names() {
        let prefix = policy.header_prefix.as_bytes();
        for name in names.iter().filter(|n| has_prefix(n.as_bytes(), prefix)) {
            let _ = host.remove_response_header(name);
        }
    }
    for (k, v) in stamps(policy, state, cert, verify) {
        let _ = host.set_response_header(k, v);
    }
}

/// The `verify` header value, after nginx's `$ssl_client_verify` convention.
pub fn verify_value(v: &Verdict) -> &'static str {
    match v.reasons.primary() {
        None if v.no_certificate_allowed => "NONE",
        None => "SUCCESS",
        Some(r) => failed(r),
    }
}

/// `FAILED:<reason>`, without formatting on the request path.
fn failed(r: Reason) -> &'static str {
    match r {
        Reason::NoCertificate => "FAILED:no_certificate",
        Reason::HandshakeFailed => "FAILED:handshake_failed",
        Reason::UnparseableCertificate => "FAILED:unparseable_certificate",
        Reason::PinMismatch => "FAILED:pin_mismatch",
        Reason::SubjectMismatch => "FAILED:subject_mismatch",
        Reason::IssuerMismatch => "FAILED:issuer_mismatch",
        Reason::SanMismatch => "FAILED:san_mismatch",
        Reason::SpiffeMismatch => "FAILED:spiffe_mismatch",
        Reason::Expired => "FAILED:expired",
        Reason::NotYetValid => "FAILED:not_yet_valid",
        Reason::ExpiringSoon => "FAILED:expiring_soon",
        Reason::Revoked => "FAILED:revoked",
    }
}
