//! YAML documents as `serde_json::Value` trees, so YAML and JSON assets are walked alike.

use std::path::Path;

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// Every document of a YAML stream (`---`-separated), as JSON values.
pub fn load_all(text: &str) -> Result<Vec<Value>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    docs.iter().map(to_json).collect()
}

/// The documents of a YAML file; errors name the file.
pub fn load_file(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    load_all(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The single document of a YAML file.
pub fn load_one(path: &Path) -> Result<Value, String> {
    let mut docs = load_file(path)?;
    match docs.len() {
        1 => Ok(docs.remove(0)),
        n => Err(format!(
            "{}: expected one YAML document, found {n}",
            path.display()
        )),
    }
}

fn to_json(yaml: &Yaml) -> Result<Value, String> {
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(raw) => {
            let f: f64 = raw.parse().map_err(|_| format!("bad number {raw:?}"))?;
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (k, v) in hash {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    Yaml::Real(r) => r.clone(),
                    Yaml::Null => "null".to_owned(),
                    other => return Err(format!("unsupported mapping key {other:?}")),
                };
                map.insert(key, to_json(v)?);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(format!("unsupported YAML node {yaml:?}"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_become_json() {
        let docs =
            load_all("a: 1\nb: [x, 2.5, true, null]\nc: {'8080': \"8080\"}\n---\nkind: Service\n")
                .unwrap();
        assert_eq!(
            docs,
            vec![
                json!({"a": 1, "b": ["x", 2.5, true, null], "c": {"8080": "8080"}}),
                json!({"kind": "Service"}),
            ]
        );
    }

    #[test]
    fn anchors_are_resolved_and_errors_reported() {
        let docs = load_all("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(docs[0]["other"], json!({"x": 1}));
        assert!(load_all("a: [1, 2").is_err());
    }
}
