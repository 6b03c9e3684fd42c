//! The web console in a real browser: `console-test/console.test.mjs` drives Debian's Chromium
//! (playwright-core, no browser download) against a gateway with API tokens, on the memory
//! backends and on Postgres + Redis. The memory run saves its screenshots to `docs/console/`.
//!
//! Needs `/usr/bin/chromium` (apt package `chromium`) and `npm ci` in `console-test/`; without
//! them the tests are skipped, saying so, unless `DAEF_TEST_REQUIRE` names `browser` (CI does).

use std::path::{Path, PathBuf};
use std::process::Command;

use daef_system_tests::GatewayConfig;

use crate::wire::{Env, Pair};

const CHROMIUM: &str = "/usr/bin/chromium";
const CONFIRM: &str = "yes-really";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_on_memory() {
    let shots = repo().join("docs/console");
    console_in_a_browser(Pair::Memory, &shots).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_on_postgres_and_redis() {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-postgres-redis");
    console_in_a_browser(Pair::PostgresRedis, &shots).await;
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn console_in_a_browser(pair: Pair, shots: &Path) {
    let script_dir = repo().join("console-test");
    if !Path::new(CHROMIUM).is_file() {
        daef_testenv::unavailable("browser", "no /usr/bin/chromium (apt package chromium)");
        return;
    }
    if !script_dir.join("node_modules/playwright-core").is_dir() {
        daef_testenv::unavailable("browser", "run `npm ci` in console-test/ first");
        return;
    }
    // Long leases: the test's worker heartbeats once, and must stay alive for the pages.
    let config = GatewayConfig::fast()
        .var("DAEF_LEASE_SECONDS", "60")
        .var(
            "DAEF_API_TOKENS",
            "op:operator,wrk:worker,acme:tenant:acme,beta:tenant:beta",
        )
        .var("DAEF_ADMIN_REQUEUE_MAX_BATCH", "2")
        .var("DAEF_ADMIN_REQUEUE_CONFIRM_THRESHOLD", "2")
        .var("DAEF_ADMIN_REQUEUE_CONFIRM_TOKEN", CONFIRM)
        .var("DAEF_ADMIN_REQUEUE_RATE_LIMIT_PER_MIN", "2");
    let Some(env) = Env::start(pair, "console", config).await else {
        return;
    };
    let url = env.gateway.url();
    let shots = shots.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("console.test.mjs")
            .current_dir(script_dir)
            .env("DAEF_URL", url)
            .env("DAEF_CONFIRM", CONFIRM)
            .env("DAEF_SCREENSHOTS", shots)
            .output()
    })
    .await
    .expect("the browser test's thread")
    .expect("node runs (Node.js must be installed)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the browser test failed on {pair} ({}):\n{stdout}\n{stderr}\n--- gateway log ---\n{}",
        output.status,
        env.gateway.log_tail()
    );
}
