//! What the conformance suite cannot see: the key layout, recovery from a lost script cache,
//! lost data and a restarted server, and failing fast when Redis is not there. The suite
//! itself runs against Redis in `daef-conformance`.
//!
//! Tests that flush, restart or script-flush a server use a private throwaway server, never
//! the shared one other tests use.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use daef_core::model::JobId;
use daef_core::ports::{RateDecision, RateLimiter};
use daef_testenv::redis::{self as testenv, Reply};

use super::*;

const VISIBILITY: Duration = Duration::from_secs(30);

fn t0() -> Timestamp {
    Timestamp::from_unix_micros(1_767_225_600_000_000)
}

fn refs(n: usize) -> Vec<TaskRef> {
    let job = JobId::generate();
    (0..n)
        .map(|i| TaskRef::new(job.clone(), format!("t{i}")))
        .collect()
}

fn config(addr: &str, key: &str) -> RedisConfig {
    RedisConfig {
        addr: addr.to_owned(),
        key: key.to_owned(),
        deadletter_max: 3,
        ..RedisConfig::default()
    }
}

fn key_type(addr: &str, key: &str) -> String {
    testenv::command(addr, &["TYPE", key])
        .unwrap()
        .as_text()
        .unwrap()
}

/// The whole error chain as text, as a log line would show it.
fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn addresses_parse_with_ipv6_and_reject_junk() {
    assert_eq!(
        parse_addr("127.0.0.1:6379").unwrap(),
        ("127.0.0.1".into(), 6379)
    );
    assert_eq!(parse_addr("[::1]:6380").unwrap(), ("[::1]".into(), 6380));
    assert_eq!(
        parse_addr("redis.internal:1").unwrap(),
        ("redis.internal".into(), 1)
    );
    for bad in [
        "",
        "localhost",
        ":6379",
        "host:",
        "host:0",
        "host:http",
        "host:70000",
        "::1:6379",
        "[]:6379",
    ] {
        assert!(
            matches!(parse_addr(bad), Err(Error::Invalid(_))),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn a_command_that_lost_its_connection_is_unavailable_not_a_backend_error() {
    // What fred answers when Redis dies under a command (seen as 500s on polls while Redis was
    // killed under load, in daef-system-tests' redis_outage).
    for message in [
        "Failed to route command.",
        "Too many failed write attempts.",
    ] {
        let err = map_err(fred::error::Error::new(ErrorKind::Unknown, message));
        assert!(
            matches!(err, Error::Unavailable { .. }),
            "{message}: {err:?}"
        );
    }
    let other = map_err(fred::error::Error::new(
        ErrorKind::Unknown,
        "Unimplemented.",
    ));
    assert!(matches!(other, Error::Backend { .. }), "{other:?}");
}

#[test]
fn debug_never_shows_the_password() {
    let cfg = RedisConfig {
        password: Some("hunter2".into()),
        ..RedisConfig::default()
    };
    let text = format!("{cfg:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
}

#[tokio::test]
async fn a_bad_address_fails_fast_with_unavailable_naming_it() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = RedisConfig {
        password: Some("hunter2".into()),
        ..config(&addr, "daef-test:unreachable")
    };
    let started = Instant::now();
    let err = RedisQueue::connect(&cfg).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            Error::Unavailable {
                backend: "redis",
                ..
            }
        ),
        "{err:?}"
    );
    let text = chain(&err);
    assert!(text.contains(&addr), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let err = RedisRateLimiter::connect(&cfg).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unanswering_address_fails_within_the_connect_timeout() {
    // A listener that accepts TCP but never speaks RESP: the connection opens, the handshake
    // (`SCRIPT LOAD`) never gets an answer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = RedisConfig {
        connect_timeout: Duration::from_millis(500),
        command_timeout: Duration::from_millis(500),
        ..config(&addr, "daef-test:silent")
    };
    let started = Instant::now();
    let err = RedisQueue::connect(&cfg).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(chain(&err).contains(&addr));
    drop(listener);
}

#[tokio::test]
async fn a_malformed_config_is_invalid() {
    let err = RedisQueue::connect(&config("no-port", "k"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    let err = RedisQueue::connect(&config("127.0.0.1:6379", ""))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn authenticates_and_selects_the_database() {
    let Some(server) = testenv::private_server() else {
        return;
    };
    let addr = server.addr();
    assert_eq!(
        testenv::command(&addr, &["CONFIG", "SET", "requirepass", "s3cret"]).unwrap(),
        Reply::Simple("OK".into())
    );

    let wrong = RedisConfig {
        password: Some("wrong-pass".into()),
        ..config(&addr, "daef")
    };
    let err = RedisQueue::connect(&wrong).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let text = chain(&err);
    assert!(
        text.contains(&addr) && !text.contains("wrong-pass"),
        "{text}"
    );

    let cfg = RedisConfig {
        password: Some("s3cret".into()),
        db: 3,
        ..config(&addr, "daef")
    };
    let q = RedisQueue::connect(&cfg).await.unwrap();
    q.enqueue(&[(refs(1).remove(0), Priority::Batch)])
        .await
        .unwrap();

    let mut conn = testenv::Connection::open(&addr).unwrap();
    assert_eq!(
        conn.call(&["AUTH", "s3cret"]).unwrap(),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        conn.call(&["LLEN", "daef:pending:batch"]).unwrap(),
        Reply::Int(0)
    );
    conn.call(&["SELECT", "3"]).unwrap();
    assert_eq!(
        conn.call(&["LLEN", "daef:pending:batch"]).unwrap(),
        Reply::Int(1)
    );
}

#[tokio::test]
async fn connects_to_an_ipv6_address() {
    let Some(env) = testenv::test() else { return };
    let Some(port) = env.addr().strip_prefix("127.0.0.1:") else {
        return;
    };
    let v6 = format!("[::1]:{port}");
    if testenv::ping(&v6).is_err() {
        eprintln!("skipped: the test server does not listen on {v6}");
        return;
    }
    let q = RedisQueue::connect(&config(&v6, env.key())).await.unwrap();
    q.ping().await.unwrap();
    assert_eq!(q.pending_count().await.unwrap(), 0);
}

#[tokio::test]
async fn keys_follow_the_documented_layout() {
    let Some(env) = testenv::test() else { return };
    let q = RedisQueue::connect(&config(env.addr(), env.key()))
        .await
        .unwrap();
    let k = env.key();
    let addr = env.addr();
    let r = refs(4);

    q.enqueue(&[
        (r[0].clone(), Priority::Interactive),
        (r[1].clone(), Priority::Interactive),
        (r[2].clone(), Priority::Batch),
    ])
    .await
    .unwrap();
    assert_eq!(key_type(addr, &format!("{k}:pending")), "list");
    assert_eq!(key_type(addr, &format!("{k}:pending:batch")), "list");
    assert_eq!(
        testenv::command(addr, &["LRANGE", &format!("{k}:pending"), "0", "-1"]).unwrap(),
        Reply::Array(Some(vec![
            Reply::Bulk(Some(r[0].encode().into_bytes())),
            Reply::Bulk(Some(r[1].encode().into_bytes())),
        ]))
    );

    let claims = q.claim(2, t0(), VISIBILITY).await.unwrap();
    assert_eq!(key_type(addr, &format!("{k}:claims")), "hash");
    assert_eq!(key_type(addr, &format!("{k}:visibility")), "zset");
    let stored = testenv::command(addr, &["HGET", &format!("{k}:claims"), &claims[0].receipt])
        .unwrap()
        .as_text()
        .unwrap();
    assert_eq!(stored, format!("i|{}", r[0].encode()));
    let score = testenv::command(
        addr,
        &["ZSCORE", &format!("{k}:visibility"), &claims[0].receipt],
    )
    .unwrap()
    .as_text()
    .unwrap();
    assert_eq!(score, t0().plus(VISIBILITY).unix_millis().to_string());

    assert_eq!(q.nack(&claims[0]).await.unwrap(), NackOutcome::Requeued);
    assert_eq!(key_type(addr, &format!("{k}:nacks")), "hash");

    q.dead_letter(&r[3]).await.unwrap();
    assert_eq!(key_type(addr, &format!("{k}:dead")), "list");
    assert_eq!(key_type(addr, &format!("{k}:dead:members")), "set");
    assert_eq!(q.dead_letter_count().await.unwrap(), 1);

    let limiter = q.rate_limiter();
    limiter
        .acquire("tok-1234", 5, Duration::from_secs(60), t0())
        .await
        .unwrap();
    let rate_key = format!("{k}:ratelimit:tok-1234");
    assert_eq!(key_type(addr, &rate_key), "zset");
    let ttl = testenv::command(addr, &["PTTL", &rate_key])
        .unwrap()
        .as_int()
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "ttl {ttl}");

    // Nothing outside the prefix.
    let Reply::Array(Some(keys)) = testenv::command(addr, &["KEYS", &format!("{k}*")]).unwrap()
    else {
        panic!("KEYS");
    };
    let mut names: Vec<String> = keys.iter().filter_map(Reply::as_text).collect();
    names.sort();
    let expected: Vec<String> = [
        "claims",
        "dead",
        "dead:members",
        "nacks",
        "pending",
        "pending:batch",
        "ratelimit:tok-1234",
        "visibility",
    ]
    .iter()
    .map(|suffix| format!("{k}:{suffix}"))
    .collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    let Some(server) = testenv::private_server() else {
        return;
    };
    let addr = server.addr();
    let q = RedisQueue::connect(&config(&addr, "daef")).await.unwrap();
    let limiter = q.rate_limiter();
    let r = refs(3);
    q.enqueue(&[(r[0].clone(), Priority::Interactive)])
        .await
        .unwrap();

    let flush = || {
        assert_eq!(
            testenv::command(&addr, &["SCRIPT", "FLUSH"]).unwrap(),
            Reply::Simple("OK".into())
        );
    };
    flush();
    let claims = q.claim(1, t0(), VISIBILITY).await.unwrap();
    assert_eq!(claims.len(), 1);
    flush();
    assert_eq!(q.nack(&claims[0]).await.unwrap(), NackOutcome::Requeued);
    flush();
    let claims = q.claim(1, t0(), VISIBILITY).await.unwrap();
    q.ack(&[claims[0].receipt.clone()]).await.unwrap();
    flush();
    q.dead_letter(&r[1]).await.unwrap();
    flush();
    q.requeue_dead(&[r[1].clone()], &[(r[1].clone(), Priority::Batch)])
        .await
        .unwrap();
    flush();
    q.claim(1, t0(), VISIBILITY).await.unwrap();
    flush();
    assert_eq!(
        q.requeue_expired(t0().plus(VISIBILITY), 10).await.unwrap(),
        1
    );
    flush();
    assert_eq!(
        limiter
            .acquire("k", 1, Duration::from_secs(60), t0())
            .await
            .unwrap(),
        RateDecision::Allowed
    );
    assert_eq!(q.pending_count().await.unwrap(), 1);
    assert_eq!(q.dead_letter_count().await.unwrap(), 0);
}

#[tokio::test]
async fn losing_all_data_leaves_the_queue_working() {
    let Some(server) = testenv::private_server() else {
        return;
    };
    let addr = server.addr();
    let q = RedisQueue::connect(&config(&addr, "daef")).await.unwrap();
    let r = refs(4);
    q.enqueue(&[
        (r[0].clone(), Priority::Interactive),
        (r[1].clone(), Priority::Batch),
    ])
    .await
    .unwrap();
    let claims = q.claim(2, t0(), VISIBILITY).await.unwrap();
    q.dead_letter(&r[2]).await.unwrap();

    assert_eq!(
        testenv::command(&addr, &["FLUSHALL"]).unwrap(),
        Reply::Simple("OK".into())
    );

    // Receipts from before the loss are unknown now: settling them changes nothing.
    assert_eq!(q.nack(&claims[0]).await.unwrap(), NackOutcome::Requeued);
    q.ack(&[claims[1].receipt.clone()]).await.unwrap();
    assert_eq!(q.pending_count().await.unwrap(), 0);
    assert_eq!(q.dead_letter_count().await.unwrap(), 0);
    assert_eq!(
        q.requeue_expired(t0().plus(VISIBILITY), 10).await.unwrap(),
        0
    );

    // And the queue works as new: what the reconciler re-enqueues is dispatched again.
    q.enqueue(&[(r[0].clone(), Priority::Interactive)])
        .await
        .unwrap();
    let again = q.claim(10, t0(), VISIBILITY).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].task, r[0]);
    q.ack(&[again[0].receipt.clone()]).await.unwrap();
    q.dead_letter(&r[2]).await.unwrap();
    assert_eq!(q.dead_letter_count().await.unwrap(), 1);
}

/// Polls `check` until it returns true or `within` passes.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn fails_fast_while_redis_is_down_and_reconnects_after_a_restart() {
    let Some(mut server) = testenv::private_server() else {
        return;
    };
    let addr = server.addr();
    let q = RedisQueue::connect(&config(&addr, "daef")).await.unwrap();
    let limiter = q.rate_limiter();
    let r = refs(2);
    q.enqueue(&[(r[0].clone(), Priority::Interactive)])
        .await
        .unwrap();

    server.stop();
    // The client notices the drop at once (the socket closed), so no command waits for its
    // timeout: ping fails, and fast...
    assert!(
        eventually(Duration::from_secs(5), async || {
            let started = Instant::now();
            let result = q.ping().await;
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "ping took {:?} with redis down",
                started.elapsed()
            );
            result.is_err()
        })
        .await,
        "ping kept answering with redis down"
    );
    // ... and so does every other operation, saying the backend is unavailable.
    for _ in 0..3 {
        let started = Instant::now();
        let results = [
            q.ping().await.err(),
            q.enqueue(&[(r[1].clone(), Priority::Interactive)])
                .await
                .err(),
            q.claim(1, t0(), VISIBILITY).await.err(),
            q.ack(&["x".into()]).await.err(),
            q.requeue_expired(t0(), 10).await.err(),
            q.dead_letter(&r[1]).await.err(),
            q.pending_count().await.err(),
            q.dead_letter_count().await.err(),
            limiter
                .acquire("k", 1, Duration::from_secs(60), t0())
                .await
                .err(),
        ];
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
        for result in results {
            assert!(
                matches!(
                    result,
                    Some(Error::Unavailable {
                        backend: "redis",
                        ..
                    })
                ),
                "{result:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A fresh server: no data and no scripts. The client reconnects by itself.
    server.restart().unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || q.ping().await.is_ok()).await,
        "no reconnect after the restart"
    );
    assert_eq!(q.pending_count().await.unwrap(), 0);
    q.enqueue(&[(r[1].clone(), Priority::Interactive)])
        .await
        .unwrap();
    let claims = q.claim(10, t0(), VISIBILITY).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].task, r[1]);
    assert_eq!(
        limiter
            .acquire("k", 1, Duration::from_secs(60), t0())
            .await
            .unwrap(),
        RateDecision::Allowed
    );
}

