//! From the domain's records to their wire form. Each conversion takes what the response needs
//! and nothing else: a record's bookkeeping (attempt limits, re-enqueue deadlines, report keys)
//! never reaches the wire.

use std::time::Duration;

use daef_core::Timestamp;
use daef_core::model::{self, Job, Task};
use daef_core::planner::JobSpec;
use daef_core::schedule::Schedule;

use crate::{
    Assignment, DeadLetter, JobInfo, JobSubmission, ScheduleInfo, TaskInfo, TaskSubmission,
    WorkerInfo,
};

impl From<&Job> for JobInfo {
    fn from(job: &Job) -> Self {
        Self {
            job_id: job.job_id.clone(),
            tenant: job.tenant.clone(),
            job_type: job.job_type.clone(),
            priority: job.priority,
            status: job.status,
            policy: job.policy.clone(),
            message: job.message.clone(),
            result_artifact_uri: job.result_artifact_uri.clone(),
            schedule_id: job.schedule_id.clone(),
            scheduled_for: job.scheduled_for,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

impl From<&JobSpec> for JobSubmission {
    fn from(spec: &JobSpec) -> Self {
        Self {
            job_type: spec.job_type.clone(),
            // An explicit DAG needs no input; the planner stored an empty one.
            input: (spec.tasks.is_none() || !spec.input.is_empty()).then(|| spec.input.clone()),
            policy: spec.policy.clone(),
            priority: Some(spec.priority),
            tenant: None,
            tasks: spec.tasks.as_ref().map(|tasks| {
                tasks
                    .iter()
                    .map(|t| TaskSubmission {
                        task_id: t.task_id.clone(),
                        task_type: t.task_type.clone(),
                        inputs: t.inputs.clone(),
                        dependencies: t.dependencies.clone(),
                        max_retries: t.max_retries,
                        timeout_sec: t.timeout_sec,
                        retry_backoff: t.retry_backoff,
                    })
                    .collect()
            }),
            run_at: None,
            delay_seconds: None,
        }
    }
}

impl From<&Schedule> for ScheduleInfo {
    fn from(schedule: &Schedule) -> Self {
        Self {
            schedule_id: schedule.schedule_id.clone(),
            tenant: schedule.tenant.clone(),
            cron: schedule.cron.clone(),
            job: JobSubmission::from(&schedule.template),
            paused: schedule.paused,
            next_fire_at: (!schedule.paused).then_some(schedule.next_fire_at),
            last_fire_at: schedule.last_fire_at,
            last_job_id: schedule.last_job_id.clone(),
            created_at: schedule.created_at,
            updated_at: schedule.updated_at,
        }
    }
}

impl From<&Task> for TaskInfo {
    fn from(task: &Task) -> Self {
        Self {
            task_id: task.task_id.clone(),
            task_type: task.task_type.clone(),
            status: task.status,
            attempt: task.attempt,
            dependencies: task.dependencies.clone(),
            worker_id: task.worker_id.clone(),
            lease_id: task.lease_id.clone(),
            lease_expires: task.lease_expires,
            output_artifact_uri: task.output_artifact_uri.clone(),
            error: task.error.clone(),
            next_attempt_at: task
                .next_attempt_at
                .filter(|_| task.status == model::TaskStatus::Queued),
            created_at: task.created_at,
            updated_at: task.updated_at,
        }
    }
}

impl From<model::Assignment> for Assignment {
    fn from(a: model::Assignment) -> Self {
        Self {
            job_id: a.job_id,
            task_id: a.task_id,
            task_type: a.task_type,
            inputs: a.inputs,
            attempt: a.attempt,
            lease_id: a.lease_id,
            lease_expires: Some(a.lease_expires),
            timeout_sec: Some(a.timeout_sec),
        }
    }
}

impl From<model::DeadLetter> for DeadLetter {
    fn from(d: model::DeadLetter) -> Self {
        Self {
            job_id: d.job_id,
            task_id: d.task_id,
            tenant: d.tenant,
            attempt: d.attempt,
            error: d.error,
            dead_lettered_at: d.dead_lettered_at,
        }
    }
}

impl WorkerInfo {
    /// The wire form of `worker` as seen at `now`, when workers heartbeat every
    /// `heartbeat_interval`.
    pub fn new(worker: model::Worker, now: Timestamp, heartbeat_interval: Duration) -> Self {
        let alive = worker.is_alive(now, heartbeat_interval);
        Self {
            worker_id: worker.worker_id,
            capabilities: worker.capabilities,
            stats: worker.stats,
            registered_at: worker.registered_at,
            last_heartbeat: worker.last_heartbeat,
            alive,
        }
    }
}
