//! Turns a job request into its DAG of tasks: the default planner, and validation of an
//! explicit DAG. Nothing is stored unless planning succeeds.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{Priority, RetryBackoff};
use crate::time::Timestamp;

/// Most tasks one job may have.
pub const MAX_TASKS_PER_JOB: usize = 1_000;
/// Longest task id.
pub const MAX_TASK_ID_LEN: usize = 128;
/// Highest `max_retries`.
pub const MAX_RETRIES_LIMIT: u32 = 100;
/// Highest `timeout_sec` (one day).
pub const MAX_TIMEOUT_SEC: u32 = 86_400;
/// `max_retries` when a task does not say (three attempts in all).
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// `timeout_sec` when a task does not say.
pub const DEFAULT_TIMEOUT_SEC: u32 = 60;

/// A job as a client asks for it, before planning. Its serde form is how a schedule's job
/// template is stored (not the wire form, which is `daef-api`'s).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
// A field added later reads as its default from templates stored before it.
#[serde(default)]
pub struct JobSpec {
    /// The job type; `batch_analysis` selects the analysis chain of the default planner.
    pub job_type: String,
    /// The input text.
    pub input: String,
    /// The client's policy name, kept as given.
    pub policy: Option<String>,
    /// Dispatch class.
    pub priority: Priority,
    /// An explicit DAG; `None` lets the default planner decide.
    pub tasks: Option<Vec<TaskSpec>>,
    /// A delayed job: its tasks are not dispatched before this.
    pub run_at: Option<Timestamp>,
}

/// One task of an explicit DAG.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskSpec {
    /// Unique within the job.
    pub task_id: String,
    /// The task's type.
    pub task_type: String,
    /// Parameters for the worker.
    pub inputs: BTreeMap<String, String>,
    /// Task ids that must complete first.
    pub dependencies: Vec<String>,
    /// Retries after a failure (default 2).
    pub max_retries: Option<u32>,
    /// Limit on one attempt (default 60 s).
    pub timeout_sec: Option<u32>,
    /// Its retry back-off (default: the gateway's `DAEF_RETRY_BACKOFF_*`).
    pub retry_backoff: Option<RetryBackoff>,
}

/// A validated task, ready to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedTask {
    /// Unique within the job.
    pub task_id: String,
    /// The task's type.
    pub task_type: String,
    /// Parameters for the worker.
    pub inputs: BTreeMap<String, String>,
    /// Task ids that must complete first.
    pub dependencies: Vec<String>,
    /// Retries after a failure.
    pub max_retries: u32,
    /// Limit on one attempt, in seconds.
    pub timeout_sec: u32,
    /// Its own retry back-off; `None` takes the gateway's default.
    pub retry_backoff: Option<RetryBackoff>,
}

/// A validated DAG.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The tasks, in the order given (default planner: chain order).
    pub tasks: Vec<PlannedTask>,
    /// The task whose output becomes the job's result: nothing depends on it, and among several
    /// such tasks it is the last by task id.
    pub sink_task_id: String,
}

/// True when `id` is 1–128 characters of `[A-Za-z0-9._-]`.
pub fn is_valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TASK_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Plans a job: validates its explicit DAG or applies the default planner.
pub fn plan(spec: &JobSpec) -> Result<Plan, Error> {
    let tasks = match &spec.tasks {
        Some(tasks) => validate_dag(tasks)?,
        None => default_plan(&spec.job_type, &spec.input),
    };
    let sink_task_id = sink_of(&tasks);
    Ok(Plan {
        tasks,
        sink_task_id,
    })
}

/// The default planner: the three-step analysis chain for `batch_analysis` jobs and inputs that
/// mention "analyze", one `llm_inference` task otherwise.
pub fn default_plan(job_type: &str, input: &str) -> Vec<PlannedTask> {
    let task = |id: &str, ty: &str, inputs: &[(&str, &str)], deps: &[&str], timeout| PlannedTask {
        task_id: id.to_owned(),
        task_type: ty.to_owned(),
        inputs: inputs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
        max_retries: DEFAULT_MAX_RETRIES,
        timeout_sec: timeout,
        retry_backoff: None,
    };
    if job_type == "batch_analysis" || input.to_lowercase().contains("analyze") {
        vec![
            task(
                "t1-split",
                "tool_execution",
                &[("op", "split"), ("text", input)],
                &[],
                30,
            ),
            task(
                "t2-embed",
                "embedding",
                &[("op", "embed")],
                &["t1-split"],
                60,
            ),
            task(
                "t3-summarize",
                "llm_inference",
                &[("op", "summarize")],
                &["t2-embed"],
                60,
            ),
        ]
    } else {
        vec![task(
            "t1",
            "llm_inference",
            &[("prompt", input)],
            &[],
            DEFAULT_TIMEOUT_SEC,
        )]
    }
}

