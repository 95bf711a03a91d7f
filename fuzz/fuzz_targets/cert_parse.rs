//! Certificate bytes (PEM, URL-encoded PEM or DER) -> `cert::parse`, then everything
//! the filter and the CLI derive from the facts: header values, the `inspect` JSON.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mtls_guard::{cert, dn, timefmt};

fuzz_target!(|data: &[u8]| {
    let der = cert::to_der(data);
    let parsed = cert::parse(data);
    // `parse` is `to_der` then `parse_der`: they must agree on what is refused early.
    if let Err(e) = &der {
        assert_eq!(parsed.as_ref().err(), Some(e));
    }
    let c = match parsed {
        Ok(c) => c,
        Err(e) => {
            // The error is logged by the filter and printed by the CLI.
            common::assert_log_line(&e.to_string());
            return;
        }
    };

    // The values stamped as x-upstream-* headers (filter::CertFacts and the stamping).
    let not_after = timefmt::format_rfc3339(c.not_after);
    let not_before = timefmt::format_rfc3339(c.not_before);
    for (name, value) in [
        ("cert-subject", c.subject_text.as_str()),
        ("cert-issuer", c.issuer_text.as_str()),
        ("cert-sha256", &c.sha256_hex()),
        ("cert-spki-sha256", &c.spki_pin()),
        ("cert-serial", &c.serial_hex()),
        ("cert-not-after", &not_after),
        ("not-before", &not_before),
        ("key", &c.key),
    ] {
        common::assert_header_value(name, value);
    }
    assert_eq!(c.subject_text, c.subject.render());
    assert_eq!(c.issuer_text, c.issuer.render());
    // Operators paste the header value into `subject.dn`/`issuer.dn`: it must parse back
    // to a name that matches the certificate's.
    for (what, name, text) in [
        ("subject", &c.subject, &c.subject_text),
        ("issuer", &c.issuer, &c.issuer_text),
    ] {
        if name.rdns.is_empty() {
            continue;
        }
        match dn::parse(text) {
            Ok(back) => assert!(
                back.matches(name),
                "{what} {text:?} parses to a name that does not match: {back:?} vs {name:?}"
            ),
            Err(e) => panic!("{what} {text:?} does not parse: {e}"),
        }
    }

    // A SPIFFE ID is only reported when it is the single, well-formed spiffe:// URI.
    if let Some(id) = &c.spiffe_id {
        assert!(cert::spiffe_parts(id).is_some(), "{id:?}");
        assert!(c.san.uri.contains(id));
    }
    assert!(!c.serial.is_empty());

    // The `inspect` output.
    let json = c.to_json();
    let text = serde_json::to_string(&json).unwrap_or_default();
    assert!(!text.is_empty());

    // Dates the header shows must read back as the same instant.
    for (secs, shown) in [(c.not_after, &not_after), (c.not_before, &not_before)] {
        if let Some(back) = timefmt::parse_rfc3339(shown) {
            assert_eq!(back, secs, "{shown}");
        }
    }

    // Names derived from the certificate go through the same matcher as configs.
    let _ = c.subject.matches(&c.issuer);
    for oid in ["2.5.4.3", "2.5.4.10"] {
        for v in c.subject.values_of(oid) {
            if let dn::AttrValue::Text(t) = v {
                let _ = dn::glob_match(&dn::fold("*a*b*"), t);
            }
        }
    }
});
