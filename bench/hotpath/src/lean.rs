//! A lean [`Host`] for timing the filter's own work: it answers like Envoy does on the
//! hit path (a fresh buffer for every property and for the serialized header map, as the
//! proxy-wasm ABI hands them over, decoded by the filter's own decoder) and records
//! nothing, so the measured cost is the filter's. Logging as Envoy at its default level:
//! info and above kept.
//! Shared by `bench/hotpath` (native and wasm32-wasip1) and the criterion benches
//! (`benches/micro.rs` includes this file by path).

use std::cell::{Cell, RefCell};

use mtls_guard::host::{
    deserialize_map_keys, deserialize_map_raw, serialize_map, serialize_map_raw, Host, HostError,
    Level, RawHeaders,
};
use mtls_guard::metrics::Kind;

/// Response headers as Envoy hands them to the filter for a small upstream reply.
const RESPONSE_HEADERS: &[(&str, &str)] = &[
    (":status", "200"),
    ("content-length", "2"),
    ("content-type", "text/plain"),
    ("date", "Fri, 15 Jan 2027 08:00:00 GMT"),
    ("server", "envoy"),
    ("x-envoy-upstream-service-time", "0"),
];

pub struct LeanHost {
    pub now: i64,
    pub config: Vec<u8>,
    pub pem: Vec<u8>,
    /// `upstream.sha256_peer_certificate_digest`: 64 lowercase hex characters.
    pub digest: RefCell<Vec<u8>>,
    pub route: Vec<u8>,
    /// The response header map as `proxy_get_header_map_pairs` serializes it.
    header_map: Vec<u8>,
    /// Header writes seen (set + remove), to check that the filter really stamped.
    pub header_writes: Cell<u64>,
    next_metric: Cell<u32>,
}

impl LeanHost {
    pub fn new(now: i64, config: &str, pem: &[u8], digest_hex: &str) -> Self {
        LeanHost {
            now,
            config: config.as_bytes().to_vec(),
            pem: pem.to_vec(),
            digest: RefCell::new(digest_hex.as_bytes().to_vec()),
            route: b"bench".to_vec(),
            header_map: serialize_map(RESPONSE_HEADERS),
            header_writes: Cell::new(0),
            next_metric: Cell::new(0),
        }
    }

    /// Replaces the digest the host reports: a different cache key, same certificate.
    pub fn set_digest(&self, hex: &[u8]) {
        let mut d = self.digest.borrow_mut();
        d.clear();
        d.extend_from_slice(hex);
    }
}

impl Host for LeanHost {
    fn now(&self) -> i64 {
        self.now
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(match path {
            ["upstream", "peer_certificate"] => Some(self.pem.clone()),
            ["upstream", "sha256_peer_certificate_digest"] => Some(self.digest.borrow().clone()),
            ["upstream", "address"] => Some(b"127.0.0.1:8443".to_vec()),
            ["xds", "route_name"] => Some(self.route.clone()),
            _ => None,
        })
    }

    fn plugin_config(&self) -> Result<Option<Vec<u8>>, HostError> {
        Ok(Some(self.config.clone()))
    }

    fn response_header_names(&self) -> Result<Vec<String>, HostError> {
        // The host copies the whole map into guest memory; the filter decodes the names.
        Ok(deserialize_map_keys(&self.header_map.clone()))
    }

    fn response_headers_raw(&self) -> Result<RawHeaders, HostError> {
        // As above, with the values: the batched path (Envoy) reads the map once.
        Ok(deserialize_map_raw(&self.header_map.clone()))
    }

    fn set_response_headers_raw(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), HostError> {
        // The filter serializes the new map; the host would copy it out.
        std::hint::black_box(serialize_map_raw(pairs));
        self.header_writes
            .set(self.header_writes.get() + pairs.len() as u64);
        Ok(())
    }

    fn request_header(&self, _name: &str) -> Result<Option<String>, HostError> {
        Ok(None)
    }

    fn set_response_header(&self, _name: &str, _value: &str) -> Result<(), HostError> {
        self.header_writes.set(self.header_writes.get() + 1);
        Ok(())
    }

    fn add_response_header(&self, _name: &str, _value: &str) -> Result<(), HostError> {
        self.header_writes.set(self.header_writes.get() + 1);
        Ok(())
    }

    fn remove_response_header(&self, _name: &str) -> Result<(), HostError> {
        self.header_writes.set(self.header_writes.get() + 1);
        Ok(())
    }

    fn send_response(
        &self,
        _status: u32,
        _headers: &[(&str, &str)],
        _body: &[u8],
    ) -> Result<(), HostError> {
        Ok(())
    }

    fn define_metric(&self, _kind: Kind, _name: &str) -> Result<u32, HostError> {
        let id = self.next_metric.get();
        self.next_metric.set(id + 1);
        Ok(id)
    }

    fn increment_metric(&self, _id: u32, _by: i64) -> Result<(), HostError> {
        Ok(())
    }

    fn record_metric(&self, _id: u32, _value: u64) -> Result<(), HostError> {
        Ok(())
    }

    fn log(&self, _level: Level, _message: &str) {}

    fn log_enabled(&self, level: Level) -> bool {
        level >= Level::Info
    }
}

/// The full policy of `make bench` variant 4 (pins, subject DN, SPIFFE, validity,
/// headers; metrics are always on), for a certificate whose SPKI pin is `pin`.
pub fn full_policy(pin: &str, subject_dn: &str, cache_entries: usize) -> String {
    format!(
        concat!(
            r#"{{"mode":"enforce","route_label":"bench","#,
            r#""pins":[{{"id":"current","spki_sha256":"{pin}"}},"#,
            r#"{{"id":"backup","spki_sha256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}],"#,
            r#""subject":{{"dn":["{dn}"]}},"#,
            r#""spiffe":{{"trust_domain":"example.org","path_prefix":"/ns/prod/"}},"#,
            r#""validity":{{"reject_expired":true,"min_remaining_days":7}},"#,
            r#""headers":{{"stamp":true}},"#,
            r#""cache_entries":{cache}}}"#
        ),
        pin = pin,
        dn = subject_dn,
        cache = cache_entries
    )
}
