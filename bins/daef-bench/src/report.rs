//! Printing results: a table for people, `key=value` lines for `cargo xtask bench`.

use std::fmt::Write as _;

use crate::ceiling::CeilingResult;
use crate::gateway::Rss;
use crate::load::LoadResult;
use crate::pgcost::PgCost;
use crate::stats::{Latency, Ms};

/// Everything one `daef-bench run` measured.
#[derive(Debug)]
pub(crate) struct RunReport {
    pub(crate) url: String,
    pub(crate) mode: &'static str,
    pub(crate) clients: usize,
    pub(crate) workers: usize,
    pub(crate) max_tasks: u32,
    pub(crate) tasks_per_job: u32,
    pub(crate) wait_ms: Option<u32>,
    pub(crate) max_in_flight: usize,
    /// Finished tasks in the store when the measured phase began.
    pub(crate) stored_before: u64,
    /// Finished tasks in the store after the last round: what `rss_after` holds.
    pub(crate) stored_after: u64,
    pub(crate) rss_before: Option<Rss>,
    pub(crate) rss_after: Option<Rss>,
    /// Tasks/s of every measured round, in order (one entry without `--rounds`).
    pub(crate) rounds_tasks_per_sec: Vec<f64>,
    /// The round shown: the median one, or the one that failed.
    pub(crate) result: LoadResult,
    /// `--rate`: jobs per second submitted, when paced.
    pub(crate) rate: Option<f64>,
    /// Tasks completed over every measured round (what `pg_cost` is divided by).
    pub(crate) measured_tasks: u64,
    /// What the measured rounds cost Postgres (`--spawn postgres`).
    pub(crate) pg_cost: Option<PgCost>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl RunReport {
    /// Every task completed, without a single error.
    pub(crate) fn ok(&self) -> bool {
        self.result.clean() && self.result.completed == self.result.tasks
    }

    /// The protocol's minimum: a submit per job, a report per task, and one poll per
    /// `max_tasks`.
    pub(crate) fn min_requests_per_task(&self) -> f64 {
        1.0 / f64::from(self.tasks_per_job.max(1)) + 1.0 + 1.0 / f64::from(self.max_tasks)
    }

    /// Every round's tasks/s, comma-separated.
    fn rounds_text(&self) -> String {
        let rounds: Vec<String> = self
            .rounds_tasks_per_sec
            .iter()
            .map(|t| format!("{t:.0}"))
            .collect();
        rounds.join(", ")
    }

    pub(crate) fn text(&self) -> String {
        let r = &self.result;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "daef-bench: {} ({}), {} clients, {} workers, max_tasks {}, {} tasks per job, at most {} jobs in flight{}, {} tasks stored before",
            self.url,
            self.mode,
            self.clients,
            self.workers,
            self.max_tasks,
            self.tasks_per_job,
            self.max_in_flight,
            self.wait_ms
                .map(|w| format!(", wait_ms {w}"))
                .unwrap_or_default(),
            self.stored_before
        );
        let _ = writeln!(
            out,
            "  {} of {} tasks in {:.2} s: {:.0} tasks/s end to end (submits done after {:.2} s)",
            r.completed,
            r.tasks,
            r.elapsed.as_secs_f64(),
            r.tasks_per_sec(),
            r.submit_elapsed.as_secs_f64()
        );
        if self.rounds_tasks_per_sec.len() > 1 {
            let _ = writeln!(
                out,
                "  rounds: {} tasks/s (the median round is shown)",
                self.rounds_text()
            );
        }
        let _ = writeln!(
            out,
            "  requests: {} submit, {} poll ({} empty), {} report = {:.2} per task (minimum {:.2})",
            r.requests_submit,
            r.requests_poll,
            r.requests_poll_empty,
            r.requests_report,
            r.requests_per_task(),
            self.min_requests_per_task()
        );
        let _ = writeln!(
            out,
            "  {:<22} {:>8} {:>9} {:>9} {:>9} {:>7}",
            "latency (ms)", "count", "p50", "p99", "max", "p99/p50"
        );
        for (name, l) in [
            ("submit", &r.submit),
            ("poll (all)", &r.poll),
            ("poll (with work)", &r.poll_busy),
            ("report", &r.report),
            ("submit-to-completion", &r.end_to_end),
        ] {
            let _ = writeln!(
                out,
                "  {:<22} {:>8} {:>9} {:>9} {:>9} {:>7.1}",
                name,
                l.count,
                Ms(l.p50_us).to_string(),
                Ms(l.p99_us).to_string(),
                Ms(l.max_us).to_string(),
                l.tail_ratio()
            );
        }
        if let (Some(before), Some(after)) = (self.rss_before, self.rss_after) {
            let _ = writeln!(
                out,
                "  gateway RSS: {:.1} MiB before the measured phase, {:.1} MiB after with {} finished tasks stored (peak {:.1} MiB)",
                mib(before.rss_kib),
                mib(after.rss_kib),
                self.stored_after,
                mib(after.peak_kib)
            );
        }
        if let Some(c) = &self.pg_cost {
            let _ = writeln!(
                out,
                "  postgres per task over {} measured tasks: {} ms CPU, {:.3} commits, {:.0} bytes of WAL; HOT updates {}",
                self.measured_tasks,
                c.cpu_ms_per_task
                    .map_or("?".to_owned(), |ms| format!("{ms:.3}")),
                c.commits_per_task,
                c.wal_bytes_per_task,
                c.hot_share
                    .map_or("-".to_owned(), |h| format!("{:.0}%", h * 100.0))
            );
        }
        if r.errors.is_empty() {
            let _ = writeln!(out, "  errors: none");
        } else {
            let _ = writeln!(out, "  errors ({}):", r.error_count());
            for (text, n) in &r.errors {
                let _ = writeln!(out, "    {n:>7} × {text}");
            }
        }
        out
    }

