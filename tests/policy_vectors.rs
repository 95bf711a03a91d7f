//! Policy vectors over OpenSSL-made certificates, natively.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod common {
    pub mod vectors;
}

#[test]
fn policy_vectors_give_expected_verdicts() {
    assert!(common::vectors::run_all() >= 19);
}
