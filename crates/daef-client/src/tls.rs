//! TLS for `https://` gateways: rustls on the ring provider, trusting the platform's root
//! certificates plus, optionally, the certificates of a PEM file (a private CA).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The certificates of the PEM file at `path`, checked as trust anchors. The error says what is
/// wrong with the file and names it.
pub(crate) fn ca_file_roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a valid PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)",
            path.display()
        ));
    }
    let mut roots = RootCertStore::empty();
    for (n, cert) in certs.into_iter().enumerate() {
        // Parsed now, so a damaged file stops the program at startup instead of failing every
        // handshake later.
        roots.add(cert).map_err(|e| {
            format!(
                "certificate {} of {} cannot be a CA: {e}",
                n + 1,
                path.display()
            )
        })?;
    }
    Ok(roots)
}

/// The rustls settings of a client: trusts `ca_file`'s certificates, and the platform's roots
/// when `platform_roots` is set.
pub(crate) fn client_config(
    platform_roots: bool,
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = match ca_file {
        Some(path) => ca_file_roots(path)?,
        None => RootCertStore::empty(),
    };
    if platform_roots {
        // Unreadable or unparsable entries are skipped, as browsers do: one bad file in the
        // store must not take the others down with it.
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            let why = match found.errors.first() {
                Some(err) => format!(" ({err})"),
                None => String::new(),
            };
            return Err(format!(
                "no root certificate to check the gateway's against: the platform's store is \
                 empty or unreadable{why}; install the CA certificates package or give a CA file"
            ));
        }
    }
    // ring rather than rustls' default aws-lc-rs, which needs cmake and a long C build. rustls
    // 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; the classical
    // groups it offers (X25519, P-256, P-384) are what TLS ingresses negotiate with it.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The rustls error somewhere in `err`'s chain of sources: the reason a handshake failed.
pub(crate) fn find_tls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e.downcast_ref::<std::io::Error>() {
            // tokio-rustls reports a failed handshake as an `io::Error` wrapping the rustls error
            // (and hyper-rustls wraps that in another), but `io::Error::source` skips the error
            // it wraps: step into it instead.
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_file(name: &str, contents: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("daef-client-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn unusable_ca_files_are_named_and_explained() {
        let missing = Path::new("/nonexistent/daef-ca.pem");
        let err = ca_file_roots(missing).unwrap_err();
        assert!(
            err.starts_with("cannot read /nonexistent/daef-ca.pem"),
            "{err}"
        );

        let not_pem = scratch_file("not-pem", "just some text\n");
        let err = ca_file_roots(&not_pem).unwrap_err();
        assert!(err.contains("holds no certificate"), "{err}");
        assert!(err.contains(&*not_pem.to_string_lossy()), "{err}");

        // Valid base64 in a certificate block, but not a certificate.
        let garbage = scratch_file(
            "garbage",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        let err = ca_file_roots(&garbage).unwrap_err();
        assert!(err.contains("certificate 1 of"), "{err}");
        assert!(err.contains("cannot be a CA"), "{err}");

        for path in [not_pem, garbage] {
            let _ = std::fs::remove_file(path);
        }
    }
}
