//! DAEF's web console: server-rendered HTML pages at `/console/` over the v1 API, served by the
//! gateway's own HTTP server (no extra process, no Node.js, nothing fetched from a CDN).
//!
//! [`Console`] is a [`Service`] that answers `/console…` itself and hands every other request
//! to the API ([`App`]). Every read and every action a page offers goes through the same code
//! the API runs: actions (cancel, dead-letter dry runs and requeues, audit reads) are API
//! requests made in-process with the session's token, so scopes, tenant checks, admin guards,
//! rate limits and audit events are the API's own, with the same actor; the pages that page
//! through millions of jobs call the engine's list with keyset paging and capped counts, after
//! the same scope checks as `GET /v1/jobs`.
//!
//! This crate must never decide a lifecycle rule or an admin guard itself, never write to a
//! store except through those API requests, never put a token anywhere but the `HttpOnly`
//! session cookie, and never accept a state-changing request whose `Origin` is not the
//! console's own.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use daef_http::response::Body;
use daef_http::{App, Service};
use hyper::body::{Body as HttpBody, Incoming};
use hyper::{Request, Response};

mod assets;
mod dag;
mod inproc;
mod pages;
mod reply;
mod sampler;
mod session;

pub use sampler::Throughput;

/// Where the console lives.
pub const PREFIX: &str = "/console";

/// The gateway's HTTP service: the console at [`PREFIX`], the v1 API everywhere else.
#[derive(Debug)]
pub struct Console {
    app: Arc<App>,
    throughput: Arc<Throughput>,
}

impl Console {
    /// The console in front of `app`. Starts the sampler behind the overview's throughput
    /// sparkline, so it must be called inside a Tokio runtime.
    pub fn new(app: Arc<App>) -> Self {
        let throughput = Throughput::start(app.clone());
        Self { app, throughput }
    }

    /// Serves one request: the console's pages under [`PREFIX`], the API elsewhere.
    pub async fn handle<B>(&self, req: Request<B>, remote: SocketAddr) -> Response<Body>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = req.uri().path();
        if path == PREFIX || path.starts_with("/console/") {
            pages::serve(&self.app, &self.throughput, req, remote).await
        } else {
            self.app.handle(req, remote).await
        }
    }
}

impl Service for Console {
    fn call(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send {
        self.handle(req, remote)
    }

    fn app(&self) -> &App {
        &self.app
    }
}
