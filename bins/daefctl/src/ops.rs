//! `metrics` and `health`.

use crate::Ctx;
use crate::cli::MetricsArgs;
use crate::explain::exit;
use crate::output::{self, Table};

pub(crate) async fn metrics(ctx: &Ctx, args: MetricsArgs) -> anyhow::Result<u8> {
    let wanted = |name: &str| args.filter.as_deref().is_none_or(|f| name.contains(f));
    if args.prometheus {
        let text = ctx.client.metrics_prometheus().await?;
        for line in text.lines() {
            // Keep a series and its `# HELP`/`# TYPE` lines when the name matches.
            let name = line
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            let name = name
                .split(|c: char| c == '{' || c.is_whitespace())
                .next()
                .unwrap_or_default();
            if wanted(name) {
                println!("{line}");
            }
        }
        return Ok(exit::OK);
    }
    let mut snapshot = ctx.client.metrics().await?;
    snapshot.counters.retain(|s| wanted(&s.name));
    snapshot.gauges.retain(|s| wanted(&s.name));
    snapshot.histograms.retain(|s| wanted(&s.name));
    if ctx.json {
        output::json(&snapshot)?;
        return Ok(exit::OK);
    }
    let labels = |l: &std::collections::BTreeMap<String, String>| {
        if l.is_empty() {
            "-".to_owned()
        } else {
            l.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let mut table = Table::new(&["KIND", "NAME", "LABELS", "VALUE"]);
    for (kind, samples) in [("counter", &snapshot.counters), ("gauge", &snapshot.gauges)] {
        for s in samples {
            table.row(vec![
                kind.to_owned(),
                s.name.clone(),
                labels(&s.labels),
                number(s.value),
            ]);
        }
    }
    for h in &snapshot.histograms {
        let mean = if h.count > 0 {
            h.sum / h.count as f64
        } else {
            0.0
        };
        table.row(vec![
            "histogram".to_owned(),
            h.name.clone(),
            labels(&h.labels),
            format!(
                "count {} · sum {} · mean {}",
                h.count,
                number(h.sum),
                number(mean)
            ),
        ]);
    }
    table.print("no metrics match");
    Ok(exit::OK)
}

/// Integers without a fraction, others with up to six digits.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.6}").trim_end_matches('0').to_owned()
    }
}

pub(crate) async fn health(ctx: &Ctx) -> anyhow::Result<u8> {
    let health = ctx.client.health().await?;
    let ready = ctx.client.ready().await;
    if ctx.json {
        let ready_json = match &ready {
            Ok(r) => serde_json::to_value(r)?,
            Err(e) => serde_json::json!({"status": "not ready", "error": e.to_string()}),
        };
        output::json(&serde_json::json!({"health": health, "ready": ready_json}))?;
    } else {
        match &ready {
            Ok(r) => println!(
                "{}: up, ready (store {}, queue {})",
                ctx.client.base_url(),
                r.store.as_deref().unwrap_or("?"),
                r.queue.as_deref().unwrap_or("?")
            ),
            Err(e) => println!("{}: up, NOT ready: {e}", ctx.client.base_url()),
        }
    }
    Ok(if ready.is_ok() { exit::OK } else { exit::ERROR })
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_print_plainly() {
        assert_eq!(super::number(3.0), "3");
        assert_eq!(super::number(0.25), "0.25");
        assert_eq!(super::number(1.0 / 3.0), "0.333333");
    }
}
