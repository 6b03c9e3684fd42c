//! The console's routes and pages. Each page checks the session's scopes with the same
//! requirement as the API route behind it, and reads and acts through that route (or, for the
//! job list, through the engine call `GET /v1/jobs` makes, with keyset paging).

use std::net::SocketAddr;
use std::time::Instant;

use askama::Template;
use bytes::Bytes;
use daef_api as api;
use daef_core::audit::Verification;
use daef_core::model::{JobId, JobStatus};
use daef_core::ports::JobQuery;
use daef_http::App;
use daef_http::response::Body;
use daef_http::route::{Route, percent_decode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as HttpBody;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::PREFIX;
use crate::assets;
use crate::dag::{self, Dag};
use crate::inproc::Call;
use crate::reply::{html, see_other, with_body, with_cookie};
use crate::sampler::{Throughput, sparkline};
use crate::session::{self, Session};

/// Jobs per page of the job list.
const JOBS_PAGE: usize = 50;
/// Counts on the overview and the job list stop here ("10,000+"): a count never walks a
/// million rows.
const COUNT_CAP: u64 = 10_000;
/// Most dead letters the dead-letter page lists (the API's page limit).
const DEAD_LETTERS_PAGE: usize = 1_000;
/// Workers per page.
const WORKERS_PAGE: usize = 100;
/// Schedules per page.
const SCHEDULES_PAGE: usize = 100;
/// Audit events per page.
const AUDIT_PAGE: usize = 50;
/// Largest form a console page posts.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// One request to the console.
struct Req<'a> {
    app: &'a App,
    throughput: &'a Throughput,
    method: Method,
    /// Path segments after `/console/`, percent-decoded.
    segments: Vec<String>,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    remote: SocketAddr,
}

impl Req<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// `offset` (a page of workers or audit events), 0 when absent.
    fn offset(&self) -> Result<usize, Refusal> {
        self.param("offset")
            .map(str::parse)
            .transpose()
            .map_err(|_| Refusal::new(StatusCode::BAD_REQUEST, "offset must be a number."))
            .map(Option::unwrap_or_default)
    }

    fn fragment(&self) -> bool {
        self.param("fragment").is_some()
    }

    fn call(&self, session: &Session, method: Method, path: &str) -> Call<'_> {
        Call::new(self.app, session, self.remote, method, path)
    }
}

/// A page that could not be shown: its status and why.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Your token's scopes do not allow this page.",
        )
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "There is no such page.")
    }

    /// An API answer that was not a success, with the API's own status and message.
    fn from_reply(reply: &crate::inproc::Reply) -> Self {
        Self::new(reply.status, reply.error())
    }
}

type PageResult = Result<Response<Body>, Refusal>;

/// Serves one request under `/console`.
pub(crate) async fn serve<B>(
    app: &App,
    throughput: &Throughput,
    req: Request<B>,
    remote: SocketAddr,
) -> Response<Body>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let rest = parts.uri.path().strip_prefix(PREFIX).unwrap_or_default();
    let segments: Vec<String> = match rest.strip_prefix('/') {
        None => Vec::new(),
        Some(rest) => rest.split('/').map(percent_decode).collect(),
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let req = Req {
        app,
        throughput,
        method: parts.method,
        segments,
        query,
        headers: parts.headers,
        remote,
    };
    let response = match route(&req, body).await {
        Ok(response) => response,
        Err(refusal) => error_page(&req, refusal),
    };
    tracing::info!(
        target: "daef_console::access",
        method = %req.method,
        path = %parts.uri.path(),
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        remote = %remote,
        "request"
    );
    response
}

async fn route<B>(req: &Req<'_>, body: B) -> PageResult
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let post = req.method == Method::POST;
    if !matches!(req.method, Method::GET | Method::HEAD | Method::POST) {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "The console answers GET and POST only.",
        ));
    }
    match segs.as_slice() {
        [] => return Ok(see_other("/console/")),
        ["static", "console.css"] => return Ok(asset("text/css; charset=utf-8", assets::CSS)),
        ["static", "console.js"] => {
            return Ok(asset("text/javascript; charset=utf-8", assets::JS));
        }
        _ => {}
    }
    // Every state-changing request, the login included, must come from the console's own pages.
    if post && !session::same_origin(&req.headers) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "Cross-origin request refused: this form must be sent from the console's own pages.",
        ));
    }
    let form = if post {
        read_form(body).await?
    } else {
        Vec::new()
    };
    match segs.as_slice() {
        ["login"] if post => return login_submit(req, &form),
        ["login"] => return login_page(req, None, StatusCode::OK),
        ["logout"] if post => {
            let cookie = session::clear_cookie(session::over_tls(&req.headers));
            return Ok(with_cookie(see_other("/console/login"), &cookie));
        }
        _ => {}
    }
    let Some(session) = Session::from_headers(req.app, &req.headers) else {
        return Ok(see_other("/console/login"));
    };
    let s = &session;
    match (post, segs.as_slice()) {
        (false, [""]) => overview(req, s).await,
        (false, ["jobs"]) => jobs(req, s).await,
        (true, ["jobs", "cancel"]) => cancel_jobs(req, s, &form).await,
        (false, ["jobs", id]) => job(req, s, id).await,
        (false, ["jobs", id, "events"]) => job_events(req, s, id).await,
        (true, ["jobs", id, "cancel"]) => cancel_job(req, s, id).await,
        (false, ["dead-letters"]) => dead_letters(req, s, None).await,
        (true, ["dead-letters"]) => act_on_dead(req, s, &form).await,
        (false, ["schedules"]) => schedules(req, s).await,
        (true, ["schedules", id, "pause"]) => pause_or_resume(req, s, &form, id, true).await,
        (true, ["schedules", id, "resume"]) => pause_or_resume(req, s, &form, id, false).await,
        (false, ["workers"]) => workers(req, s).await,
        (false, ["audit"]) => audit(req, s, None).await,
        (false, ["audit.csv"]) => audit_csv(req, s).await,
        (false, ["audit", "verify"]) => verify(req, s).await,
        _ => Err(Refusal::not_found()),
    }
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut response = with_body(StatusCode::OK, content_type, text);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn read_form<B>(body: B) -> Result<Vec<(String, String)>, Refusal>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = Limited::new(body, MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|_| Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large."))?
        .to_bytes();
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

fn form_value<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn form_values<'f>(form: &'f [(String, String)], name: &str) -> Vec<&'f str> {
    form.iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Whether the session may use an API route.