    pub(crate) fn summary(&self) -> String {
        let r = &self.result;
        let mut out = String::new();
        let mut kv = |k: &str, v: String| {
            let _ = writeln!(out, "{k}={v}");
        };
        kv("mode", self.mode.to_owned());
        kv("url", self.url.clone());
        kv("clients", self.clients.to_string());
        kv("workers", self.workers.to_string());
        kv("max_tasks", self.max_tasks.to_string());
        kv("tasks_per_job", self.tasks_per_job.to_string());
        kv("max_in_flight", self.max_in_flight.to_string());
        kv(
            "wait_ms",
            self.wait_ms.map(|w| w.to_string()).unwrap_or_default(),
        );
        kv(
            "rate",
            self.rate.map(|r| format!("{r:.0}")).unwrap_or_default(),
        );
        kv("stored_before", self.stored_before.to_string());
        kv("stored_after", self.stored_after.to_string());
        kv("tasks", r.tasks.to_string());
        kv("completed", r.completed.to_string());
        kv("finished", r.finished.to_string());
        kv("elapsed_s", format!("{:.3}", r.elapsed.as_secs_f64()));
        kv("tasks_per_sec", format!("{:.1}", r.tasks_per_sec()));
        kv("rounds_tasks_per_sec", self.rounds_text());
        kv("requests_submit", r.requests_submit.to_string());
        kv("requests_poll", r.requests_poll.to_string());
        kv("requests_poll_empty", r.requests_poll_empty.to_string());
        kv("requests_report", r.requests_report.to_string());
        kv("requests_per_task", format!("{:.3}", r.requests_per_task()));
        kv(
            "min_requests_per_task",
            format!("{:.3}", self.min_requests_per_task()),
        );
        let lat = |kv: &mut dyn FnMut(&str, String), name: &str, l: &Latency| {
            kv(&format!("{name}_count"), l.count.to_string());
            kv(
                &format!("{name}_p50_ms"),
                format!("{:.3}", f64::from(l.p50_us) / 1000.0),
            );
            kv(
                &format!("{name}_p99_ms"),
                format!("{:.3}", f64::from(l.p99_us) / 1000.0),
            );
            kv(
                &format!("{name}_max_ms"),
                format!("{:.3}", f64::from(l.max_us) / 1000.0),
            );
        };
        lat(&mut kv, "submit", &r.submit);
        lat(&mut kv, "poll", &r.poll);
        lat(&mut kv, "poll_busy", &r.poll_busy);
        lat(&mut kv, "report", &r.report);
        lat(&mut kv, "e2e", &r.end_to_end);
        if let Some(rss) = self.rss_after {
            kv("rss_mib", format!("{:.1}", mib(rss.rss_kib)));
            kv("peak_rss_mib", format!("{:.1}", mib(rss.peak_kib)));
        }
        if let Some(c) = &self.pg_cost {
            kv("measured_tasks", self.measured_tasks.to_string());
            if let Some(ms) = c.cpu_ms_per_task {
                kv("pg_cpu_ms_per_task", format!("{ms:.4}"));
            }
            kv("pg_commits_per_task", format!("{:.4}", c.commits_per_task));
            kv(
                "pg_wal_bytes_per_task",
                format!("{:.0}", c.wal_bytes_per_task),
            );
            if let Some(h) = c.hot_share {
                kv("pg_hot_share", format!("{h:.4}"));
            }
        }
        kv("errors", r.error_count().to_string());
        for (i, (text, n)) in r.errors.iter().enumerate() {
            kv(
                &format!("error_{i}"),
                format!("{n} x {}", text.replace('\n', " ")),
            );
        }
        out
    }
}

pub(crate) fn ceiling_text(c: &CeilingResult) -> String {
    format!(
        "http ceiling: {} requests over {} connections in {:.2} s: {:.0} requests/s; p50 {} ms, p99 {} ms; {} errors\n",
        c.requests,
        c.concurrency,
        c.elapsed.as_secs_f64(),
        c.requests_per_sec(),
        Ms(c.latency.p50_us),
        Ms(c.latency.p99_us),
        c.errors
    )
}

pub(crate) fn ceiling_summary(c: &CeilingResult) -> String {
    format!(
        "requests={}\nconcurrency={}\nelapsed_s={:.3}\nrequests_per_sec={:.1}\np50_ms={:.3}\np99_ms={:.3}\nerrors={}\n",
        c.requests,
        c.concurrency,
        c.elapsed.as_secs_f64(),
        c.requests_per_sec(),
        f64::from(c.latency.p50_us) / 1000.0,
        f64::from(c.latency.p99_us) / 1000.0,
        c.errors
    )
}
