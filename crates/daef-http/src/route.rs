//! The route table: a pure mapping from method and path to [`Route`], and from route to the
//! scopes it requires. No I/O, so it is tested without sockets.

use daef_auth::Requirement;
use daef_core::model::JobId;
use hyper::Method;

/// Every v1 endpoint, with the ids its path carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`
    Healthz,
    /// `GET /readyz`
    Readyz,
    /// `POST /v1/jobs`
    SubmitJob,
    /// `GET /v1/jobs`
    ListJobs,
    /// `GET /v1/jobs/{id}`
    GetJob(JobId),
    /// `DELETE /v1/jobs/{id}`
    CancelJob(JobId),
    /// `GET /v1/jobs/{id}/tasks`
    ListTasks(JobId),
    /// `GET /v1/jobs/{id}/events` (Server-Sent Events)
    JobEvents(JobId),
    /// `POST /v1/schedules`
    CreateSchedule,
    /// `GET /v1/schedules`
    ListSchedules,
    /// `GET /v1/schedules/{id}`
    GetSchedule(String),
    /// `DELETE /v1/schedules/{id}`
    DeleteSchedule(String),
    /// `POST /v1/schedules/{id}/pause`
    PauseSchedule(String),
    /// `POST /v1/schedules/{id}/resume`
    ResumeSchedule(String),
    /// `GET /v1/workers`
    ListWorkers,
    /// `POST /v1/workers/register`
    RegisterWorker,
    /// `POST /v1/workers/{id}/heartbeat`
    Heartbeat(String),
    /// `GET /v1/workers/{id}/assignments`
    Assignments(String),
    /// `POST /v1/tasks/report`
    Report,
    /// `GET /v1/admin/queue/dead-letter`
    ListDeadLetters,
    /// `POST /v1/admin/queue/dead-letter`
    RequeueDeadLetters,
    /// `POST /v1/admin/queue/dead-letter/discard`
    DiscardDeadLetters,
    /// `GET /v1/admin/audit`
    ListAudit,
    /// `GET /v1/admin/audit/verify`
    VerifyAudit,
    /// `GET /v1/metrics`
    MetricsJson,
    /// `GET /v1/metrics/prometheus`
    MetricsPrometheus,
}

/// Why a request matched no route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No such path: 404.
    NotFound,
    /// The path exists for other methods: 405 with this `Allow` value.
    MethodNotAllowed(&'static str),
}