fn allowed(session: &Session, route: &Route) -> bool {
    route
        .requirements()
        .is_none_or(|required| session.principal.require(required).is_ok())
}

fn require(session: &Session, route: &Route) -> Result<(), Refusal> {
    if allowed(session, route) {
        Ok(())
    } else {
        Err(Refusal::forbidden())
    }
}

/// URL-encodes a path segment or a query value.
fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn render<T: Template>(status: StatusCode, page: &T) -> PageResult {
    page.render().map(|body| html(status, body)).map_err(|err| {
        tracing::error!(error = %err, "console: a template failed to render");
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The page failed to render.",
        )
    })
}

// ---- the frame every page shares ----------------------------------------------------------------

/// A navigation link.
#[derive(Debug)]
struct NavItem {
    href: &'static str,
    label: &'static str,
    current: bool,
}

/// What the layout shows around every page.
#[derive(Debug)]
struct Chrome {
    auth_on: bool,
    who: String,
    nav: Vec<NavItem>,
    notice: Option<String>,
}

impl Chrome {
    fn new(req: &Req<'_>, session: &Session, current: &str) -> Self {
        let pages: [(&str, &str, Route); 6] = [
            ("/console/", "Overview", Route::Healthz),
            ("/console/jobs", "Jobs", Route::ListJobs),
            ("/console/schedules", "Schedules", Route::ListSchedules),
            (
                "/console/dead-letters",
                "Dead letters",
                Route::ListDeadLetters,
            ),
            ("/console/workers", "Workers", Route::ListWorkers),
            ("/console/audit", "Audit", Route::ListAudit),
        ];
        let nav = pages
            .into_iter()
            .filter(|(_, _, route)| allowed(session, route))
            .map(|(href, label, _)| NavItem {
                href,
                label,
                current: label == current,
            })
            .collect();
        let who = match session.principal.single_tenant() {
            Some(tenant) if !session.principal.is_operator() => {
                format!("{} (tenant {tenant})", session.principal.id)
            }
            _ => session.principal.id.clone(),
        };
        Self {
            auth_on: session.auth_on,
            who,
            nav,
            notice: req.param("notice").map(str::to_owned),
        }
    }
}

fn error_page(req: &Req<'_>, refusal: Refusal) -> Response<Body> {
    let session = Session::from_headers(req.app, &req.headers);
    let chrome = session.as_ref().map(|s| Chrome::new(req, s, ""));
    let page = ErrorPage {
        chrome,
        status: refusal.status.as_u16(),
        reason: refusal.status.canonical_reason().unwrap_or("Error"),
        message: refusal.message,
    };
    match page.render() {
        Ok(body) => html(refusal.status, body),
        Err(_) => with_body(refusal.status, "text/plain; charset=utf-8", page.message),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Option<Chrome>,
    status: u16,
    reason: &'static str,
    message: String,
}

// ---- login ----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
}

fn login_page(req: &Req<'_>, error: Option<String>, status: StatusCode) -> PageResult {
    if !req.app.authenticator().is_enabled() {
        return Ok(see_other("/console/"));
    }
    render(status, &LoginPage { error })
}

fn login_submit(req: &Req<'_>, form: &[(String, String)]) -> PageResult {
    if !req.app.authenticator().is_enabled() {
        return Ok(see_other("/console/"));
    }
    let token = form_value(form, "token").unwrap_or_default().trim();
    let session = session::cookie_safe(token)
        .then(|| Session::from_token(req.app, token))
        .flatten();
    match session {
        Some(_) => {
            let cookie = session::set_cookie(token, session::over_tls(&req.headers));
            Ok(with_cookie(see_other("/console/"), &cookie))
        }
        None => login_page(
            req,
            Some("That token is not valid.".to_owned()),
            StatusCode::UNAUTHORIZED,
        ),
    }
}

