//! A gateway on `127.0.0.1:<free port>`, stopped when dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use daef_auth::Authenticator;
use daef_client::{Client, ClientConfig};
use daef_core::{Engine, EngineConfig};
use daef_http::{App, EventStreamConfig, HttpConfig};
use daef_queue::{MemoryQueue, MemoryRateLimiter};
use daef_store::MemoryStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Tokens of the auth-on gateway.
pub(crate) const TOKENS: &str =
    "op:operator,wrk:worker,met:metrics,acme:tenant:acme,beta:tenant:beta";

#[derive(Debug)]
pub(crate) struct Gateway {
    pub(crate) base_url: String,
    /// Where it listens (plain HTTP).
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Gateway {
    /// Auth off.
    pub(crate) async fn start() -> Self {
        Self::with(None, HttpConfig::default()).await
    }

    /// Auth on with [`TOKENS`].
    pub(crate) async fn with_auth() -> Self {
        Self::with(Some(TOKENS), HttpConfig::default()).await
    }

    pub(crate) async fn with(tokens: Option<&str>, config: HttpConfig) -> Self {
        Self::with_events(tokens, config, EventStreamConfig::default()).await
    }

    pub(crate) async fn with_events(
        tokens: Option<&str>,
        config: HttpConfig,
        events: EventStreamConfig,
    ) -> Self {
        let engine = Engine::new(
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryQueue::new(5)),
            EngineConfig::default(),
        );
        let auth = Authenticator::from_env_value(tokens).expect("token list");
        let app = Arc::new(
            App::new(engine, auth, Arc::new(MemoryRateLimiter::new()), config)
                .with_event_streams(events),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let base_url = format!("http://{addr}");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(daef_http::serve(listener, app, async {
            let _ = stopped.await;
        }));
        Self {
            base_url,
            addr,
            stop: Some(stop),
        }
    }

    /// A client with this token.
    pub(crate) fn client(&self, token: Option<&str>) -> Client {
        Client::connect(&self.base_url, token).expect("client")
    }

    /// A client with this configuration, pointed here.
    pub(crate) fn client_with(&self, config: ClientConfig) -> Client {
        Client::new(ClientConfig {
            base_url: self.base_url.clone(),
            ..config
        })
        .expect("client")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
