//! The configuration contract (DESIGN section 3): raw serde types, then one validated
//! [`Config`] built once per configure. Every refusal names the JSON path and the rule.

use core::fmt;
use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use serde::Deserialize;

use crate::dn::{self, NormDn};
use crate::timefmt::parse_rfc3339;

/// Default per-worker certificate cache size (entries); 0 disables the cache.
pub const DEFAULT_CACHE_ENTRIES: usize = 1024;
/// Upper bound for `cache_entries`.
pub const MAX_CACHE_ENTRIES: usize = 65_536;
/// Longest route label or pin id; keeps metric names far below Kong's 256-byte limit.
pub const MAX_LABEL_LEN: usize = 64;

// ---------------------------------------------------------------------------------------
// Raw types: exactly what the user writes. Unknown keys are errors.

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub mode: Option<String>,
    pub require_certificate: Option<bool>,
    pub pins: Option<Vec<RawPin>>,
    pub subject: Option<RawDnPolicy>,
    pub issuer: Option<RawDnPolicy>,
    pub san: Option<RawSan>,
    pub spiffe: Option<RawSpiffe>,
    pub validity: Option<RawValidity>,
    pub revoked_serials: Option<Vec<String>>,
    pub revoked_sha256: Option<Vec<String>>,
    pub headers: Option<RawHeaders>,
    pub deny_status: Option<u16>,
    pub route_label: Option<String>,
    pub pin_expiry_warning_days: Option<u32>,
    pub enforce_percent: Option<u8>,
    pub request_id_header: Option<String>,
    pub quarantine_seconds: Option<u32>,
    pub shadow: Option<Box<RawConfig>>,
    /// Top level only.
    pub cache_entries: Option<usize>,
    /// Top level only.
    pub routes: Option<BTreeMap<String, RawConfig>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPin {
    pub id: String,
    pub spki_sha256: Option<String>,
    pub cert_sha256: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnPolicy {
    pub dn: Option<Vec<String>>,
    pub attributes: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSan {
    pub dns: Option<Vec<String>>,
    pub uri: Option<Vec<String>>,
    pub ip: Option<Vec<String>>,
    pub email: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpiffe {
    pub trust_domain: String,
    pub path_prefix: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValidity {
    pub reject_expired: Option<bool>,
    pub min_remaining_days: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    pub stamp: Option<bool>,
    pub prefix: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Validated types.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Report,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Report => "report",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinKind {
    /// SHA-256 of the DER SubjectPublicKeyInfo (RFC 7469 `pin-sha256`).
    Spki([u8; 32]),
    /// SHA-256 of the whole DER certificate.
    Cert([u8; 32]),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub id: String,
    pub kind: PinKind,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
}

impl Pin {
    /// A pin counts from `not_before` (inclusive) until `not_after` (exclusive).
    pub fn active_at(&self, now: i64) -> bool {
        self.not_before.is_none_or(|nb| now >= nb) && self.not_after.is_none_or(|na| now < na)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnPolicy {
    /// Any-of, in comparison form.
    pub dn: Vec<NormDn>,
    /// Each (OID, folded patterns): some value of that type must match one pattern.
    pub attributes: Vec<(String, Vec<String>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SanPolicy {
    /// Lower-case, without trailing dot; `*.` prefix is an RFC 6125 left-most wildcard.
    pub dns: Vec<String>,
    pub uri: Vec<String>,
    pub ip: Vec<IpAddr>,
    /// Lower-case.
    pub email: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpiffePolicy {
    pub trust_domain: String,
    pub path_prefix: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    pub require_certificate: bool,
    pub pins: Vec<Pin>,
    pub subject: Option<DnPolicy>,
    pub issuer: Option<DnPolicy>,
    pub san: Option<SanPolicy>,
    pub spiffe: Option<SpiffePolicy>,
    pub reject_expired: bool,
    pub min_remaining_days: u32,
    /// Serial magnitudes (no leading zero octets).
    pub revoked_serials: Vec<Vec<u8>>,
    pub revoked_sha256: Vec<[u8; 32]>,
    pub stamp_headers: bool,
    /// Lower-case header name prefix.
    pub header_prefix: String,
    pub deny_status: u16,
    /// Bounded label value for metrics: `[A-Za-z0-9_-]{1,64}`.
    pub route_label: String,
    /// Share (0-100) of failing responses rejected in enforce mode; the rest are reported.
    pub enforce_percent: u8,
    /// Lower-case request header carrying the id that buckets requests for the canary.
    pub request_id_header: String,
    /// After a rejection, reject the route's requests before they reach the upstream
    /// for this long (0: off).
    pub quarantine_seconds: u32,
    /// Candidate policy evaluated beside this one; never changes the response.
    pub shadow: Option<Box<Policy>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub default: Policy,
    /// Per-route policies keyed by the host's route name.
    pub routes: BTreeMap<String, Policy>,
    pub cache_entries: usize,
}

impl Config {
    /// The policy for a host route name (`xds.route_name`, `kong.route_name`).
    pub fn policy_for(&self, route: Option<&str>) -> &Policy {
        route
            .and_then(|r| self.routes.get(r))
            .unwrap_or(&self.default)
    }

    /// Every policy, default first.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        core::iter::once(&self.default).chain(self.routes.values())
    }
}

/// A refused configuration: where and which rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", Printable(&self.path), Printable(&self.rule))
    }
}

/// Writes text with control characters and bidirectional overrides escaped as `\u{..}`:
/// paths and rules quote the user's keys and values, and they end up in the gateway's
/// log, which must not be forgeable by a configuration.
struct Printable<'a>(&'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}');
            if c.is_control() || bidi {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Accepted but probably not what the operator wants (e.g. no backup pin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", Printable(&self.path), Printable(&self.message))
    }
}

fn err<T>(path: impl Into<String>, rule: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        path: path.into(),
        rule: rule.into(),
    })
}

/// Parses and validates a JSON config. `now` is used only for warnings about pin windows.
pub fn parse(json: &[u8], now: i64) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
    let text = if json.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        json
    };
    if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return err("$", "the configuration must be a JSON object");
    }
    let de = &mut serde_json::Deserializer::from_slice(text);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let p = e.path().to_string();
        let path = if p == "." || p == "?" || p.is_empty() {
            "$".to_string()
        } else {
            format!("$.{p}")
        };
        ConfigError {
            path,
            rule: e.into_inner().to_string(),
        }
    })?;
    let mut warnings = Vec::new();
    let config = validate(raw, now, &mut warnings)?;
    Ok((config, warnings))
}