/// Validates an explicit DAG; every error names the field at fault.
pub fn validate_dag(tasks: &[TaskSpec]) -> Result<Vec<PlannedTask>, Error> {
    if tasks.is_empty() {
        return Err(Error::invalid("tasks must contain at least one task"));
    }
    if tasks.len() > MAX_TASKS_PER_JOB {
        return Err(Error::invalid(format!(
            "tasks must contain at most {MAX_TASKS_PER_JOB} tasks (got {})",
            tasks.len()
        )));
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if !is_valid_task_id(&t.task_id) {
            return Err(Error::invalid(format!(
                "tasks[{i}].task_id must be 1-{MAX_TASK_ID_LEN} characters of [A-Za-z0-9._-]"
            )));
        }
        if index.insert(&t.task_id, i).is_some() {
            return Err(Error::invalid(format!(
                "tasks[{i}].task_id {:?} is not unique",
                t.task_id
            )));
        }
        if t.task_type.trim().is_empty() {
            return Err(Error::invalid(format!(
                "tasks[{i}].type must be a non-empty string"
            )));
        }
        if let Some(r) = t.max_retries.filter(|r| *r > MAX_RETRIES_LIMIT) {
            return Err(Error::invalid(format!(
                "tasks[{i}].max_retries must be an integer from 0 to {MAX_RETRIES_LIMIT} (got {r})"
            )));
        }
        if let Some(s) = t.timeout_sec.filter(|s| *s == 0 || *s > MAX_TIMEOUT_SEC) {
            return Err(Error::invalid(format!(
                "tasks[{i}].timeout_sec must be an integer from 1 to {MAX_TIMEOUT_SEC} (got {s})"
            )));
        }
    }
    for (i, t) in tasks.iter().enumerate() {
        let mut seen = HashSet::with_capacity(t.dependencies.len());
        for (j, dep) in t.dependencies.iter().enumerate() {
            if !index.contains_key(dep.as_str()) {
                return Err(Error::invalid(format!(
                    "tasks[{i}].dependencies[{j}] names unknown task {dep:?}"
                )));
            }
            if dep == &t.task_id {
                return Err(Error::invalid(format!(
                    "tasks[{i}].dependencies[{j}]: task {dep:?} depends on itself"
                )));
            }
            if !seen.insert(dep.as_str()) {
                return Err(Error::invalid(format!(
                    "tasks[{i}].dependencies[{j}] repeats {dep:?}"
                )));
            }
        }
    }
    if let Some(task_id) = find_cycle(tasks, &index) {
        return Err(Error::invalid(format!(
            "tasks contain a dependency cycle through {task_id:?}"
        )));
    }
    Ok(tasks
        .iter()
        .map(|t| PlannedTask {
            task_id: t.task_id.clone(),
            task_type: t.task_type.clone(),
            inputs: t.inputs.clone(),
            dependencies: t.dependencies.clone(),
            max_retries: t.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            timeout_sec: t.timeout_sec.unwrap_or(DEFAULT_TIMEOUT_SEC),
            retry_backoff: t.retry_backoff,
        })
        .collect())
}

/// Kahn's algorithm; returns a task on a cycle, if any.
fn find_cycle(tasks: &[TaskSpec], index: &HashMap<&str, usize>) -> Option<String> {
    let mut indegree: Vec<usize> = tasks.iter().map(|t| t.dependencies.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
    for (i, t) in tasks.iter().enumerate() {
        for dep in &t.dependencies {
            dependents[index[dep.as_str()]].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..tasks.len()).filter(|i| indegree[*i] == 0).collect();
    let mut visited = 0;
    while let Some(i) = ready.pop() {
        visited += 1;
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.push(d);
            }
        }
    }
    if visited == tasks.len() {
        return None;
    }
    tasks
        .iter()
        .zip(&indegree)
        .find(|(_, deg)| **deg > 0)
        .map(|(t, _)| t.task_id.clone())
}

