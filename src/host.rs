//! The host boundary. [`Host`] is what the filter needs from a proxy; [`ProxyWasm`] is
//! the only code that calls the proxy-wasm ABI, and [`testing::FakeHost`] drives the
//! filter natively.
//!
//! The ABI functions are imported here directly instead of through the SDK's
//! `hostcalls` wrappers: those `panic!` on any status they do not expect (for example
//! `send_http_response` on anything but `Ok`), and a panic traps the VM; with Envoy's
//! `FAIL_CLOSED` every later request then fails until restart. Here every status is a
//! value.

use core::fmt;

use crate::metrics::Kind;

/// A proxy-wasm status other than `Ok`, by number (proxy-wasm ABI 0.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError(pub u32);

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            7 => "Empty",
            8 => "CasMismatch",
            10 => "InternalFailure",
            12 => "Unimplemented",
            _ => "unknown status",
        };
        write!(f, "{name} ({})", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

/// What the filter asks of its proxy. Absent values are `Ok(None)`.
pub trait Host {
    /// Unix time in seconds.
    fn now(&self) -> i64;
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    fn plugin_config(&self) -> Result<Option<Vec<u8>>, HostError>;
    /// Names of the response headers (values are not needed to strip by prefix).
    fn response_header_names(&self) -> Result<Vec<String>, HostError>;
    /// All response headers, as raw bytes (values may carry obs-text).
    fn response_headers_raw(&self) -> Result<RawHeaders, HostError>;
    /// Replaces every response header with `pairs`, in one call.
    fn set_response_headers_raw(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), HostError>;
    fn request_header(&self, name: &str) -> Result<Option<String>, HostError>;
    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// Appends a response header (no lookup of an existing one).
    fn add_response_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    fn remove_response_header(&self, name: &str) -> Result<(), HostError>;
    fn send_response(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
    fn define_metric(&self, kind: Kind, name: &str) -> Result<u32, HostError>;
    fn increment_metric(&self, id: u32, by: i64) -> Result<(), HostError>;
    fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError>;
    fn log(&self, level: Level, message: &str);
    /// Whether the host would keep a message at `level` (so that per-request debug
    /// lines are not even formatted when debug logging is off).
    fn log_enabled(&self, level: Level) -> bool;
}

/// Header name/value pairs as raw bytes.
pub type RawHeaders = Vec<(Vec<u8>, Vec<u8>)>;

/// The entries of a proxy-wasm serialized map: u32 count, count x (u32 key len, u32 value
/// len), then NUL-terminated keys and values. Malformed input yields what could be read.
fn map_entries(bytes: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let u32_at = move |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes(<[u8; 4]>::try_from(b).ok()?) as usize)
    };
    let count = u32_at(0).unwrap_or(0);
    let mut p = 4usize.saturating_add(count.saturating_mul(8));
    (0..count).map_while(move |n| {
        let (klen, vlen) = (u32_at(4 + n * 8)?, u32_at(8 + n * 8)?);
        let k = bytes.get(p..p.checked_add(klen)?)?;
        let v_start = p.checked_add(klen)?.checked_add(1)?;
        let v = bytes.get(v_start..v_start.checked_add(vlen)?)?;
        p = v_start + vlen + 1;
        Some((k, v))
    })
}

