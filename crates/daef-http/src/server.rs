//! The accept loop: HTTP/1.1 with keep-alive, one task per connection, and a graceful shutdown
//! that stops accepting, lets in-flight requests finish, and gives up after a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;
use crate::response::Body;

/// What the accept loop serves: the v1 API itself, or the API with more in front of it (the
/// gateway puts the web console there).
pub trait Service: Send + Sync + 'static {
    /// Serves one request.
    fn call(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// The API underneath, whose event streams end when the server stops accepting.
    fn app(&self) -> &App;
}

impl Service for App {
    fn call(
        &self,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> impl Future<Output = Response<Body>> + Send {
        self.handle(req, remote)
    }

    fn app(&self) -> &App {
        self
    }
}

/// How long shutdown waits for in-flight requests.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Serves `service` on `listener` until `shutdown` completes, then drains connections for at
/// most [`DRAIN_DEADLINE`].
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Usually EMFILE or a reset before accept; back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let handler = service_fn(move |req| {
            let service = service.clone();
            async move { Ok::<_, Infallible>(service.call(req, remote).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), handler));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %remote, "connection ended with an error");
            }
        });
    }
    // Closed now, so new connections are refused at once rather than left in the backlog
    // until the drain below ends.
    drop(listener);
    tracing::info!("shutting down: no longer accepting connections");
    // Event streams never end on their own while their job runs; end them so the drain below
    // only waits for ordinary requests.
    service.app().close_event_streams();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_DEADLINE) => tracing::warn!("drain deadline passed; closing remaining connections"),
    }
}