/// Validates a raw config (already deserialised).
pub fn validate(
    raw: RawConfig,
    now: i64,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Config, ConfigError> {
    let cache_entries = match raw.cache_entries {
        None => DEFAULT_CACHE_ENTRIES,
        Some(n) if n <= MAX_CACHE_ENTRIES => n,
        Some(n) => {
            return err(
                "$.cache_entries",
                format!("must be between 0 (no cache) and {MAX_CACHE_ENTRIES}, got {n}"),
            )
        }
    };
    let mut base = raw.clone();
    base.routes = None;
    base.cache_entries = None;
    let default = validate_policy(&base, "$", None, now, warnings)?;

    let mut routes = BTreeMap::new();
    for (name, route_raw) in raw.routes.unwrap_or_default() {
        let path = format!("$.routes.{name}");
        if name.is_empty() {
            return err("$.routes", "route names must not be empty");
        }
        if route_raw.routes.is_some() {
            return err(format!("{path}.routes"), "routes cannot be nested");
        }
        if route_raw.cache_entries.is_some() {
            return err(
                format!("{path}.cache_entries"),
                "cache_entries is set once, at the top level",
            );
        }
        let merged = merge(&base, &route_raw);
        let policy = validate_policy(&merged, &path, Some(&name), now, warnings)?;
        routes.insert(name, policy);
    }
    Ok(Config {
        default,
        routes,
        cache_entries,
    })
}

/// A route's keys replace the top-level ones (whole sections, not deep merges), except
/// `route_label`, which is never inherited so that routes keep distinct labels.
fn merge(base: &RawConfig, route: &RawConfig) -> RawConfig {
    RawConfig {
        mode: route.mode.clone().or_else(|| base.mode.clone()),
        require_certificate: route.require_certificate.or(base.require_certificate),
        pins: route.pins.clone().or_else(|| base.pins.clone()),
        subject: route.subject.clone().or_else(|| base.subject.clone()),
        issuer: route.issuer.clone().or_else(|| base.issuer.clone()),
        san: route.san.clone().or_else(|| base.san.clone()),
        spiffe: route.spiffe.clone().or_else(|| base.spiffe.clone()),
        validity: route.validity.clone().or_else(|| base.validity.clone()),
        revoked_serials: route
            .revoked_serials
            .clone()
            .or_else(|| base.revoked_serials.clone()),
        revoked_sha256: route
            .revoked_sha256
            .clone()
            .or_else(|| base.revoked_sha256.clone()),
        headers: route.headers.clone().or_else(|| base.headers.clone()),
        deny_status: route.deny_status.or(base.deny_status),
        route_label: route.route_label.clone(),
        pin_expiry_warning_days: route
            .pin_expiry_warning_days
            .or(base.pin_expiry_warning_days),
        enforce_percent: route.enforce_percent.or(base.enforce_percent),
        request_id_header: route
            .request_id_header
            .clone()
            .or_else(|| base.request_id_header.clone()),
        quarantine_seconds: route.quarantine_seconds.or(base.quarantine_seconds),
        shadow: route.shadow.clone().or_else(|| base.shadow.clone()),
        cache_entries: None,
        routes: None,
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LABEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Turns a host route name into a bounded metric label.
pub fn sanitize_label(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LABEL_LEN)
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn non_empty<'a, T>(
    list: &'a Option<Vec<T>>,
    path: &str,
) -> Result<Option<&'a Vec<T>>, ConfigError> {
    match list {
        Some(l) if l.is_empty() => err(path, "must not be an empty list (omit the key instead)"),
        Some(l) => Ok(Some(l)),
        None => Ok(None),
    }
}

fn parse_time(s: &str, path: &str) -> Result<i64, ConfigError> {
    parse_rfc3339(s).ok_or_else(|| ConfigError {
        path: path.into(),
        rule: format!("`{s}` is not an RFC 3339 date-time such as 2027-01-01T00:00:00Z"),
    })
}

/// Parses hex with optional `:` separators (also accepts spaces) into bytes.
fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| *b != b':' && *b != b' ').collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|p| {
            let s = core::str::from_utf8(p).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

fn parse_sha256_hex(s: &str, path: &str) -> Result<[u8; 32], ConfigError> {
    let bytes = parse_hex(s).ok_or_else(|| ConfigError {
        path: path.into(),
        rule: "must be 64 hex digits (colons allowed)".into(),
    })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ConfigError {
        path: path.into(),
        rule: format!(
            "must be 64 hex digits (colons allowed), got {} digits",
            bytes.len() * 2
        ),
    })
}

