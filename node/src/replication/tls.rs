//! Mutual TLS on replication links (`--cluster-tls-cert`, `--cluster-tls-key`,
//! `--cluster-tls-ca`): every node presents its own certificate, signed by the cluster's CA,
//! on both ends of every link. The listener refuses a connection whose client certificate
//! does not chain to that CA before a single replication byte is read; the link refuses a
//! listener whose certificate does not chain to it or does not name the address dialled
//! (node certificates need an IP SAN of the address peers reach them at, and both the
//! `serverAuth` and `clientAuth` extended key usages, or none).
//!
//! Inside the TLS session the cluster-secret handshake ([`super::auth`]) still runs: TLS
//! proves "a member of this cluster's PKI", the secret proves the node id. The configs are
//! reloaded with the client ports' certificate on SIGHUP; links already open keep theirs.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::ServerName;

use crate::tls::{client_config, server_config, TlsError, TlsFiles};

/// The cluster TLS files and the configs built from them.
#[derive(Debug)]
pub struct LinkTls {
    files: TlsFiles,
    configs: RwLock<(Arc<ServerConfig>, Arc<ClientConfig>)>,
}

impl LinkTls {
    /// Loads `files` (`client_ca` = the cluster CA, required); fails naming the file.
    pub fn load(files: TlsFiles) -> Result<LinkTls, TlsError> {
        let configs = build(&files)?;
        Ok(LinkTls { files, configs: RwLock::new(configs) })
    }

    /// Reads the files again; on failure the old configs stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = build(&self.files)?;
        *self.configs.write().unwrap_or_else(|e| e.into_inner()) = configs;
        Ok(())
    }

    /// The files this reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Accepts inbound links: the peer must present a cluster certificate.
    pub fn acceptor(&self) -> futures_rustls::TlsAcceptor {
        futures_rustls::TlsAcceptor::from(self.configs.read().unwrap_or_else(|e| e.into_inner()).0.clone())
    }

    /// Dials outbound links with this node's certificate.
    pub fn connector(&self) -> futures_rustls::TlsConnector {
        futures_rustls::TlsConnector::from(self.configs.read().unwrap_or_else(|e| e.into_inner()).1.clone())
    }
}

/// The name a listener's certificate must carry: the IP address dialled.
pub fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

fn build(files: &TlsFiles) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), TlsError> {
    let Some(ca) = &files.client_ca else {
        return Err(TlsError::File {
            what: "cluster CA",
            path: files.cert.clone(),
            reason: "replication TLS needs the cluster CA (--cluster-tls-ca)".into(),
        });
    };
    let server = server_config(files)?;
    let client = client_config(ca, Some((&files.cert, &files.key)))?;
    Ok((server, client))
}