// ---- overview -------------------------------------------------------------------------------

/// A count on the overview, linking to where it comes from.
#[derive(Debug)]
struct Tile {
    label: String,
    value: String,
    href: Option<String>,
    class: &'static str,
}

#[derive(Debug)]
struct OverviewLive {
    tiles: Vec<Tile>,
    spark_points: String,
    spark_peak: String,
    spark_now: String,
    spark_samples: usize,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Option<Chrome>,
    live: OverviewLive,
}

#[derive(Template)]
#[template(path = "overview_live.html")]
struct OverviewFragment {
    live: OverviewLive,
}

fn capped(n: u64) -> String {
    if n >= COUNT_CAP {
        format!("{}+", thousands(COUNT_CAP))
    } else {
        thousands(n)
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn overview(req: &Req<'_>, session: &Session) -> PageResult {
    let mut tiles = Vec::new();
    if allowed(session, &Route::ListJobs) {
        for status in JobStatus::ALL {
            let page = req
                .app
                .engine()
                .list_jobs(&JobQuery {
                    status: Some(*status),
                    tenants: session.principal.tenant_filter(),
                    limit: 0,
                    total_up_to: Some(COUNT_CAP),
                    ..JobQuery::default()
                })
                .await
                .map_err(|err| {
                    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, format!("Jobs: {err}"))
                })?;
            tiles.push(Tile {
                label: format!("{status} jobs"),
                value: capped(page.total),
                href: Some(format!("/console/jobs?status={status}")),
                class: status.as_str(),
            });
        }
    }
    if allowed(session, &Route::MetricsJson) {
        let reply = req.call(session, Method::GET, "/v1/metrics").send().await;
        if let Ok(metrics) = reply.parse::<api::MetricsSnapshot>() {
            let gauge = |name: &str| {
                metrics
                    .gauges
                    .iter()
                    .filter(|g| g.name == name)
                    .map(|g| g.value)
                    .sum::<f64>()
            };
            tiles.push(Tile {
                label: "Queue depth".into(),
                value: thousands(gauge(daef_core::metric::QUEUE_PENDING_COUNT) as u64),
                href: None,
                class: "neutral",
            });
            tiles.push(Tile {
                label: "Dead letters".into(),
                value: thousands(gauge(daef_core::metric::DEAD_LETTER_COUNT) as u64),
                href: allowed(session, &Route::ListDeadLetters)
                    .then(|| "/console/dead-letters".to_owned()),
                class: "Failed",
            });
        }
    }
    if allowed(session, &Route::ListWorkers) {
        let reply = req
            .call(session, Method::GET, "/v1/workers?limit=1000")
            .send()
            .await;
        if let Ok(list) = reply.parse::<api::WorkerList>() {
            let alive: Vec<&api::WorkerInfo> = list.workers.iter().filter(|w| w.alive).collect();
            let running: u64 = alive.iter().filter_map(|w| w.stats.running_tasks).sum();
            tiles.push(Tile {
                label: "Live workers".into(),
                value: format!("{} of {}", alive.len(), list.total),
                href: Some("/console/workers".into()),
                class: "neutral",
            });
            tiles.push(Tile {
                label: "Running tasks".into(),
                value: thousands(running),
                href: None,
                class: "Running",
            });
        }
    }
    let rates = req.throughput.rates();
    let (spark_points, peak) = sparkline(&rates, 600.0, 60.0);
    let live = OverviewLive {
        tiles,
        spark_points,
        spark_peak: format!("{peak:.1}"),
        spark_now: format!("{:.1}", rates.last().copied().unwrap_or(0.0)),
        spark_samples: rates.len(),
    };
    if req.fragment() {
        return render(StatusCode::OK, &OverviewFragment { live });
    }
    render(
        StatusCode::OK,
        &OverviewPage {
            chrome: Some(Chrome::new(req, session, "Overview")),
            live,
        },
    )
}

// ---- jobs -----------------------------------------------------------------------------------

#[derive(Debug)]
struct JobRow {
    job_id: String,
    tenant: String,
    job_type: String,
    status: String,
    message: String,
    created_at: String,
    updated_at: String,
    finished: bool,
}

impl From<&daef_core::model::Job> for JobRow {
    fn from(job: &daef_core::model::Job) -> Self {
        Self {
            job_id: job.job_id.to_string(),
            tenant: job.tenant.clone(),
            job_type: job.job_type.clone(),
            status: job.status.to_string(),
            message: job.message.clone().unwrap_or_default(),
            created_at: job.created_at.to_string(),
            updated_at: job.updated_at.to_string(),
            finished: !accepts_cancel(job.status),
        }
    }
}

/// Whether a cancel would change the job: only queued and running jobs offer one.
fn accepts_cancel(status: JobStatus) -> bool {
    matches!(status, JobStatus::Queued | JobStatus::Running)
}

#[derive(Debug)]
struct JobsLive {
    rows: Vec<JobRow>,
    total: String,
    older: Option<String>,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    chrome: Option<Chrome>,
    statuses: Vec<&'static str>,
    status: String,
    tenant: String,
    first_page: bool,
    refresh: String,
    live: JobsLive,
}

#[derive(Template)]
#[template(path = "jobs_live.html")]
struct JobsFragment {
    live: JobsLive,
}

async fn jobs(req: &Req<'_>, session: &Session) -> PageResult {
    require(session, &Route::ListJobs)?;
    if let Some(id) = req.param("id") {
        return Ok(see_other(&format!("/console/jobs/{}", enc(id.trim()))));
    }
    let status = match req.param("status") {
        None => None,
        Some(s) => Some(s.parse::<JobStatus>().map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("Unknown job status {s:?}."),
            )
        })?),
    };
    let tenant = req.param("tenant").map(str::trim).filter(|t| !t.is_empty());
    let tenants = match tenant {
        Some(tenant) => {
            session
                .principal
                .check_tenant(tenant)
                .map_err(|_| Refusal::forbidden())?;
            Some(vec![tenant.to_owned()])
        }
        None => session.principal.tenant_filter(),
    };
    let before = req.param("before").map(JobId::new);
    let page = req
        .app
        .engine()
        .list_jobs(&JobQuery {
            status,
            tenants,
            limit: JOBS_PAGE,
            before: before.clone(),
            total_up_to: Some(COUNT_CAP),
            ..JobQuery::default()
        })
        .await
        .map_err(|err| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, format!("Jobs: {err}")))?;
    let mut filters = String::new();
    if let Some(status) = status {
        filters.push_str(&format!("&status={status}"));
    }
    if let Some(tenant) = tenant {
        filters.push_str(&format!("&tenant={}", enc(tenant)));
    }
    let older = (page.items.len() == JOBS_PAGE)
        .then(|| page.items.last())
        .flatten()
        .map(|last| {
            format!(
                "/console/jobs?before={}{filters}",
                enc(last.job_id.as_str())
            )
        });
    let live = JobsLive {
        rows: page.items.iter().map(JobRow::from).collect(),
        total: capped(page.total),
        older,
    };
    if req.fragment() {
        return render(StatusCode::OK, &JobsFragment { live });
    }
    render(
        StatusCode::OK,
        &JobsPage {
            chrome: Some(Chrome::new(req, session, "Jobs")),
            statuses: JobStatus::ALL.iter().map(|s| s.as_str()).collect(),
            status: status.map(|s| s.to_string()).unwrap_or_default(),
            tenant: tenant.unwrap_or_default().to_owned(),
            first_page: before.is_none(),
            refresh: format!("/console/jobs?fragment=1{filters}"),
            live,
        },
    )
}

