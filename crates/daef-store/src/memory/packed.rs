//! Completed jobs, packed into one byte string each.
//!
//! A completed job can never change again (every task is `Completed`; reports, cancels and
//! requeues only read it), yet most stored jobs are completed ones. As records they cost several
//! kilobytes each (a `BTreeMap` node per task map and per input map, a heap string per field);
//! packed they cost a few hundred bytes, so a million finished tasks fit in well under a GiB.
//! Reading one back builds ordinary [`Job`] and [`Task`] records.
//!
//! Format: fields in declaration order; integers as LEB128, timestamps as 8 little-endian bytes
//! of Unix microseconds, an option as a presence byte, a string as either its length and bytes
//! or a reference to an identical string earlier in the same job (a task's prompt repeats the
//! job's input, the last report's lease repeats the lease, the sink's output is the job's result).

use std::collections::BTreeMap;

use daef_core::model::{Job, JobId, JobStatus, Priority, RetryBackoff, Task, TaskStatus};
use daef_core::{Error, Result, Timestamp};

/// Packs a job and its tasks (the job id is the caller's key and is not stored).
pub(super) fn pack<'a>(job: &Job, tasks: impl ExactSizeIterator<Item = &'a Task>) -> Box<[u8]> {
    let mut w = Writer::default();
    w.str(&job.tenant);
    w.str(&job.job_type);
    w.str(&job.input);
    w.opt_str(job.policy.as_deref());
    w.byte(priority_code(job.priority));
    w.byte(job_status_code(job.status));
    w.opt_str(job.message.as_deref());
    w.opt_str(job.result_artifact_uri.as_deref());
    w.str(&job.sink_task_id);
    w.uint(job.task_count);
    w.uint(job.completed_tasks);
    w.uint(job.dead_tasks);
    w.opt_str(job.schedule_id.as_deref());
    w.opt_ts(job.scheduled_for);
    w.ts(job.created_at);
    w.ts(job.updated_at);
    w.len(tasks.len());
    for t in tasks {
        w.str(&t.task_id);
        w.str(&t.task_type);
        w.len(t.inputs.len());
        for (k, v) in &t.inputs {
            w.str(k);
            w.str(v);
        }
        w.len(t.dependencies.len());
        for d in &t.dependencies {
            w.str(d);
        }
        w.uint(t.max_retries);
        w.uint(t.timeout_sec);
        w.byte(priority_code(t.priority));
        w.byte(task_status_code(t.status));
        w.uint(t.attempt);
        w.uint(t.attempt_limit);
        w.uint(t.pending_dependencies);
        w.opt_str(t.worker_id.as_deref());
        w.opt_str(t.lease_id.as_deref());
        w.opt_ts(t.lease_expires);
        w.opt_ts(t.started_at);
        w.opt_str(t.last_report_key.as_deref());
        w.opt_str(t.last_report_lease.as_deref());
        w.opt_str(t.output_artifact_uri.as_deref());
        w.opt_str(t.error.as_deref());
        w.opt_ts(t.dead_lettered_at);
        w.opt_ts(t.redispatch_at);
        w.uint(t.redispatch_count);
        w.uint(t.retry_backoff.initial_ms);
        w.uint(t.retry_backoff.max_ms);
        w.opt_ts(t.next_attempt_at);
        w.ts(t.created_at);
        w.ts(t.updated_at);
    }
    w.buf.into_boxed_slice()
}

/// The job packed by [`pack`], under `job_id`.
pub(super) fn unpack_job(job_id: &str, bytes: &[u8]) -> Result<Job> {
    let mut r = Reader::new(bytes);
    job(&mut r, job_id)
}

/// The job and its tasks packed by [`pack`], under `job_id`.
pub(super) fn unpack(job_id: &str, bytes: &[u8]) -> Result<(Job, Vec<Task>)> {
    let mut r = Reader::new(bytes);
    let job = job(&mut r, job_id)?;
    let n = r.len()?;
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(task(&mut r, &job.job_id)?);
    }
    Ok((job, tasks))
}

fn job(r: &mut Reader<'_>, job_id: &str) -> Result<Job> {
    Ok(Job {
        job_id: JobId::new(job_id),
        tenant: r.string()?,
        job_type: r.string()?,
        input: r.string()?,
        policy: r.opt_string()?,
        priority: priority(r.byte()?)?,
        status: job_status(r.byte()?)?,
        message: r.opt_string()?,
        result_artifact_uri: r.opt_string()?,
        sink_task_id: r.string()?,
        task_count: r.uint()?,
        completed_tasks: r.uint()?,
        dead_tasks: r.uint()?,
        schedule_id: r.opt_string()?,
        scheduled_for: r.opt_ts()?,
        created_at: r.ts()?,
        updated_at: r.ts()?,
    })
}

