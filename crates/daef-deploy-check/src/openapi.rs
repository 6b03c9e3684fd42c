//! The operations an OpenAPI document describes.

use serde_json::Value;

/// HTTP methods an OpenAPI path item may hold.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One operation: a method on a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Upper-case method (`GET`).
    pub method: String,
    /// The path template (`/v1/jobs/{id}`).
    pub path: String,
    /// `operationId`, when given.
    pub operation_id: Option<String>,
    /// Whether a token is required: the effective `security` is non-empty and has no `{}`
    /// (anonymous) alternative.
    pub secured: bool,
    /// The documented response statuses (`"200"`, `"404"`, `"default"`).
    pub statuses: Vec<String>,
}

/// Every operation of `doc`, sorted by path, then by method name. Errors when `paths` is
/// missing.
pub fn operations(doc: &Value) -> Result<Vec<Operation>, String> {
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or("the document has no `paths` object")?;
    let global = doc.get("security");
    let mut out = Vec::new();
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            return Err(format!("path {path} is not an object"));
        };
        for (method, op) in item {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let security = op.get("security").or(global);
            let secured = match security.and_then(Value::as_array) {
                None => false,
                Some(alternatives) => {
                    !alternatives.is_empty()
                        && alternatives
                            .iter()
                            .all(|a| a.as_object().is_some_and(|o| !o.is_empty()))
                }
            };
            let statuses = op
                .get("responses")
                .and_then(Value::as_object)
                .map(|r| r.keys().cloned().collect())
                .unwrap_or_default();
            out.push(Operation {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                operation_id: op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                secured,
                statuses,
            });
        }
    }
    Ok(out)
}

/// `path` with every `{param}` replaced by `value`.
pub fn instantiate(path: &str, value: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                out.push_str(value);
                rest = &rest[open + close + 1..];
            }
            None => {
                rest = &rest[open..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_operations_with_effective_security() {
        let doc = json!({
            "security": [{"bearer": []}],
            "paths": {
                "/healthz": {"get": {"operationId": "healthz", "security": [], "responses": {"200": {}}}},
                "/v1/jobs/{id}": {
                    "parameters": [],
                    "get": {"responses": {"200": {}, "404": {}}},
                    "delete": {"security": [{"bearer": []}, {}], "responses": {}}
                }
            }
        });
        let ops = operations(&doc).unwrap();
        let summary: Vec<(&str, &str, bool)> = ops
            .iter()
            .map(|o| (o.method.as_str(), o.path.as_str(), o.secured))
            .collect();
        assert_eq!(
            summary,
            [
                ("GET", "/healthz", false),
                ("DELETE", "/v1/jobs/{id}", false),
                ("GET", "/v1/jobs/{id}", true)
            ]
        );
        assert_eq!(ops[0].operation_id.as_deref(), Some("healthz"));
        assert_eq!(ops[2].statuses, ["200", "404"]);
        assert!(operations(&json!({})).is_err());
    }

    #[test]
    fn instantiates_templates() {
        assert_eq!(instantiate("/v1/jobs/{id}/tasks", "x"), "/v1/jobs/x/tasks");
        assert_eq!(instantiate("/a/{b}/{c}", "1"), "/a/1/1");
        assert_eq!(instantiate("/plain", "1"), "/plain");
    }
}
