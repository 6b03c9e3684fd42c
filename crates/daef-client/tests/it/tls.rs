//! `https://`: the gateway behind a TLS-terminating proxy whose certificate a throwaway CA,
//! made by the test, signed. The client reaches it when given that CA, and fails with a TLS
//! error — not a panic, not a transient error — when it does not trust the certificate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use daef_client::model::JobSubmission;
use daef_client::{Client, ClientConfig, Error, JobEvent};
use daef_core::model::JobStatus;
use daef_testenv::tls::{TestCa, TlsProxy};

use crate::gateway::Gateway;

/// A PEM file of a CA, removed when dropped.
struct CaFile(PathBuf);

impl CaFile {
    fn of(ca: &TestCa) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "daef-client-test-ca-{}-{}.pem",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        ca.write_ca_pem(&path);
        Self(path)
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An auth-on gateway behind TLS, and the CA that signed the proxy's certificate.
async fn gateway_behind_tls() -> (Gateway, TestCa, TlsProxy) {
    let gateway = Gateway::with_auth().await;
    let ca = TestCa::new();
    let proxy = ca.terminate_tls_to(gateway.addr).await;
    (gateway, ca, proxy)
}

fn client(base_url: String, token: Option<&str>, ca_file: Option<&CaFile>) -> Client {
    Client::new(ClientConfig {
        base_url,
        token: token.map(str::to_owned),
        ca_file: ca_file.map(|f| f.0.clone()),
        ..ClientConfig::default()
    })
    .expect("client")
}

#[tokio::test]
async fn with_the_private_ca_every_call_goes_over_https() {
    let (_gateway, ca, proxy) = gateway_behind_tls().await;
    let ca_file = CaFile::of(&ca);
    // By name and by address: the certificate holds both.
    for host in ["localhost", "127.0.0.1"] {
        let base_url = format!("https://{host}:{}", proxy.port());
        let c = client(base_url.clone(), Some("acme"), Some(&ca_file));
        assert_eq!(c.base_url(), base_url);
        assert_eq!(c.health().await.expect("health").status, "ok", "{host}");

        // The token crosses: an authenticated write and read, then an event stream.
        let job = c
            .submit_job(&JobSubmission::new("chat", "over TLS"))
            .await
            .expect("submit")
            .job_id;
        let info = c.job(&job).await.expect("job");
        assert_eq!(info.tenant, "acme");
        assert_eq!(info.status, JobStatus::Queued);
        let mut events = c.job_events(&job).await.expect("event stream");
        let first = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5s")
            .expect("a readable stream");
        assert!(matches!(first, Some(JobEvent::Task(_))), "{first:?}");

        // The gateway's refusals arrive as typed errors over TLS too.
        let anonymous = client(base_url, None, Some(&ca_file));
        let refused = anonymous.job(&job).await.unwrap_err();
        assert!(matches!(refused, Error::Unauthorized(_)), "{refused:?}");
    }
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_a_tls_error() {
    let (_gateway, _ca, proxy) = gateway_behind_tls().await;
    let base_url = format!("https://localhost:{}", proxy.port());
    let another_ca = CaFile::of(&TestCa::new());
    // Platform roots only, then platform roots plus a CA that did not sign the certificate.
    for ca_file in [None, Some(&another_ca)] {
        let err = client(base_url.clone(), Some("acme"), ca_file)
            .health()
            .await
            .unwrap_err();
        let Error::Tls(reason) = &err else {
            panic!("expected a TLS error, got {err:?}");
        };
        assert!(reason.contains("UnknownIssuer"), "{reason}");
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .starts_with("TLS handshake with the gateway failed: invalid peer certificate"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn https_to_a_plain_http_port_is_a_tls_error() {
    let (gateway, ca, _proxy) = gateway_behind_tls().await;
    let ca_file = CaFile::of(&ca);
    let c = client(format!("https://{}", gateway.addr), None, Some(&ca_file));
    let err = c.health().await.unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

#[tokio::test]
async fn an_unusable_ca_file_is_a_configuration_error() {
    let err = Client::new(ClientConfig {
        base_url: "https://localhost:8443".into(),
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..ClientConfig::default()
    })
    .unwrap_err();
    let Error::Config(msg) = &err else {
        panic!("expected a configuration error, got {err:?}");
    };
    assert!(msg.contains("cannot read /nonexistent/ca.pem"), "{msg}");
}
