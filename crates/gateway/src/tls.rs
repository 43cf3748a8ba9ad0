//! The TLS ingress listener's configuration (rustls): the server's
//! certificate, and client certificates verified against a configured CA
//! (mTLS). The thumbprint of the verified client certificate reaches step 4,
//! which checks pins and certificate-bound tokens (RFC 8705).

use crate::config::{ClientCertificates, TlsConfig};
use anyhow::Context as _;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tollgate_core::credential::{Thumbprint, thumbprint};

/// Builds the acceptor for `[ingress.tls]`.
pub fn acceptor(config: &TlsConfig) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert_file)
        .with_context(|| format!("cannot read cert_file {}", config.cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "cert_file {} is not PEM certificates",
                config.cert_file.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!(
            "cert_file {} holds no certificate",
            config.cert_file.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file).with_context(|| {
        format!(
            "cannot read a private key from key_file {}",
            config.key_file.display()
        )
    })?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&config.client_ca_file).with_context(|| {
        format!(
            "cannot read client_ca_file {}",
            config.client_ca_file.display()
        )
    })? {
        let ca = ca.with_context(|| {
            format!(
                "client_ca_file {} is not PEM certificates",
                config.client_ca_file.display()
            )
        })?;
        roots
            .add(ca)
            .context("a client CA certificate was refused")?;
    }
    if roots.is_empty() {
        anyhow::bail!(
            "client_ca_file {} holds no certificate",
            config.client_ca_file.display()
        );
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
    let verifier = match config.client_certificates {
        ClientCertificates::Optional => verifier.allow_unauthenticated(),
        ClientCertificates::Required => verifier,
    }
    .build()
    .context("cannot build the client certificate verifier")?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the server certificate and key do not go together")?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// The thumbprint of the client's (verified) end-entity certificate.
pub fn client_thumbprint(connection: &rustls::ServerConnection) -> Option<Thumbprint> {
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| thumbprint(der.as_ref()))
}