/// Decodes a proxy-wasm serialized map into text pairs (invalid UTF-8 replaced).
pub fn deserialize_map(bytes: &[u8]) -> Vec<(String, String)> {
    map_entries(bytes)
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// Decodes a proxy-wasm serialized map keeping the bytes as they are.
pub fn deserialize_map_raw(bytes: &[u8]) -> RawHeaders {
    map_entries(bytes)
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

/// The keys of a proxy-wasm serialized map, without copying the values.
pub fn deserialize_map_keys(bytes: &[u8]) -> Vec<String> {
    map_entries(bytes)
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// Encodes raw pairs in the proxy-wasm map format.
pub fn serialize_map_raw(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Encodes a text header list in the proxy-wasm map format.
pub fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let raw: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    serialize_map_raw(&raw)
}

#[cfg(target_os = "wasi")]
pub use abi::ProxyWasm;

#[cfg(target_os = "wasi")]
mod abi {
    use super::{HostError, Kind, Level};
    use core::ptr::null_mut;

    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;
    const EMPTY: u32 = 7;
    const RESPONSE_HEADERS: u32 = 2;
    const REQUEST_HEADERS: u32 = 0;
    const PLUGIN_CONFIGURATION: u32 = 7;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
        fn proxy_get_log_level(level: *mut u32) -> u32;
        fn proxy_get_current_time_nanoseconds(out: *mut u64) -> u32;
        fn proxy_get_property(
            path: *const u8,
            path_size: usize,
            out: *mut *mut u8,
            out_size: *mut usize,
        ) -> u32;
        fn proxy_get_buffer_bytes(
            kind: u32,
            start: usize,
            max: usize,
            out: *mut *mut u8,
            out_size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_pairs(map: u32, out: *mut *mut u8, out_size: *mut usize) -> u32;
        fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
        fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            out: *mut *mut u8,
            out_size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        fn proxy_add_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, out: *mut u32) -> u32;
        fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        fn proxy_record_metric(id: u32, value: u64) -> u32;
    }

    fn status(code: u32) -> Result<(), HostError> {
        if code == OK {
            Ok(())
        } else {
            Err(HostError(code))
        }
    }

    /// Takes ownership of a host-allocated buffer (allocated through the SDK's exported
    /// `proxy_on_memory_allocate`, i.e. as a boxed slice of exactly `size` bytes).
    fn take(code: u32, data: *mut u8, size: usize) -> Result<Option<Vec<u8>>, HostError> {
        match code {
            OK if data.is_null() || size == 0 => Ok(None),
            // SAFETY: the host wrote `size` bytes into memory it obtained from our
            // allocator with exactly that capacity, and hands ownership to us.
            OK => Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) })),
            NOT_FOUND | EMPTY => Ok(None),
            other => Err(HostError(other)),
        }
    }

    /// The proxy-wasm host, through the raw ABI.
    pub struct ProxyWasm;

    impl super::Host for ProxyWasm {
        fn now(&self) -> i64 {
            let mut ns: u64 = 0;
            // SAFETY: valid out-pointer for the duration of the call.
            match unsafe { proxy_get_current_time_nanoseconds(&mut ns) } {
                OK => i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
                _ => 0,
            }
        }

        fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
            let mut serialized = Vec::new();
            for (i, part) in path.iter().enumerate() {
                if i > 0 {
                    serialized.push(0);
                }
                serialized.extend_from_slice(part.as_bytes());
            }
            let (mut data, mut size) = (null_mut(), 0usize);
            // SAFETY: pointers are valid for the call; see `take` for the result buffer.
            let code = unsafe {
                proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size)
            };
            take(code, data, size)
        }

        fn plugin_config(&self) -> Result<Option<Vec<u8>>, HostError> {
            let (mut data, mut size) = (null_mut(), 0usize);
            // SAFETY: as above.
            let code = unsafe {
                proxy_get_buffer_bytes(
                    PLUGIN_CONFIGURATION,
                    0,
                    usize::MAX >> 1,
                    &mut data,
                    &mut size,
                )
            };
            take(code, data, size)
        }

        fn response_header_names(&self) -> Result<Vec<String>, HostError> {
            let (mut data, mut size) = (null_mut(), 0usize);
            // SAFETY: as above.
            let code =
                unsafe { proxy_get_header_map_pairs(RESPONSE_HEADERS, &mut data, &mut size) };
            Ok(take(code, data, size)?
                .map(|b| super::deserialize_map_keys(&b))
                .unwrap_or_default())
        }

        fn response_headers_raw(&self) -> Result<super::RawHeaders, HostError> {
            let (mut data, mut size) = (null_mut(), 0usize);
            // SAFETY: as above.
            let code =
                unsafe { proxy_get_header_map_pairs(RESPONSE_HEADERS, &mut data, &mut size) };
            Ok(take(code, data, size)?
                .map(|b| super::deserialize_map_raw(&b))
                .unwrap_or_default())
        }

        fn set_response_headers_raw(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), HostError> {
            let map = super::serialize_map_raw(pairs);
            // SAFETY: pointers valid for the call.
            status(unsafe { proxy_set_header_map_pairs(RESPONSE_HEADERS, map.as_ptr(), map.len()) })
        }

        fn request_header(&self, name: &str) -> Result<Option<String>, HostError> {
            let (mut data, mut size) = (null_mut(), 0usize);
            // SAFETY: as above.
            let code = unsafe {
                proxy_get_header_map_value(
                    REQUEST_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    &mut data,
                    &mut size,
                )
            };
            Ok(take(code, data, size)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
        }

        fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
            // SAFETY: pointers valid for the call.
            status(unsafe {
                proxy_replace_header_map_value(
                    RESPONSE_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                )
            })
        }

        fn add_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
            // SAFETY: pointers valid for the call.
            status(unsafe {
                proxy_add_header_map_value(
                    RESPONSE_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                )
            })
        }

        fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
            // SAFETY: pointers valid for the call.
            status(unsafe {
                proxy_remove_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len())
            })
        }

        fn send_response(
            &self,
            code: u32,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> Result<(), HostError> {
            let map = super::serialize_map(headers);
            let details = b"mtls_guard_rejected";
            // SAFETY: pointers valid for the call.
            status(unsafe {
                proxy_send_local_response(
                    code,
                    details.as_ptr(),
                    details.len(),
                    body.as_ptr(),
                    body.len(),
                    map.as_ptr(),
                    map.len(),
                    -1,
                )
            })
        }

        fn define_metric(&self, kind: Kind, name: &str) -> Result<u32, HostError> {
            let kind = match kind {
                Kind::Counter => 0,
                Kind::Gauge => 1,
            };
            let mut id = 0u32;
            // SAFETY: pointers valid for the call.
            status(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
            Ok(id)
        }

        fn increment_metric(&self, id: u32, by: i64) -> Result<(), HostError> {
            // SAFETY: plain values.
            status(unsafe { proxy_increment_metric(id, by) })
        }

        fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError> {
            // SAFETY: plain values.
            status(unsafe { proxy_record_metric(id, value) })
        }

        fn log_enabled(&self, level: Level) -> bool {
            let mut current = 0u32;
            // SAFETY: valid out-pointer for the call.
            match unsafe { proxy_get_log_level(&mut current) } {
                OK => level as u32 >= current,
                _ => true,
            }
        }

        fn log(&self, level: Level, message: &str) {
            // SAFETY: pointers valid for the call. A failing log call has nowhere to go.
            let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
        }
    }

    /// Logs panics at critical level before the VM aborts (panic = "abort").
    pub fn install_panic_hook() {
        std::panic::set_hook(Box::new(|info| {
            let msg = format!("mtls_guard {}: panic: {info}", env!("CARGO_PKG_VERSION"));
            // SAFETY: pointers valid for the call.
            let _ = unsafe { proxy_log(Level::Critical as u32, msg.as_ptr(), msg.len()) };
        }));
    }
}

