//! The deployment assets, read the way their tools read them: a kustomization's resources and
//! generated ConfigMaps, the containers of its workloads with every variable they receive, and
//! the services of a compose file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{envfile, yaml};

/// The workspace root (this crate lives in `crates/daef-deploy-check`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `deploy/` in the workspace.
pub fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

/// A kustomization directory, resolved: its resources' documents and the ConfigMaps it
/// generates. Only local resource files are followed (remote bases would not be reviewable).
#[derive(Clone, Debug)]
pub struct Kustomization {
    /// The directory.
    pub dir: PathBuf,
    /// `kustomization.yaml` itself.
    pub spec: Value,
    /// Every document of every resource file, with the file it came from.
    pub resources: Vec<(PathBuf, Value)>,
    /// Generated ConfigMaps by name: key → value.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Files the generators read (kept so callers can check they exist and are used).
    pub generator_files: Vec<PathBuf>,
}

/// Reads `dir/kustomization.yaml` and everything it refers to.
pub fn kustomization(dir: &Path) -> Result<Kustomization, String> {
    let spec = yaml::load_one(&dir.join("kustomization.yaml"))?;
    let mut resources = Vec::new();
    for entry in spec
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = entry.as_str().ok_or("a resource entry is not a string")?;
        let path = dir.join(name);
        if !path.is_file() {
            return Err(format!(
                "{}: resource {name} is not a file here",
                dir.display()
            ));
        }
        for doc in yaml::load_file(&path)? {
            resources.push((path.clone(), doc));
        }
    }
    let mut config_maps = BTreeMap::new();
    let mut generator_files = Vec::new();
    for generator in spec
        .get("configMapGenerator")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = generator
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a configMapGenerator has no name")?;
        let mut data = BTreeMap::new();
        for env in generator
            .get("envs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let path = dir.join(env.as_str().ok_or("an envs entry is not a string")?);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            data.extend(envfile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?);
            generator_files.push(path);
        }
        for file in generator
            .get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let file = file.as_str().ok_or("a files entry is not a string")?;
            let (key, file) = file.split_once('=').unwrap_or((file, file));
            let path = dir.join(file);
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            data.insert(key.to_owned(), text);
            generator_files.push(path);
        }
        for literal in generator
            .get("literals")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let literal = literal.as_str().ok_or("a literal is not a string")?;
            let (k, v) = literal
                .split_once('=')
                .ok_or_else(|| format!("literal {literal:?} has no '='"))?;
            data.insert(k.to_owned(), v.to_owned());
        }
        config_maps.insert(name.to_owned(), data);
    }
    Ok(Kustomization {
        dir: dir.to_path_buf(),
        spec,
        resources,
        config_maps,
        generator_files,
    })
}

/// One container of a workload and every variable it is given.
#[derive(Clone, Debug)]
pub struct Container {
    /// `<file>: <Kind>/<name> container <container>`, for messages.
    pub origin: String,
    /// The image as written in the manifest (before kustomize's `images` rewrite).
    pub image: String,
    /// Variable names from `env` and from every ConfigMap and Secret of `envFrom`.
    pub env: BTreeSet<String>,
    /// The values known here: `env[].value` and generated ConfigMap data.
    pub values: BTreeMap<String, String>,
    /// The placeholder values of the Secrets it reads, from `secret.example.yaml`.
    pub example_secrets: BTreeMap<String, String>,
    /// The container spec itself.
    pub spec: Value,
}

