//! Tokens and scopes (DESIGN.md §4 "Auth"): 401s, 403s per route class, tenant isolation, the
//! effective tenant of a submit, and auth off.

use std::sync::Arc;

use daef_http::HttpConfig;
use hyper::Method;
use serde_json::{Value, json};

use crate::harness::{ACME, BETA, Harness, MET, OP, TOKENS, WRK, blake3_hex, principal_id};

/// One request per route, with a body where the route takes one.
fn every_route(job: &str) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/v1/jobs".into(),
            Some(json!({"type": "chat", "input": "x"})),
        ),
        (Method::GET, "/v1/jobs".into(), None),
        (Method::GET, format!("/v1/jobs/{job}"), None),
        (Method::DELETE, format!("/v1/jobs/{job}"), None),
        (Method::GET, format!("/v1/jobs/{job}/tasks"), None),
        (
            Method::POST,
            "/v1/workers/register".into(),
            Some(json!({"worker_id": "w"})),
        ),
        (
            Method::POST,
            "/v1/workers/w/heartbeat".into(),
            Some(json!({})),
        ),
        (Method::GET, "/v1/workers/w/assignments".into(), None),
        (Method::POST, "/v1/tasks/report".into(), Some(json!({}))),
        (Method::GET, "/v1/admin/queue/dead-letter".into(), None),
        (
            Method::POST,
            "/v1/admin/queue/dead-letter".into(),
            Some(json!({"tasks": [{"job_id": job, "task_id": "t1"}]})),
        ),
        (Method::GET, "/v1/admin/audit".into(), None),
        (Method::GET, "/v1/admin/audit/verify".into(), None),
        (Method::GET, "/v1/metrics".into(), None),
        (Method::GET, "/v1/metrics/prometheus".into(), None),
    ]
}

fn call<'a>(
    h: &'a Harness,
    method: &Method,
    path: &str,
    body: &Option<Value>,
) -> crate::harness::Call<'a> {
    match body {
        Some(b) => h.call(method.clone(), path).json(b),
        None => h.call(method.clone(), path),
    }
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_and_change_nothing() {
    let h = Harness::new();
    let job = h.submit_simple("x").await;
    let before = h.snapshot().await;
    for (method, path, body) in every_route(&job) {
        let send = |extra: &[(&str, &str)]| {
            let mut c = call(&h, &method, &path, &body);
            for (name, value) in extra {
                c = c.header(name, value);
            }
            c.send()
        };
        for headers in [
            &[][..],
            &[("authorization", "Basic b3A6b3A=")],
            &[("authorization", "Bearer ")],
            &[("authorization", "Bearer")],
            &[("x-daef-token", "")],
            &[("x-daef-token", "  ")],
        ] {
            let resp = send(headers).await;
            assert_eq!(
                (resp.status.as_u16(), &resp.json),
                (401, &json!({"error": "missing bearer token"})),
                "{method} {path} {headers:?}"
            );
        }
        for headers in [
            &[("authorization", "Bearer nope")][..],
            &[("authorization", "Bearer o")],
            &[("authorization", "Bearer opop")],
            &[("x-daef-token", "nope")],
            &[("x-daef-token", "OP")],
            // Bearer wins over X-DAEF-Token.
            &[("authorization", "Bearer nope"), ("x-daef-token", OP)],
        ] {
            let resp = send(headers).await;
            assert_eq!(
                (resp.status.as_u16(), &resp.json),
                (401, &json!({"error": "invalid token"})),
                "{method} {path} {headers:?}"
            );
        }
    }
    // No principal, so nothing is audited either.
    h.assert_unchanged(&before, "401s").await;
}

