//! Authentication on the client side: the SCRAM client (RFC 5802 / 7677) each new
//! connection runs when [`crate::ClientConfig::credentials`] is set, and the derivation of
//! a new user's verifiers (`strand user create` sends salted verifiers, never the
//! password). No IO and no clock here: [`crate::Client`] sends the messages.
//!
//! The crypto is the `hmac`, `sha2` and `pbkdf2` crates'.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use strand_wire::msg::ScramCredentialEntry;

use crate::error::{ClientError, Result};

/// Iterations of the verifiers `strand user create` derives (the node's minimum).
pub const ITERATIONS: u32 = 4096;
/// Salt bytes of derived verifiers.
const SALT_LEN: usize = 32;

/// Who the client authenticates as. The password stays in memory only; `Debug` hides it.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub mechanism: ScramMechanism,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("mechanism", &self.mechanism).finish()
    }
}

/// The SCRAM hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of that SASL name.
    pub fn parse(name: &str) -> Option<ScramMechanism> {
        [ScramMechanism::Sha256, ScramMechanism::Sha512].into_iter().find(|m| m.name() == name)
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            // HMAC takes keys of any length.
            ScramMechanism::Sha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            ScramMechanism::Sha512 => {
                let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations).to_vec()
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password.as_bytes(), salt, iterations).to_vec()
            }
        }
    }
}

/// A user's verifiers for both mechanisms, with fresh random salts.
pub fn derive_credentials(password: &str) -> Result<Vec<ScramCredentialEntry>> {
    [ScramMechanism::Sha256, ScramMechanism::Sha512]
        .into_iter()
        .map(|m| {
            let mut salt = [0u8; SALT_LEN];
            getrandom::getrandom(&mut salt).map_err(|e| ClientError::Config(format!("random source: {e}")))?;
            let salted = m.salted(password, &salt, ITERATIONS);
            let client_key = m.hmac(&salted, b"Client Key");
            Ok(ScramCredentialEntry {
                mechanism: m.name().to_string(),
                salt: salt.to_vec(),
                iterations: ITERATIONS,
                stored_key: m.hash(&client_key),
                server_key: m.hmac(&salted, b"Server Key"),
            })
        })
        .collect()
}

/// One SCRAM exchange, client side.
pub struct ScramClient {
    mechanism: ScramMechanism,
    password: String,
    first_bare: String,
    nonce: String,
    expected_server_signature: Option<String>,
}

fn refused(what: &str) -> ClientError {
    ClientError::Server { code: strand_wire::ErrorCode::AuthenticationFailed, message: what.to_string() }
}

impl ScramClient {
    /// Starts an exchange: the client-first message to send.
    pub fn start(credentials: &Credentials) -> Result<(ScramClient, Vec<u8>)> {
        let mut raw = [0u8; 24];
        getrandom::getrandom(&mut raw).map_err(|e| ClientError::Config(format!("random source: {e}")))?;
        let nonce = B64.encode(raw).replace(['+', '/', '='], "x");
        let user = credentials.user.replace('=', "=3D").replace(',', "=2C");
        let first_bare = format!("n={user},r={nonce}");
        let message = format!("n,,{first_bare}").into_bytes();
        let client = ScramClient {
            mechanism: credentials.mechanism,
            password: credentials.password.clone(),
            first_bare,
            nonce,
            expected_server_signature: None,
        };
        Ok((client, message))
    }

    /// The client-final message answering the server-first message.
    pub fn answer(&mut self, server_first: &[u8]) -> Result<Vec<u8>> {
        let text = std::str::from_utf8(server_first).map_err(|_| refused("server-first message is not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for attr in text.split(',') {
            match attr.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = B64.decode(v).ok(),
                Some(("i", v)) => iterations = v.parse::<u32>().ok(),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(refused("malformed server-first message"));
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() || !(4096..=16384).contains(&iterations) {
            return Err(refused("server-first message has a bad nonce or iteration count"));
        }
        let m = self.mechanism;
        let salted = m.salted(&self.password, &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(k, s)| k ^ s).collect();
        let server_key = m.hmac(&salted, b"Server Key");
        self.expected_server_signature =
            Some(format!("v={}", B64.encode(m.hmac(&server_key, auth_message.as_bytes()))));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server knew the verifier too.
    pub fn verify(&self, server_final: &[u8]) -> Result<()> {
        match &self.expected_server_signature {
            Some(expected) if expected.as_bytes() == server_final => Ok(()),
            _ => Err(refused("the node's SCRAM signature does not match: not the node that holds this user")),
        }
    }
}
