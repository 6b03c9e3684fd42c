//! The shape the issue asks of each asset, and the references between them: probes on the
//! real health routes, selectors that select, the worker and Prometheus pointed at Services
//! that exist, the seed's DSN served by the compose file, a non-root multi-stage Dockerfile.
//! (Schema validity is checked by kubernetes-validate and check-jsonschema in
//! .ci/validate-deploy.sh; these are the checks no schema can make.)

use std::collections::BTreeSet;

use daef_deploy_check::assets::{self, Kustomization, compose_env, deploy_dir, workspace_root};
use daef_deploy_check::{dockerfile, yaml};
use serde_json::Value;

fn kustomization(dir: &str) -> Kustomization {
    assets::kustomization(&deploy_dir().join("kubernetes").join(dir))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn one<'a>(k: &'a Kustomization, kind: &'a str, name: &str) -> &'a Value {
    k.of_kind(kind)
        .find(|d| d.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("{}: no {kind}/{name}", k.dir.display()))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

/// True when every `matchLabels`/selector pair is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The container port named `name`, or the number itself.
fn container_port(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().expect("a port number"),
        Value::String(name) => container["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == name.as_str()))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("bad port {other}"),
    }
}

#[test]
fn control_plane_deploys_a_probed_replicated_gateway() {
    let k = kustomization("control-plane");
    let namespace = str_at(&k.spec, "/namespace");
    let ns = one(&k, "Namespace", namespace);
    assert_eq!(
        str_at(ns, "/metadata/labels/pod-security.kubernetes.io~1enforce"),
        "restricted"
    );

    let deployment = one(&k, "Deployment", "daef-gateway");
    assert!(
        deployment["spec"]["replicas"].as_u64().unwrap_or(1) >= 2,
        "the gateway needs 2+ replicas"
    );
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let containers = k.containers().expect("containers");
    let gateway = containers
        .iter()
        .find(|c| c.image == "daef-gateway")
        .expect("the gateway container");
    let c = &gateway.spec;
    assert_eq!(str_at(c, "/readinessProbe/httpGet/path"), "/readyz");
    assert_eq!(str_at(c, "/livenessProbe/httpGet/path"), "/healthz");
    let http_port = container_port(c, &c["readinessProbe"]["httpGet"]["port"]);
    assert_eq!(
        container_port(c, &c["livenessProbe"]["httpGet"]["port"]),
        http_port
    );
    for resource in ["cpu", "memory"] {
        assert!(
            c["resources"]["requests"][resource].is_string(),
            "no {resource} request"
        );
    }
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    // It must listen on the pod's interfaces, on the port the probes and Services use.
    let listen = gateway
        .values
        .get("DAEF_LISTEN_ADDR")
        .expect("DAEF_LISTEN_ADDR is set");
    assert_eq!(listen, &format!("0.0.0.0:{http_port}"));
    assert_eq!(
        gateway.values.get("DAEF_STORE").map(String::as_str),
        Some("postgres"),
        "replicas must share a store"
    );
    assert_eq!(
        gateway.values.get("DAEF_QUEUE").map(String::as_str),
        Some("redis"),
        "replicas must share a queue"
    );
    let secrets = k.secret_examples().expect("secret.example.yaml");
    let secret_name = c["envFrom"]
        .as_array()
        .and_then(|from| {
            from.iter()
                .find_map(|f| f.pointer("/secretRef/name").and_then(Value::as_str))
        })
        .expect("the gateway reads a Secret");
    let keys: Vec<&str> = secrets[secret_name].keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "DAEF_ADMIN_REQUEUE_CONFIRM_TOKEN",
            "DAEF_API_TOKENS",
            "DAEF_POSTGRES_DSN",
            "DAEF_REDIS_PASSWORD"
        ]
    );
    for key in &keys {
        assert!(
            !gateway.values.contains_key(*key),
            "{key} is a secret but the ConfigMap sets it"
        );
    }

    let mut services = 0;
    for service in k.of_kind("Service") {
        services += 1;
        assert!(
            selects(&service["spec"]["selector"], pod_labels),
            "Service {} selects no gateway pod",
            service["metadata"]["name"]
        );
        for port in service["spec"]["ports"].as_array().expect("ports") {
            assert_eq!(container_port(c, &port["targetPort"]), http_port);
        }
    }
    assert!(
        services >= 2,
        "the gateway Service and the headless one for Prometheus"
    );
    let pdb = one(&k, "PodDisruptionBudget", "daef-gateway");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
    match (
        pdb["spec"]["maxUnavailable"].as_u64(),
        pdb["spec"]["minAvailable"].as_u64(),
    ) {
        (Some(max), None) => assert!(
            max >= 1 && max < replicas,
            "maxUnavailable {max} of {replicas}"
        ),
        (None, Some(min)) => assert!(
            min >= 1 && min < replicas,
            "minAvailable {min} of {replicas}"
        ),
        other => panic!("the PDB needs one of maxUnavailable/minAvailable as a number: {other:?}"),
    }
}

