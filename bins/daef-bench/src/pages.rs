//! Server time of the web console's pages with the run's history stored (`--console-pages`):
//! each page fetched `rounds` times over a fresh loopback connection, timed from the request's
//! first byte to the response's last. On loopback that is the gateway's own time plus well
//! under a tenth of a millisecond.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use daef_client::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::percentile;

/// One page's timings.
#[derive(Debug)]
pub(crate) struct PageTiming {
    pub(crate) page: String,
    pub(crate) median: Duration,
    pub(crate) p90: Duration,
    pub(crate) max: Duration,
    pub(crate) bytes: usize,
}

/// Times each console page. The gateway must run with auth off (as `--spawn` starts it).
pub(crate) async fn time_console(
    client: &Client,
    url: &str,
    rounds: usize,
) -> anyhow::Result<Vec<PageTiming>> {
    let addr = url
        .strip_prefix("http://")
        .context("--console-pages needs an http:// gateway")?
        .trim_end_matches('/')
        .to_owned();
    let newest = client
        .list_jobs(&daef_client::model::JobFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await?
        .jobs
        .into_iter()
        .next()
        .context("no job stored")?
        .job_id;
    let newest = newest.as_str();
    let pages = [
        "/console/".to_owned(),
        "/console/jobs".to_owned(),
        "/console/jobs?status=Completed".to_owned(),
        format!("/console/jobs?before={newest}"),
        format!("/console/jobs?status=Completed&before={newest}"),
        format!("/console/jobs/{newest}"),
        "/console/workers".to_owned(),
        "/console/dead-letters".to_owned(),
        "/console/audit".to_owned(),
    ];
    let mut timings = Vec::new();
    for page in pages {
        let mut took = Vec::with_capacity(rounds);
        let mut bytes = 0;
        for _ in 0..rounds {
            let (elapsed, size) = get(&addr, &page).await?;
            took.push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
            bytes = size;
        }
        took.sort_unstable();
        let micros = |us: u32| Duration::from_micros(u64::from(us));
        timings.push(PageTiming {
            median: micros(percentile(&took, 50.0)),
            p90: micros(percentile(&took, 90.0)),
            max: micros(took.last().copied().unwrap_or_default()),
            bytes,
            page,
        });
    }
    Ok(timings)
}

async fn get(addr: &str, path: &str) -> anyhow::Result<(Duration, usize)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let started = Instant::now();
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let elapsed = started.elapsed();
    if !response.starts_with(b"HTTP/1.1 200") {
        let head = String::from_utf8_lossy(&response[..response.len().min(200)]).into_owned();
        bail!("GET {path}: {head}");
    }
    Ok((elapsed, response.len()))
}

/// The timings as a Markdown table.
pub(crate) fn table(timings: &[PageTiming], stored: u64) -> String {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    let mut out = format!(
        "\nconsole pages with {stored} tasks stored (ms, fresh connection per request):\n\n\
         | Page | Median | p90 | Max | Bytes |\n|---|---|---|---|---|\n"
    );
    for t in timings {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            t.page,
            ms(t.median),
            ms(t.p90),
            ms(t.max),
            t.bytes
        ));
    }
    out
}
