//! `https://` for client tests: a throwaway certificate authority made at test time, and a
//! TLS-terminating proxy in front of a plain-HTTP gateway on a loopback port — the shape of a
//! production deployment, where a TLS ingress forwards to the gateway.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names the server certificate is valid for: every way a test reaches a loopback port.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate authority that exists only for one test, and a server certificate it signed
/// for [`SERVER_NAMES`]. Nothing on the machine trusts it unless a client is given its
/// [`TestCa::ca_pem`].
#[derive(Debug)]
pub struct TestCa {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: PrivatePkcs8KeyDer<'static>,
}

impl TestCa {
    /// A fresh CA (ECDSA P-256) and server certificate.
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: a client checks a certificate against the CA of its issuer's name,
        // so two test CAs of one name would fail as a bad signature, not an unknown issuer.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "DAEF throwaway test CA {}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ca_params.distinguished_name.push(DnType::CommonName, name);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("generate the server key");
        let mut server_params =
            CertificateParams::new(SERVER_NAMES.map(str::to_owned)).expect("server names");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("sign the server certificate");
        Self {
            ca_pem: ca_cert.pem(),
            server_cert: server_cert.der().clone(),
            server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        }
    }

    /// The CA certificate, PEM-encoded: what a client must trust to accept the server.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes [`TestCa::ca_pem`] to `path`.
    pub fn write_ca_pem(&self, path: &Path) {
        std::fs::write(path, &self.ca_pem)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Serves TLS with the server certificate on a loopback port and forwards every
    /// connection's plaintext to `upstream`.
    pub async fn terminate_tls_to(&self, upstream: SocketAddr) -> TlsProxy {
        // The client's provider (see daef-client's tls.rs for why ring, deprecated or not).
        #[allow(deprecated)]
        let provider = Arc::new(ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_cert.clone()],
                PrivateKeyDer::Pkcs8(self.server_key.clone_key()),
            )
            .expect("server certificate and key");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("address");
        let accept_loop = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that rejects the certificate ends the handshake: that is an
                    // outcome tests look for on the client's side, not an error here.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut gateway) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut gateway).await;
                });
            }
        });
        TlsProxy { addr, accept_loop }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A running TLS-terminating proxy; it stops accepting when dropped.
#[derive(Debug)]
pub struct TlsProxy {
    addr: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl TlsProxy {
    /// The loopback port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}