fn validate_dn_policy(raw: &RawDnPolicy, path: &str) -> Result<DnPolicy, ConfigError> {
    let mut dns = Vec::new();
    if let Some(list) = non_empty(&raw.dn, &format!("{path}.dn"))? {
        for (i, s) in list.iter().enumerate() {
            let parsed = dn::parse(s).map_err(|e| ConfigError {
                path: format!("{path}.dn[{i}]"),
                rule: e.to_string(),
            })?;
            dns.push(parsed.normalized());
        }
    }
    let mut attributes = Vec::new();
    if let Some(map) = &raw.attributes {
        if map.is_empty() {
            return err(
                format!("{path}.attributes"),
                "must not be an empty object (omit the key instead)",
            );
        }
        for (name, patterns) in map {
            let apath = format!("{path}.attributes.{name}");
            let oid = dn::resolve_type(name).ok_or_else(|| ConfigError {
                path: apath.clone(),
                rule: format!("unknown attribute type `{name}` (use a short name such as CN, O, OU, C or a dotted OID)"),
            })?;
            if patterns.is_empty() {
                return err(apath, "must not be an empty list (omit the key instead)");
            }
            if patterns.iter().any(String::is_empty) {
                return err(apath, "patterns must not be empty strings");
            }
            attributes.push((oid, patterns.iter().map(|p| dn::fold(p)).collect()));
        }
    }
    if dns.is_empty() && attributes.is_empty() {
        return err(path, "needs `dn` or `attributes`");
    }
    Ok(DnPolicy {
        dn: dns,
        attributes,
    })
}

fn validate_dns_name(s: &str) -> Option<String> {
    let lower = s.trim_end_matches('.').to_ascii_lowercase();
    let (wild, rest) = match lower.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, lower.as_str()),
    };
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let labels: Vec<&str> = rest.split('.').collect();
    // RFC 6125 section 6.4.3: the wildcard is the whole left-most label, and a wildcard
    // must be followed by at least two labels (no `*.com`).
    if !labels.iter().all(|l| ok_label(l)) || (wild && labels.len() < 2) || lower.len() > 253 {
        return None;
    }
    Some(lower)
}