impl Route {
    /// Matches a request line. Path segments are percent-decoded; a trailing slash is not
    /// accepted (one spelling per resource).
    pub fn parse(method: &Method, path: &str) -> Result<Route, RouteError> {
        let segments: Vec<String> = match path.strip_prefix('/') {
            Some(rest) => rest.split('/').map(percent_decode).collect(),
            None => return Err(RouteError::NotFound),
        };
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        // No stored id holds a control character (a NUL cannot even be stored in Postgres),
        // so a path carrying one names nothing: 404 on every backend alike.
        let id_ok = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
        let (allow, route): (&'static str, Option<Route>) = match segs.as_slice() {
            ["healthz"] => ("GET", (method == Method::GET).then_some(Route::Healthz)),
            ["readyz"] => ("GET", (method == Method::GET).then_some(Route::Readyz)),
            ["v1", "jobs"] => (
                "GET, POST",
                match *method {
                    Method::GET => Some(Route::ListJobs),
                    Method::POST => Some(Route::SubmitJob),
                    _ => None,
                },
            ),
            ["v1", "jobs", id] if id_ok(id) => (
                "GET, DELETE",
                match *method {
                    Method::GET => Some(Route::GetJob(JobId::new(*id))),
                    Method::DELETE => Some(Route::CancelJob(JobId::new(*id))),
                    _ => None,
                },
            ),
            ["v1", "jobs", id, "tasks"] if id_ok(id) => (
                "GET",
                (method == Method::GET).then(|| Route::ListTasks(JobId::new(*id))),
            ),
            ["v1", "jobs", id, "events"] if id_ok(id) => (
                "GET",
                (method == Method::GET).then(|| Route::JobEvents(JobId::new(*id))),
            ),
            ["v1", "schedules"] => (
                "GET, POST",
                match *method {
                    Method::GET => Some(Route::ListSchedules),
                    Method::POST => Some(Route::CreateSchedule),
                    _ => None,
                },
            ),
            ["v1", "schedules", id] if id_ok(id) => (
                "GET, DELETE",
                match *method {
                    Method::GET => Some(Route::GetSchedule((*id).to_owned())),
                    Method::DELETE => Some(Route::DeleteSchedule((*id).to_owned())),
                    _ => None,
                },
            ),
            ["v1", "schedules", id, "pause"] if id_ok(id) => (
                "POST",
                (method == Method::POST).then(|| Route::PauseSchedule((*id).to_owned())),
            ),
            ["v1", "schedules", id, "resume"] if id_ok(id) => (
                "POST",
                (method == Method::POST).then(|| Route::ResumeSchedule((*id).to_owned())),
            ),
            ["v1", "workers"] => ("GET", (method == Method::GET).then_some(Route::ListWorkers)),
            ["v1", "workers", "register"] => (
                "POST",
                (method == Method::POST).then_some(Route::RegisterWorker),
            ),
            ["v1", "workers", id, "heartbeat"] if id_ok(id) => (
                "POST",
                (method == Method::POST).then(|| Route::Heartbeat((*id).to_owned())),
            ),
            ["v1", "workers", id, "assignments"] if id_ok(id) => (
                "GET",
                (method == Method::GET).then(|| Route::Assignments((*id).to_owned())),
            ),
            ["v1", "tasks", "report"] => {
                ("POST", (method == Method::POST).then_some(Route::Report))
            }
            ["v1", "admin", "queue", "dead-letter"] => (
                "GET, POST",
                match *method {
                    Method::GET => Some(Route::ListDeadLetters),
                    Method::POST => Some(Route::RequeueDeadLetters),
                    _ => None,
                },
            ),
            ["v1", "admin", "queue", "dead-letter", "discard"] => (
                "POST",
                (method == Method::POST).then_some(Route::DiscardDeadLetters),
            ),
            ["v1", "admin", "audit"] => {
                ("GET", (method == Method::GET).then_some(Route::ListAudit))
            }
            ["v1", "admin", "audit", "verify"] => {
                ("GET", (method == Method::GET).then_some(Route::VerifyAudit))
            }
            ["v1", "metrics"] => ("GET", (method == Method::GET).then_some(Route::MetricsJson)),
            ["v1", "metrics", "prometheus"] => (
                "GET",
                (method == Method::GET).then_some(Route::MetricsPrometheus),
            ),
            _ => return Err(RouteError::NotFound),
        };
        route.ok_or(RouteError::MethodNotAllowed(allow))
    }

