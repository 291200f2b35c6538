//! TLS for client connections (rustls, ring provider, TLS 1.3 and 1.2): which CA to trust
//! and, for mutual TLS, which certificate to present. PEM parsing is `rustls-pki-types`'.
//!
//! The server name checked against the node's certificate is the IP address connected to
//! (the client reaches nodes by resolved address, so certificates carry IP SANs), unless
//! [`ClientTls::server_name`] names one DNS name every node's certificate holds.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::{ClientError, Result};

/// How a client speaks TLS to the nodes.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The rustls client config (roots, optional client certificate).
    pub config: Arc<rustls::ClientConfig>,
    /// The name to check every node's certificate for; `None` = the IP address dialed.
    pub server_name: Option<String>,
}

fn config_error(what: &str, path: &Path, reason: impl std::fmt::Display) -> ClientError {
    ClientError::Config(format!("TLS {what} {}: {reason}", path.display()))
}

fn pem_reason(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".into(),
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("not valid PEM: {other}"),
    }
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| config_error(what, path, pem_reason(e)))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| config_error(what, path, pem_reason(e)))?;
    if certs.is_empty() {
        return Err(config_error(what, path, "holds no CERTIFICATE"));
    }
    Ok(certs)
}

impl ClientTls {
    /// Trusts the CA certificates in the PEM file `ca` (only those); presents `client`
    /// (certificate chain file, private key file) when given, for mutual TLS.
    pub fn from_files(ca: &Path, client: Option<(&Path, &Path)>) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs(ca, "CA")? {
            roots.add(cert).map_err(|e| config_error("CA", ca, format!("not a usable CA certificate: {e}")))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| config_error("CA", ca, e))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certs(cert, "client certificate")?;
                let key_der =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| config_error("client key", key, pem_reason(e)))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| config_error("client certificate", cert, e))?
            }
        };
        Ok(ClientTls { config: Arc::new(config), server_name: None })
    }

    /// The name the certificate of the node at `addr` must hold.
    pub(crate) fn server_name_for(&self, addr: std::net::SocketAddr) -> Result<ServerName<'static>> {
        match &self.server_name {
            None => Ok(ServerName::IpAddress(addr.ip().into())),
            Some(name) => ServerName::try_from(name.clone())
                .map_err(|e| ClientError::Config(format!("TLS server name {name:?}: {e}"))),
        }
    }
}