#[cfg(target_os = "wasi")]
pub use abi::install_panic_hook;

/// A scriptable host for native tests of the filter's flow: set properties and headers,
/// then assert on what the filter did (response status, headers, metrics, logs).
pub mod testing {
    use super::{Host, HostError, Kind, Level};
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A local response: status, headers, body.
    pub type SentResponse = (u32, Vec<(String, String)>, Vec<u8>);

    #[derive(Default)]
    pub struct FakeHost {
        pub time: i64,
        pub properties: BTreeMap<String, Vec<u8>>,
        pub failing_properties: BTreeMap<String, u32>,
        pub config: Option<Vec<u8>>,
        pub request_headers: Vec<(String, String)>,
        pub response: RefCell<Vec<(String, String)>>,
        pub sent: RefCell<Option<SentResponse>>,
        pub metrics: RefCell<Vec<(String, Kind, i64)>>,
        pub logs: RefCell<Vec<(Level, String)>>,
        pub property_reads: RefCell<Vec<String>>,
        /// Makes `send_response` fail with this status (as ngx_wasm_module before 3.7).
        pub send_fails: Option<u32>,
    }

    impl FakeHost {
        pub fn new(time: i64) -> Self {
            FakeHost {
                time,
                ..Default::default()
            }
        }
        pub fn with_property(mut self, path: &str, value: &[u8]) -> Self {
            self.properties.insert(path.to_string(), value.to_vec());
            self
        }
        pub fn with_failing_property(mut self, path: &str, status: u32) -> Self {
            self.failing_properties.insert(path.to_string(), status);
            self
        }
        pub fn with_config(mut self, json: &str) -> Self {
            self.config = Some(json.as_bytes().to_vec());
            self
        }
        pub fn with_response_header(self, name: &str, value: &str) -> Self {
            self.response
                .borrow_mut()
                .push((name.to_string(), value.to_string()));
            self
        }
        pub fn with_request_header(mut self, name: &str, value: &str) -> Self {
            self.request_headers
                .push((name.to_string(), value.to_string()));
            self
        }
        pub fn response_header(&self, name: &str) -> Option<String> {
            self.response
                .borrow()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
        /// Current value of a metric by full name.
        pub fn metric(&self, name: &str) -> Option<i64> {
            self.metrics
                .borrow()
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, _, v)| *v)
        }
        pub fn logs_at_or_above(&self, level: Level) -> Vec<String> {
            self.logs
                .borrow()
                .iter()
                .filter(|(l, _)| *l >= level)
                .map(|(_, m)| m.clone())
                .collect()
        }
    }

    impl Host for FakeHost {
        fn now(&self) -> i64 {
            self.time
        }
        fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
            let key = path.join(".");
            self.property_reads.borrow_mut().push(key.clone());
            if let Some(code) = self.failing_properties.get(&key) {
                return Err(HostError(*code));
            }
            Ok(self.properties.get(&key).filter(|v| !v.is_empty()).cloned())
        }
        fn plugin_config(&self) -> Result<Option<Vec<u8>>, HostError> {
            Ok(self.config.clone())
        }
        fn response_header_names(&self) -> Result<Vec<String>, HostError> {
            Ok(self
                .response
                .borrow()
                .iter()
                .map(|(k, _)| k.clone())
                .collect())
        }
        fn response_headers_raw(&self) -> Result<super::RawHeaders, HostError> {
            Ok(self
                .response
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                .collect())
        }
        fn set_response_headers_raw(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), HostError> {
            *self.response.borrow_mut() = pairs
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect();
            Ok(())
        }
        fn request_header(&self, name: &str) -> Result<Option<String>, HostError> {
            Ok(self
                .request_headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()))
        }
        fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
            let mut r = self.response.borrow_mut();
            r.retain(|(k, _)| k != name);
            r.push((name.to_string(), value.to_string()));
            Ok(())
        }
        fn remove_response_header(&self, name: &str) -> Result<(), HostError> {
            self.response.borrow_mut().retain(|(k, _)| k != name);
            Ok(())
        }
        fn add_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
            self.response
                .borrow_mut()
                .push((name.to_string(), value.to_string()));
            Ok(())
        }
        fn send_response(
            &self,
            status: u32,
            headers: &[(&str, &str)],
            body: &[u8],
        ) -> Result<(), HostError> {
            if let Some(code) = self.send_fails {
                return Err(HostError(code));
            }
            let headers = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            *self.sent.borrow_mut() = Some((status, headers, body.to_vec()));
            Ok(())
        }
        fn define_metric(&self, kind: Kind, name: &str) -> Result<u32, HostError> {
            let mut m = self.metrics.borrow_mut();
            if let Some(i) = m.iter().position(|(n, _, _)| n == name) {
                return Ok(i as u32);
            }
            m.push((name.to_string(), kind, 0));
            Ok((m.len() - 1) as u32)
        }
        fn increment_metric(&self, id: u32, by: i64) -> Result<(), HostError> {
            let mut m = self.metrics.borrow_mut();
            match m.get_mut(id as usize) {
                // Kong traps on increment of a gauge; the fake refuses it loudly.
                Some((_, Kind::Gauge, _)) => Err(HostError(2)),
                Some((_, _, v)) => {
                    *v += by;
                    Ok(())
                }
                None => Err(HostError(1)),
            }
        }
        fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError> {
            let mut m = self.metrics.borrow_mut();
            match m.get_mut(id as usize) {
                Some((_, _, v)) => {
                    *v = i64::try_from(value).unwrap_or(i64::MAX);
                    Ok(())
                }
                None => Err(HostError(1)),
            }
        }
        fn log(&self, level: Level, message: &str) {
            self.logs.borrow_mut().push((level, message.to_string()));
        }
        fn log_enabled(&self, _level: Level) -> bool {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_round_trip_and_tolerate_garbage() {
        let pairs = [
            ("content-type", "text/plain"),
            ("x-upstream-verify", "SUCCESS"),
            ("", ""),
        ];
        let bytes = serialize_map(&pairs);
        let back = deserialize_map(&bytes);
        assert_eq!(
            back.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
            pairs
        );
        assert_eq!(
            deserialize_map_keys(&bytes),
            vec!["content-type", "x-upstream-verify", ""]
        );
        assert!(deserialize_map(&[]).is_empty());
        assert!(deserialize_map(&[255, 255, 255, 255, 1]).is_empty());
        assert_eq!(deserialize_map(&bytes[..bytes.len() - 3]).len(), 2);
    }
}
