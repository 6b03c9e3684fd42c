//! What went wrong, in words, and what to do next; and the process exit codes.

use daef_client::Error;

/// Exit codes (documented in docs/cli.md).
pub(crate) mod exit {
    /// The command did what was asked.
    pub(crate) const OK: u8 = 0;
    /// The gateway refused the request or could not be reached.
    pub(crate) const ERROR: u8 = 1;
    /// `submit --wait`: the job ended `Failed` or `Canceled`.
    pub(crate) const JOB_NOT_COMPLETED: u8 = 3;
    /// `audit verify`: the chain is broken, or the gateway's verdict differs from ours.
    pub(crate) const AUDIT_BROKEN: u8 = 4;
    /// `submit --wait --wait-timeout`: the job was still running when the wait ran out.
    pub(crate) const WAIT_TIMED_OUT: u8 = 5;
}

/// A failure explained: what happened, and a hint at what to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Explained {
    pub(crate) what: String,
    pub(crate) hint: String,
}

/// Explains a client error for someone at a terminal talking to `url`.
pub(crate) fn explain(err: &Error, url: &str) -> Explained {
    let (what, hint) = match err {
        Error::Unauthorized(msg) => (
            format!("401 unauthorized: {msg}"),
            "the gateway has auth on: pass --token or set DAEF_API_TOKEN to one of its DAEF_API_TOKENS".to_owned(),
        ),
        Error::Forbidden(msg) if msg.contains("tenant") => (
            format!("403 forbidden: {msg}"),
            "this token may not act for that tenant: use that tenant's token or an operator token".to_owned(),
        ),
        Error::Forbidden(msg) => (
            format!("403 forbidden: {msg}"),
            "this token lacks the scope: dead-letter and audit need `operator`; metrics needs `metrics` or `operator`; \
             jobs and schedules need `tenant:<id>` or `operator`"
                .to_owned(),
        ),
        Error::NotFound(msg) if msg == "not found" => (
            format!("404 not found: {msg}"),
            format!("the gateway at {url} does not serve this route: check --url, or the gateway is older than this daefctl"),
        ),
        Error::NotFound(msg) if msg.starts_with("schedule") => (
            format!("404 not found: {msg}"),
            "check the id: `daefctl schedule list` lists schedules (a tenant token sees only its own \
             tenant's; an in-memory gateway forgets them when it restarts)"
                .to_owned(),
        ),
        Error::NotFound(msg) => (
            format!("404 not found: {msg}"),
            "check the id: `daefctl jobs` lists jobs, `daefctl tasks JOB_ID` a job's tasks (a tenant token sees only \
             its own tenant's jobs; an in-memory gateway forgets everything when it restarts)"
                .to_owned(),
        ),
        Error::Conflict(msg) if msg.contains("X-DAEF-Tenant") => (
            format!("409 conflict: {msg}"),
            "schedule ids are per tenant: name the tenant with --as-tenant TENANT (or DAEF_TENANT)"
                .to_owned(),
        ),
        Error::Conflict(msg) if msg.starts_with("schedule ") => (
            format!("409 conflict: {msg}"),
            "this tenant has a schedule of this id: `daefctl schedule show ID` shows it; to change \
             it, delete it and create it again"
                .to_owned(),
        ),
        Error::Conflict(msg) => (
            format!("409 conflict: {msg}"),
            "the resource changed state meanwhile: look again with `daefctl status JOB_ID` and retry if it still makes sense"
                .to_owned(),
        ),
        Error::RateLimited { retry_after_secs, msg } => (
            format!("429 rate limited: {msg}"),
            match retry_after_secs {
                Some(secs) => format!(
                    "retry in {secs}s; requeues are limited per operator per minute (the gateway's \
                     DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN), so batch tasks into one requeue"
                ),
                None => "wait a minute and retry; batch tasks into one requeue".to_owned(),
            },
        ),
        Error::BadRequest(msg) if msg.contains("confirmation token") => (
            format!("400 bad request: {msg}"),
            "this batch is large enough to need confirmation: pass --confirm TOKEN (the gateway's \
             DAEF_ADMIN_REQUEUE_CONFIRM_TOKEN), or requeue fewer tasks at once (with --all or \
             --job, a --batch-size below the gateway's DAEF_ADMIN_REQUEUE_CONFIRM_THRESHOLD)"
                .to_owned(),
        ),
        Error::BadRequest(msg) if msg.contains("max batch size") => (
            format!("400 bad request: {msg}"),
            "requeue fewer tasks at once (the gateway's DAEF_ADMIN_REQUEUE_MAX_BATCH); --all and --job \
             send batches that fit"
                .to_owned(),
        ),
        Error::BadRequest(msg) => (format!("400 bad request: {msg}"), "fix the named field or option and retry".to_owned()),
        Error::PayloadTooLarge(msg) => (
            format!("413 payload too large: {msg}"),
            "the request is over the gateway's DAEF_MAX_BODY_BYTES: send a smaller job or raise the limit".to_owned(),
        ),
        Error::MethodNotAllowed(msg) => (
            format!("405 method not allowed: {msg}"),
            "this daefctl and the gateway disagree about the API: use matching versions".to_owned(),
        ),
        Error::Unavailable(msg) => (
            format!("503 unavailable: {msg}"),
            "a backend of the gateway is down: retry shortly; `daefctl health` shows which".to_owned(),
        ),
        Error::Server { status, msg } => (
            format!("{status} server error: {msg}"),
            "the gateway failed; its log has the details".to_owned(),
        ),
        Error::Transport(_) => (
            format!("cannot reach the gateway at {url}: {}", chain(err)),
            "is it running? point --url or DAEF_CONTROL_PLANE_URL at it".to_owned(),
        ),
        Error::Tls(reason) => (
            format!("TLS with the gateway at {url} failed: {reason}"),
            "if a private CA signed its certificate, point --ca-file or DAEF_CA_FILE at that CA's PEM file; \
             the URL's host must be a name the certificate holds, and the port must speak TLS (else use http://)"
                .to_owned(),
        ),
        Error::Timeout(t) => (
            format!("no answer from {url} within {}ms", t.as_millis()),
            "the gateway is overloaded or stuck: retry, or raise --timeout-ms / DAEF_REQUEST_TIMEOUT_MS".to_owned(),
        ),
        Error::Decode(msg) => (
            format!("unexpected answer from {url}: {msg}"),
            "is --url a DAEF gateway, and of a version this daefctl speaks?".to_owned(),
        ),
        Error::Config(msg) => (
            msg.clone(),
            "fix --url / DAEF_CONTROL_PLANE_URL, --token / DAEF_API_TOKEN or --ca-file / DAEF_CA_FILE".to_owned(),
        ),
        other => (other.to_string(), "see the gateway's log".to_owned()),
    };
    Explained { what, hint }
}

