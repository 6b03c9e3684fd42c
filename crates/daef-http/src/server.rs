//! The accept loop: HTTP/1.1 with keep-alive, one task per connection, and a graceful shutdown
//! that stops accepting, lets in-flight requests finish, and gives up after a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;

/// How long shutdown waits for in-flight requests.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes, then drains connections for at most
/// [`DRAIN_DEADLINE`].
pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
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
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(req, remote).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
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
    app.close_event_streams();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(DRAIN_DEADLINE) => tracing::warn!("drain deadline passed; closing remaining connections"),
    }
}