#[tokio::test]
async fn a_malformed_reference_is_dropped_not_dispatched() {
    let Some(env) = testenv::test() else { return };
    let q = RedisQueue::connect(&config(env.addr(), env.key()))
        .await
        .unwrap();
    let good = refs(1).remove(0);
    env.command(&["RPUSH", &format!("{}:pending", env.key()), "no-separator"])
        .unwrap();
    q.enqueue(&[(good.clone(), Priority::Interactive)])
        .await
        .unwrap();

    let claims = q.claim(10, t0(), VISIBILITY).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].task, good);
    q.ack(&[claims[0].receipt.clone()]).await.unwrap();
    // The malformed one was settled, not left to come back after the visibility timeout.
    assert_eq!(
        q.requeue_expired(t0().plus(VISIBILITY), 10).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn acks_ride_along_with_the_next_claim() {
    let Some(env) = testenv::test() else { return };
    let q = RedisQueue::connect(&config(env.addr(), env.key()))
        .await
        .unwrap();
    let claims_key = format!("{}:claims", env.key());
    let held = |env: &testenv::RedisTest| match env.command(&["HLEN", &claims_key]).unwrap() {
        Reply::Int(n) => n,
        other => panic!("HLEN answered {other:?}"),
    };
    let r = refs(3);
    q.enqueue(
        &r.iter()
            .map(|t| (t.clone(), Priority::Interactive))
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let first = q.claim(2, t0(), VISIBILITY).await.unwrap();
    q.ack(&receipts(&first)).await.unwrap();
    // Held back: no call of its own ...
    assert_eq!(held(&env), 2);
    // ... the next claim settles them in its script call.
    let second = q.claim(1, t0(), VISIBILITY).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(held(&env), 1);
    // Anything that could return a claim sends the held acks first.
    q.ack(&receipts(&second)).await.unwrap();
    assert_eq!(
        q.requeue_expired(t0().plus(VISIBILITY), 10).await.unwrap(),
        0
    );
    assert_eq!(held(&env), 0);
}

fn receipts(claims: &[Claim]) -> Vec<String> {
    claims.iter().map(|c| c.receipt.clone()).collect()
}

/// `calls=N` of one command in `INFO commandstats`.
fn command_calls(addr: &str, command: &str) -> u64 {
    let info = testenv::command(addr, &["INFO", "commandstats"])
        .unwrap()
        .as_text()
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_pipelines_and_every_reference_lands_in_order() {
    // A private server: the test counts its RPUSH calls.
    let Some(server) = testenv::private_server() else {
        return;
    };
    let addr = server.addr();
    let q = Arc::new(RedisQueue::connect(&config(&addr, "daef")).await.unwrap());
    let callers: Vec<Vec<TaskRef>> = (0..200).map(|_| refs(3)).collect();
    let sends = callers.iter().map(|r| {
        let q = Arc::clone(&q);
        let batch: Vec<Dispatch> = r
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let priority = if i == 1 {
                    Priority::Batch
                } else {
                    Priority::Interactive
                };
                (t.clone(), priority)
            })
            .collect();
        tokio::spawn(async move { q.enqueue(&batch).await })
    });
    for sent in sends.collect::<Vec<_>>() {
        sent.await.unwrap().unwrap();
    }
    let pushes = command_calls(&addr, "rpush");
    assert!(
        (2..400).contains(&pushes),
        "200 concurrent enqueues of both priorities took {pushes} RPUSH calls"
    );
    let list = |key: &str| -> Vec<String> {
        match testenv::command(&addr, &["LRANGE", key, "0", "-1"]).unwrap() {
            Reply::Array(Some(items)) => items.into_iter().filter_map(|r| r.as_text()).collect(),
            other => panic!("LRANGE answered {other:?}"),
        }
    };
    let interactive = list("daef:pending");
    let batch = list("daef:pending:batch");
    assert_eq!((interactive.len(), batch.len()), (400, 200));
    for r in &callers {
        let at = |t: &TaskRef| interactive.iter().position(|x| *x == t.encode());
        assert!(
            at(&r[0]).unwrap() < at(&r[2]).unwrap(),
            "a caller's order is kept"
        );
        assert!(batch.contains(&r[1].encode()));
    }
    // Nothing to enqueue costs nothing.
    q.enqueue(&[]).await.unwrap();
    assert_eq!(command_calls(&addr, "rpush"), pushes);
}
