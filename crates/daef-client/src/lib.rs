//! A typed async client for DAEF's HTTP API (v1): one [`Client`] method per route, request and
//! response bodies as [`model`] types, the gateway's statuses as [`Error`] variants that keep
//! its `{"error": …}` message, and a job's Server-Sent Events as [`JobEvent`]s. [`audit`] reads
//! the whole audit log and re-verifies its hash chain on this side of the wire. It is the one
//! HTTP client of the workspace: the reference worker, `daefctl`, the end-to-end tests and load
//! generators all go through it.
//!
//! It speaks HTTP/1.1 through hyper-util's pooled client, over plain TCP for `http://` URLs and
//! over TLS (rustls on the ring provider, through hyper-rustls) for `https://` ones — how a
//! gateway behind a TLS ingress is reached. TLS trusts the platform's root certificates plus
//! [`ClientConfig::ca_file`], a private CA. A token bound for another machine over plain
//! `http://` is flagged by [`ClientConfig::plain_http_token_warning`] for the program to show.
//!
//! It must never retry a request on its own (whether a retry is safe depends on the call: the
//! caller decides, helped by [`Error::is_transient`]), never log or print the token, and never
//! decide a lifecycle rule — it reports what the gateway answered.

pub mod audit;
mod client;
pub mod error;
pub mod event;
pub mod model;
pub mod settings;
mod tls;

pub use client::{
    AUDIT_PAGE_MAX, Client, ClientConfig, DEFAULT_BASE_URL, DEFAULT_STREAM_IDLE_TIMEOUT,
    DEFAULT_TIMEOUT, SUBMIT_ATTEMPTS,
};
pub use error::{Error, Result};
pub use event::{JobEvent, JobEvents};
