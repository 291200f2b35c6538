//! Replication link authentication: a mutual challenge-response over the per-cluster
//! secret (HMAC-SHA256, `hmac` + `sha2` crates; nothing hand-rolled), run once per
//! connection before any replication frame is read. Pure: no IO, the caller moves the
//! bytes (`link.rs`). Until mutual TLS lands (issue #20) this is what keeps a host that
//! can reach a replication port from forging chain messages; it neither encrypts nor
//! signs the frames that follow, so an on-path attacker is out of its scope.
//!
//! Handshake (all integers little-endian, see docs/FORMATS.md "Replication handshake"):
//! 1. listener → link: `CHALLENGE` = magic `STRNDRP1` (8) ‖ listener nonce `Nl` (32).
//! 2. link → listener: `HELLO` = sender node id (u32) ‖ link nonce `Nc` (32) ‖
//!    `HMAC(secret, "strand-replication-link" ‖ Nl ‖ Nc ‖ id)` (32).
//! 3. listener → link: `HMAC(secret, "strand-replication-listener" ‖ Nl ‖ Nc ‖ id)` (32).
//!
//! Both nonces are fresh per connection (getrandom), so a recorded handshake does not
//! replay; the node id is inside the MAC, so a secret holder cannot be confused with
//! another id by a man in the middle rewriting it. Invariant: a listener hands on a
//! connection's frames only with the node id its HELLO proved.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use strand_core::chain::NodeId;

type HmacSha256 = Hmac<Sha256>;

/// First bytes a replication listener sends: protocol and version.
pub const MAGIC: [u8; 8] = *b"STRNDRP1";
/// Bytes of each side's nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of a proof (HMAC-SHA256 output).
pub const PROOF_LEN: usize = 32;
/// Bytes of the listener's challenge.
pub const CHALLENGE_LEN: usize = MAGIC.len() + NONCE_LEN;
/// Bytes of the link's hello.
pub const HELLO_LEN: usize = 4 + NONCE_LEN + PROOF_LEN;
/// Shortest accepted cluster secret: 16 bytes, i.e. 128 bits if random.
pub const SECRET_LEN_MIN: usize = 16;

const LINK_LABEL: &[u8] = b"strand-replication-link";
const LISTENER_LABEL: &[u8] = b"strand-replication-listener";

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("not a Strand replication listener (bad magic)")]
    Magic,
    #[error("invalid sender node id {0}")]
    NodeId(u32),
    #[error("proof does not match the cluster secret")]
    Proof,
    #[error("no randomness for a nonce: {0}")]
    Random(String),
}

/// This node's identity on replication links and the cluster secret that proves it.
#[derive(Clone)]
pub struct LinkAuth {
    me: NodeId,
    secret: Arc<[u8]>,
    /// Mutual TLS around the handshake and every frame after it (`super::tls`); `None` =
    /// plain TCP.
    tls: Option<Arc<super::tls::LinkTls>>,
}

impl std::fmt::Debug for LinkAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkAuth")
            .field("me", &self.me)
            .field("secret", &"<redacted>")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The listener's half of one handshake: its nonce, kept until the hello arrives.
pub struct Challenge {
    nonce: [u8; NONCE_LEN],
}

impl Challenge {
    /// A challenge with a fresh nonce.
    pub fn new() -> Result<Challenge, AuthError> {
        Ok(Challenge { nonce: nonce()? })
    }

    /// The bytes to send.
    pub fn bytes(&self) -> [u8; CHALLENGE_LEN] {
        let mut out = [0u8; CHALLENGE_LEN];
        out[..MAGIC.len()].copy_from_slice(&MAGIC);
        out[MAGIC.len()..].copy_from_slice(&self.nonce);
        out
    }
}

/// The proof the link expects back from the listener.
pub struct ExpectedProof {
    mac: HmacSha256,
}

impl ExpectedProof {
    /// Ok when `proof` is the listener's proof for this handshake (constant time).
    pub fn verify(self, proof: &[u8]) -> Result<(), AuthError> {
        self.mac.verify_slice(proof).map_err(|_| AuthError::Proof)
    }
}

impl LinkAuth {
    /// Node `me` holding `secret` (at least [`SECRET_LEN_MIN`] bytes; asserted, the
    /// control plane checks it with a clear error first).
    pub fn new(me: NodeId, secret: &[u8]) -> LinkAuth {
        assert!(secret.len() >= SECRET_LEN_MIN, "cluster secret shorter than {SECRET_LEN_MIN} bytes");
        assert!(me.0 >= 1, "node ids start at 1");
        LinkAuth { me, secret: Arc::from(secret), tls: None }
    }