#[test]
fn workers_reach_the_gateway_service() {
    let control = kustomization("control-plane");
    let k = kustomization("worker");
    assert_eq!(k.spec["namespace"], control.spec["namespace"]);
    let containers = k.containers().expect("containers");
    let worker = containers
        .iter()
        .find(|c| c.image == "daef-worker")
        .expect("the worker container");
    let url = worker
        .values
        .get("DAEF_CONTROL_PLANE_URL")
        .expect("DAEF_CONTROL_PLANE_URL");
    let authority = url
        .strip_prefix("http://")
        .expect("an http:// URL")
        .trim_end_matches('/');
    let (host, port) = authority.split_once(':').expect("host:port");
    let namespace = str_at(&control.spec, "/namespace");
    let service = one(&control, "Service", "daef-gateway");
    assert_eq!(host, format!("daef-gateway.{namespace}.svc.cluster.local"));
    assert_eq!(port, service["spec"]["ports"][0]["port"].to_string());
    assert!(
        worker.env.contains("DAEF_WORKER_ID"),
        "each pod needs its own worker id"
    );
    assert!(
        worker.env.contains("DAEF_API_TOKEN"),
        "the worker needs a worker token"
    );
    // Task outputs go to a mounted volume: the root filesystem is read-only.
    let output = worker
        .values
        .get("DAEF_OUTPUT_DIR")
        .expect("DAEF_OUTPUT_DIR");
    let mounted = worker.spec["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["mountPath"] == output.as_str());
    assert!(mounted, "DAEF_OUTPUT_DIR {output} is not a mounted volume");
}

#[test]
fn prometheus_scrapes_every_gateway_pod_with_a_metrics_token() {
    let control = kustomization("control-plane");
    let obs = kustomization("observability");
    let dir = deploy_dir().join("kubernetes/observability");
    let config = yaml::load_one(&dir.join("prometheus-scrape-config.yaml")).expect("scrape config");
    let job = config["scrape_configs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["job_name"] == "daef-gateway"))
        .expect("a daef-gateway job (the rules select job=\"daef-gateway\")");
    assert_eq!(str_at(job, "/metrics_path"), "/v1/metrics/prometheus");
    assert_eq!(str_at(job, "/authorization/type"), "Bearer");
    assert!(str_at(job, "/authorization/credentials_file").starts_with('/'));
    let sd = &job["dns_sd_configs"][0];
    let name = str_at(sd, "/names/0");
    let namespace = str_at(&control.spec, "/namespace");
    let service_name = name
        .strip_suffix(&format!(".{namespace}.svc.cluster.local"))
        .unwrap_or_else(|| panic!("{name} is not a Service of namespace {namespace}"));
    let headless = one(&control, "Service", service_name);
    assert_eq!(
        headless["spec"]["clusterIP"], "None",
        "DNS discovery of pods needs a headless Service"
    );
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"], true,
        "replicas that lost a backend must still be scraped"
    );
    assert_eq!(sd["port"], headless["spec"]["ports"][0]["port"]);
    let rule_files: Vec<&str> = config["rule_files"]
        .as_array()
        .expect("rule_files")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(rule_files, ["prometheus-rules.yaml"]);
    // The observability kustomization ships both files, and the dashboard.
    let shipped: BTreeSet<String> = obs
        .generator_files
        .iter()
        .filter_map(|p| p.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    for file in [
        "prometheus-scrape-config.yaml",
        "prometheus-rules.yaml",
        "grafana-dashboard-daef-queue.json",
    ] {
        assert!(
            shipped.contains(file),
            "the observability kustomization does not ship {file}"
        );
    }
}

#[test]
fn compose_serves_the_seed_dsn_with_healthchecks() {
    let compose =
        yaml::load_one(&deploy_dir().join("docker-compose.dev.yml")).expect("compose file");
    let services = &compose["services"];
    // postgres://daef:daef@127.0.0.1:5432/daef (README and seed document).
    let pg = &services["postgres"];
    let env = compose_env(pg).expect("postgres environment");
    for key in ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"] {
        assert_eq!(env.get(key).map(String::as_str), Some("daef"), "{key}");
    }
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    assert!(
        readme.contains("postgres://daef:daef@127.0.0.1:5432/daef"),
        "the README's DSN changed"
    );
    let published = |service: &Value, port: u16| {
        service["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|p| p.ends_with(&format!(":{port}:{port}")))
    };
    assert!(published(pg, 5432), "Postgres is not published on 5432");
    assert!(
        published(&services["redis"], 6379),
        "Redis is not published on 6379"
    );
    for name in ["postgres", "redis"] {
        assert!(
            services[name]["healthcheck"]["test"].is_array(),
            "{name} has no healthcheck"
        );
        assert!(
            services[name].get("profiles").is_none(),
            "{name} must start without a profile"
        );
    }
    let gateway = &services["gateway"];
    assert_eq!(
        gateway["profiles"][0], "gateway",
        "the gateway service is optional (a profile)"
    );
    let env = compose_env(gateway).expect("gateway environment");
    assert_eq!(
        env.get("DAEF_LISTEN_ADDR").map(String::as_str),
        Some("0.0.0.0:8080")
    );
    assert!(env["DAEF_POSTGRES_DSN"].starts_with("postgres://daef:daef@postgres:5432/daef"));
    assert_eq!(
        env.get("DAEF_REDIS_ADDR").map(String::as_str),
        Some("redis:6379")
    );
    for dependency in ["postgres", "redis"] {
        assert_eq!(
            gateway["depends_on"][dependency]["condition"],
            "service_healthy"
        );
    }
    assert_eq!(str_at(gateway, "/build/dockerfile"), "deploy/Dockerfile");
}

#[test]
fn dockerfile_builds_both_binaries_into_small_non_root_images() {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    let file = dockerfile::parse(&text).expect("Dockerfile");
    let manifest =
        std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("workspace rust-version");
    assert_eq!(
        file.global_arg("RUST_VERSION"),
        Some(rust_version),
        "the builder's Rust is the workspace's"
    );
    let build = file.stage("build").expect("a build stage");
    let run = build.args_of("RUN").collect::<Vec<_>>().join(" ");
    assert!(
        run.contains("--locked") && run.contains("--release"),
        "{run}"
    );
    assert!(
        run.contains("-p daef-gateway") && run.contains("-p daef-worker"),
        "{run}"
    );
    assert!(
        file.stages.len() >= 3,
        "multi-stage: a builder and two runtime images"
    );
    assert_eq!(
        file.stages.last().and_then(|s| s.name.as_deref()),
        Some("gateway"),
        "the default target is the gateway"
    );
    for stage in &file.stages {
        assert!(
            stage.args_of("HEALTHCHECK").next().is_none(),
            "no HEALTHCHECK: Kubernetes probes do that"
        );
    }
    for name in ["gateway", "worker"] {
        let stage = file.stage(name).expect("runtime stage");
        assert!(
            stage.base.contains("distroless") || stage.base.contains("slim"),
            "{name}: {} is not a small base",
            stage.base
        );
        let user = stage
            .args_of("USER")
            .last()
            .unwrap_or_else(|| panic!("{name}: no USER"));
        let uid: u32 = user
            .split(':')
            .next()
            .unwrap_or("")
            .parse()
            .unwrap_or_else(|_| {
                panic!("{name}: USER {user} must be numeric (runAsNonRoot checks it)")
            });
        assert_ne!(uid, 0, "{name} runs as root");
        let binary = format!("daef-{name}");
        assert!(
            stage
                .args_of("COPY")
                .any(|c| c.starts_with("--from=build") && c.contains(&binary)),
            "{name}: does not copy {binary}"
        );
        let entrypoint = stage
            .args_of("ENTRYPOINT")
            .last()
            .unwrap_or_else(|| panic!("{name}: no ENTRYPOINT"));
        assert!(
            entrypoint.contains(&binary),
            "{name}: ENTRYPOINT {entrypoint}"
        );
        assert_eq!(
            stage.args_of("COPY").count(),
            1,
            "{name}: the runtime image holds only its binary"
        );
    }
    let gateway = file.stage("gateway").expect("gateway stage");
    assert!(
        gateway
            .args_of("ENV")
            .any(|e| e.contains("DAEF_LISTEN_ADDR=0.0.0.0:")),
        "the gateway must listen beyond loopback in a container"
    );
}