/// An error and its sources, `: `-separated (hyper's errors put the useful part in a source).
fn chain(err: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn hint_for(err: Error) -> Explained {
        explain(&err, "http://127.0.0.1:8080")
    }

    #[test]
    fn each_refusal_says_what_to_do_next() {
        let e = hint_for(Error::Unauthorized("missing bearer token".into()));
        assert_eq!(e.what, "401 unauthorized: missing bearer token");
        assert!(e.hint.contains("DAEF_API_TOKEN"));
        assert!(
            hint_for(Error::Forbidden(
                "missing required scope (one of: operator)".into()
            ))
            .hint
            .contains("`operator`")
        );
        assert!(
            hint_for(Error::Forbidden("tenant access denied".into()))
                .hint
                .contains("that tenant's token")
        );
        assert!(
            hint_for(Error::NotFound("job not found".into()))
                .hint
                .contains("daefctl jobs")
        );
        assert!(
            hint_for(Error::NotFound("schedule not found".into()))
                .hint
                .contains("daefctl schedule list")
        );
        assert!(
            hint_for(Error::Conflict("schedule nightly already exists".into()))
                .hint
                .contains("delete it")
        );
        assert!(
            hint_for(Error::Conflict(
                "tenants acme, beta each have a schedule nightly: name one with X-DAEF-Tenant"
                    .into()
            ))
            .hint
            .contains("--as-tenant")
        );
        assert!(
            hint_for(Error::NotFound("not found".into()))
                .hint
                .contains("does not serve this route")
        );
        assert!(
            hint_for(Error::Conflict("task is not running".into()))
                .hint
                .contains("daefctl status")
        );
        let limited = hint_for(Error::RateLimited {
            retry_after_secs: Some(42),
            msg: "requeue rate limit exceeded".into(),
        });
        assert_eq!(
            limited.what,
            "429 rate limited: requeue rate limit exceeded"
        );
        assert!(limited.hint.starts_with("retry in 42s"));
        let confirm = hint_for(Error::BadRequest(
            "confirmation token required for large requeue".into(),
        ));
        assert!(confirm.hint.contains("--confirm"));
        assert!(
            hint_for(Error::Timeout(std::time::Duration::from_millis(1500)))
                .what
                .contains("1500ms")
        );
        let untrusted = hint_for(Error::Tls("invalid peer certificate: UnknownIssuer".into()));
        assert!(
            untrusted.what.contains("UnknownIssuer"),
            "{}",
            untrusted.what
        );
        assert!(
            untrusted.hint.contains("DAEF_CA_FILE"),
            "{}",
            untrusted.hint
        );
    }
}
