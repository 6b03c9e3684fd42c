//! The gateway and the worker started with exactly the configuration the Kubernetes manifests
//! (ConfigMaps plus the example Secrets) and the compose file give them — only the addresses of
//! Postgres, Redis, the gateway and the output directory swapped for this machine's — run a job
//! together. This is what "the manifests work" can mean without a cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use daef_deploy_check::assets::{self, Container, compose_env, deploy_dir};
use daef_deploy_check::yaml;
use daef_testenv::postgres::TestSchema;
use serde_json::{Value, json};

use crate::harness::{Gateway, command, eventually, worker_bin};
use crate::metrics::search_path_dsn;

/// A worker child process, killed when dropped (its log printed if the test is failing), and
/// the output directory it wrote to and its log, removed.
struct Worker {
    child: Child,
    output_dir: PathBuf,
    log: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- daef-worker log ---\n{log}");
        }
        let _ = std::fs::remove_dir_all(&self.output_dir);
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A fresh directory path for a worker's outputs.
fn output_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "daef-deploy-check-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn container(dir: &str, image: &str) -> Container {
    let k = assets::kustomization(&deploy_dir().join("kubernetes").join(dir))
        .unwrap_or_else(|e| panic!("{e}"));
    k.containers()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|c| c.image == image)
        .unwrap_or_else(|| panic!("{dir}: no {image} container"))
}

/// The asset's variables, with `overrides` replacing theirs — only addresses: of Postgres,
/// Redis and the gateway, which name places only a cluster or the compose network has, and of
/// the output directory. Every variable the asset sets must be passed on or overridden, so none
/// goes untested.
fn configuration(
    origin: &str,
    asset: &BTreeMap<String, String>,
    all: impl IntoIterator<Item = String>,
    overrides: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut vars = asset.clone();
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), v.clone());
    }
    for name in all {
        assert!(
            vars.contains_key(&name),
            "{origin}: {name} is set by the asset but has no value here"
        );
    }
    // An empty value stands for "not set" (a local Redis has no password).
    vars.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

fn start_worker(vars: &[(String, String)], output_dir: PathBuf) -> Worker {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // A file, not a pipe: nobody reads while the test waits, and a full pipe would block it.
    let log = output_dir.with_extension("log");
    let file = std::fs::File::create(&log).expect("the worker's log file");
    let child = command(&worker_bin(), &pairs)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn daef-worker");
    Worker {
        child,
        output_dir,
        log,
    }
}

/// Submits a job and waits for the worker to complete it.
fn job_completes(gw: &Gateway, tenant_token: Option<&str>) {
    let v = gw.expect(
        202,
        "POST",
        "/v1/jobs",
        tenant_token,
        Some(json!({"type": "chat", "input": "deploy smoke"})),
    );
    let job = v["job_id"].as_str().expect("job_id").to_owned();
    let done: Value = eventually("the job to complete", Duration::from_secs(30), || {
        let v = gw.expect(200, "GET", &format!("/v1/jobs/{job}"), tenant_token, None);
        (v["status"] == "Completed").then_some(v)
    });
    assert!(done["result_artifact_uri"].is_string(), "{done}");
}

/// `token:scope|scope,…` → the first token with `scope`.
fn token_with(tokens: &str, scope: &str) -> String {
    tokens
        .split(',')
        .find_map(|entry| {
            let (token, scopes) = entry.split_once(':')?;
            scopes
                .split('|')
                .any(|s| s == scope)
                .then(|| token.to_owned())
        })
        .unwrap_or_else(|| panic!("no token with scope {scope} in {tokens}"))
}

fn backends() -> Option<(
    tokio::runtime::Runtime,
    TestSchema,
    daef_testenv::redis::RedisTest,
)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let schema = runtime.block_on(daef_testenv::postgres::fresh_schema())?;
    let redis = daef_testenv::redis::test()?;
    Some((runtime, schema, redis))
}

