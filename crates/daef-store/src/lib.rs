//! DAEF's store adapters: [`MemoryStore`] (the default; nothing to install) and, behind the
//! `postgres` feature, `PostgresStore` with its migration runner.
//!
//! Every adapter implements `daef_core::ports::Store` and must pass the store suite of
//! `daef-conformance`. An adapter never decides a lifecycle rule on its own: the rules are
//! `daef_core::transition`'s, and an adapter only applies them atomically. The postgres module is
//! the only place in the workspace that speaks SQL.

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
