//! Authentication: the SASL server side of SCRAM-SHA-256, SCRAM-SHA-512 (RFC 5802 / RFC
//! 7677, as Kafka speaks them) and PLAIN (RFC 4616), and the stored credentials they check.
//!
//! IO-free: the caller passes in the user table ([`Credentials`]), the random bytes a step
//! needs (nonces, see [`Authenticator::step`]) and whether the connection is TLS. No
//! password is ever stored: a user is kept as salted SCRAM verifiers ([`ScramCredential`]),
//! and PLAIN is checked by deriving the same verifier from the password sent.
//!
//! Every byte of every message is hostile: anything malformed ends the exchange with an
//! [`AuthError`] (the shell answers a generic failure and closes), never with a panic. An
//! unknown user goes through the same steps as a known one, against a made-up credential
//! whose salt is stable per name, so the answers do not tell which users exist.

pub mod acl;
pub mod plain;
pub mod scram;

use std::fmt;

pub use scram::{ScramCredential, ScramMechanism};

/// Longest user name accepted (bytes, after SASL name decoding).
pub const USER_NAME_LEN_MAX: usize = 255;
/// Longest SASL message accepted from a client (bytes).
pub const SASL_MESSAGE_LEN_MAX: usize = 4096;
/// Random bytes a step may consume (a server nonce).
pub const STEP_ENTROPY_LEN: usize = 24;

/// A SASL mechanism this node offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    Scram(ScramMechanism),
    Plain,
}

impl Mechanism {
    /// Every mechanism, in the order they are advertised.
    pub const ALL: [Mechanism; 3] =
        [Mechanism::Scram(ScramMechanism::Sha256), Mechanism::Scram(ScramMechanism::Sha512), Mechanism::Plain];

    /// The IANA name, as SASL clients spell it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Scram(m) => m.name(),
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism of that name (exact, upper case as registered), if offered.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an exchange failed. The shell tells the client only "authentication failed" (and
/// the mechanism problems below, which leak nothing about users); the variant is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The message does not follow the mechanism's grammar.
    #[error("malformed {mechanism} message: {what}")]
    Malformed { mechanism: &'static str, what: &'static str },
    /// A feature of the mechanism this node does not offer (channel binding, tokens...).
    #[error("{0}")]
    Unsupported(&'static str),
    /// Unknown user or wrong password: deliberately one case.
    #[error("authentication failed: invalid credentials")]
    BadCredentials,
    /// PLAIN on a connection that is not TLS: the password would cross the network in clear.
    #[error("PLAIN is only allowed on a TLS connection")]
    PlainNeedsTls,
    /// A message after the exchange ended (or failed).
    #[error("the authentication exchange is already over")]
    Finished,
}

/// Where the authenticator finds users: their SCRAM verifiers by mechanism.
pub trait Credentials {
    /// `user`'s verifier for `mechanism`, if the user exists and has one.
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
}

/// What one step gives back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes to the client and wait for its next message.
    Challenge(Vec<u8>),
    /// Authenticated as `principal`; send `final_message` (may be empty) to the client.
    Done { principal: String, final_message: Vec<u8> },
}

/// One SASL exchange on one connection, from the client's first message to success or
/// failure. A failed exchange stays failed.
pub struct Authenticator {
    state: State,
    tls: bool,
    /// Keys the made-up credential of unknown users (see the module doc).
    mock_secret: [u8; 32],
}

enum State {
    Start(Mechanism),
    ScramSent(Box<scram::ServerFirst>),
    Over,
}

impl Authenticator {
    /// An exchange of `mechanism`; `tls` says whether the connection is encrypted;
    /// `mock_secret` is the node's secret for unknown users' stable made-up salts.
    pub fn new(mechanism: Mechanism, tls: bool, mock_secret: [u8; 32]) -> Self {
        Authenticator { state: State::Start(mechanism), tls, mock_secret }
    }

    /// Feeds the client's next message. `entropy` is fresh random bytes (the server nonce
    /// of SCRAM's first step; unused otherwise). Any error ends the exchange.
    pub fn step(
        &mut self,
        input: &[u8],
        users: &dyn Credentials,
        entropy: &[u8; STEP_ENTROPY_LEN],
    ) -> Result<Step, AuthError> {
        let state = std::mem::replace(&mut self.state, State::Over);
        if input.len() > SASL_MESSAGE_LEN_MAX {
            return Err(AuthError::Malformed { mechanism: "SASL", what: "message too long" });
        }
        match state {
            State::Start(Mechanism::Plain) if !self.tls => Err(AuthError::PlainNeedsTls),
            State::Start(Mechanism::Plain) => {
                let principal = plain::verify(input, users)?;
                Ok(Step::Done { principal, final_message: Vec::new() })
            }
            State::Start(Mechanism::Scram(m)) => {
                let first = scram::ServerFirst::new(m, input, users, entropy, &self.mock_secret)?;
                let challenge = first.message().as_bytes().to_vec();
                self.state = State::ScramSent(Box::new(first));
                Ok(Step::Challenge(challenge))
            }
            State::ScramSent(first) => {
                let (principal, final_message) = first.finish(input)?;
                Ok(Step::Done { principal, final_message: final_message.into_bytes() })
            }
            State::Over => Err(AuthError::Finished),
        }
    }

    /// Whether the exchange has ended (succeeded or failed).
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Over)
    }
}

/// A user's verifiers for every SCRAM mechanism, derived from `password` with fresh
/// salts (`salt256`, `salt512`, from the caller's random source) at `iterations`.
pub fn derive_user(
    password: &str,
    iterations: u32,
    salt256: &[u8],
    salt512: &[u8],
) -> Result<Vec<ScramCredential>, scram::CredentialError> {
    Ok(vec![
        ScramCredential::derive(ScramMechanism::Sha256, password, salt256, iterations)?,
        ScramCredential::derive(ScramMechanism::Sha512, password, salt512, iterations)?,
    ])
}
