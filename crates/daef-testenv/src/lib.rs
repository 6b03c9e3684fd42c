//! DAEF's test infrastructure: finds the Postgres and Redis servers the tests use (or starts
//! throwaway ones: a Postgres cluster for `cargo xtask`, a `redis-server` on demand) and gives
//! every test a schema or key prefix of its own, so backend tests run in parallel like any
//! others.
//!
//! A missing backend skips the tests that need it, saying so on stderr, unless
//! `DAEF_TEST_REQUIRE` (a comma-separated list such as `postgres,redis`) names it: then the
//! test fails. CI sets it, so nothing is silently skipped there.
//!
//! With the `tls` feature, [`tls`] makes a throwaway certificate authority and puts a
//! TLS-terminating proxy in front of a gateway, for tests of `https://` clients.
//!
//! This crate is used only by tests and xtask. It must never become a dependency of a shipped
//! crate, must not depend on `daef-store` or `daef-queue` (their tests would link two copies of
//! them), and only ever creates and drops its own `daef_test_*` schemas and `daef-test:*` keys.

pub mod postgres;
pub mod redis;
#[cfg(feature = "tls")]
pub mod tls;

/// The variable listing the backends that must be present (`postgres`, `redis`, …).
pub const REQUIRE_VAR: &str = "DAEF_TEST_REQUIRE";

/// Whether `DAEF_TEST_REQUIRE` names `backend`.
pub fn is_required(backend: &str) -> bool {
    std::env::var(REQUIRE_VAR).is_ok_and(|list| names(&list, backend))
}

fn names(list: &str, backend: &str) -> bool {
    list.split(',')
        .any(|item| item.trim().eq_ignore_ascii_case(backend))
}

/// Reports that `backend` is not available for the running test: panics when it is required,
/// otherwise prints that the test is skipped and why.
pub fn unavailable(backend: &str, why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    if is_required(backend) {
        panic!("{test}: {backend} is required ({REQUIRE_VAR} names it) but unavailable: {why}");
    }
    eprintln!(
        "skipped {test}: {backend} unavailable ({why}); set {REQUIRE_VAR}={backend} to fail instead"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_list_is_comma_separated_and_case_insensitive() {
        assert!(names("postgres", "postgres"));
        assert!(names("redis, Postgres", "postgres"));
        assert!(!names("redis", "postgres"));
        assert!(!names("", "postgres"));
        assert!(!names("postgresql", "postgres"));
    }
}