impl Kustomization {
    /// Resources of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.resources
            .iter()
            .map(|(_, doc)| doc)
            .filter(move |doc| doc.get("kind").and_then(Value::as_str) == Some(kind))
    }

    /// The containers of every workload, with `envFrom` resolved: ConfigMaps against the
    /// generators, Secrets against `secret.example.yaml` beside the kustomization (the shape of
    /// the Secret operators create; a Secret that is not described there is an error, since its
    /// keys could not be checked).
    pub fn containers(&self) -> Result<Vec<Container>, String> {
        let secrets = self.secret_examples()?;
        let mut out = Vec::new();
        for (path, doc) in &self.resources {
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            let pod = match kind {
                "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => {
                    doc.pointer("/spec/template/spec")
                }
                "CronJob" => doc.pointer("/spec/jobTemplate/spec/template/spec"),
                "Pod" => doc.get("spec"),
                _ => None,
            };
            let Some(pod) = pod else { continue };
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            for list in ["initContainers", "containers"] {
                for container in pod
                    .get(list)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let cname = container.get("name").and_then(Value::as_str).unwrap_or("?");
                    let origin = format!("{file}: {kind}/{name} container {cname}");
                    let mut env = BTreeSet::new();
                    let mut values = BTreeMap::new();
                    let mut example_secrets = BTreeMap::new();
                    for var in container
                        .get("env")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let var_name = var
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| format!("{origin}: env entry without a name"))?;
                        env.insert(var_name.to_owned());
                        if let Some(value) = var.get("value").and_then(Value::as_str) {
                            values.insert(var_name.to_owned(), value.to_owned());
                        }
                    }
                    for from in container
                        .get("envFrom")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if from.get("prefix").is_some() {
                            return Err(format!(
                                "{origin}: envFrom with a prefix cannot be checked"
                            ));
                        }
                        if let Some(cm) = from.pointer("/configMapRef/name").and_then(Value::as_str)
                        {
                            let data = self
                                .config_maps
                                .get(cm)
                                .ok_or_else(|| format!("{origin}: ConfigMap {cm} is not generated by this kustomization"))?;
                            env.extend(data.keys().cloned());
                            values.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
                        } else if let Some(secret) =
                            from.pointer("/secretRef/name").and_then(Value::as_str)
                        {
                            let data = secrets.get(secret).ok_or_else(|| {
                                format!("{origin}: Secret {secret} is not described in secret.example.yaml")
                            })?;
                            env.extend(data.keys().cloned());
                            example_secrets
                                .extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
                        } else {
                            return Err(format!("{origin}: envFrom entry of an unknown kind"));
                        }
                    }
                    out.push(Container {
                        origin,
                        image: container
                            .get("image")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        env,
                        values,
                        example_secrets,
                        spec: container.clone(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Secret name → key → placeholder value, from `secret.example.yaml` (absent file: no
    /// Secrets). Values are `stringData`'s; `data` entries keep their base64 text.
    pub fn secret_examples(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
        let path = self.dir.join("secret.example.yaml");
        let mut out = BTreeMap::new();
        if !path.is_file() {
            return Ok(out);
        }
        for doc in yaml::load_file(&path)? {
            if doc.get("kind").and_then(Value::as_str) != Some("Secret") {
                continue;
            }
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .ok_or("a Secret without a name")?;
            let mut data = BTreeMap::new();
            for field in ["data", "stringData"] {
                for (k, v) in doc
                    .get(field)
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    let v = v
                        .as_str()
                        .ok_or_else(|| format!("Secret {name}: {k} is not a string"))?;
                    data.insert(k.clone(), v.to_owned());
                }
            }
            out.insert(name.to_owned(), data);
        }
        Ok(out)
    }
}

/// A compose service's `environment`, in either of its forms (`{K: v}` or `["K=v"]`).
pub fn compose_env(service: &Value) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    match service.get("environment") {
        None => {}
        Some(Value::Object(map)) => {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                out.insert(k.clone(), v);
            }
        }
        Some(Value::Array(items)) => {
            for item in items {
                let item = item
                    .as_str()
                    .ok_or("an environment entry is not a string")?;
                let (k, v) = item.split_once('=').unwrap_or((item, ""));
                out.insert(k.to_owned(), v.to_owned());
            }
        }
        Some(other) => return Err(format!("environment is neither a map nor a list: {other}")),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compose_environment_forms() {
        let map = compose_env(&json!({"environment": {"A": "1", "B": 2, "C": null}})).unwrap();
        assert_eq!(map["A"], "1");
        assert_eq!(map["B"], "2");
        assert_eq!(map["C"], "");
        let list = compose_env(&json!({"environment": ["A=1", "B"]})).unwrap();
        assert_eq!(list["A"], "1");
        assert_eq!(list["B"], "");
        assert!(compose_env(&json!({})).unwrap().is_empty());
        assert!(compose_env(&json!({"environment": 3})).is_err());
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("crates/daef-deploy-check").is_dir());
    }
}
