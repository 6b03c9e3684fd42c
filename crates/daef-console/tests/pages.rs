//! The console's pages in-process, over the memory backends: login and sessions, the CSRF
//! check, scopes, and bad input. (The browser test in `daef-system-tests` drives the same pages
//! in Chromium on every backend.)

use std::sync::Arc;

use bytes::Bytes;
use daef_auth::Authenticator;
use daef_console::Console;
use daef_core::{Engine, EngineConfig};
use daef_http::{App, HttpConfig};
use daef_queue::{MemoryQueue, MemoryRateLimiter};
use daef_store::MemoryStore;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};

const TOKENS: &str = "op:operator,acme:tenant:acme,met:metrics";
const HOST: &str = "127.0.0.1:8080";
const ORIGIN: &str = "http://127.0.0.1:8080";

fn console(tokens: Option<&str>) -> Console {
    let engine = Engine::new(
        Arc::new(MemoryStore::new()),
        Arc::new(MemoryQueue::new(5)),
        EngineConfig::default(),
    );
    let auth = Authenticator::from_env_value(tokens).expect("valid token list");
    let app = App::new(
        engine,
        auth,
        Arc::new(MemoryRateLimiter::new()),
        HttpConfig::default(),
    );
    Console::new(Arc::new(app))
}

struct Answer {
    status: StatusCode,
    location: String,
    cookie: String,
    body: String,
}