fn sink_of(tasks: &[PlannedTask]) -> String {
    let depended_on: HashSet<&str> = tasks
        .iter()
        .flat_map(|t| t.dependencies.iter().map(String::as_str))
        .collect();
    tasks
        .iter()
        .map(|t| t.task_id.as_str())
        .filter(|id| !depended_on.contains(id))
        .max()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, deps: &[&str]) -> TaskSpec {
        TaskSpec {
            task_id: id.into(),
            task_type: "t".into(),
            dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
            ..TaskSpec::default()
        }
    }

    #[track_caller]
    fn check_invalid(tasks: Vec<TaskSpec>, expected: &str) {
        let err = validate_dag(&tasks).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn analysis_chain_for_batch_analysis_or_analyze_input() {
        for (ty, input) in [("batch_analysis", "x"), ("chat", "Please ANALYZE these")] {
            let plan = plan(&JobSpec {
                job_type: ty.into(),
                input: input.into(),
                ..JobSpec::default()
            })
            .unwrap();
            let ids: Vec<_> = plan.tasks.iter().map(|t| t.task_id.as_str()).collect();
            assert_eq!(ids, ["t1-split", "t2-embed", "t3-summarize"]);
            assert_eq!(plan.tasks[0].task_type, "tool_execution");
            assert_eq!(plan.tasks[0].inputs["text"], input);
            assert_eq!(plan.tasks[0].inputs["op"], "split");
            assert_eq!(plan.tasks[0].timeout_sec, 30);
            assert_eq!(plan.tasks[1].task_type, "embedding");
            assert_eq!(plan.tasks[1].dependencies, ["t1-split"]);
            assert_eq!(plan.tasks[2].task_type, "llm_inference");
            assert_eq!(plan.tasks[2].inputs["op"], "summarize");
            assert!(plan.tasks.iter().all(|t| t.max_retries == 2));
            assert_eq!(plan.sink_task_id, "t3-summarize");
        }
    }

    #[test]
    fn single_inference_task_otherwise() {
        let plan = plan(&JobSpec {
            job_type: "chat".into(),
            input: "hello".into(),
            ..JobSpec::default()
        })
        .unwrap();
        assert_eq!(plan.tasks.len(), 1);
        let t = &plan.tasks[0];
        assert_eq!(
            (t.task_id.as_str(), t.task_type.as_str(), t.timeout_sec),
            ("t1", "llm_inference", 60)
        );
        assert_eq!(t.inputs["prompt"], "hello");
        assert_eq!(plan.sink_task_id, "t1");
    }

    #[test]
    fn explicit_dag_defaults_and_sink() {
        let plan = plan(&JobSpec {
            tasks: Some(vec![spec("a", &[]), spec("c", &["a"]), spec("b", &["a"])]),
            ..JobSpec::default()
        })
        .unwrap();
        assert_eq!(plan.tasks[0].max_retries, 2);
        assert_eq!(plan.tasks[0].timeout_sec, 60);
        // b and c are both sinks; the last by id wins.
        assert_eq!(plan.sink_task_id, "c");
    }

    #[test]
    fn rejects_bad_dags_naming_the_field() {
        check_invalid(vec![], "tasks must contain at least one task");
        check_invalid(
            vec![spec("", &[])],
            "tasks[0].task_id must be 1-128 characters of [A-Za-z0-9._-]",
        );
        check_invalid(
            vec![spec("a|b", &[])],
            "tasks[0].task_id must be 1-128 characters of [A-Za-z0-9._-]",
        );
        check_invalid(
            vec![spec(&"x".repeat(129), &[])],
            "tasks[0].task_id must be 1-128 characters of [A-Za-z0-9._-]",
        );
        check_invalid(
            vec![spec("a", &[]), spec("a", &[])],
            "tasks[1].task_id \"a\" is not unique",
        );
        check_invalid(
            vec![spec("a", &["zz"])],
            "tasks[0].dependencies[0] names unknown task \"zz\"",
        );
        check_invalid(
            vec![spec("a", &["a"])],
            "tasks[0].dependencies[0]: task \"a\" depends on itself",
        );
        check_invalid(
            vec![spec("a", &[]), spec("b", &["a", "a"])],
            "tasks[1].dependencies[1] repeats \"a\"",
        );
        check_invalid(
            vec![
                spec("a", &["c"]),
                spec("b", &["a"]),
                spec("c", &["b"]),
                spec("d", &[]),
            ],
            "tasks contain a dependency cycle through \"a\"",
        );
        let mut no_type = spec("a", &[]);
        no_type.task_type = " ".into();
        check_invalid(vec![no_type], "tasks[0].type must be a non-empty string");
        let mut retries = spec("a", &[]);
        retries.max_retries = Some(101);
        check_invalid(
            vec![retries],
            "tasks[0].max_retries must be an integer from 0 to 100 (got 101)",
        );
        let mut timeout = spec("a", &[]);
        timeout.timeout_sec = Some(0);
        check_invalid(
            vec![timeout],
            "tasks[0].timeout_sec must be an integer from 1 to 86400 (got 0)",
        );
        let too_many = (0..1001).map(|i| spec(&format!("t{i}"), &[])).collect();
        check_invalid(too_many, "tasks must contain at most 1000 tasks (got 1001)");
    }

    #[test]
    fn accepts_the_largest_dag() {
        let chain: Vec<_> = (0..1000)
            .map(|i| {
                if i == 0 {
                    spec("t0", &[])
                } else {
                    spec(&format!("t{i}"), &[&format!("t{}", i - 1)])
                }
            })
            .collect();
        let planned = validate_dag(&chain).unwrap();
        assert_eq!(planned.len(), 1000);
    }
}
