//! The conformance suites run against each backend, one module per backend (matklad's single
//! integration-test binary).

mod memory;
mod postgres;
mod redis;