#[test]
fn kubernetes_configuration_runs_a_job() {
    let Some((_runtime, schema, redis)) = backends() else {
        return;
    };
    let gateway = container("control-plane", "daef-gateway");
    let mut gateway_asset = gateway.values.clone();
    gateway_asset.extend(gateway.example_secrets.clone());
    let overrides = [
        ("DAEF_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("DAEF_POSTGRES_DSN", search_path_dsn(&schema)),
        ("DAEF_REDIS_ADDR", redis.addr().to_owned()),
        ("DAEF_REDIS_KEY", redis.key().to_owned()),
        ("DAEF_REDIS_PASSWORD", String::new()),
    ];
    let vars = configuration(
        &gateway.origin,
        &gateway_asset,
        gateway.env.clone(),
        &overrides,
    );
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gw = Gateway::start(&pairs);
    let ready = gw.expect(200, "GET", "/readyz", None, None);
    assert_eq!(
        ready,
        json!({"status": "ready", "store": "postgres", "queue": "redis"})
    );

    // The example tokens are consistent: the worker's token has the worker scope, the metrics
    // token (for Prometheus) reads metrics, a tenant token submits.
    let tokens = &gateway.example_secrets["DAEF_API_TOKENS"];
    let worker = container("worker", "daef-worker");
    assert_eq!(
        worker.example_secrets["DAEF_API_TOKEN"],
        token_with(tokens, "worker"),
        "the worker's example token"
    );
    let obs = yaml::load_one(&deploy_dir().join("kubernetes/observability/secret.example.yaml"))
        .expect("metrics secret");
    let metrics_token = obs["stringData"]["token"].as_str().expect("token");
    assert_eq!(
        metrics_token,
        token_with(tokens, "metrics"),
        "Prometheus's example token"
    );
    gw.expect(
        200,
        "GET",
        "/v1/metrics/prometheus",
        Some(metrics_token),
        None,
    );

    let mut worker_asset = worker.values.clone();
    worker_asset.extend(worker.example_secrets.clone());
    // What the pod spec derives from the pod: its name, its CPU request.
    worker_asset.insert("DAEF_WORKER_ID".into(), "daef-worker-7d9f8b-x2k4q".into());
    worker_asset.insert("DAEF_WORKER_CPU".into(), "1".into());
    let out = output_dir();
    let overrides = [
        ("DAEF_CONTROL_PLANE_URL", format!("http://{}", gw.addr)),
        ("DAEF_OUTPUT_DIR", out.to_string_lossy().into_owned()),
    ];
    let vars = configuration(
        &worker.origin,
        &worker_asset,
        worker.env.clone(),
        &overrides,
    );
    let _worker = start_worker(&vars, out);
    job_completes(&gw, Some(&token_with(tokens, "tenant:acme")));
}

#[test]
fn compose_configuration_runs_a_job() {
    let Some((_runtime, schema, redis)) = backends() else {
        return;
    };
    let compose =
        yaml::load_one(&deploy_dir().join("docker-compose.dev.yml")).expect("compose file");
    let gateway_env = compose_env(&compose["services"]["gateway"]).expect("gateway environment");
    let overrides = [
        ("DAEF_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("DAEF_POSTGRES_DSN", search_path_dsn(&schema)),
        ("DAEF_REDIS_ADDR", redis.addr().to_owned()),
        ("DAEF_REDIS_KEY", redis.key().to_owned()),
    ];
    let vars = configuration(
        "compose gateway",
        &gateway_env,
        gateway_env.keys().cloned(),
        &overrides,
    );
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let gw = Gateway::start(&pairs);

    let worker_env = compose_env(&compose["services"]["worker"]).expect("worker environment");
    let out = output_dir();
    let overrides = [
        ("DAEF_CONTROL_PLANE_URL", format!("http://{}", gw.addr)),
        ("DAEF_OUTPUT_DIR", out.to_string_lossy().into_owned()),
    ];
    let vars = configuration(
        "compose worker",
        &worker_env,
        worker_env.keys().cloned(),
        &overrides,
    );
    let _worker = start_worker(&vars, out);
    // Auth is off in the compose gateway, as in the README's walkthrough.
    job_completes(&gw, None);
}