fn task(r: &mut Reader<'_>, job_id: &JobId) -> Result<Task> {
    let task_id = r.string()?;
    let task_type = r.string()?;
    let mut inputs = BTreeMap::new();
    for _ in 0..r.len()? {
        let k = r.string()?;
        inputs.insert(k, r.string()?);
    }
    let n = r.len()?;
    let mut dependencies = Vec::with_capacity(n);
    for _ in 0..n {
        dependencies.push(r.string()?);
    }
    Ok(Task {
        job_id: job_id.clone(),
        task_id,
        task_type,
        inputs,
        dependencies,
        max_retries: r.uint()?,
        timeout_sec: r.uint()?,
        priority: priority(r.byte()?)?,
        status: task_status(r.byte()?)?,
        attempt: r.uint()?,
        attempt_limit: r.uint()?,
        pending_dependencies: r.uint()?,
        worker_id: r.opt_string()?,
        lease_id: r.opt_string()?,
        lease_expires: r.opt_ts()?,
        started_at: r.opt_ts()?,
        last_report_key: r.opt_string()?,
        last_report_lease: r.opt_string()?,
        output_artifact_uri: r.opt_string()?,
        error: r.opt_string()?,
        dead_lettered_at: r.opt_ts()?,
        redispatch_at: r.opt_ts()?,
        redispatch_count: r.uint()?,
        retry_backoff: RetryBackoff {
            initial_ms: r.uint()?,
            max_ms: r.uint()?,
        },
        next_attempt_at: r.opt_ts()?,
        created_at: r.ts()?,
        updated_at: r.ts()?,
    })
}

fn priority_code(p: Priority) -> u8 {
    match p {
        Priority::Interactive => 0,
        Priority::Batch => 1,
    }
}

fn priority(code: u8) -> Result<Priority> {
    Priority::ALL
        .get(usize::from(code))
        .copied()
        .ok_or_else(|| corrupt("priority"))
}

fn job_status_code(s: JobStatus) -> u8 {
    JobStatus::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8
}

fn job_status(code: u8) -> Result<JobStatus> {
    JobStatus::ALL
        .get(usize::from(code))
        .copied()
        .ok_or_else(|| corrupt("job status"))
}

fn task_status_code(s: TaskStatus) -> u8 {
    TaskStatus::ALL.iter().position(|x| *x == s).unwrap_or(0) as u8
}

fn task_status(code: u8) -> Result<TaskStatus> {
    TaskStatus::ALL
        .get(usize::from(code))
        .copied()
        .ok_or_else(|| corrupt("task status"))
}

/// Only this module writes the bytes it reads, so this means a bug, not bad input.
fn corrupt(what: &str) -> Error {
    Error::backend("memory", format!("a packed job is corrupt ({what})"))
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
    /// (offset, length) of every string written so far, for back references.
    strings: Vec<(usize, usize)>,
}

impl Writer {
    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    fn uint(&mut self, v: u32) {
        self.varint(u64::from(v));
    }

    fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    fn varint(&mut self, mut v: u64) {
        loop {
            let low = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(low);
                return;
            }
            self.buf.push(low | 0x80);
        }
    }

    /// A string: `2 × length` then its bytes, or `2 × index + 1` for a string written before.
    fn str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let earlier = self
            .strings
            .iter()
            .position(|&(at, len)| &self.buf[at..at + len] == bytes);
        match earlier {
            Some(i) => self.varint(2 * i as u64 + 1),
            None => {
                self.varint(2 * bytes.len() as u64);
                self.strings.push((self.buf.len(), bytes.len()));
                self.buf.extend_from_slice(bytes);
            }
        }
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.byte(0),
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
        }
    }

    fn ts(&mut self, t: Timestamp) {
        self.buf.extend_from_slice(&t.unix_micros().to_le_bytes());
    }

    fn opt_ts(&mut self, t: Option<Timestamp>) {
        match t {
            None => self.byte(0),
            Some(t) => {
                self.byte(1);
                self.ts(t);
            }
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    strings: Vec<&'a str>,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            at: 0,
            strings: Vec::new(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or_else(|| corrupt("length"))?;
        let bytes = self
            .buf
            .get(self.at..end)
            .ok_or_else(|| corrupt("length"))?;
        self.at = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("integer"))
    }

    fn uint(&mut self) -> Result<u32> {
        u32::try_from(self.varint()?).map_err(|_| corrupt("integer"))
    }

    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.varint()?).map_err(|_| corrupt("count"))
    }

    fn str(&mut self) -> Result<&'a str> {
        let head = self.varint()?;
        let index = usize::try_from(head / 2).map_err(|_| corrupt("string"))?;
        if head % 2 == 1 {
            return self
                .strings
                .get(index)
                .copied()
                .ok_or_else(|| corrupt("string reference"));
        }
        let bytes = self.take(index)?;
        let s = std::str::from_utf8(bytes).map_err(|_| corrupt("string"))?;
        self.strings.push(s);
        Ok(s)
    }

    fn string(&mut self) -> Result<String> {
        self.str().map(str::to_owned)
    }

    fn opt_string(&mut self) -> Result<Option<String>> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            _ => Err(corrupt("option")),
        }
    }

    fn ts(&mut self) -> Result<Timestamp> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| corrupt("timestamp"))?;
        Ok(Timestamp::from_unix_micros(i64::from_le_bytes(bytes)))
    }

    fn opt_ts(&mut self) -> Result<Option<Timestamp>> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.ts().map(Some),
            _ => Err(corrupt("option")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(micros: i64) -> Timestamp {
        Timestamp::from_unix_micros(1_790_000_000_000_000 + micros)
    }

    fn sample() -> (Job, Vec<Task>) {
        let job = Job {
            job_id: JobId::new("job-0190a"),
            tenant: "acme".into(),
            job_type: "batch_analysis".into(),
            input: "Analyze ünïcode tickets".into(),
            policy: Some("enterprise-default".into()),
            priority: Priority::Batch,
            status: JobStatus::Completed,
            message: None,
            result_artifact_uri: Some("s3://out/job-0190a/sum".into()),
            sink_task_id: "sum".into(),
            task_count: 2,
            completed_tasks: 2,
            dead_tasks: 0,
            schedule_id: Some("nightly".into()),
            scheduled_for: Some(at(0)),
            created_at: at(1),
            updated_at: at(2),
        };
        let base = Task {
            job_id: job.job_id.clone(),
            task_id: "split".into(),
            task_type: "tool_execution".into(),
            inputs: BTreeMap::from([
                ("op".to_owned(), "split".to_owned()),
                ("text".to_owned(), job.input.clone()),
            ]),
            dependencies: vec![],
            max_retries: 100,
            timeout_sec: 86_400,
            priority: Priority::Batch,
            status: TaskStatus::Completed,
            attempt: 4,
            attempt_limit: 104,
            pending_dependencies: 0,
            worker_id: Some("w-1".into()),
            lease_id: Some("lease-4-0123456789abcdef0123456789abcdef".into()),
            lease_expires: None,
            started_at: Some(at(3)),
            last_report_key: Some("k-1".into()),
            last_report_lease: Some("lease-4-0123456789abcdef0123456789abcdef".into()),
            output_artifact_uri: Some("s3://out/job-0190a/split".into()),
            error: Some("first attempt failed".into()),
            dead_lettered_at: None,
            redispatch_at: Some(at(-5)),
            redispatch_count: 7,
            retry_backoff: RetryBackoff {
                initial_ms: 250,
                max_ms: 9_000,
            },
            next_attempt_at: Some(at(7)),
            created_at: at(1),
            updated_at: at(4),
        };
        let sink = Task {
            task_id: "sum".into(),
            task_type: "llm_inference".into(),
            inputs: BTreeMap::new(),
            dependencies: vec!["split".into()],
            priority: Priority::Batch,
            attempt: 1,
            attempt_limit: 3,
            worker_id: None,
            last_report_key: None,
            error: None,
            output_artifact_uri: job.result_artifact_uri.clone(),
            dead_lettered_at: Some(at(9)),
            redispatch_at: None,
            started_at: None,
            ..base.clone()
        };
        (job, vec![base, sink])
    }

    #[test]
    fn a_packed_job_reads_back_exactly() {
        let (job, tasks) = sample();
        let bytes = pack(&job, tasks.iter());
        let (job2, tasks2) = unpack("job-0190a", &bytes).unwrap();
        assert_eq!(job2, job);
        assert_eq!(tasks2, tasks);
        assert_eq!(unpack_job("job-0190a", &bytes).unwrap(), job);
    }

    #[test]
    fn repeated_strings_are_stored_once() {
        let (job, tasks) = sample();
        let bytes = pack(&job, tasks.iter());
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches("0123456789abcdef0123456789abcdef").count(), 1);
        assert_eq!(text.matches("s3://out/job-0190a/sum").count(), 1);
        assert_eq!(text.matches("tickets").count(), 1);
    }

    #[test]
    fn large_numbers_and_old_times_survive() {
        let (mut job, mut tasks) = sample();
        job.task_count = u32::MAX;
        job.created_at = Timestamp::from_unix_micros(-1);
        tasks[0].redispatch_count = u32::MAX;
        tasks[0].lease_expires = Some(at(0).plus(Duration::from_secs(1)));
        let bytes = pack(&job, tasks.iter());
        let (job2, tasks2) = unpack("job-0190a", &bytes).unwrap();
        assert_eq!((job2, tasks2), (job, tasks));
    }

    #[test]
    fn truncated_bytes_are_an_error_not_a_panic() {
        let (job, tasks) = sample();
        let bytes = pack(&job, tasks.iter());
        for cut in 0..bytes.len() {
            assert!(unpack("j", &bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
