//! Checks shared by the fuzz targets.
#![allow(dead_code)]

use std::sync::LazyLock;

use mtls_guard::cert::{self, PeerCert};

/// The instant every target evaluates at: inside the fixtures' 2026..2028 window.
pub const NOW: i64 = 1_800_000_000;

pub const GOOD_PEM: &[u8] = include_bytes!("../../../tests/fixtures/ec256_spiffe.pem");
pub const IMPOSTOR_PEM: &[u8] = include_bytes!("../../../tests/fixtures/impostor.pem");
pub const MANYSANS_PEM: &[u8] = include_bytes!("../../../tests/fixtures/manysans.pem");
pub const MULTIRDN_PEM: &[u8] = include_bytes!("../../../tests/fixtures/multirdn.pem");

fn fixture(pem: &[u8]) -> PeerCert {
    match cert::parse(pem) {
        Ok(c) => c,
        Err(e) => panic!("fixture certificate does not parse: {e}"),
    }
}

/// Fixed certificates a fuzzed policy is evaluated against.
pub static FIXTURES: LazyLock<Vec<PeerCert>> = LazyLock::new(|| {
    [GOOD_PEM, IMPOSTOR_PEM, MANYSANS_PEM, MULTIRDN_PEM]
        .into_iter()
        .map(fixture)
        .collect()
});

/// What an HTTP header value may carry from us: printable ASCII only, so no CR, LF or
/// NUL (RFC 9110 section 5.5 allows more, but nothing else is safe through every proxy).
pub fn assert_header_value(name: &str, value: &str) {
    assert!(
        value.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "header {name} carries a byte outside printable ASCII: {value:?}"
    );
}

/// Bidirectional formatting characters (Trojan Source, CVE-2021-42574): not `is_control`
/// but they reorder what an operator reads in a log viewer.
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A log line must not carry control characters (C0, DEL, C1) or bidi marks: a raw
/// newline forges a log line, an escape sequence rewrites the terminal.
pub fn assert_log_line(line: &str) {
    assert!(
        !line.chars().any(|c| c.is_control() || is_bidi(c)),
        "log line carries a control or bidi character: {line:?}"
    );
}