#[tokio::test]
async fn tokens_are_read_from_either_header() {
    let h = Harness::new();
    for (name, value) in [
        ("authorization", "Bearer op"),
        ("authorization", "bearer op"),
        ("authorization", "BEARER   op  "),
        ("x-daef-token", "op"),
        ("x-daef-token", " op "),
    ] {
        let resp = h.get("/v1/admin/audit").header(name, value).send().await;
        assert_eq!(
            resp.status.as_u16(),
            200,
            "{name}: {value:?}: {}",
            resp.text
        );
    }
    // A non-Bearer Authorization header is ignored in favour of X-DAEF-Token.
    h.get("/v1/admin/audit")
        .header("authorization", "Basic xyz")
        .header("x-daef-token", OP)
        .send()
        .await
        .expect_status(200);
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Class {
    Jobs,
    Worker,
    Report,
    Admin,
    Metrics,
}

fn class_of(path: &str) -> Class {
    if path.starts_with("/v1/jobs") {
        Class::Jobs
    } else if path.starts_with("/v1/workers") {
        Class::Worker
    } else if path == "/v1/tasks/report" {
        Class::Report
    } else if path.starts_with("/v1/admin") {
        Class::Admin
    } else {
        Class::Metrics
    }
}

#[tokio::test]
async fn each_route_class_needs_its_scopes() {
    let h = Harness::new();
    let job = h
        .submit(json!({"type": "chat", "input": "x", "tenant": "acme"}))
        .await;
    let message = |class| match class {
        Class::Jobs => "missing required scope (one of: tenant:<id>, operator)",
        Class::Worker => "missing required scope (one of: worker, operator)",
        Class::Report => "missing required scope (one of: worker, operator, tenant:<id>)",
        Class::Admin => "missing required scope (one of: operator)",
        Class::Metrics => "missing required scope (one of: metrics, operator)",
    };
    let allowed = |token: &str, class| match token {
        OP => true,
        MET => class == Class::Metrics,
        WRK => matches!(class, Class::Worker | Class::Report),
        _ => matches!(class, Class::Jobs | Class::Report),
    };
    // DELETE comes last for each token so that the job stays cancelable.
    let mut routes = every_route(&job);
    routes.sort_by_key(|(method, _, _)| *method == Method::DELETE);
    for token in [MET, WRK, ACME, OP] {
        for (method, path, body) in &routes {
            let class = class_of(path);
            let before = h.snapshot().await;
            let resp = call(&h, method, path, body).token(token).send().await;
            let what = format!("{method} {path} as {token}: {}", resp.text);
            if allowed(token, class) {
                assert!(![401, 403].contains(&resp.status.as_u16()), "{what}");
            } else {
                assert_eq!(
                    (resp.status.as_u16(), &resp.json),
                    (403, &json!({"error": message(class)})),
                    "{what}"
                );
                if class == Class::Admin || *method == Method::DELETE {
                    // Admin refusals and every cancel request are audited (see admin.rs and
                    // jobs.rs); nothing else changes.
                    h.assert_unchanged_but_audited(&before, &what).await;
                } else {
                    h.assert_unchanged(&before, &what).await;
                }
            }
        }
    }
}

#[tokio::test]
async fn health_routes_are_open_to_everyone() {
    let h = Harness::new();
    for path in ["/healthz", "/readyz"] {
        for token in [None, Some("forged"), Some(MET)] {
            let c = h.get(path);
            let c = if let Some(t) = token { c.token(t) } else { c };
            c.send().await.expect_status(200);
        }
    }
}

#[tokio::test]
async fn tenants_see_and_touch_only_their_own_jobs() {
    let h = Harness::new();
    h.register("w").await;
    let submit = |token: &'static str, input: &'static str| {
        let h = &h;
        async move {
            let resp = h
                .post_json("/v1/jobs", &json!({"type": "chat", "input": input}))
                .token(token)
                .send()
                .await
                .expect_status(202);
            resp.json["job_id"].as_str().expect("job_id").to_owned()
        }
    };
    let a = submit(ACME, "acme work").await;
    let b = submit(BETA, "beta work").await;
    assert_eq!(h.job(&a).await["tenant"], "acme");
    assert_eq!(h.job(&b).await["tenant"], "beta");

    let listed = |token: &'static str, query: &'static str| {
        let h = &h;
        async move {
            let resp = h
                .get(&format!("/v1/jobs{query}"))
                .token(token)
                .send()
                .await
                .expect_status(200);
            let ids: Vec<String> = resp.json["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .map(|j| j["job_id"].as_str().expect("id").to_owned())
                .collect();
            assert_eq!(resp.json["total"], ids.len());
            ids
        }
    };
    assert_eq!(listed(ACME, "").await, [a.as_str()]);
    assert_eq!(listed(ACME, "?tenant=acme").await, [a.as_str()]);
    assert_eq!(listed(BETA, "").await, [b.as_str()]);
    assert_eq!(listed(OP, "").await, [b.as_str(), &a]);

    // Acme cannot see, list, cancel or report on beta's job.
    let ba = h.poll_one("w").await;
    let bb = h.poll_one("w").await;
    assert_eq!(
        (ba["job_id"].as_str(), bb["job_id"].as_str()),
        (Some(a.as_str()), Some(b.as_str()))
    );
    let before = h.snapshot().await;
    h.get("/v1/jobs?tenant=beta")
        .token(ACME)
        .send()
        .await
        .expect_error(403, "tenant access denied");
    // Another tenant's job is answered exactly as a job that does not exist: no oracle.
    let unknown = "job-00000000-0000-7000-8000-000000000000";
    let foreign_report = Harness::report_body("w", &bb, "Completed");
    let mut unknown_report = foreign_report.clone();
    unknown_report["job_id"] = json!(unknown);
    for (foreign, missing) in [
        (
            h.get(&format!("/v1/jobs/{b}")),
            h.get(&format!("/v1/jobs/{unknown}")),
        ),
        (
            h.get(&format!("/v1/jobs/{b}/tasks")),
            h.get(&format!("/v1/jobs/{unknown}/tasks")),
        ),
        (
            h.get(&format!("/v1/jobs/{b}/events")),
            h.get(&format!("/v1/jobs/{unknown}/events")),
        ),
        (
            h.post_json("/v1/tasks/report", &foreign_report),
            h.post_json("/v1/tasks/report", &unknown_report),
        ),
    ] {
        let foreign = foreign.token(ACME).send().await;
        let missing = missing.token(ACME).send().await;
        assert_eq!(
            (foreign.status, &foreign.text),
            (missing.status, &missing.text)
        );
        foreign.expect_error(404, "job not found");
    }
    h.assert_unchanged(&before, "tenant-denied reads and report")
        .await;
    let foreign = h.delete(&format!("/v1/jobs/{b}")).token(ACME).send().await;
    let missing = h
        .delete(&format!("/v1/jobs/{unknown}"))
        .token(ACME)
        .send()
        .await;
    assert_eq!(
        (foreign.status, &foreign.text),
        (missing.status, &missing.text)
    );
    foreign.expect_error(404, "job not found");
    // The refused cancel is on record; the job is untouched.
    let after = h.snapshot().await;
    assert_eq!(
        (&after.jobs, &after.tasks, &after.dead_letters),
        (&before.jobs, &before.tasks, &before.dead_letters)
    );
    assert_eq!(after.audit[1]["action"], "job_cancel");
    assert_ne!(after.audit[1]["result"], "ok");
    assert_eq!(h.job(&b).await["status"], "Running");

    // A tenant may report on its own job.
    h.post_json(
        "/v1/tasks/report",
        &Harness::report_body("w", &ba, "Completed"),
    )
    .token(ACME)
    .send()
    .await
    .expect_status(200);
    assert_eq!(h.job(&a).await["status"], "Completed");
    // Beta's job is still the worker's to finish.
    h.complete("w", &bb).await;

    // Nor can a tenant submit for another tenant, by body or header.
    let before = h.snapshot().await;
    for (body, header) in [
        (
            json!({"type": "chat", "input": "x", "tenant": "beta"}),
            None,
        ),
        (json!({"type": "chat", "input": "x"}), Some("beta")),
        (
            json!({"type": "chat", "input": "x", "tenant": "default"}),
            None,
        ),
    ] {
        let c = h.post_json("/v1/jobs", &body).token(ACME);
        let c = if let Some(t) = header {
            c.header("x-daef-tenant", t)
        } else {
            c
        };
        c.send().await.expect_error(403, "tenant access denied");
    }
    h.assert_unchanged(&before, "cross-tenant submits").await;
}

#[tokio::test]
async fn the_effective_tenant_is_body_then_header_then_single_scope_then_default() {
    let tokens = format!("{TOKENS},multi:tenant:a|tenant:b");
    let h = Harness::build(
        Some(&tokens),
        HttpConfig::default(),
        Arc::new(daef_store::MemoryStore::new()),
    );
    let submit = |token: &'static str, body: Value, header: Option<&'static str>| {
        let h = &h;
        async move {
            let c = h.post_json("/v1/jobs", &body).token(token);
            let c = if let Some(t) = header {
                c.header("x-daef-tenant", t)
            } else {
                c
            };
            c.send().await
        }
    };
    let tenant_of = |resp: crate::harness::Resp| {
        let h = &h;
        async move {
            let job = resp.expect_status(202).json["job_id"]
                .as_str()
                .expect("job_id")
                .to_owned();
            h.job(&job).await["tenant"]
                .as_str()
                .expect("tenant")
                .to_owned()
        }
    };
    let plain = || json!({"type": "chat", "input": "x"});
    let with_tenant = |t: &str| json!({"type": "chat", "input": "x", "tenant": t});

    assert_eq!(
        tenant_of(submit(OP, with_tenant("t-body"), Some("t-head")).await).await,
        "t-body"
    );
    assert_eq!(
        tenant_of(submit(OP, plain(), Some("t-head")).await).await,
        "t-head"
    );
    assert_eq!(tenant_of(submit(OP, plain(), None).await).await, "default");
    assert_eq!(tenant_of(submit(ACME, plain(), None).await).await, "acme");
    assert_eq!(
        tenant_of(submit(ACME, with_tenant("acme"), Some("beta")).await).await,
        "acme"
    );
    assert_eq!(
        tenant_of(submit(ACME, plain(), Some("acme")).await).await,
        "acme"
    );
    // Two tenant scopes: no single one to fall back on, so `default`, which it may not use.
    submit("multi", plain(), None)
        .await
        .expect_error(403, "tenant access denied");
    assert_eq!(
        tenant_of(submit("multi", plain(), Some("b")).await).await,
        "b"
    );
    assert_eq!(
        tenant_of(submit("multi", with_tenant("a"), None).await).await,
        "a"
    );
    let resp = h
        .get("/v1/jobs")
        .token("multi")
        .send()
        .await
        .expect_status(200);
    assert_eq!(resp.json["total"], 2, "its own tenants' jobs only");

    let before = h.snapshot().await;
    submit(OP, plain(), Some("bad tenant")).await.expect_error(
        400,
        "X-DAEF-Tenant must be 1-128 characters of [A-Za-z0-9._:-]",
    );
    submit(OP, with_tenant(""), None)
        .await
        .expect_error(400, "tenant must be 1-128 characters of [A-Za-z0-9._:-]");
    submit(OP, with_tenant(&"t".repeat(129)), None)
        .await
        .expect_error(400, "tenant must be 1-128 characters of [A-Za-z0-9._:-]");
    h.assert_unchanged(&before, "invalid tenants").await;
}

#[tokio::test]
async fn the_audit_actor_is_tok_and_8_hex_digits_of_blake3_of_the_token() {
    let h = Harness::new();
    let job = h
        .submit(json!({"type": "chat", "input": "x", "tenant": "acme"}))
        .await;
    h.get("/v1/admin/queue/dead-letter")
        .token(OP)
        .send()
        .await
        .expect_status(200);
    h.get("/v1/admin/queue/dead-letter")
        .header("x-daef-token", WRK)
        .send()
        .await
        .expect_status(403);
    h.delete(&format!("/v1/jobs/{job}"))
        .token(ACME)
        .send()
        .await
        .expect_status(200);
    let actors: Vec<Value> = h.audit().await.iter().map(|e| e["actor"].clone()).collect();
    let expected = |token: &str| json!(format!("tok-{}", &blake3_hex(token.as_bytes())[..8]));
    assert_eq!(actors, [expected(ACME), expected(WRK), expected(OP)]);
    assert_eq!(expected(OP), json!(principal_id(OP)));
    // The known vector: blake3("op").
    assert_eq!(
        principal_id(OP),
        format!("tok-{}", &blake3::hash(b"op").to_hex()[..8])
    );
    // No token text in the log.
    let csv = h
        .get("/v1/admin/audit?format=csv")
        .token(OP)
        .send()
        .await
        .text;
    for token in ["Bearer", ",op,", ",wrk,"] {
        assert!(!csv.contains(token), "{token} in {csv}");
    }
}

#[tokio::test]
async fn with_auth_off_everything_is_allowed_as_anonymous() {
    let h = Harness::auth_off();
    let resp = h
        .post_json("/v1/jobs", &json!({"type": "chat", "input": "x"}))
        .send()
        .await
        .expect_status(202);
    let job = resp.json["job_id"].as_str().expect("job_id").to_owned();
    // A stray token is ignored.
    h.get(&format!("/v1/jobs/{job}"))
        .token("whatever")
        .send()
        .await
        .expect_status(200);
    h.post_json("/v1/workers/register", &json!({"worker_id": "w"}))
        .send()
        .await
        .expect_status(200);
    h.get("/v1/workers/w/assignments")
        .send()
        .await
        .expect_status(200);
    h.get("/v1/metrics").send().await.expect_status(200);
    h.get("/v1/admin/queue/dead-letter")
        .send()
        .await
        .expect_status(200);
    h.delete(&format!("/v1/jobs/{job}"))
        .send()
        .await
        .expect_status(200);
    let events = h.audit().await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(
            (&event["actor"], &event["tenant"]),
            (&json!("anonymous"), &json!("default"))
        );
    }
    h.get("/v1/admin/audit").send().await.expect_status(200);
}