/// Cancels each job through `DELETE /v1/jobs/{id}` (audited there, as the API audits it).
async fn cancel_each(req: &Req<'_>, session: &Session, ids: &[&str]) -> String {
    let mut canceled = 0;
    let mut refused = Vec::new();
    for id in ids {
        let reply = req
            .call(session, Method::DELETE, &format!("/v1/jobs/{}", enc(id)))
            .send()
            .await;
        match reply.parse::<api::CancelOutcome>() {
            Ok(outcome) if outcome.accepted => canceled += 1,
            Ok(_) => refused.push(format!("{id}: already finished")),
            Err(message) => refused.push(format!("{id}: {message}")),
        }
    }
    let mut notice = format!("Canceled {canceled} of {} selected jobs.", ids.len());
    if !refused.is_empty() {
        notice.push_str(&format!(" Not canceled: {}.", refused.join("; ")));
    }
    notice
}

async fn cancel_jobs(req: &Req<'_>, session: &Session, form: &[(String, String)]) -> PageResult {
    let ids = form_values(form, "job_id");
    let notice = if ids.is_empty() {
        "Select the jobs to cancel first.".to_owned()
    } else {
        cancel_each(req, session, &ids).await
    };
    Ok(see_other(&format!("/console/jobs?notice={}", enc(&notice))))
}

async fn cancel_job(req: &Req<'_>, session: &Session, id: &str) -> PageResult {
    let notice = cancel_each(req, session, &[id]).await;
    Ok(see_other(&format!(
        "/console/jobs/{}?notice={}",
        enc(id),
        enc(&notice)
    )))
}

// ---- one job --------------------------------------------------------------------------------

#[derive(Debug)]
struct TaskRow {
    task_id: String,
    task_type: String,
    status: String,
    attempt: u32,
    dependencies: String,
    worker_id: String,
    lease_expires: String,
    next_attempt_at: String,
    error: String,
    output: String,
    updated_at: String,
}

impl From<&api::TaskInfo> for TaskRow {
    fn from(t: &api::TaskInfo) -> Self {
        Self {
            task_id: t.task_id.clone(),
            task_type: t.task_type.clone(),
            status: t.status.to_string(),
            attempt: t.attempt,
            dependencies: t.dependencies.join(", "),
            worker_id: t.worker_id.clone().unwrap_or_default(),
            lease_expires: t.lease_expires.map(|t| t.to_string()).unwrap_or_default(),
            next_attempt_at: t.next_attempt_at.map(|t| t.to_string()).unwrap_or_default(),
            error: t.error.clone().unwrap_or_default(),
            output: t.output_artifact_uri.clone().unwrap_or_default(),
            updated_at: t.updated_at.to_string(),
        }
    }
}