    /// The same identity, with links in mutual TLS (`tls`) or plain TCP (`None`).
    pub fn with_tls(mut self, tls: Option<Arc<super::tls::LinkTls>>) -> LinkAuth {
        self.tls = tls;
        self
    }

    /// The links' TLS, if on.
    pub fn tls(&self) -> Option<&super::tls::LinkTls> {
        self.tls.as_deref()
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Link side: the hello answering `challenge`, and the proof to expect back.
    pub fn answer(&self, challenge: &[u8; CHALLENGE_LEN]) -> Result<([u8; HELLO_LEN], ExpectedProof), AuthError> {
        let (magic, listener_nonce) = challenge.split_at(MAGIC.len());
        if magic != MAGIC {
            return Err(AuthError::Magic);
        }
        let link_nonce = nonce()?;
        let id = self.me.0.to_le_bytes();
        let proof = self.mac(LINK_LABEL, listener_nonce, &link_nonce, &id).finalize().into_bytes();
        let mut hello = [0u8; HELLO_LEN];
        hello[..4].copy_from_slice(&id);
        hello[4..4 + NONCE_LEN].copy_from_slice(&link_nonce);
        hello[4 + NONCE_LEN..].copy_from_slice(&proof);
        let expected = ExpectedProof { mac: self.mac(LISTENER_LABEL, listener_nonce, &link_nonce, &id) };
        Ok((hello, expected))
    }

    /// Listener side: the sender `hello` proves, and the proof to send back.
    pub fn check_hello(
        &self,
        challenge: &Challenge,
        hello: &[u8; HELLO_LEN],
    ) -> Result<(NodeId, [u8; PROOF_LEN]), AuthError> {
        let (id, rest) = hello.split_at(4);
        let (link_nonce, proof) = rest.split_at(NONCE_LEN);
        self.mac(LINK_LABEL, &challenge.nonce, link_nonce, id).verify_slice(proof).map_err(|_| AuthError::Proof)?;
        let node = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
        if node == 0 {
            return Err(AuthError::NodeId(node));
        }
        let answer = self.mac(LISTENER_LABEL, &challenge.nonce, link_nonce, id).finalize().into_bytes();
        Ok((NodeId(node), answer.into()))
    }

    fn mac(&self, label: &[u8], listener_nonce: &[u8], link_nonce: &[u8], id: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        for part in [label, listener_nonce, link_nonce, id] {
            mac.update(part);
        }
        mac
    }
}

fn nonce() -> Result<[u8; NONCE_LEN], AuthError> {
    let mut out = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut out).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(out)
}

/// A fresh random cluster secret, hex (what the control plane stores in etcd).
pub fn random_secret_hex() -> Result<String, AuthError> {
    let bytes = nonce()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(secret_link: &[u8], secret_listener: &[u8], id: u32) -> Result<NodeId, AuthError> {
        let link = LinkAuth::new(NodeId(id), secret_link);
        let listener = LinkAuth::new(NodeId(9), secret_listener);
        let challenge = Challenge::new()?;
        let (hello, expected) = link.answer(&challenge.bytes())?;
        let (peer, proof) = listener.check_hello(&challenge, &hello)?;
        expected.verify(&proof)?;
        Ok(peer)
    }

    #[test]
    fn same_secret_proves_the_sender_both_ways() {
        assert_eq!(pair(b"0123456789abcdef", b"0123456789abcdef", 4), Ok(NodeId(4)));
    }

    #[test]
    fn another_secret_is_refused() {
        assert_eq!(pair(b"0123456789abcdef", b"0123456789abcdeX", 4), Err(AuthError::Proof));
    }

    #[test]
    fn a_rewritten_node_id_or_replayed_hello_is_refused() {
        let secret = b"0123456789abcdef";
        let (link, listener) = (LinkAuth::new(NodeId(2), secret), LinkAuth::new(NodeId(1), secret));
        let challenge = Challenge::new().unwrap();
        let (mut hello, _) = link.answer(&challenge.bytes()).unwrap();
        let original = hello;
        hello[0] = 3;
        assert_eq!(listener.check_hello(&challenge, &hello).unwrap_err(), AuthError::Proof);
        // The same hello against a new challenge (a replay) fails too.
        let fresh = Challenge::new().unwrap();
        assert_eq!(listener.check_hello(&fresh, &original).unwrap_err(), AuthError::Proof);
        assert!(listener.check_hello(&challenge, &original).is_ok());
    }

    #[test]
    fn a_listener_without_the_magic_is_refused() {
        let link = LinkAuth::new(NodeId(2), b"0123456789abcdef");
        assert_eq!(link.answer(&[0u8; CHALLENGE_LEN]).err().map(|e| e.to_string()), Some(AuthError::Magic.to_string()));
        assert_eq!(random_secret_hex().unwrap().len(), 2 * NONCE_LEN);
    }
}
