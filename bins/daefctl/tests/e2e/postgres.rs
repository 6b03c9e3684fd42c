//! With the Postgres store: changing one audit row by SQL makes `daefctl audit verify` name
//! that event. Runs when a test Postgres is available (`DAEF_TEST_POSTGRES_DSN`, or a local
//! trust-auth server) and the gateway accepts `DAEF_STORE=postgres`; skips saying why
//! otherwise, and fails instead when `DAEF_TEST_REQUIRE` names `postgres`.

use daef_core::model::JobId;

use crate::harness::{Gateway, Scratch};

#[tokio::test]
async fn a_tampered_audit_row_is_named_by_audit_verify() {
    let Some(schema) = daef_testenv::postgres::fresh_schema().await else {
        return;
    };
    let scratch = Scratch::new("postgres");
    let vars = [
        ("DAEF_STORE", "postgres".to_owned()),
        ("DAEF_POSTGRES_DSN", schema.dsn_with_search_path()),
    ];
    let gw = match Gateway::try_start(&scratch, &vars).await {
        Ok(gw) => gw,
        Err(log) => {
            // anyhow prints `Error: …` (then maybe a backtrace): that line says why.
            let why = log
                .lines()
                .find(|l| l.starts_with("Error:"))
                .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
                .unwrap_or("no output")
                .to_owned();
            daef_testenv::unavailable(
                "postgres",
                &format!("the gateway did not start with DAEF_STORE=postgres: {why}"),
            );
            return;
        }
    };

    // Four audited requests: cancels (of jobs that do not exist) are audited as `noop`.
    let c = gw.client(None);
    for i in 1..=4 {
        let _ = c.cancel_job(&JobId::new(format!("job-missing-{i}"))).await;
    }
    let ok = gw.daefctl(None, &["audit", "verify"]).await.code(0);
    assert!(
        ok.stdout.starts_with("audit chain OK: 4 events"),
        "{}",
        ok.stdout
    );

    // Rewrite history behind the gateway's back.
    let db = daef_testenv::postgres::connect(&schema.dsn_with_search_path())
        .await
        .expect("connect");
    let changed = db
        .execute(
            "UPDATE audit_events SET details = 'nothing to see here' WHERE id = 3",
            &[],
        )
        .await
        .expect("tamper with event 3");
    assert_eq!(changed, 1);

    let broken = gw.daefctl(None, &["audit", "verify"]).await.code(4);
    assert!(
        broken.stdout.starts_with("audit chain BROKEN at event 3"),
        "{}",
        broken.stdout
    );
    assert!(
        broken.stdout.contains("first bad event: id 3 "),
        "{}",
        broken.stdout
    );
    assert!(
        broken.stdout.contains("nothing to see here"),
        "{}",
        broken.stdout
    );
    assert!(
        broken.stdout.contains("gateway agrees: broken at event 3"),
        "{}",
        broken.stdout
    );
    let json = gw
        .daefctl(None, &["audit", "verify", "--json"])
        .await
        .code(4)
        .json();
    assert_eq!(json["local"]["first_bad_id"], 3);
    assert_eq!(json["first_bad_event"]["details"], "nothing to see here");
}
