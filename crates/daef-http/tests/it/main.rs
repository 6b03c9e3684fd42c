//! The HTTP test suite of `daef-http`: one integration-test binary (matklad's layout). Every
//! test drives an [`daef_http::App`] over the memory adapters through `App::handle`, without
//! sockets, except the smoke test in `server`. Time-dependent behaviour (lease expiry, orphan
//! requeue) is driven by calling the reconciler with an explicit, advanced timestamp.

mod admin;
mod audit;
mod auth;
mod bad_input;
mod concurrency;
mod events;
mod fault;
mod harness;
mod jobs;
mod long_poll;
mod metrics;
mod reports;
mod routes;
mod schedules;
mod server;
mod workers;