#[derive(Debug)]
struct JobLive {
    job: api::JobInfo,
    status: String,
    finished: bool,
    created_at: String,
    updated_at: String,
    dag: Dag,
    tasks: Vec<TaskRow>,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    chrome: Option<Chrome>,
    job_id: String,
    live: JobLive,
}

#[derive(Template)]
#[template(path = "job_live.html")]
struct JobFragment {
    live: JobLive,
}

async fn job(req: &Req<'_>, session: &Session, id: &str) -> PageResult {
    require(session, &Route::GetJob(JobId::new(id)))?;
    let path = format!("/v1/jobs/{}", enc(id));
    let reply = req.call(session, Method::GET, &path).send().await;
    let job: api::JobInfo = reply.parse().map_err(|_| Refusal::from_reply(&reply))?;
    let reply = req
        .call(session, Method::GET, &format!("{path}/tasks"))
        .send()
        .await;
    let tasks: api::TaskList = reply.parse().map_err(|_| Refusal::from_reply(&reply))?;
    let live = JobLive {
        status: job.status.to_string(),
        finished: !accepts_cancel(job.status),
        created_at: job.created_at.to_string(),
        updated_at: job.updated_at.to_string(),
        dag: dag::layout(&tasks.tasks),
        tasks: tasks.tasks.iter().map(TaskRow::from).collect(),
        job,
    };
    if req.fragment() {
        return render(StatusCode::OK, &JobFragment { live });
    }
    render(
        StatusCode::OK,
        &JobPage {
            chrome: Some(Chrome::new(req, session, "Jobs")),
            job_id: id.to_owned(),
            live,
        },
    )
}

/// The job's event stream, as the API serves it, for the page's `EventSource` (which cannot
/// send an `Authorization` header, so it comes here with the session cookie).
async fn job_events(req: &Req<'_>, session: &Session, id: &str) -> PageResult {
    let path = format!("/v1/jobs/{}/events", enc(id));
    Ok(req.call(session, Method::GET, &path).stream().await)
}

// ---- dead letters ---------------------------------------------------------------------------

#[derive(Debug)]
struct DeadRow {
    key: String,
    job_id: String,
    task_id: String,
    tenant: String,
    attempt: u32,
    error: String,
    dead_lettered_at: String,
    checked: bool,
}

/// What the dead-letter form asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum DeadAction {
    /// Count how many of the selection are dead letters; change nothing.
    #[default]
    DryRun,
    /// Back to the queue with a fresh attempt budget.
    Requeue,
    /// `Failed` for good, off the dead-letter queue.
    Discard,
}

impl DeadAction {
    fn parse(value: Option<&str>) -> Result<Self, Refusal> {
        match value {
            None | Some("dry-run") => Ok(DeadAction::DryRun),
            Some("requeue") => Ok(DeadAction::Requeue),
            Some("discard") => Ok(DeadAction::Discard),
            Some(other) => Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("Unknown action {other:?}."),
            )),
        }
    }

    /// The form value.
    fn value(self) -> &'static str {
        match self {
            DeadAction::DryRun => "dry-run",
            DeadAction::Requeue => "requeue",
            DeadAction::Discard => "discard",
        }
    }

    /// The button's label.
    fn label(self) -> &'static str {
        match self {
            DeadAction::DryRun => "Dry run",
            DeadAction::Requeue => "Requeue",
            DeadAction::Discard => "Discard",
        }
    }

    /// What a result says was done.
    fn done(self) -> &'static str {
        match self {
            DeadAction::DryRun => "Dry run",
            DeadAction::Requeue => "Requeued",
            DeadAction::Discard => "Discarded",
        }
    }

    fn is_dry_run(self) -> bool {
        self == DeadAction::DryRun
    }

    /// The API route (a dry run is the requeue route's).
    fn path(self) -> &'static str {
        match self {
            DeadAction::DryRun | DeadAction::Requeue => "/v1/admin/queue/dead-letter",
            DeadAction::Discard => "/v1/admin/queue/dead-letter/discard",
        }
    }
}

