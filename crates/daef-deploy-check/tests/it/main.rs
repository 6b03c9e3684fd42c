//! Checks of the deployment assets (deploy/) and the API description (docs/openapi.yaml) against
//! the real gateway: its router, its `--help`, and what it exports after doing real work.
//!
//! The gateway and worker binaries are built by cargo on first use (or taken from
//! `DAEF_GATEWAY_BIN` / `DAEF_WORKER_BIN`). The metrics scenario on Postgres and Redis uses the
//! servers `daef-testenv` finds and is skipped without them unless `DAEF_TEST_REQUIRE` names
//! them. `.ci/validate-deploy.sh` runs the external validators (promtool, schemathesis, …).

mod env;
mod harness;
mod manifests;
mod metrics;
mod routes;
mod smoke;
mod wire;