fn validate_san(raw: &RawSan, path: &str) -> Result<SanPolicy, ConfigError> {
    let mut san = SanPolicy {
        dns: vec![],
        uri: vec![],
        ip: vec![],
        email: vec![],
    };
    if let Some(list) = non_empty(&raw.dns, &format!("{path}.dns"))? {
        for (i, s) in list.iter().enumerate() {
            san.dns.push(validate_dns_name(s).ok_or_else(|| ConfigError {
                path: format!("{path}.dns[{i}]"),
                rule: format!("`{s}` is not a DNS name or an RFC 6125 wildcard (`*.` as the whole left-most label)"),
            })?);
        }
    }
    if let Some(list) = non_empty(&raw.uri, &format!("{path}.uri"))? {
        for (i, s) in list.iter().enumerate() {
            if s.is_empty() || !s.contains(':') || s.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return err(
                    format!("{path}.uri[{i}]"),
                    format!("`{s}` is not an absolute URI"),
                );
            }
            san.uri.push(s.clone());
        }
    }
    if let Some(list) = non_empty(&raw.ip, &format!("{path}.ip"))? {
        for (i, s) in list.iter().enumerate() {
            san.ip.push(s.parse().map_err(|_| ConfigError {
                path: format!("{path}.ip[{i}]"),
                rule: format!("`{s}` is not an IPv4 or IPv6 address"),
            })?);
        }
    }
    if let Some(list) = non_empty(&raw.email, &format!("{path}.email"))? {
        for (i, s) in list.iter().enumerate() {
            let valid = s
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'));
            if !valid {
                return err(
                    format!("{path}.email[{i}]"),
                    format!("`{s}` is not an e-mail address"),
                );
            }
            san.email.push(s.to_ascii_lowercase());
        }
    }
    if san.dns.is_empty() && san.uri.is_empty() && san.ip.is_empty() && san.email.is_empty() {
        return err(path, "needs at least one of dns, uri, ip, email");
    }
    Ok(san)
}