async fn send(
    console: &Console,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    form: &str,
) -> Answer {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    if !form.is_empty() {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
    }
    let request = builder
        .body(Full::new(Bytes::from(form.to_owned())))
        .expect("request");
    let response = console
        .handle(request, "127.0.0.1:5000".parse().expect("addr"))
        .await;
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (status, location, cookie) = (response.status(), header("location"), header("set-cookie"));
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        location,
        cookie,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(console: &Console, path: &str, token: Option<&str>) -> Answer {
    let cookie = token.map(|t| format!("daef_session={t}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    send(console, Method::GET, path, &headers, "").await
}

#[tokio::test]
async fn with_auth_off_the_console_is_open_and_says_so() {
    let c = console(None);
    let page = get(&c, "/console/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Authentication is off"), "{}", page.body);
    assert!(!page.body.contains("Log out"));
    assert_eq!(get(&c, "/console/login", None).await.location, "/console/");
    assert_eq!(get(&c, "/console", None).await.location, "/console/");
    // The API behind it still answers.
    assert_eq!(get(&c, "/healthz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn logging_in_sets_a_strict_http_only_cookie_and_bad_tokens_are_refused() {
    let c = console(Some(TOKENS));
    let anonymous = get(&c, "/console/jobs", None).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.location, "/console/login");
    let origin = [("origin", ORIGIN)];
    let ok = send(&c, Method::POST, "/console/login", &origin, "token=op").await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ok.cookie,
        "daef_session=op; Path=/console; HttpOnly; SameSite=Strict"
    );
    let tls = [
        ("origin", "https://127.0.0.1:8080"),
        ("x-forwarded-proto", "https"),
    ];
    let secure = send(&c, Method::POST, "/console/login", &tls, "token=op").await;
    assert!(secure.cookie.ends_with("; Secure"), "{}", secure.cookie);
    for bad in ["token=nope", "token=", "token=a%3Bb", ""] {
        let refused = send(&c, Method::POST, "/console/login", &origin, bad).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(refused.cookie.is_empty());
        assert!(refused.body.contains("not valid"));
    }
    let out = send(&c, Method::POST, "/console/logout", &origin, "").await;
    assert!(out.cookie.contains("Max-Age=0"));
    assert_eq!(
        get(&c, "/console/", Some("nope")).await.location,
        "/console/login"
    );
}

#[tokio::test]
async fn posts_from_another_origin_or_none_are_refused_before_anything_happens() {
    let c = console(Some(TOKENS));
    let cookie = ("cookie", "daef_session=op");
    for headers in [
        vec![cookie, ("origin", "http://evil.example")],
        vec![cookie, ("referer", "http://evil.example/page")],
        vec![cookie],
    ] {
        for path in [
            "/console/jobs/cancel",
            "/console/dead-letters",
            "/console/login",
        ] {
            let refused = send(&c, Method::POST, path, &headers, "job_id=j").await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path} {headers:?}");
            assert!(refused.body.contains("Cross-origin request refused"));
        }
    }
    let same = send(
        &c,
        Method::POST,
        "/console/jobs/cancel",
        &[cookie, ("referer", "http://127.0.0.1:8080/console/jobs")],
        "",
    )
    .await;
    assert_eq!(same.status, StatusCode::SEE_OTHER, "{}", same.body);
}

#[tokio::test]
async fn pages_need_the_scopes_of_the_api_routes_behind_them() {
    let c = console(Some(TOKENS));
    for (token, path, status) in [
        ("op", "/console/", StatusCode::OK),
        ("op", "/console/jobs", StatusCode::OK),
        ("op", "/console/dead-letters", StatusCode::OK),
        ("op", "/console/workers", StatusCode::OK),
        ("op", "/console/schedules", StatusCode::OK),
        ("op", "/console/audit", StatusCode::OK),
        ("op", "/console/audit/verify", StatusCode::OK),
        ("acme", "/console/", StatusCode::OK),
        ("acme", "/console/jobs", StatusCode::OK),
        ("acme", "/console/jobs?tenant=beta", StatusCode::FORBIDDEN),
        ("acme", "/console/dead-letters", StatusCode::FORBIDDEN),
        ("acme", "/console/workers", StatusCode::FORBIDDEN),
        ("acme", "/console/schedules", StatusCode::OK),
        ("met", "/console/schedules", StatusCode::FORBIDDEN),
        ("acme", "/console/audit", StatusCode::FORBIDDEN),
        ("acme", "/console/audit.csv", StatusCode::FORBIDDEN),
        ("met", "/console/", StatusCode::OK),
        ("met", "/console/jobs", StatusCode::FORBIDDEN),
    ] {
        let page = get(&c, path, Some(token)).await;
        assert_eq!(page.status, status, "{token} {path}: {}", page.body);
    }
    let overview = get(&c, "/console/", Some("acme")).await.body;
    assert!(overview.contains("Queued jobs") && !overview.contains("Dead letters"));
}

#[tokio::test]
async fn schedules_are_listed_per_tenant_and_paused_and_resumed_from_their_page() {
    let c = console(Some(TOKENS));
    let origin = ("origin", ORIGIN);
    let created = send(
        &c,
        Method::POST,
        "/v1/schedules",
        &[
            ("authorization", "Bearer acme"),
            ("content-type", "application/json"),
        ],
        r#"{"schedule_id":"nightly","cron":"0 3 * * *","job":{"type":"report","input":"totals"}}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let page = get(&c, "/console/schedules", Some("acme")).await;
    assert_eq!(page.status, StatusCode::OK);
    for text in [
        "nightly",
        "0 3 * * *",
        "report",
        "running",
        "never",
        ">Pause",
    ] {
        assert!(page.body.contains(text), "{text}: {}", page.body);
    }
    let paused = send(
        &c,
        Method::POST,
        "/console/schedules/nightly/pause",
        &[("cookie", "daef_session=acme"), origin],
        "",
    )
    .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER, "{}", paused.body);
    let after = get(&c, &paused.location, Some("acme")).await.body;
    assert!(after.contains("Paused nightly"), "{after}");
    assert!(after.contains(">Resume"), "{after}");
    // Another tenant's schedule of the same id: the operator's form names the tenant.
    let theirs = send(
        &c,
        Method::POST,
        "/v1/schedules",
        &[("authorization", "Bearer op"), ("content-type", "application/json")],
        r#"{"schedule_id":"nightly","cron":"0 4 * * *","job":{"type":"report","input":"x","tenant":"beta"}}"#,
    )
    .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
    let resumed = send(
        &c,
        Method::POST,
        "/console/schedules/nightly/resume",
        &[("cookie", "daef_session=op"), origin],
        "tenant=acme",
    )
    .await;
    let after = get(&c, &resumed.location, Some("op")).await.body;
    assert!(
        after.contains("Resumed nightly: its next tick is"),
        "{after}"
    );
    let unknown = send(
        &c,
        Method::POST,
        "/console/schedules/nope/pause",
        &[("cookie", "daef_session=op"), origin],
        "",
    )
    .await;
    let after = get(&c, &unknown.location, Some("op")).await.body;
    assert!(
        after.contains("nope was not changed: schedule not found"),
        "{after}"
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx() {
    let c = console(Some(TOKENS));
    let origin = [("origin", ORIGIN), ("cookie", "daef_session=op")];
    for (path, status, says) in [
        (
            "/console/jobs?status=Bogus",
            StatusCode::BAD_REQUEST,
            "Unknown job status",
        ),
        (
            "/console/workers?offset=x",
            StatusCode::BAD_REQUEST,
            "offset must be a number",
        ),
        (
            "/console/schedules?offset=x",
            StatusCode::BAD_REQUEST,
            "offset must be a number",
        ),
        (
            "/console/audit?offset=-1",
            StatusCode::BAD_REQUEST,
            "offset must be a number",
        ),
        (
            "/console/audit?from=yesterday",
            StatusCode::BAD_REQUEST,
            "from must be an RFC 3339 timestamp",
        ),
        (
            "/console/jobs/no-such-job",
            StatusCode::NOT_FOUND,
            "job not found",
        ),
        ("/console/nowhere", StatusCode::NOT_FOUND, "no such page"),
    ] {
        let page = get(&c, path, Some("op")).await;
        assert_eq!(page.status, status, "{path}");
        assert!(page.body.contains(says), "{path}: {}", page.body);
    }
    let malformed = send(
        &c,
        Method::POST,
        "/console/dead-letters",
        &origin,
        "task=not-json&action=requeue",
    )
    .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let unknown = send(
        &c,
        Method::POST,
        "/console/dead-letters",
        &origin,
        "task=%5B%22j%22%2C%22t%22%5D&action=explode",
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(unknown.body.contains("Unknown action"));
    let put = send(&c, Method::PUT, "/console/jobs", &origin, "").await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    let huge = "job_id=x&".repeat(40_000);
    let too_large = send(&c, Method::POST, "/console/jobs/cancel", &origin, &huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_assets_are_embedded_and_every_page_forbids_framing_and_foreign_scripts() {
    let c = console(None);
    let css = get(&c, "/console/static/console.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains(".dag"));
    let js = get(&c, "/console/static/console.js", None).await;
    assert!(js.body.contains("EventSource"));
    let request = Request::get("/console/")
        .header("host", HOST)
        .body(Full::new(Bytes::new()));
    let response = c
        .handle(
            request.expect("request"),
            "127.0.0.1:5000".parse().expect("addr"),
        )
        .await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .expect("csp");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(response.headers()["cache-control"], "no-store");
}
