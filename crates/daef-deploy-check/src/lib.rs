//! Checks that DAEF's deployment assets agree with the gateway they deploy: every metric the
//! Prometheus rules and the Grafana dashboard query is one the gateway exports, every variable
//! the manifests, the compose file and the Dockerfile set is one `daef-gateway --help` or
//! `daef-worker --help` lists, and every route of the router is described in
//! `docs/openapi.yaml` and nothing else is.
//!
//! The library holds the readers (YAML, PromQL, Prometheus text, clap help, env files, OpenAPI,
//! the route table's doc comments, Dockerfiles) and the asset walkers; the `it` test binary runs
//! real gateways and applies them. It must never become a dependency of a shipped crate, it
//! only reads files, and it talks only to processes its tests start on loopback.

pub mod assets;
pub mod dockerfile;
pub mod envfile;
pub mod exposition;
pub mod help;
pub mod openapi;
pub mod promql;
pub mod routes;
pub mod schema;
pub mod yaml;
