//! Every variable the manifests, the compose file and the Dockerfile set is one the binary they
//! run accepts (`--help` lists it), and the gateway's values parse.

use std::collections::{BTreeMap, BTreeSet};

use daef_deploy_check::assets::{self, Container, compose_env, deploy_dir};
use daef_deploy_check::{dockerfile, yaml};

use crate::harness::{command, gateway_bin, help_vars, worker_bin};

/// Which binary a container or service runs, from its image or build target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Binary {
    Gateway,
    Worker,
}

fn binary_of_image(image: &str) -> Option<Binary> {
    let name = image.rsplit('/').next().unwrap_or(image);
    let name = name.split([':', '@']).next().unwrap_or(name);
    match name {
        "daef-gateway" => Some(Binary::Gateway),
        "daef-worker" => Some(Binary::Worker),
        _ => None,
    }
}

struct Accepted {
    gateway: BTreeSet<String>,
    worker: BTreeSet<String>,
}

impl Accepted {
    fn load() -> Self {
        Self {
            gateway: help_vars(&gateway_bin()),
            worker: help_vars(&worker_bin()),
        }
    }

    fn of(&self, binary: Binary) -> &BTreeSet<String> {
        match binary {
            Binary::Gateway => &self.gateway,
            Binary::Worker => &self.worker,
        }
    }

    #[track_caller]
    fn check(&self, binary: Binary, origin: &str, vars: impl IntoIterator<Item = String>) {
        let accepted = self.of(binary);
        let unknown: Vec<String> = vars.into_iter().filter(|v| !accepted.contains(v)).collect();
        assert!(
            unknown.is_empty(),
            "{origin} sets variables `{binary:?} --help` does not list: {unknown:?}"
        );
    }
}

fn kube_containers(dir: &str) -> Vec<Container> {
    let k = assets::kustomization(&deploy_dir().join("kubernetes").join(dir))
        .unwrap_or_else(|e| panic!("{e}"));
    let containers = k.containers().unwrap_or_else(|e| panic!("{e}"));
    assert!(!containers.is_empty(), "{dir}: no containers");
    containers
}

#[test]
fn kubernetes_manifests_set_only_accepted_variables() {
    let accepted = Accepted::load();
    let mut seen = BTreeSet::new();
    for dir in ["control-plane", "worker"] {
        for container in kube_containers(dir) {
            let binary = binary_of_image(&container.image).unwrap_or_else(|| {
                panic!(
                    "{}: image {} runs neither daef binary",
                    container.origin, container.image
                )
            });
            seen.insert(format!("{binary:?}"));
            assert!(
                !container.env.is_empty(),
                "{}: no variables",
                container.origin
            );
            accepted.check(binary, &container.origin, container.env.iter().cloned());
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "expected a gateway and a worker container, saw {seen:?}"
    );
}

#[test]
fn compose_services_set_only_accepted_variables() {
    let accepted = Accepted::load();
    let compose =
        yaml::load_one(&deploy_dir().join("docker-compose.dev.yml")).expect("compose file");
    let services = compose["services"].as_object().expect("services");
    let mut checked = 0;
    for (name, service) in services {
        let target = service.pointer("/build/target").and_then(|t| t.as_str());
        let image = service
            .get("image")
            .and_then(|i| i.as_str())
            .unwrap_or_default();
        let binary = match target {
            Some("gateway") => Some(Binary::Gateway),
            Some("worker") => Some(Binary::Worker),
            _ => binary_of_image(image),
        };
        let Some(binary) = binary else { continue };
        let env = compose_env(service).expect("environment");
        accepted.check(
            binary,
            &format!("compose service {name}"),
            env.keys().cloned(),
        );
        checked += 1;
    }
    assert!(checked >= 1, "the compose file has no DAEF service");
}

#[test]
fn dockerfile_sets_only_accepted_variables() {
    let accepted = Accepted::load();
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    let file = dockerfile::parse(&text).expect("Dockerfile");
    for (stage, binary) in [("gateway", Binary::Gateway), ("worker", Binary::Worker)] {
        let stage_spec = file
            .stage(stage)
            .unwrap_or_else(|| panic!("no `{stage}` stage"));
        accepted.check(
            binary,
            &format!("Dockerfile stage {stage}"),
            stage_spec.env_vars(),
        );
    }
}

/// Runs `daef-gateway migrate` with `vars` and a Postgres that refuses connections: clap
/// parses every variable first, so a value it rejects exits with its usage error (status 2,
/// naming the variable) before any connection is tried.
#[track_caller]
fn gateway_accepts_values(origin: &str, vars: &BTreeMap<String, String>) {
    let mut vars = vars.clone();
    vars.insert(
        "DAEF_POSTGRES_DSN".into(),
        "postgres://daef@127.0.0.1:1/daef?connect_timeout=2".into(),
    );
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = command(&gateway_bin(), &pairs)
        .arg("migrate")
        .output()
        .expect("run daef-gateway migrate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(
        output.status.code(),
        Some(2),
        "{origin}: daef-gateway rejects a value:\n{stderr}"
    );
    assert!(
        !output.status.success(),
        "{origin}: migrate against a closed port cannot succeed:\n{stderr}"
    );
    assert!(
        stderr.contains("127.0.0.1:1") || stderr.to_lowercase().contains("postgres"),
        "{origin}: migrate failed for another reason:\n{stderr}"
    );
}

#[test]
fn gateway_accepts_the_values_the_assets_give_it() {
    for container in kube_containers("control-plane") {
        if binary_of_image(&container.image) == Some(Binary::Gateway) {
            gateway_accepts_values(&container.origin, &container.values);
        }
    }
    let compose =
        yaml::load_one(&deploy_dir().join("docker-compose.dev.yml")).expect("compose file");
    let env = compose_env(&compose["services"]["gateway"]).expect("gateway environment");
    gateway_accepts_values("compose service gateway", &env);
}

#[test]
fn help_lists_what_the_seed_documents() {
    // A guard on the check itself: the variables the seed document promises must be in the
    // help text the other tests compare against.
    let gateway = help_vars(&gateway_bin());
    for var in [
        "DAEF_STORE",
        "DAEF_QUEUE",
        "DAEF_POSTGRES_DSN",
        "DAEF_REDIS_ADDR",
        "DAEF_REDIS_PASSWORD",
        "DAEF_REDIS_DB",
        "DAEF_REDIS_KEY",
        "DAEF_REDIS_DEADLETTER_MAX",
        "DAEF_LEASE_SECONDS",
        "DAEF_ADMIN_REQUEUE_MAX_BATCH",
        "DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN",
        "DAEF_ADMIN_REQUEUE_CONFIRM_THRESHOLD",
        "DAEF_ADMIN_REQUEUE_CONFIRM_TOKEN",
        "DAEF_API_TOKENS",
        "DAEF_LISTEN_ADDR",
    ] {
        assert!(
            gateway.contains(var),
            "daef-gateway --help does not list {var}"
        );
    }
    let worker = help_vars(&worker_bin());
    for var in [
        "DAEF_CONTROL_PLANE_URL",
        "DAEF_WORKER_ID",
        "DAEF_API_TOKEN",
        "DAEF_MAX_PARALLEL_TASKS",
    ] {
        assert!(
            worker.contains(var),
            "daef-worker --help does not list {var}"
        );
    }
}