    /// The path template: the `route` label of HTTP metrics (never a real id).
    pub fn template(&self) -> &'static str {
        match self {
            Route::Healthz => "/healthz",
            Route::Readyz => "/readyz",
            Route::SubmitJob | Route::ListJobs => "/v1/jobs",
            Route::GetJob(_) | Route::CancelJob(_) => "/v1/jobs/{id}",
            Route::ListTasks(_) => "/v1/jobs/{id}/tasks",
            Route::JobEvents(_) => "/v1/jobs/{id}/events",
            Route::CreateSchedule | Route::ListSchedules => "/v1/schedules",
            Route::GetSchedule(_) | Route::DeleteSchedule(_) => "/v1/schedules/{id}",
            Route::PauseSchedule(_) => "/v1/schedules/{id}/pause",
            Route::ResumeSchedule(_) => "/v1/schedules/{id}/resume",
            Route::ListWorkers => "/v1/workers",
            Route::RegisterWorker => "/v1/workers/register",
            Route::Heartbeat(_) => "/v1/workers/{id}/heartbeat",
            Route::Assignments(_) => "/v1/workers/{id}/assignments",
            Route::Report => "/v1/tasks/report",
            Route::ListDeadLetters | Route::RequeueDeadLetters => "/v1/admin/queue/dead-letter",
            Route::DiscardDeadLetters => "/v1/admin/queue/dead-letter/discard",
            Route::ListAudit => "/v1/admin/audit",
            Route::VerifyAudit => "/v1/admin/audit/verify",
            Route::MetricsJson => "/v1/metrics",
            Route::MetricsPrometheus => "/v1/metrics/prometheus",
        }
    }

    /// The scopes that may call this route when auth is on (any one suffices); `None` for
    /// routes open to everyone. Tenant-scoped routes check the job's tenant afterwards.
    pub fn requirements(&self) -> Option<&'static [Requirement]> {
        use Requirement::{Metrics, Operator, Tenant, Worker};
        match self {
            Route::Healthz | Route::Readyz => None,
            Route::SubmitJob
            | Route::ListJobs
            | Route::GetJob(_)
            | Route::CancelJob(_)
            | Route::ListTasks(_)
            | Route::JobEvents(_)
            | Route::CreateSchedule
            | Route::ListSchedules
            | Route::GetSchedule(_)
            | Route::DeleteSchedule(_)
            | Route::PauseSchedule(_)
            | Route::ResumeSchedule(_) => Some(&[Tenant, Operator]),
            Route::ListWorkers
            | Route::RegisterWorker
            | Route::Heartbeat(_)
            | Route::Assignments(_) => Some(&[Worker, Operator]),
            Route::Report => Some(&[Worker, Operator, Tenant]),
            Route::ListDeadLetters
            | Route::RequeueDeadLetters
            | Route::DiscardDeadLetters
            | Route::ListAudit
            | Route::VerifyAudit => Some(&[Operator]),
            Route::MetricsJson | Route::MetricsPrometheus => Some(&[Metrics, Operator]),
        }
    }

    /// What the audit log records of this route's requests (DESIGN.md §4, docs/api.md "What is
    /// audited"). One arm per route and no wildcard, so a new route must say.
    pub fn audit(&self) -> Audit {
        use daef_core::audit::action;
        match self {
            Route::ListDeadLetters => Audit::Always(action::DEAD_LETTER_LIST),
            Route::RequeueDeadLetters => Audit::Always(action::DEAD_LETTER_REQUEUE),
            Route::DiscardDeadLetters => Audit::Always(action::DEAD_LETTER_DISCARD),
            Route::CancelJob(_) => Audit::Always(action::JOB_CANCEL),
            Route::CreateSchedule => Audit::Always(action::SCHEDULE_CREATE),
            Route::DeleteSchedule(_) => Audit::Always(action::SCHEDULE_DELETE),
            Route::PauseSchedule(_) => Audit::Always(action::SCHEDULE_PAUSE),
            Route::ResumeSchedule(_) => Audit::Always(action::SCHEDULE_RESUME),
            // A read of the log changes nothing; only a refused one is worth recording.
            Route::ListAudit | Route::VerifyAudit => Audit::WhenForbidden(action::AUDIT_READ),
            Route::Healthz
            | Route::Readyz
            | Route::SubmitJob
            | Route::ListJobs
            | Route::GetJob(_)
            | Route::ListTasks(_)
            | Route::JobEvents(_)
            | Route::ListSchedules
            | Route::GetSchedule(_)
            | Route::ListWorkers
            | Route::RegisterWorker
            | Route::Heartbeat(_)
            | Route::Assignments(_)
            | Route::Report
            | Route::MetricsJson
            | Route::MetricsPrometheus => Audit::Never,
        }
    }

    /// The `resource` of this route's audit events: the job or schedule the path names, else
    /// the route.
    pub fn audit_resource(&self) -> String {
        match self {
            Route::CancelJob(id) => format!("/v1/jobs/{id}"),
            Route::DeleteSchedule(id) | Route::PauseSchedule(id) | Route::ResumeSchedule(id) => {
                format!("/v1/schedules/{id}")
            }
            _ => self.template().to_owned(),
        }
    }
}

