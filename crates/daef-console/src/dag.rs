//! A job's DAG drawn as SVG: tasks in columns by dependency depth (the longest path from a
//! task without dependencies), edges from each dependency to its dependent, nodes coloured by
//! status through CSS classes.

use std::collections::BTreeMap;

use daef_api::TaskInfo;

/// Node width and height, and the gaps between columns and rows.
const NODE_W: u32 = 160;
const NODE_H: u32 = 40;
const GAP_X: u32 = 60;
const GAP_Y: u32 = 16;
const MARGIN: u32 = 8;
/// Longest task id drawn in full inside a node.
const MAX_LABEL: usize = 20;

/// A task's box.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) task_id: String,
    pub(crate) label: String,
    pub(crate) status: String,
    pub(crate) x: u32,
    pub(crate) y: u32,
    pub(crate) text_x: u32,
    pub(crate) text_y: u32,
    pub(crate) status_y: u32,
}

/// A dependency edge as an SVG path.
#[derive(Debug)]
pub(crate) struct Edge {
    pub(crate) path: String,
}

/// The laid-out graph.
#[derive(Debug)]
pub(crate) struct Dag {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
    /// Columns (dependency depths).
    pub(crate) layers: usize,
}

/// Lays out `tasks` (a whole job's tasks; the planner guarantees they form a DAG).
pub(crate) fn layout(tasks: &[TaskInfo]) -> Dag {
    let by_id: BTreeMap<&str, &TaskInfo> = tasks.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    for task in tasks {
        depth_of(task.task_id.as_str(), &by_id, &mut depth);
    }
    let mut columns: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (id, d) in &depth {
        columns.entry(*d).or_default().push(id);
    }
    let mut place: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    let mut nodes = Vec::with_capacity(tasks.len());
    let mut tallest = 0;
    for (d, ids) in &columns {
        tallest = tallest.max(ids.len());
        for (row, id) in ids.iter().enumerate() {
            let x = MARGIN + *d as u32 * (NODE_W + GAP_X);
            let y = MARGIN + row as u32 * (NODE_H + GAP_Y);
            place.insert(id, (x, y));
            let task = by_id[id];
            nodes.push(Node {
                task_id: task.task_id.clone(),
                label: short(&task.task_id),
                status: task.status.to_string(),
                x,
                y,
                text_x: x + 8,
                text_y: y + 16,
                status_y: y + 32,
            });
        }
    }
    let mut edges = Vec::new();
    for task in tasks {
        let Some(&(tx, ty)) = place.get(task.task_id.as_str()) else {
            continue;
        };
        for dep in &task.dependencies {
            let Some(&(fx, fy)) = place.get(dep.as_str()) else {
                continue;
            };
            let (x1, y1) = (fx + NODE_W, fy + NODE_H / 2);
            let (x2, y2) = (tx, ty + NODE_H / 2);
            let mid = (x1 + x2) / 2;
            edges.push(Edge {
                path: format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"),
            });
        }
    }
    let layers = columns.len();
    Dag {
        width: 2 * MARGIN + layers as u32 * (NODE_W + GAP_X) - GAP_X.min(layers as u32 * GAP_X),
        height: 2 * MARGIN + tallest as u32 * (NODE_H + GAP_Y) - GAP_Y.min(tallest as u32 * GAP_Y),
        nodes,
        edges,
        layers,
    }
}

/// The longest dependency path to `id` (0 for a task without dependencies), memoised. A
/// dependency that is missing or on a cycle (neither can be stored) counts as depth 0.
fn depth_of<'a>(
    id: &'a str,
    by_id: &BTreeMap<&'a str, &'a TaskInfo>,
    memo: &mut BTreeMap<&'a str, usize>,
) -> usize {
    if let Some(d) = memo.get(id) {
        return *d;
    }
    // Marks the task while its dependencies are visited, so a cycle ends here.
    memo.insert(id, 0);
    let d = by_id.get(id).map_or(0, |task| {
        task.dependencies
            .iter()
            .map(|dep| match by_id.get_key_value(dep.as_str()) {
                Some((dep, _)) => depth_of(dep, by_id, memo) + 1,
                None => 0,
            })
            .max()
            .unwrap_or(0)
    });
    memo.insert(id, d);
    d
}

fn short(id: &str) -> String {
    if id.chars().count() <= MAX_LABEL {
        id.to_owned()
    } else {
        let head: String = id.chars().take(MAX_LABEL - 1).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daef_core::Timestamp;
    use daef_core::model::TaskStatus;

    fn task(id: &str, deps: &[&str], status: TaskStatus) -> TaskInfo {
        TaskInfo {
            task_id: id.into(),
            task_type: "t".into(),
            status,
            attempt: 0,
            dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
            worker_id: None,
            lease_id: None,
            lease_expires: None,
            output_artifact_uri: None,
            error: None,
            next_attempt_at: None,
            created_at: Timestamp::from_unix_micros(0),
            updated_at: Timestamp::from_unix_micros(0),
        }
    }

    #[test]
    fn tasks_are_placed_in_columns_by_their_longest_dependency_path() {
        // a → b → d, a → c → d, a → d: d sits after b and c, not beside them.
        let dag = layout(&[
            task("d", &["b", "c", "a"], TaskStatus::Queued),
            task("a", &[], TaskStatus::Completed),
            task("b", &["a"], TaskStatus::Running),
            task("c", &["a"], TaskStatus::Failed),
        ]);
        assert_eq!(dag.layers, 3);
        let x = |id: &str| dag.nodes.iter().find(|n| n.task_id == id).map(|n| n.x);
        assert_eq!(x("a"), Some(MARGIN));
        assert_eq!(x("b"), x("c"));
        assert_eq!(x("d"), Some(MARGIN + 2 * (NODE_W + GAP_X)));
        assert_eq!(dag.edges.len(), 5);
        assert_eq!(dag.width, 2 * MARGIN + 3 * NODE_W + 2 * GAP_X);
        assert_eq!(dag.height, 2 * MARGIN + 2 * NODE_H + GAP_Y);
        let statuses: Vec<_> = dag.nodes.iter().map(|n| n.status.as_str()).collect();
        assert_eq!(statuses, ["Completed", "Running", "Failed", "Queued"]);
    }

    #[test]
    fn long_ids_are_shortened_and_an_empty_job_draws_nothing() {
        assert_eq!(short("abcdefghijklmnopqrstuvwxyz"), "abcdefghijklmnopqrs…");
        let dag = layout(&[]);
        assert_eq!((dag.nodes.len(), dag.layers), (0, 0));
    }
}
