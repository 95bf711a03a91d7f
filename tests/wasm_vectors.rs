//! The same policy vectors, inside a WebAssembly engine (wasm32-unknown-unknown under
//! Node.js): the filter runs 32-bit, so its decisions must not differ there.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg(target_arch = "wasm32")]

mod common {
    pub mod vectors;
}

use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn policy_vectors_give_expected_verdicts_in_wasm() {
    assert!(common::vectors::run_all() >= 19);
}

#[wasm_bindgen_test]
fn config_errors_are_the_same_in_wasm() {
    let e =
        mtls_guard::config::parse(br#"{"pins":[{"id":"a","spki_sha256":"AAAA"}]}"#, 0).unwrap_err();
    assert_eq!(e.path, "$.pins[0].spki_sha256");
}
