//! RFC 4514 text -> `dn::parse` -> `render` -> `parse` again: the rendered form (what the
//! subject/issuer headers carry and what operators paste into configs) is printable ASCII,
//! parses back to the same name, and renders to itself.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mtls_guard::dn;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let name = match dn::parse(input) {
        Ok(name) => name,
        Err(e) => {
            // Config errors quote this message (with the JSON path) in the host's log.
            let _ = e.to_string();
            return;
        }
    };
    let rendered = name.render();
    common::assert_header_value("rendered DN", &rendered);
    let again = match dn::parse(&rendered) {
        Ok(again) => again,
        Err(e) => panic!("render of {input:?} is {rendered:?}, which does not parse: {e}"),
    };
    assert_eq!(
        again, name,
        "{input:?} rendered as {rendered:?} parses to another name"
    );
    assert!(
        again.matches(&name),
        "{input:?} does not match its own rendering"
    );
    assert_eq!(
        again.render(),
        rendered,
        "rendering of {input:?} is not stable"
    );
    assert_eq!(name.to_string(), rendered);
});