/// What a dry run, a requeue or a discard did, or why it stopped.
#[derive(Debug, Default)]
struct DeadLetterResult {
    action: DeadAction,
    requested: u64,
    /// Requeued, discarded, or (dry run) dead letters among those requested.
    changed: u64,
    requests: usize,
    error: Option<String>,
    retry_after: Option<u64>,
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
struct DeadLettersPage {
    chrome: Option<Chrome>,
    rows: Vec<DeadRow>,
    result: Option<DeadLetterResult>,
    /// The action waiting for the confirmation token, when the selection needs it.
    confirm_for: Option<DeadAction>,
    max_batch: i64,
    confirm_threshold: i64,
    confirm_configured: bool,
}

/// A dead letter's checkbox value: its job and task id as a JSON array (either may hold any
/// character).
fn dead_key(job_id: &str, task_id: &str) -> String {
    json!([job_id, task_id]).to_string()
}

async fn list_dead(req: &Req<'_>, session: &Session) -> Result<Vec<api::DeadLetter>, Refusal> {
    let reply = req
        .call(
            session,
            Method::GET,
            &format!("/v1/admin/queue/dead-letter?limit={DEAD_LETTERS_PAGE}"),
        )
        .send()
        .await;
    let list: api::DeadLetterList = reply.parse().map_err(|_| Refusal::from_reply(&reply))?;
    Ok(list.tasks)
}

async fn dead_letters(
    req: &Req<'_>,
    session: &Session,
    outcome: Option<(DeadLetterResult, Vec<String>, Option<DeadAction>)>,
) -> PageResult {
    require(session, &Route::ListDeadLetters)?;
    let listed = list_dead(req, session).await?;
    let (result, selected, confirm_for) = match outcome {
        Some((result, selected, confirm)) => (Some(result), selected, confirm),
        None => (None, Vec::new(), None),
    };
    let rows = listed
        .iter()
        .map(|d| {
            let key = dead_key(d.job_id.as_str(), &d.task_id);
            DeadRow {
                checked: selected.contains(&key),
                key,
                job_id: d.job_id.to_string(),
                task_id: d.task_id.clone(),
                tenant: d.tenant.clone(),
                attempt: d.attempt,
                error: d.error.clone(),
                dead_lettered_at: d.dead_lettered_at.to_string(),
            }
        })
        .collect();
    let limits = &req.app.config().admin;
    let status = match &result {
        Some(r) if r.retry_after.is_some() => StatusCode::TOO_MANY_REQUESTS,
        Some(r) if r.error.is_some() => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    render(
        status,
        &DeadLettersPage {
            chrome: Some(Chrome::new(req, session, "Dead letters")),
            rows,
            result,
            confirm_for,
            max_batch: limits.max_batch,
            confirm_threshold: limits.confirm_threshold,
            confirm_configured: limits.confirm_token.is_some(),
        },
    )
}

/// A dry run, a requeue or a discard of the selected dead letters (or all listed ones), split
/// into requests of at most the API's max batch, each through the API's route: the API checks
/// the confirmation token and the rate limit, and audits every request.
async fn act_on_dead(req: &Req<'_>, session: &Session, form: &[(String, String)]) -> PageResult {
    let action = DeadAction::parse(form_value(form, "action"))?;
    let route = match action {
        DeadAction::Discard => Route::DiscardDeadLetters,
        DeadAction::DryRun | DeadAction::Requeue => Route::RequeueDeadLetters,
    };
    require(session, &route)?;
    let selected: Vec<String> = if form_value(form, "scope") == Some("all") {
        list_dead(req, session)
            .await?
            .iter()
            .map(|d| dead_key(d.job_id.as_str(), &d.task_id))
            .collect()
    } else {
        form_values(form, "task")
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let mut tasks = Vec::with_capacity(selected.len());
    for key in &selected {
        let Ok((job_id, task_id)) = serde_json::from_str::<(String, String)>(key) else {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "A selected dead letter is malformed.",
            ));
        };
        tasks.push(api::TaskKey {
            job_id: JobId::new(job_id),
            task_id,
        });
    }
    if tasks.is_empty() {
        let result = DeadLetterResult {
            action,
            error: Some("Select the dead letters first.".into()),
            ..DeadLetterResult::default()
        };
        return dead_letters(req, session, Some((result, selected, None))).await;
    }
    let limits = &req.app.config().admin;
    let confirm = form_value(form, "confirm").unwrap_or_default().trim();
    let chunk = usize::try_from(limits.max_batch)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(tasks.len());
    let needs_confirm = !action.is_dry_run()
        && limits.confirm_token.is_some()
        && limits.confirm_threshold > 0
        && tasks
            .chunks(chunk)
            .any(|c| c.len() as i64 >= limits.confirm_threshold);
    if needs_confirm && confirm.is_empty() {
        let waiting = DeadLetterResult {
            action,
            ..DeadLetterResult::default()
        };
        return dead_letters(req, session, Some((waiting, selected, Some(action)))).await;
    }
    let mut result = DeadLetterResult {
        action,
        ..DeadLetterResult::default()
    };
    for batch in tasks.chunks(chunk) {
        let mut call = req
            .call(session, Method::POST, action.path())
            .json(&api::RequeueRequest {
                tasks: batch.to_vec(),
                dry_run: action.is_dry_run(),
            });
        if !confirm.is_empty() {
            call = call.header("x-daef-confirm", confirm);
        }
        let reply = call.send().await;
        result.requests += 1;
        let answer = match action {
            DeadAction::Discard => reply
                .parse::<api::DiscardOutcome>()
                .map(|o| (o.requested, o.discarded)),
            DeadAction::DryRun | DeadAction::Requeue => reply
                .parse::<api::RequeueOutcome>()
                .map(|o| (o.requested, o.requeued)),
        };
        match answer {
            Ok((requested, changed)) => {
                result.requested += requested;
                result.changed += changed;
            }
            Err(message) => {
                result.retry_after = reply.retry_after();
                result.error = Some(message);
                break;
            }
        }
    }
    let keep_selection = action.is_dry_run() || result.error.is_some();
    let selected = if keep_selection { selected } else { Vec::new() };
    let confirm_again =
        (needs_confirm && result.error.is_some() && result.retry_after.is_none()).then_some(action);
    dead_letters(req, session, Some((result, selected, confirm_again))).await
}

// ---- schedules ------------------------------------------------------------------------------

#[derive(Debug)]
struct ScheduleRow {
    schedule_id: String,
    tenant: String,
    cron: String,
    job_type: String,
    paused: bool,
    next_fire_at: String,
    last_fire_at: String,
    last_job_id: String,
}

impl From<&api::ScheduleInfo> for ScheduleRow {
    fn from(s: &api::ScheduleInfo) -> Self {
        Self {
            schedule_id: s.schedule_id.clone(),
            tenant: s.tenant.clone(),
            cron: s.cron.clone(),
            job_type: s.job.job_type.clone(),
            paused: s.paused,
            next_fire_at: s.next_fire_at.map(|t| t.to_string()).unwrap_or_default(),
            last_fire_at: s.last_fire_at.map(|t| t.to_string()).unwrap_or_default(),
            last_job_id: s
                .last_job_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    chrome: Option<Chrome>,
    rows: Vec<ScheduleRow>,
    total: u64,
    can_act: bool,
    newer: Option<String>,
    older: Option<String>,
}

async fn schedules(req: &Req<'_>, session: &Session) -> PageResult {
    require(session, &Route::ListSchedules)?;
    let offset = req.offset()?;
    let reply = req
        .call(
            session,
            Method::GET,
            &format!("/v1/schedules?limit={SCHEDULES_PAGE}&offset={offset}"),
        )
        .send()
        .await;
    let list: api::ScheduleList = reply.parse().map_err(|_| Refusal::from_reply(&reply))?;
    let rows: Vec<ScheduleRow> = list.schedules.iter().map(ScheduleRow::from).collect();
    render(
        StatusCode::OK,
        &SchedulesPage {
            chrome: Some(Chrome::new(req, session, "Schedules")),
            total: list.total,
            can_act: allowed(session, &Route::PauseSchedule(String::new())),
            newer: (offset > 0).then(|| {
                format!(
                    "/console/schedules?offset={}",
                    offset.saturating_sub(SCHEDULES_PAGE)
                )
            }),
            older: ((offset + rows.len()) < list.total as usize)
                .then(|| format!("/console/schedules?offset={}", offset + SCHEDULES_PAGE)),
            rows,
        },
    )
}

/// Pauses (`pause`) or resumes a schedule through the API, and says how it went. The form
/// names the schedule's tenant (ids are unique within a tenant), sent as `X-DAEF-Tenant`.
async fn pause_or_resume(
    req: &Req<'_>,
    session: &Session,
    form: &[(String, String)],
    id: &str,
    pause: bool,
) -> PageResult {
    let action = if pause { "pause" } else { "resume" };
    let mut call = req.call(
        session,
        Method::POST,
        &format!("/v1/schedules/{}/{action}", enc(id)),
    );
    if let Some(tenant) = form_values(form, "tenant").first() {
        call = call.header("x-daef-tenant", tenant);
    }
    let reply = call.send().await;
    let notice = match reply.parse::<api::ScheduleInfo>() {
        Ok(schedule) => match schedule.next_fire_at {
            Some(next) => format!("Resumed {id}: its next tick is {next}."),
            None => format!("Paused {id}: it fires no more until resumed."),
        },
        Err(message) => format!("{id} was not changed: {message}"),
    };
    Ok(see_other(&format!(
        "/console/schedules?notice={}",
        enc(&notice)
    )))
}

// ---- workers --------------------------------------------------------------------------------

#[derive(Debug)]
struct WorkerRow {
    worker_id: String,
    cpu: String,
    memory: String,
    gpu: String,
    models: String,
    tools: String,
    locality: String,
    health: String,
    running: String,
    queue_depth: String,
    last_heartbeat: String,
    registered_at: String,
    alive: bool,
}

impl From<&api::WorkerInfo> for WorkerRow {
    fn from(w: &api::WorkerInfo) -> Self {
        let c = &w.capabilities;
        let opt = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        Self {
            worker_id: w.worker_id.clone(),
            cpu: opt(c.cpu),
            memory: c.memory.clone().unwrap_or_default(),
            gpu: match c.gpu {
                None => String::new(),
                Some(daef_core::model::Gpu::Present(true)) => "yes".into(),
                Some(daef_core::model::Gpu::Present(false)) => "no".into(),
                Some(daef_core::model::Gpu::Count(n)) => n.to_string(),
            },
            models: c.models.join(", "),
            tools: c.tools.join(", "),
            locality: c.locality.clone().unwrap_or_default(),
            health: w.stats.health.clone().unwrap_or_default(),
            running: opt(w.stats.running_tasks),
            queue_depth: opt(w.stats.queue_depth),
            last_heartbeat: w.last_heartbeat.to_string(),
            registered_at: w.registered_at.to_string(),
            alive: w.alive,
        }
    }
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    chrome: Option<Chrome>,
    rows: Vec<WorkerRow>,
    total: u64,
    alive: usize,
    newer: Option<String>,
    older: Option<String>,
}

async fn workers(req: &Req<'_>, session: &Session) -> PageResult {
    require(session, &Route::ListWorkers)?;
    let offset = req.offset()?;
    let reply = req
        .call(
            session,
            Method::GET,
            &format!("/v1/workers?limit={WORKERS_PAGE}&offset={offset}"),
        )
        .send()
        .await;
    let list: api::WorkerList = reply.parse().map_err(|_| Refusal::from_reply(&reply))?;
    let rows: Vec<WorkerRow> = list.workers.iter().map(WorkerRow::from).collect();
    render(
        StatusCode::OK,
        &WorkersPage {
            chrome: Some(Chrome::new(req, session, "Workers")),
            alive: rows.iter().filter(|r| r.alive).count(),
            total: list.total,
            newer: (offset > 0).then(|| {
                format!(
                    "/console/workers?offset={}",
                    offset.saturating_sub(WORKERS_PAGE)
                )
            }),
            older: ((offset + rows.len()) < list.total as usize)
                .then(|| format!("/console/workers?offset={}", offset + WORKERS_PAGE)),
            rows,
        },
    )
}

// ---- audit ----------------------------------------------------------------------------------

/// The audit filters a page carries, in the API's query names.
const AUDIT_FILTERS: [&str; 6] = ["action", "actor", "tenant", "result", "from", "to"];

#[derive(Debug)]
struct Filter {
    name: &'static str,
    value: String,
}

#[derive(Debug)]
struct AuditRow {
    id: u64,
    created_at: String,
    action: String,
    actor: String,
    tenant: String,
    remote_addr: String,
    resource: String,
    requested: u64,
    result: String,
    details: String,
    event_hash: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Option<Chrome>,
    filters: Vec<Filter>,
    rows: Vec<AuditRow>,
    csv: String,
    newer: Option<String>,
    older: Option<String>,
    verification: Option<Verification>,
}

/// The filters of this request as a query string (`&name=value…`), and as a list.
fn audit_filters(req: &Req<'_>) -> (String, Vec<Filter>) {
    let mut query = String::new();
    let mut filters = Vec::new();
    for name in AUDIT_FILTERS {
        let value = req.param(name).unwrap_or_default().to_owned();
        if !value.is_empty() {
            query.push_str(&format!("&{name}={}", enc(&value)));
        }
        filters.push(Filter { name, value });
    }
    (query, filters)
}

async fn audit(req: &Req<'_>, session: &Session, verification: Option<Verification>) -> PageResult {
    require(session, &Route::ListAudit)?;
    let offset = req.offset()?;
    let (query, filters) = audit_filters(req);
    let reply = req
        .call(
            session,
            Method::GET,
            &format!("/v1/admin/audit?limit={AUDIT_PAGE}&offset={offset}{query}"),
        )
        .send()
        .await;
    let page: api::AuditPage = reply.parse().map_err(|_| Refusal::from_reply(&reply))?;
    let rows: Vec<AuditRow> = page
        .events
        .into_iter()
        .map(|e| AuditRow {
            id: e.id,
            created_at: e.created_at.to_string(),
            action: e.action,
            actor: e.actor,
            tenant: e.tenant,
            remote_addr: e.remote_addr,
            resource: e.resource,
            requested: e.requested,
            result: e.result,
            details: e.details,
            event_hash: e.event_hash,
        })
        .collect();
    render(
        StatusCode::OK,
        &AuditPage {
            chrome: Some(Chrome::new(req, session, "Audit")),
            csv: format!("/console/audit.csv?limit=1000{query}"),
            newer: (offset > 0).then(|| {
                format!(
                    "/console/audit?offset={}{query}",
                    offset.saturating_sub(AUDIT_PAGE)
                )
            }),
            older: (rows.len() == AUDIT_PAGE)
                .then(|| format!("/console/audit?offset={}{query}", offset + AUDIT_PAGE)),
            filters,
            rows,
            verification,
        },
    )
}

/// The API's CSV export of the filtered log, as a download.
async fn audit_csv(req: &Req<'_>, session: &Session) -> PageResult {
    require(session, &Route::ListAudit)?;
    let (query, _) = audit_filters(req);
    let mut response = req
        .call(
            session,
            Method::GET,
            &format!("/v1/admin/audit?format=csv&limit=1000{query}"),
        )
        .stream()
        .await;
    if response.status().is_success() {
        response.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"daef-audit.csv\""),
        );
    }
    Ok(response)
}

async fn verify(req: &Req<'_>, session: &Session) -> PageResult {
    require(session, &Route::VerifyAudit)?;
    let reply = req
        .call(session, Method::GET, "/v1/admin/audit/verify")
        .send()
        .await;
    let verification: Verification = reply.parse().map_err(|_| Refusal::from_reply(&reply))?;
    audit(req, session, Some(verification)).await
}
