//! `dead-letter list` and `audit list|export|verify` (`dead-letter requeue` is in `requeue`).

use std::io::Write;

use anyhow::Context;
use daef_client::audit::{self, ChainCheck};
use daef_client::model::AuditFilter;
use daef_core::audit::AuditEvent;
use serde_json::json;

use crate::Ctx;
use crate::cli::{AuditExport, AuditFilters, AuditList};
use crate::explain::exit;
use crate::output::{self, Table, short, time};

pub(crate) async fn dead_letters(ctx: &Ctx, limit: Option<u64>) -> anyhow::Result<u8> {
    let dead = ctx.client.dead_letters(limit).await?;
    if ctx.json {
        output::json(&dead)?;
        return Ok(exit::OK);
    }
    let mut table = Table::new(&["JOB", "TASK", "TENANT", "ATTEMPT", "DEAD SINCE", "ERROR"]);
    for d in &dead {
        table.row(vec![
            d.job_id.to_string(),
            d.task_id.clone(),
            d.tenant.clone(),
            d.attempt.to_string(),
            time(d.dead_lettered_at),
            short(&d.error, 100),
        ]);
    }
    table.print("the dead-letter queue is empty");
    if let Some(d) = dead.first() {
        println!(
            "\nrequeue with: daefctl dead-letter requeue {}/{} [--dry-run]",
            d.job_id, d.task_id
        );
    }
    Ok(exit::OK)
}

fn filter(f: AuditFilters, limit: Option<u64>, offset: Option<u64>) -> AuditFilter {
    AuditFilter {
        action: f.action,
        actor: f.actor,
        tenant: f.tenant,
        result: f.result,
        from: f.from,
        to: f.to,
        limit,
        offset,
    }
}

pub(crate) async fn audit_list(ctx: &Ctx, args: AuditList) -> anyhow::Result<u8> {
    let page = ctx
        .client
        .audit(&filter(args.filters, args.limit, args.offset))
        .await?;
    if ctx.json {
        output::json(&page)?;
        return Ok(exit::OK);
    }
    let mut table = Table::new(&[
        "ID",
        "TIME",
        "ACTION",
        "ACTOR",
        "TENANT",
        "RESULT",
        "REQUESTED",
        "RESOURCE",
        "DETAILS",
    ]);
    for e in &page.events {
        table.row(vec![
            e.id.to_string(),
            time(e.created_at),
            e.action.clone(),
            e.actor.clone(),
            e.tenant.clone(),
            e.result.clone(),
            e.requested.to_string(),
            e.resource.clone(),
            short(&e.details, 80),
        ]);
    }
    table.print("no audit events");
    Ok(exit::OK)
}

pub(crate) async fn audit_export(ctx: &Ctx, args: AuditExport) -> anyhow::Result<u8> {
    let events = audit::fetch_all(&ctx.client, &filter(args.filters, None, None)).await?;
    let body = if args.csv {
        audit::to_csv(&events)
    } else {
        let mut text = serde_json::to_string_pretty(&events)?;
        text.push('\n');
        text
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, body)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} events to {}", events.len(), path.display());
        }
        None => std::io::stdout().lock().write_all(body.as_bytes())?,
    }
    Ok(exit::OK)
}

pub(crate) async fn audit_verify(ctx: &Ctx) -> anyhow::Result<u8> {
    let check = audit::check_chain(&ctx.client).await?;
    let code = if check.ok() && check.agree() {
        exit::OK
    } else {
        exit::AUDIT_BROKEN
    };
    if ctx.json {
        output::json(
            &json!({"ok": check.ok(), "agree": check.agree(), "local": check.local, "server": check.server,
            "first_bad_event": check.first_bad_event}),
        )?;
    } else {
        print!("{}", verdict(&check));
    }
    Ok(code)
}

/// The verdict in words.
fn verdict(check: &ChainCheck) -> String {
    let mut out = String::new();
    let (local, server) = (&check.local, &check.server);
    if local.ok {
        out.push_str(&format!(
            "audit chain OK: {} events re-verified here from the API output; head {}\n",
            local.checked,
            short_hash(&local.head_hash)
        ));
    } else {
        let id = local.first_bad_id.unwrap_or_default();
        out.push_str(&format!(
            "audit chain BROKEN at event {id} (re-verified here from the API output)\n"
        ));
        match &check.first_bad_event {
            Some(e) => out.push_str(&format!("  first bad event: {}\n", describe_event(e))),
            None => out.push_str(&format!("  event {id} is missing from the log\n")),
        }
        out.push_str(&format!(
            "  events 1..{} are intact (head {})\n",
            id.saturating_sub(1),
            short_hash(&local.head_hash)
        ));
    }
    match (server.ok, check.agree()) {
        (true, true) => out.push_str(&format!(
            "gateway agrees: {} events checked\n",
            server.checked
        )),
        (false, true) => out.push_str(&format!(
            "gateway agrees: broken at event {}\n",
            server
                .first_bad_id
                .map_or_else(|| "?".to_owned(), |id| id.to_string())
        )),
        (true, false) => out.push_str(
            "gateway DISAGREES: it says the chain is intact; the log it serves does not verify\n",
        ),
        (false, false) => out.push_str(&format!(
            "gateway DISAGREES: it says broken at event {}\n",
            server
                .first_bad_id
                .map_or_else(|| "?".to_owned(), |id| id.to_string())
        )),
    }
    out
}

fn describe_event(e: &AuditEvent) -> String {
    format!(
        "id {} at {} {} by {} ({}) on {}: {}",
        e.id,
        e.created_at,
        e.action,
        e.actor,
        e.result,
        e.resource,
        short(&e.details, 80)
    )
}

fn short_hash(hash: &str) -> String {
    if hash.is_empty() {
        "(empty log)".to_owned()
    } else {
        hash.chars().take(16).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daef_client::model::ServerVerification;
    use daef_core::audit::Verification;

    fn check(local_bad: Option<u64>, server_bad: Option<u64>) -> ChainCheck {
        ChainCheck {
            local: Verification {
                ok: local_bad.is_none(),
                checked: local_bad.unwrap_or(9),
                head_hash: "ab".repeat(32),
                first_bad_id: local_bad,
            },
            server: ServerVerification {
                ok: server_bad.is_none(),
                checked: server_bad.unwrap_or(9),
                head_hash: "ab".repeat(32),
                first_bad_id: server_bad,
            },
            first_bad_event: None,
        }
    }

    #[test]
    fn verdicts_name_the_event_and_the_gateways_view() {
        let ok = verdict(&check(None, None));
        assert!(ok.starts_with("audit chain OK: 9 events"), "{ok}");
        assert!(ok.contains("gateway agrees: 9 events checked"), "{ok}");
        let broken = verdict(&check(Some(4), Some(4)));
        assert!(
            broken.starts_with("audit chain BROKEN at event 4"),
            "{broken}"
        );
        assert!(broken.contains("events 1..3 are intact"), "{broken}");
        assert!(
            broken.contains("gateway agrees: broken at event 4"),
            "{broken}"
        );
        let lying = verdict(&check(Some(4), None));
        assert!(lying.contains("gateway DISAGREES"), "{lying}");
    }
}
