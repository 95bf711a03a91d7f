//! mtls-guard: judges the certificate an upstream presented in the gateway's mutual-TLS
//! handshake, per route, and makes the result visible.
//!
//! `cert`, `dn`, `config` and `policy` are pure and host-independent; the proxy-wasm
//! entry point lives in `filter` and `host` (wasm32 only for the host calls).

pub mod cert;
pub mod config;
pub mod dn;
pub mod policy;
pub mod timefmt;
