//! TLS configuration: PEM files → rustls configs (ring provider, TLS 1.3 and 1.2), the
//! node's reloadable server certificate, and whether the kernel offers TLS offload.
//!
//! API meant for every TLS endpoint of the node (client ports today, replication links
//! later): [`server_config`] builds a server config with or without client-certificate
//! verification, [`client_config`] a client config trusting one CA file with an optional
//! client certificate. [`TlsServer`] holds the client ports' current server config and
//! swaps it on [`TlsServer::reload`] (SIGHUP): connections that already finished their
//! handshake keep the config they started with, new ones get the new one; a reload that
//! fails keeps the old config.
//!
//! PEM parsing is `rustls-pki-types`'; every error names the file and says what is wrong
//! in one line.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The PEM files of a TLS endpoint (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// The leaf's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates client certificates must chain to: mutual TLS. `None` = no client
    /// certificate asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS file or config is unusable; one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS {what} {path}: {reason}")]
    File { what: &'static str, path: PathBuf, reason: String },
    #[error("TLS certificate {cert} and key {key} do not go together: {reason}")]
    Config { cert: PathBuf, key: PathBuf, reason: String },
}

fn file_error(what: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File { what, path: path.to_path_buf(), reason: reason.into() }
}

fn pem_reason(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) if e.kind() == io::ErrorKind::NotFound => "no such file".into(),
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("not valid PEM: {other}"),
    }
}

/// The crypto provider of every TLS endpoint: ring (no cmake needed, unlike aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file `path` (at least one).
pub fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, pem_reason(e)))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "holds no CERTIFICATE"));
    }
    Ok(certs)
}

/// The first private key in the PEM file `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            file_error("key", path, "holds no PRIVATE KEY (PKCS#8, RSA or EC; encrypted keys are not supported)")
        }
        e => file_error("key", path, pem_reason(e)),
    })
}

/// A trust store of every certificate in the PEM file `path`.
pub fn load_roots(path: &Path, what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, what)? {
        roots.add(cert).map_err(|e| file_error(what, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A server config for `files`: TLS 1.3 and 1.2; with `client_ca`, every client must
/// present a certificate that chains to it (mutual TLS).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(&files.cert, "certificate")?;
    let key = load_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| config_error(files, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = load_roots(ca, "client CA")?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| file_error("client CA", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| config_error(files, e))?;
    Ok(Arc::new(config))
}

fn config_error(files: &TlsFiles, e: rustls::Error) -> TlsError {
    TlsError::Config { cert: files.cert.clone(), key: files.key.clone(), reason: e.to_string() }
}

/// A client config trusting the CA certificates in `ca` (only them, not the system's),
/// presenting `client` (certificate chain file, key file) when given: TLS 1.3 and 1.2.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(ca, "CA")?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| file_error("CA", ca, e.to_string()))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = load_certs(cert, "client certificate")?;
            let key_der = load_key(key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| TlsError::Config {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                reason: e.to_string(),
            })?
        }
    };
    Ok(Arc::new(config))
}

/// The client ports' TLS: the files it was loaded from and the config new connections get.
#[derive(Debug)]
pub struct TlsServer {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsServer {
    /// Loads `files`; fails (naming the file) if any is missing or unusable.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = server_config(&files)?;
        Ok(TlsServer { files, current: RwLock::new(config) })
    }

    /// The config a connection accepted now handshakes with.
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The files this server reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again; on success new connections use them, on failure the old
    /// config stays and the error says why. Open connections are not touched either way.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        match self.current.write() {
            Ok(mut slot) => *slot = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }
}

/// Where the kernel lists the upper-layer protocols it can attach to a TCP socket.
const ULP_LIST: &str = "/proc/sys/net/ipv4/tcp_available_ulp";

/// Whether the kernel offers TLS offload (`tls` in `tcp_available_ulp`). The node does not
/// use it yet; it is looked at so the log says which path fetches take.
pub fn kernel_tls_available() -> bool {
    std::fs::read_to_string(ULP_LIST).is_ok_and(|list| lists_tls(&list))
}

/// Whether a `tcp_available_ulp` list (space-separated names) names `tls`.
fn lists_tls(list: &str) -> bool {
    list.split_whitespace().any(|ulp| ulp == "tls")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca = ca_params.self_signed(&ca_key).unwrap();
            let issuer = rcgen::Issuer::new(ca_params, ca_key);
            let leaf_key = rcgen::KeyPair::generate().unwrap();
            let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
                .unwrap()
                .signed_by(&leaf_key, &issuer)
                .unwrap();
            let other_key = rcgen::KeyPair::generate().unwrap();
            std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
            std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();
            std::fs::write(dir.path().join("other-key.pem"), other_key.serialize_pem()).unwrap();
            std::fs::write(dir.path().join("garbage.pem"), "hello\n").unwrap();
            Pki { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn files(&self, cert: &str, key: &str, client_ca: Option<&str>) -> TlsFiles {
            TlsFiles { cert: self.path(cert), key: self.path(key), client_ca: client_ca.map(|c| self.path(c)) }
        }
    }

    #[test]
    fn good_files_load_with_and_without_client_verification() {
        let pki = Pki::new();
        server_config(&pki.files("cert.pem", "key.pem", None)).unwrap();
        server_config(&pki.files("cert.pem", "key.pem", Some("ca.pem"))).unwrap();
        client_config(&pki.path("ca.pem"), None).unwrap();
        client_config(&pki.path("ca.pem"), Some((&pki.path("cert.pem"), &pki.path("key.pem")))).unwrap();
    }

    #[test]
    fn bad_files_are_named_in_one_line() {
        let pki = Pki::new();
        let err = |files: TlsFiles| server_config(&files).unwrap_err().to_string();
        let missing = err(pki.files("nope.pem", "key.pem", None));
        assert!(missing.contains("nope.pem") && missing.contains("no such file"), "{missing}");
        let garbage = err(pki.files("garbage.pem", "key.pem", None));
        assert!(garbage.contains("garbage.pem") && garbage.contains("no CERTIFICATE"), "{garbage}");
        let no_key = err(pki.files("cert.pem", "cert.pem", None));
        assert!(no_key.contains("holds no PRIVATE KEY"), "{no_key}");
        let mismatch = err(pki.files("cert.pem", "other-key.pem", None));
        assert!(mismatch.contains("do not go together"), "{mismatch}");
        let bad_ca = err(pki.files("cert.pem", "key.pem", Some("garbage.pem")));
        assert!(bad_ca.contains("client CA") && bad_ca.contains("garbage.pem"), "{bad_ca}");
        for line in [missing, garbage, no_key, mismatch, bad_ca] {
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn the_ulp_list_is_read_word_by_word() {
        assert!(lists_tls("espintcp mptcp tls\n"));
        assert!(lists_tls("tls"));
        assert!(!lists_tls("espintcp mptcp\n"));
        assert!(!lists_tls("ktls tls_sw"));
        assert!(!lists_tls(""));
    }

    #[test]
    fn a_failed_reload_keeps_the_old_config() {
        let pki = Pki::new();
        let server = TlsServer::load(pki.files("cert.pem", "key.pem", None)).unwrap();
        let before = server.config();
        std::fs::write(pki.path("cert.pem"), "broken").unwrap();
        assert!(server.reload().is_err());
        assert!(Arc::ptr_eq(&before, &server.config()), "a failed reload replaced the config");
    }
}
