//! One smoke test through a real socket: `daef_http::serve` on `127.0.0.1:0`, a few HTTP/1.1
//! requests written by hand, then a graceful shutdown.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{Harness, OP};

/// Sends one request on a fresh connection (`Connection: close`) and returns the status code,
/// the raw head and the body.
async fn exchange(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (u16, String, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    write_all(&stream, &[head.as_bytes(), body].concat()).await;
    let raw = tokio::time::timeout(Duration::from_secs(10), read_to_end(&stream))
        .await
        .expect("response in time");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, head.to_owned(), body.to_owned())
}

/// Writes everything (tokio's `io-util` extension traits are not enabled in this workspace).
async fn write_all(stream: &TcpStream, mut buf: &[u8]) {
    while !buf.is_empty() {
        stream.writable().await.expect("writable");
        match stream.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("write failed: {e}"),
        }
    }
}

/// Reads until the server closes the connection. A reset after the response arrived (the
/// server may close without reading a refused body) ends the read too.
async fn read_to_end(stream: &TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        stream.readable().await.expect("readable");
        match stream.try_read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if !out.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return out;
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

/// Reads one response whose body length is given by `Content-Length`, leaving the connection
/// open.
async fn read_response(stream: &TcpStream) -> String {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().expect("length"))
                })
                .expect("Content-Length");
            if body.len() >= length {
                return text;
            }
        }
        stream.readable().await.expect("readable");
        match stream.try_read(&mut chunk) {
            Ok(0) => panic!("connection closed mid-response: {text}"),
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

#[tokio::test]
async fn serves_over_a_socket_and_shuts_down_gracefully() {
    let h = Harness::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(daef_http::serve(listener, h.app.clone(), async {
        let _ = stopped.await;
    }));

    let (status, head, body) = exchange(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        b"",
    )
    .await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        json!({"status": "ok"})
    );

    let submit =
        serde_json::to_vec(&json!({"type": "chat", "input": "over the wire"})).expect("json");
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {OP}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        submit.len()
    );
    let (status, head, body) = exchange(addr, &head, &submit).await;
    assert_eq!(status, 202, "{head}\n{body}");
    let job = serde_json::from_str::<Value>(&body).expect("JSON")["job_id"]
        .as_str()
        .expect("job_id")
        .to_owned();
    assert_eq!(h.job(&job).await["status"], "Queued");

    // A chunked body over the limit is refused while it streams.
    let small = Harness::with_config(daef_http::HttpConfig {
        max_body_bytes: 64,
        ..Default::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let small_addr = listener.local_addr().expect("address");
    let (small_stop, small_stopped) = tokio::sync::oneshot::channel::<()>();
    let small_server = tokio::spawn(daef_http::serve(listener, small.app.clone(), async {
        let _ = small_stopped.await;
    }));
    let chunk = "x".repeat(40);
    let chunked = format!("28\r\n{chunk}\r\n28\r\n{chunk}\r\n0\r\n\r\n");
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: test\r\nX-DAEF-Token: {OP}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let (status, head, body) = exchange(small_addr, &head, chunked.as_bytes()).await;
    assert_eq!(status, 413, "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        json!({"error": "request body exceeds 64 bytes"})
    );

    // The client address reaches the audit log.
    let head = format!(
        "DELETE /v1/jobs/{job} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {OP}\r\nConnection: close\r\n\r\n"
    );
    let (status, _, body) = exchange(addr, &head, b"").await;
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":true}"#));
    let event = h.last_audit().await;
    assert!(
        event["remote_addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{event}"
    );

    // Two requests on one keep-alive connection, which then stays open and idle.
    let idle = TcpStream::connect(addr).await.expect("connect");
    for _ in 0..2 {
        write_all(&idle, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").await;
        let response = read_response(&idle).await;
        assert!(
            response.starts_with("HTTP/1.1 200 ") && response.ends_with(r#"{"status":"ok"}"#),
            "{response}"
        );
    }

    stop.send(()).expect("server running");
    small_stop.send(()).expect("server running");
    // The idle connection is closed at once rather than held until the drain deadline.
    let rest = tokio::time::timeout(Duration::from_secs(5), read_to_end(&idle))
        .await
        .expect("idle connection closed");
    assert!(rest.is_empty(), "{rest:?}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .expect("no panic");
    tokio::time::timeout(Duration::from_secs(5), small_server)
        .await
        .expect("serve returns")
        .expect("no panic");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

/// A request refused before its body is used (401, unknown route) leaves the connection clean
/// for the next request; one whose body is over the limit is answered with `Connection: close`
/// rather than a connection dropped under the client.
#[tokio::test]
async fn a_refused_request_leaves_its_connection_usable_or_says_close() {
    let h = Harness::with_config(daef_http::HttpConfig {
        max_body_bytes: 128 * 1024,
        ..Default::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(daef_http::serve(listener, h.app.clone(), async {
        let _ = stopped.await;
    }));

    let big = format!(r#"{{"type":"chat","input":"{}"}}"#, "x".repeat(64 * 1024));
    let conn = TcpStream::connect(addr).await.expect("connect");
    for (request_line, token, status) in [
        ("POST /v1/jobs", "nope", 401),
        ("POST /v1/jobs", "met", 403),
        ("POST /v1/no-such-route", OP, 404),
        ("PUT /v1/jobs", OP, 405),
    ] {
        for _ in 0..3 {
            let head = format!(
                "{request_line} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                big.len()
            );
            write_all(&conn, &[head.as_bytes(), big.as_bytes()].concat()).await;
            let response = read_response(&conn).await;
            assert!(
                response.starts_with(&format!("HTTP/1.1 {status} ")),
                "{request_line}: {response}"
            );
            assert!(
                !response.to_ascii_lowercase().contains("connection: close"),
                "{response}"
            );
            write_all(&conn, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").await;
            let next = read_response(&conn).await;
            assert!(next.starts_with("HTTP/1.1 200 "), "after {status}: {next}");
        }
    }

    // A body announced but never sent does not hold the refusal back: it comes after the
    // drain gives up, saying `Connection: close`.
    let conn = TcpStream::connect(addr).await.expect("connect");
    write_all(
        &conn,
        b"POST /v1/jobs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer nope\r\nContent-Length: 1000\r\n\r\n",
    )
    .await;
    let response = tokio::time::timeout(Duration::from_secs(10), read_response(&conn))
        .await
        .expect("the refusal in time");
    assert!(response.starts_with("HTTP/1.1 401 "), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );

    // Over the limit: refused on its declared length, and the connection is closed cleanly.
    let conn = TcpStream::connect(addr).await.expect("connect");
    let huge = "x".repeat(200 * 1024);
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer nope\r\nContent-Length: {}\r\n\r\n",
        huge.len()
    );
    write_all(&conn, head.as_bytes()).await;
    let response = read_response(&conn).await;
    assert!(response.starts_with("HTTP/1.1 401 "), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );

    stop.send(()).expect("server running");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .expect("no panic");
}
