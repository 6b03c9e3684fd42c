//! Checks a JSON value against an OpenAPI 3.1 schema, for the parts that make a wire type and
//! its description agree: `$ref`, `type` (one or several), `const`, `enum`, `properties`,
//! `required`, `additionalProperties`, `items`, `oneOf`/`anyOf`. Numeric bounds, patterns and
//! formats are left to schemathesis, which fuzzes the live gateway.
//!
//! An object schema (one with `type: object`) without `additionalProperties` is read as closed
//! here: a field the type writes and the description does not name is drift, whatever JSON
//! Schema would allow.

use serde_json::Value;

/// The problems of `value` against `schema` (empty when it conforms), each naming the JSON path
/// (`$.jobs[0].status`). `doc` is the whole OpenAPI document, for `$ref`s.
pub fn problems(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check(doc, schema, value, "$", &mut found);
    found
}

/// The names an object schema lists under `properties`, after resolving `$ref`.
pub fn property_names<'a>(doc: &'a Value, schema: &'a Value) -> Vec<&'a str> {
    resolve(doc, schema)
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Follows `$ref: "#/…"` (repeatedly) within `doc`; a schema without one is returned as is.
pub fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    let mut schema = schema;
    for _ in 0..16 {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').unwrap_or(reference);
                match doc.pointer(pointer) {
                    Some(target) => schema = target,
                    None => return &Value::Null,
                }
            }
            None => return schema,
        }
    }
    schema
}

fn check(doc: &Value, schema: &Value, value: &Value, path: &str, found: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str)
        && resolve(doc, schema).is_null()
    {
        found.push(format!("{path}: unresolved $ref {reference}"));
        return;
    }
    let schema = resolve(doc, schema);
    for keyword in ["oneOf", "anyOf"] {
        if let Some(branches) = schema.get(keyword).and_then(Value::as_array) {
            let fits = branches
                .iter()
                .any(|branch| problems_at(doc, branch, value, path).is_empty());
            if !fits {
                found.push(format!("{path}: {value} fits no branch of {keyword}"));
            }
        }
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        found.push(format!("{path}: {value} is not the constant {expected}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        found.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(several) => several.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.iter().any(|name| is_type(value, name)) {
            found.push(format!("{path}: {value} is not of type {names:?}"));
            return;
        }
    }
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !fields.contains_key(name) {
                    found.push(format!("{path}: required field `{name}` is missing"));
                }
            }
            for (name, field) in fields {
                let field_path = format!("{path}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(field_schema) => check(doc, field_schema, field, &field_path, found),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(true)) => {}
                        Some(extra @ Value::Object(_)) => {
                            check(doc, extra, field, &field_path, found);
                        }
                        // A schema that does not say it is an object (an `anyOf` branch
                        // adding `required`) only constrains: the fields are described by
                        // the schema it belongs to.
                        _ if schema.get("type").is_none() => {}
                        _ => {
                            found.push(format!("{field_path}: the description names no such field"))
                        }
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(doc, item_schema, item, &format!("{path}[{i}]"), found);
                }
            }
        }
        _ => {}
    }
}

fn problems_at(doc: &Value, schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    check(doc, schema, value, path, &mut found);
    found
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_missing_extra_and_mistyped_fields() {
        let doc = json!({"components": {"schemas": {"Id": {"type": "string"}}}});
        let schema = json!({
            "type": "object",
            "required": ["id", "n"],
            "properties": {
                "id": {"$ref": "#/components/schemas/Id"},
                "n": {"type": "integer"},
                "flag": {"oneOf": [{"type": "boolean"}, {"type": "integer"}]},
                "list": {"type": "array", "items": {"type": "string"}},
            },
        });
        assert!(problems(&doc, &schema, &json!({"id": "a", "n": 1, "flag": true})).is_empty());
        let found = problems(
            &doc,
            &schema,
            &json!({"id": 1, "flag": "x", "list": ["a", 2], "extra": 0}),
        );
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found.iter().any(|p| p.contains("`n` is missing")));
        assert!(found.iter().any(|p| p.starts_with("$.id:")));
        assert!(found.iter().any(|p| p.starts_with("$.flag:")));
        assert!(found.iter().any(|p| p.starts_with("$.list[1]:")));
        assert!(found.iter().any(|p| p.starts_with("$.extra:")));
        assert_eq!(property_names(&doc, &schema).len(), 4);
    }
}