fn validate_policy(
    raw: &RawConfig,
    path: &str,
    route_name: Option<&str>,
    now: i64,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<Policy, ConfigError> {
    let at = |key: &str| {
        if path == "$" {
            format!("$.{key}")
        } else {
            format!("{path}.{key}")
        }
    };

    let mode = match raw.mode.as_deref() {
        None | Some("enforce") => Mode::Enforce,
        Some("report") => Mode::Report,
        Some(other) => {
            return err(
                at("mode"),
                format!("must be \"enforce\" or \"report\", got \"{other}\""),
            )
        }
    };

    let mut pins = Vec::new();
    if let Some(list) = non_empty(&raw.pins, &at("pins"))? {
        for (i, p) in list.iter().enumerate() {
            let ppath = format!("{}[{i}]", at("pins"));
            if !is_label(&p.id) {
                return err(
                    format!("{ppath}.id"),
                    format!(
                        "must match [A-Za-z0-9_-]{{1,{MAX_LABEL_LEN}}}, got \"{}\"",
                        p.id
                    ),
                );
            }
            if pins.iter().any(|q: &Pin| q.id == p.id) {
                return err(
                    format!("{ppath}.id"),
                    format!("duplicate pin id \"{}\"", p.id),
                );
            }
            let kind = match (&p.spki_sha256, &p.cert_sha256) {
                (Some(b64), None) => {
                    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| ConfigError {
                        path: format!("{ppath}.spki_sha256"),
                        rule: "must be standard base64 of a SHA-256 digest (44 characters ending in `=`)".into(),
                    })?;
                    let n = bytes.len();
                    PinKind::Spki(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                        ConfigError {
                            path: format!("{ppath}.spki_sha256"),
                            rule: format!("must decode to 32 bytes (SHA-256), got {n}"),
                        }
                    })?)
                }
                (None, Some(hex)) => {
                    PinKind::Cert(parse_sha256_hex(hex, &format!("{ppath}.cert_sha256"))?)
                }
                (Some(_), Some(_)) => {
                    return err(
                        ppath,
                        "set exactly one of spki_sha256 and cert_sha256, not both",
                    )
                }
                (None, None) => return err(ppath, "needs spki_sha256 or cert_sha256"),
            };
            let not_before = p
                .not_before
                .as_deref()
                .map(|s| parse_time(s, &format!("{ppath}.not_before")))
                .transpose()?;
            let not_after = p
                .not_after
                .as_deref()
                .map(|s| parse_time(s, &format!("{ppath}.not_after")))
                .transpose()?;
            if let (Some(nb), Some(na)) = (not_before, not_after) {
                if nb >= na {
                    return err(ppath, "not_before must be earlier than not_after");
                }
            }
            pins.push(Pin {
                id: p.id.clone(),
                kind,
                not_before,
                not_after,
            });
        }
        if pins.len() == 1 {
            warnings.push(ConfigWarning {
                path: at("pins"),
                message: "only one pin: add a backup pin for the next key, or rotation will cause an outage".into(),
            });
        }
        let horizon = i64::from(raw.pin_expiry_warning_days.unwrap_or(30)) * 86_400;
        if pins
            .iter()
            .all(|p| p.not_after.is_some_and(|na| na <= now + horizon))
        {
            warnings.push(ConfigWarning {
                path: at("pins"),
                message: format!(
                    "every pin stops counting within {} days: add a pin for the next key",
                    raw.pin_expiry_warning_days.unwrap_or(30)
                ),
            });
        }
    }

    let subject = raw
        .subject
        .as_ref()
        .map(|s| validate_dn_policy(s, &at("subject")))
        .transpose()?;
    let issuer = raw
        .issuer
        .as_ref()
        .map(|s| validate_dn_policy(s, &at("issuer")))
        .transpose()?;
    let san = raw
        .san
        .as_ref()
        .map(|s| validate_san(s, &at("san")))
        .transpose()?;
    let spiffe = match &raw.spiffe {
        None => None,
        Some(s) => {
            let td = s.trust_domain.as_str();
            if crate::cert::spiffe_parts(&format!("spiffe://{td}")).is_none() || td.contains('/') {
                return err(at("spiffe.trust_domain"), format!("`{td}` is not a SPIFFE trust domain (lower-case letters, digits, `.`, `-`, `_`)"));
            }
            if let Some(p) = &s.path_prefix {
                if !p.starts_with('/') {
                    return err(
                        at("spiffe.path_prefix"),
                        format!("must start with `/`, got `{p}`"),
                    );
                }
            }
            Some(SpiffePolicy {
                trust_domain: td.to_string(),
                path_prefix: s.path_prefix.clone(),
            })
        }
    };

    let (reject_expired, min_remaining_days) = match &raw.validity {
        None => (true, 0),
        Some(v) => {
            let days = v.min_remaining_days.unwrap_or(0);
            if days > 3650 {
                return err(
                    at("validity.min_remaining_days"),
                    format!("must be at most 3650, got {days}"),
                );
            }
            (v.reject_expired.unwrap_or(true), days)
        }
    };

    let mut revoked_serials = Vec::new();
    if let Some(list) = non_empty(&raw.revoked_serials, &at("revoked_serials"))? {
        for (i, s) in list.iter().enumerate() {
            let bytes = parse_hex(s).ok_or_else(|| ConfigError {
                path: format!("{}[{i}]", at("revoked_serials")),
                rule: format!("`{s}` is not a hex serial (e.g. 0c:b9:4f or 0CB94F)"),
            })?;
            let first = bytes
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(bytes.len().saturating_sub(1));
            revoked_serials.push(bytes.get(first..).unwrap_or(&[]).to_vec());
        }
    }
    let mut revoked_sha256 = Vec::new();
    if let Some(list) = non_empty(&raw.revoked_sha256, &at("revoked_sha256"))? {
        for (i, s) in list.iter().enumerate() {
            revoked_sha256.push(parse_sha256_hex(
                s,
                &format!("{}[{i}]", at("revoked_sha256")),
            )?);
        }
    }

    let (stamp_headers, header_prefix) = match &raw.headers {
        None => (true, "x-upstream-".to_string()),
        Some(h) => {
            let prefix = h.prefix.clone().unwrap_or_else(|| "x-upstream-".into());
            let valid = !prefix.is_empty()
                && prefix.len() <= 48
                && prefix.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                });
            if !valid {
                return err(
                    at("headers.prefix"),
                    format!(
                        "must be 1-48 lower-case letters, digits, `-` or `_`, got \"{prefix}\""
                    ),
                );
            }
            if matches!(prefix.as_str(), "x-" | "x" | "-") || prefix.starts_with(':') {
                return err(
                    at("headers.prefix"),
                    format!(
                        "\"{prefix}\" is too broad: every response header with it would be removed"
                    ),
                );
            }
            (h.stamp.unwrap_or(true), prefix)
        }
    };

    let deny_status = raw.deny_status.unwrap_or(502);
    if !(400..=599).contains(&deny_status) {
        return err(
            at("deny_status"),
            format!("must be an HTTP error status (400-599), got {deny_status}"),
        );
    }

    let route_label = match (&raw.route_label, route_name) {
        (Some(l), _) if is_label(l) => l.clone(),
        (Some(l), _) => {
            return err(
                at("route_label"),
                format!("must match [A-Za-z0-9_-]{{1,{MAX_LABEL_LEN}}}, got \"{l}\""),
            )
        }
        (None, Some(name)) => sanitize_label(name),
        (None, None) => "default".into(),
    };

    if let Some(days) = raw.pin_expiry_warning_days {
        if days > 3650 {
            return err(
                at("pin_expiry_warning_days"),
                format!("must be at most 3650, got {days}"),
            );
        }
    }

    let enforce_percent = raw.enforce_percent.unwrap_or(100);
    if enforce_percent > 100 {
        return err(
            at("enforce_percent"),
            format!("must be between 0 and 100, got {enforce_percent}"),
        );
    }
    let request_id_header = raw
        .request_id_header
        .clone()
        .unwrap_or_else(|| "x-request-id".into());
    let header_ok = !request_id_header.is_empty()
        && request_id_header.len() <= 64
        && request_id_header
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !header_ok {
        return err(
            at("request_id_header"),
            format!("must be a lower-case header name, got \"{request_id_header}\""),
        );
    }
    let quarantine_seconds = raw.quarantine_seconds.unwrap_or(0);
    if quarantine_seconds > 86_400 {
        return err(
            at("quarantine_seconds"),
            format!("must be at most 86400 (one day), got {quarantine_seconds}"),
        );
    }
    let shadow = match &raw.shadow {
        None => None,
        Some(sh) => {
            let spath = at("shadow");
            let inert: [(&str, bool); 10] = [
                ("mode", sh.mode.is_some()),
                ("enforce_percent", sh.enforce_percent.is_some()),
                ("request_id_header", sh.request_id_header.is_some()),
                ("quarantine_seconds", sh.quarantine_seconds.is_some()),
                ("headers", sh.headers.is_some()),
                ("deny_status", sh.deny_status.is_some()),
                ("route_label", sh.route_label.is_some()),
                ("shadow", sh.shadow.is_some()),
                ("routes", sh.routes.is_some()),
                ("cache_entries", sh.cache_entries.is_some()),
            ];
            if let Some((key, _)) = inert.iter().find(|(_, set)| *set) {
                return err(
                    format!("{spath}.{key}"),
                    "has no effect in a shadow policy (it only decides pass or fail)",
                );
            }
            let mut shadow_warnings = Vec::new();
            let policy = validate_policy(sh, &spath, route_name, now, &mut shadow_warnings)?;
            Some(Box::new(policy))
        }
    };

    Ok(Policy {
        mode,
        require_certificate: raw.require_certificate.unwrap_or(true),
        pins,
        subject,
        issuer,
        san,
        spiffe,
        reject_expired,
        min_remaining_days,
        revoked_serials,
        revoked_sha256,
        stamp_headers,
        header_prefix,
        deny_status,
        route_label,
        enforce_percent,
        request_id_header,
        quarantine_seconds,
        shadow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000; // 2026-11-30

    fn parse_ok(json: &str) -> (Config, Vec<ConfigWarning>) {
        parse(json.as_bytes(), NOW).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn empty_config_gets_safe_defaults() {
        let (c, w) = parse_ok("{}");
        assert!(w.is_empty());
        let p = &c.default;
        assert_eq!(p.mode, Mode::Enforce);
        assert!(p.require_certificate && p.reject_expired && p.stamp_headers);
        assert_eq!(
            (
                p.deny_status,
                p.header_prefix.as_str(),
                p.route_label.as_str()
            ),
            (502, "x-upstream-", "default")
        );
        assert_eq!(c.cache_entries, DEFAULT_CACHE_ENTRIES);
        assert_eq!(
            parse(b"", NOW).map(|(c, _)| c.default.mode),
            Ok(Mode::Enforce)
        );
    }

    #[test]
    fn refuses_bad_configs_naming_path_and_rule() {
        let pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"mdoe":"report"}"#, "$.mdoe", "unknown field `mdoe`"),
            (
                r#"{"mode":"block"}"#,
                "$.mode",
                "must be \"enforce\" or \"report\"",
            ),
            (r#"{"pins":[]}"#, "$.pins", "must not be an empty list"),
            (
                r#"{"pins":[{"id":"a","spki_sha256":"AAAA"}]}"#,
                "$.pins[0].spki_sha256",
                "must decode to 32 bytes (SHA-256), got 3",
            ),
            (
                r#"{"pins":[{"id":"a","spki_sha256":"not base64!"}]}"#,
                "$.pins[0].spki_sha256",
                "must be standard base64",
            ),
            (
                r#"{"pins":[{"id":"a","cert_sha256":"abcd"}]}"#,
                "$.pins[0].cert_sha256",
                "got 4 digits",
            ),
            (
                r#"{"pins":[{"id":"a","cert_sha256":"zz"}]}"#,
                "$.pins[0].cert_sha256",
                "must be 64 hex digits",
            ),
            (
                r#"{"pins":[{"id":"a"}]}"#,
                "$.pins[0]",
                "needs spki_sha256 or cert_sha256",
            ),
            (
                r#"{"pins":[{"id":"a b","spki_sha256":"PIN"}]}"#,
                "$.pins[0].id",
                "must match",
            ),
            (
                r#"{"pins":[{"id":"a","spki_sha256":"PIN"},{"id":"a","spki_sha256":"PIN"}]}"#,
                "$.pins[1].id",
                "duplicate pin id",
            ),
            (
                r#"{"pins":[{"id":"a","spki_sha256":"PIN","not_before":"tomorrow"}]}"#,
                "$.pins[0].not_before",
                "not an RFC 3339",
            ),
            (
                r#"{"pins":[{"id":"a","spki_sha256":"PIN","not_before":"2027-01-02T00:00:00Z","not_after":"2027-01-01T00:00:00Z"}]}"#,
                "$.pins[0]",
                "not_before must be earlier",
            ),
            (
                r#"{"pins":[{"id":"a","spki_sha256":"PIN","extra":1}]}"#,
                "$.pins[0].extra",
                "unknown field `extra`",
            ),
            (
                r#"{"subject":{}}"#,
                "$.subject",
                "needs `dn` or `attributes`",
            ),
            (
                r#"{"subject":{"dn":["CN=a,"]}}"#,
                "$.subject.dn[0]",
                "empty RDN",
            ),
            (
                r#"{"issuer":{"dn":["XX=a"]}}"#,
                "$.issuer.dn[0]",
                "unknown attribute type `XX`",
            ),
            (
                r#"{"subject":{"attributes":{"Q":["x"]}}}"#,
                "$.subject.attributes.Q",
                "unknown attribute type",
            ),
            (
                r#"{"subject":{"attributes":{"CN":[]}}}"#,
                "$.subject.attributes.CN",
                "must not be an empty list",
            ),
            (
                r#"{"san":{"dns":["*.com"]}}"#,
                "$.san.dns[0]",
                "not a DNS name",
            ),
            (
                r#"{"san":{"dns":["a.*.example.com"]}}"#,
                "$.san.dns[0]",
                "not a DNS name",
            ),
            (
                r#"{"san":{"ip":["10.0.0.300"]}}"#,
                "$.san.ip[0]",
                "not an IPv4 or IPv6 address",
            ),
            (
                r#"{"san":{"email":[]}}"#,
                "$.san.email",
                "must not be an empty list",
            ),
            (
                r#"{"san":{"email":["nobody"]}}"#,
                "$.san.email[0]",
                "not an e-mail address",
            ),
            (r#"{"san":{}}"#, "$.san", "needs at least one of"),
            (
                r#"{"spiffe":{"trust_domain":"Example.ORG"}}"#,
                "$.spiffe.trust_domain",
                "not a SPIFFE trust domain",
            ),
            (
                r#"{"spiffe":{"trust_domain":"example.org","path_prefix":"ns"}}"#,
                "$.spiffe.path_prefix",
                "must start with `/`",
            ),
            (
                r#"{"spiffe":{}}"#,
                "$.spiffe",
                "missing field `trust_domain`",
            ),
            (
                r#"{"validity":{"min_remaining_days":-1}}"#,
                "$.validity.min_remaining_days",
                "invalid value",
            ),
            (
                r#"{"revoked_serials":["xyz"]}"#,
                "$.revoked_serials[0]",
                "not a hex serial",
            ),
            (
                r#"{"revoked_sha256":["00"]}"#,
                "$.revoked_sha256[0]",
                "got 2 digits",
            ),
            (
                r#"{"headers":{"prefix":"X-Up"}}"#,
                "$.headers.prefix",
                "lower-case",
            ),
            (
                r#"{"headers":{"prefix":"x-"}}"#,
                "$.headers.prefix",
                "too broad",
            ),
            (r#"{"deny_status":200}"#, "$.deny_status", "400-599"),
            (r#"{"deny_status":1000}"#, "$.deny_status", "400-599"),
            (
                r#"{"route_label":"orders api"}"#,
                "$.route_label",
                "must match",
            ),
            (
                r#"{"cache_entries":100000}"#,
                "$.cache_entries",
                "between 0 (no cache) and",
            ),
            (
                r#"{"routes":{"r1":{"mode":"x"}}}"#,
                "$.routes.r1.mode",
                "must be \"enforce\"",
            ),
            (
                r#"{"routes":{"r1":{"routes":{}}}}"#,
                "$.routes.r1.routes",
                "cannot be nested",
            ),
            (
                r#"{"routes":{"r1":{"pins":[{"id":"a","spki_sha256":"short"}]}}}"#,
                "$.routes.r1.pins[0].spki_sha256",
                "must",
            ),
            (
                r#"{"enforce_percent":101}"#,
                "$.enforce_percent",
                "between 0 and 100",
            ),
            (
                r#"{"enforce_percent":-1}"#,
                "$.enforce_percent",
                "invalid value",
            ),
            (
                r#"{"request_id_header":"X-Id"}"#,
                "$.request_id_header",
                "lower-case header name",
            ),
            (
                r#"{"quarantine_seconds":90000}"#,
                "$.quarantine_seconds",
                "at most 86400",
            ),
            (
                r#"{"shadow":{"mode":"report"}}"#,
                "$.shadow.mode",
                "no effect in a shadow policy",
            ),
            (
                r#"{"routes":{"r":{"shadow":{"shadow":{}}}}}"#,
                "$.routes.r.shadow.shadow",
                "no effect",
            ),
            (
                r#"{"shadow":{"pins":[{"id":"a","spki_sha256":"x"}]}}"#,
                "$.shadow.pins[0].spki_sha256",
                "must",
            ),
            (r#"{"mode":"enforce",}"#, "$", "trailing comma"),
            (r#"[]"#, "$", "must be a JSON object"),
            ("\"enforce\"", "$", "must be a JSON object"),
        ];
        for (json, path, rule) in cases {
            let json = json.replace("PIN", pin);
            match parse(json.as_bytes(), NOW) {
                Ok(_) => panic!("accepted {json}"),
                Err(e) => {
                    assert_eq!(e.path, *path, "{json}: {e}");
                    assert!(e.rule.contains(rule), "{json}: rule was `{}`", e.rule);
                }
            }
        }
    }

    #[test]
    fn errors_never_carry_control_characters_into_logs() {
        for json in [
            "{\"routes\":{\"orders\\n2027-01-01 [critical] forged\":{\"mode\":\"bad\"}}}",
            "{\"x\\u001b[31m\":1}",
            "{\"subject\":{\"dn\":[\"CN=\\u202egnp.exe\"]},\"mode\":\"\\r\"}",
        ] {
            let e = parse(json.as_bytes(), NOW).unwrap_err().to_string();
            assert!(
                !e.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{json}: {e:?}"
            );
        }
        let e = parse(b"{\"routes\":{\"a\\nb\":{\"mode\":\"x\"}}}", NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "$.routes.a\\u{a}b.mode: must be \"enforce\" or \"report\", got \"x\""
        );
    }

    #[test]
    fn warns_about_single_pin_and_expiring_pin_sets() {
        let pin = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let (_, w) = parse_ok(&format!(
            r#"{{"pins":[{{"id":"only","spki_sha256":"{pin}"}}]}}"#
        ));
        assert_eq!(w.len(), 1);
        assert!(w[0].message.contains("only one pin"));
        let (_, w) = parse_ok(&format!(
            r#"{{"pins":[{{"id":"a","spki_sha256":"{pin}","not_after":"2026-12-10T00:00:00Z"}},{{"id":"b","cert_sha256":"{}","not_after":"2026-12-20T00:00:00Z"}}]}}"#,
            "ab".repeat(32)
        ));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].message.contains("within 30 days"));
    }

    #[test]
    fn routes_override_whole_sections_and_keep_their_own_label() {
        let (c, _) = parse_ok(
            r#"{"mode":"report","route_label":"top","deny_status":503,
                "san":{"dns":["a.example"]},
                "routes":{"orders/v1":{"mode":"enforce"},"pay":{"route_label":"payments","san":{"uri":["spiffe://x/y"]}}}}"#,
        );
        let orders = c.policy_for(Some("orders/v1"));
        assert_eq!(
            (orders.mode, orders.deny_status, orders.route_label.as_str()),
            (Mode::Enforce, 503, "orders_v1")
        );
        assert_eq!(
            orders.san.as_ref().map(|s| s.dns.clone()),
            Some(vec!["a.example".to_string()])
        );
        let pay = c.policy_for(Some("pay"));
        assert_eq!(
            (pay.mode, pay.route_label.as_str()),
            (Mode::Report, "payments")
        );
        assert_eq!(pay.san.as_ref().map(|s| s.dns.is_empty()), Some(true));
        assert_eq!(c.policy_for(Some("unknown")).route_label, "top");
        assert_eq!(c.policy_for(None).route_label, "top");
    }

    #[test]
    fn normalises_hex_forms() {
        let (c, _) = parse_ok(&format!(
            r#"{{"revoked_serials":["00:0C:B9","0cb9"],"revoked_sha256":["{}"]}}"#,
            "AB:".repeat(31) + "AB"
        ));
        assert_eq!(
            c.default.revoked_serials,
            vec![vec![0x0c, 0xb9], vec![0x0c, 0xb9]]
        );
        assert_eq!(c.default.revoked_sha256, vec![[0xab; 32]]);
    }
}