/// Which of a route's requests go to the audit log, under which action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audit {
    /// None of them.
    Never,
    /// Only those refused for the token's scope (403).
    WhenForbidden(&'static str),
    /// Every request that got past authentication: refused ones (403, a bad body or query)
    /// here in the pipeline, the rest by the route's handler, which knows the outcome.
    Always(&'static str),
}

/// Decodes `%XX` escapes in a path segment; malformed escapes are kept as they are.
pub fn percent_decode(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_owned();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(method: Method, path: &str, expected: Result<Route, RouteError>) {
        assert_eq!(Route::parse(&method, path), expected, "{method} {path}");
    }

    #[test]
    fn parses_every_route() {
        let job = || JobId::new("job-1");
        check(Method::GET, "/healthz", Ok(Route::Healthz));
        check(Method::GET, "/readyz", Ok(Route::Readyz));
        check(Method::POST, "/v1/jobs", Ok(Route::SubmitJob));
        check(Method::GET, "/v1/jobs", Ok(Route::ListJobs));
        check(Method::GET, "/v1/jobs/job-1", Ok(Route::GetJob(job())));
        check(
            Method::DELETE,
            "/v1/jobs/job-1",
            Ok(Route::CancelJob(job())),
        );
        check(
            Method::GET,
            "/v1/jobs/job-1/tasks",
            Ok(Route::ListTasks(job())),
        );
        check(
            Method::GET,
            "/v1/jobs/job-1/events",
            Ok(Route::JobEvents(job())),
        );
        check(
            Method::POST,
            "/v1/jobs/job-1/events",
            Err(RouteError::MethodNotAllowed("GET")),
        );
        check(Method::GET, "/v1/workers", Ok(Route::ListWorkers));
        check(
            Method::POST,
            "/v1/workers/register",
            Ok(Route::RegisterWorker),
        );
        check(
            Method::POST,
            "/v1/workers/w-1/heartbeat",
            Ok(Route::Heartbeat("w-1".into())),
        );
        check(
            Method::GET,
            "/v1/workers/w%201/assignments",
            Ok(Route::Assignments("w 1".into())),
        );
        check(Method::POST, "/v1/tasks/report", Ok(Route::Report));
        check(
            Method::GET,
            "/v1/admin/queue/dead-letter",
            Ok(Route::ListDeadLetters),
        );
        check(
            Method::POST,
            "/v1/admin/queue/dead-letter",
            Ok(Route::RequeueDeadLetters),
        );
        check(
            Method::POST,
            "/v1/admin/queue/dead-letter/discard",
            Ok(Route::DiscardDeadLetters),
        );
        check(Method::GET, "/v1/admin/audit", Ok(Route::ListAudit));
        check(
            Method::GET,
            "/v1/admin/audit/verify",
            Ok(Route::VerifyAudit),
        );
        check(Method::GET, "/v1/metrics", Ok(Route::MetricsJson));
        check(
            Method::GET,
            "/v1/metrics/prometheus",
            Ok(Route::MetricsPrometheus),
        );
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        check(Method::GET, "/", Err(RouteError::NotFound));
        check(Method::GET, "/v1/jobs/", Err(RouteError::NotFound));
        check(Method::GET, "/v1/jobs/a/b", Err(RouteError::NotFound));
        check(
            Method::GET,
            "/v1/workers/register/x",
            Err(RouteError::NotFound),
        );
        check(Method::GET, "/v2/jobs", Err(RouteError::NotFound));
        check(
            Method::PUT,
            "/v1/jobs",
            Err(RouteError::MethodNotAllowed("GET, POST")),
        );
        check(
            Method::POST,
            "/v1/jobs/job-1",
            Err(RouteError::MethodNotAllowed("GET, DELETE")),
        );
        check(
            Method::GET,
            "/v1/workers/register",
            Err(RouteError::MethodNotAllowed("POST")),
        );
        check(
            Method::POST,
            "/healthz",
            Err(RouteError::MethodNotAllowed("GET")),
        );
        check(
            Method::DELETE,
            "/v1/admin/queue/dead-letter",
            Err(RouteError::MethodNotAllowed("GET, POST")),
        );
    }

    #[test]
    fn templates_never_carry_ids() {
        let route = Route::parse(&Method::GET, "/v1/jobs/job-123/tasks").unwrap();
        assert_eq!(route.template(), "/v1/jobs/{id}/tasks");
        assert_eq!(
            Route::Heartbeat("w".into()).template(),
            "/v1/workers/{id}/heartbeat"
        );
    }

    #[test]
    fn scopes_per_route() {
        use Requirement::*;
        assert_eq!(Route::Healthz.requirements(), None);
        assert_eq!(
            Route::SubmitJob.requirements(),
            Some(&[Tenant, Operator][..])
        );
        assert_eq!(
            Route::Report.requirements(),
            Some(&[Worker, Operator, Tenant][..])
        );
        assert_eq!(
            Route::RequeueDeadLetters.requirements(),
            Some(&[Operator][..])
        );
        assert_eq!(
            Route::MetricsPrometheus.requirements(),
            Some(&[Metrics, Operator][..])
        );
        assert_eq!(
            Route::VerifyAudit.audit(),
            Audit::WhenForbidden("audit_read")
        );
        assert_eq!(
            Route::CancelJob(JobId::new("j")).audit(),
            Audit::Always("job_cancel")
        );
        assert_eq!(Route::ListJobs.audit(), Audit::Never);
        assert_eq!(
            Route::JobEvents(JobId::new("j")).requirements(),
            Route::GetJob(JobId::new("j")).requirements()
        );
    }
}
