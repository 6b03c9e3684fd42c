//! The HTTP round-trip ceiling: the benchmark's own client against a minimal hyper server (a
//! separate process, like the gateway) that answers every request with a fixed JSON body. No
//! gateway can serve more requests per second than this on the same machine.

use std::convert::Infallible;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use daef_client::Client;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::stats::{Latency, Samples};

/// The body every request gets (what `GET /healthz` answers).
const BODY: &[u8] = br#"{"status":"ok"}"#;

/// Serves the fixed body on `listen` until the process is killed, with the gateway's HTTP/1.1
/// settings (keep-alive, no Nagle); prints `listening <addr>` once bound.
pub(crate) async fn serve_fixed(listen: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("listening {}", listener.local_addr()?);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = service_fn(|_req| async {
            let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            Ok::<_, Infallible>(response)
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// What the ceiling run measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct CeilingResult {
    pub(crate) requests: u64,
    pub(crate) concurrency: usize,
    pub(crate) elapsed: Duration,
    pub(crate) latency: Latency,
    pub(crate) errors: u64,
}

impl CeilingResult {
    pub(crate) fn requests_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs <= 0.0 {
            0.0
        } else {
            self.requests as f64 / secs
        }
    }
}

/// Starts `exe fixed-server` and drives it with `concurrency` loops for `requests` requests.
pub(crate) async fn measure(requests: u64, concurrency: usize) -> anyhow::Result<CeilingResult> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut child = Command::new(exe)
        .args(["fixed-server", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the fixed-body server")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await?;
    let Some(addr) = line.trim().strip_prefix("listening ") else {
        bail!("the fixed-body server said {line:?} instead of its address");
    };
    let client = Client::connect(&format!("http://{addr}"), None)?;
    // Warm up: open the connections and fault the code in.
    drive(&client, (requests / 20).max(100), concurrency).await;
    let result = drive(&client, requests, concurrency).await;
    child.kill().await?;
    Ok(result)
}

async fn drive(client: &Client, requests: u64, concurrency: usize) -> CeilingResult {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut loops = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let next = Arc::clone(&next);
        let errors = Arc::clone(&errors);
        loops.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let t = Instant::now();
                match client.health().await {
                    Ok(_) => samples.record(t.elapsed()),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            samples
        }));
    }
    let mut all = Samples::default();
    for l in loops {
        if let Ok(samples) = l.await {
            all.merge(samples);
        }
    }
    let elapsed = started.elapsed();
    CeilingResult {
        requests,
        concurrency,
        elapsed,
        latency: all.summary(),
        errors: errors.load(Ordering::Relaxed),
    }
}
