//! PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`, checked against the user's stored
//! SCRAM verifier (SHA-256 first, else SHA-512) by deriving it from the password sent.
//! Only ever run on a TLS connection (the caller, [`super::Authenticator`], refuses it
//! otherwise): the password crosses the network as it is.

use super::scram::ScramMechanism;
use super::{AuthError, Credentials, USER_NAME_LEN_MAX};

fn malformed(what: &'static str) -> AuthError {
    AuthError::Malformed { mechanism: "PLAIN", what }
}

/// The principal `message` proves, or why not.
pub fn verify(message: &[u8], users: &dyn Credentials) -> Result<String, AuthError> {
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected authzid NUL user NUL password"));
    };
    let user = std::str::from_utf8(user).map_err(|_| malformed("user name is not UTF-8"))?;
    if user.is_empty() || user.len() > USER_NAME_LEN_MAX {
        return Err(malformed("user name empty or too long"));
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(AuthError::Unsupported("an authorization id other than the user name is not supported"));
    }
    let credential = users.scram(user, ScramMechanism::Sha256).or_else(|| users.scram(user, ScramMechanism::Sha512));
    match credential {
        Some(c) if c.matches_password(password) => Ok(user.to_string()),
        _ => Err(AuthError::BadCredentials),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::auth::{Authenticator, Mechanism, ScramCredential, Step, STEP_ENTROPY_LEN};

    struct One(ScramCredential);

    impl Credentials for One {
        fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            (user == "alice" && m == self.0.mechanism).then(|| self.0.clone())
        }
    }

    fn store() -> One {
        One(ScramCredential::derive(ScramMechanism::Sha512, "pw", b"salt", 4096).unwrap())
    }

    fn run(tls: bool, message: &[u8]) -> Result<Step, AuthError> {
        Authenticator::new(Mechanism::Plain, tls, [0; 32]).step(message, &store(), &[0; STEP_ENTROPY_LEN])
    }

    #[test]
    fn plain_is_refused_without_tls_whatever_it_carries() {
        assert_eq!(run(false, b"\0alice\0pw"), Err(AuthError::PlainNeedsTls));
        assert_eq!(run(false, b"garbage"), Err(AuthError::PlainNeedsTls));
    }

    #[test]
    fn plain_over_tls_checks_the_password() {
        let done = Step::Done { principal: "alice".into(), final_message: Vec::new() };
        assert_eq!(run(true, b"\0alice\0pw"), Ok(done.clone()));
        assert_eq!(run(true, b"alice\0alice\0pw"), Ok(done));
        assert_eq!(run(true, b"\0alice\0pW"), Err(AuthError::BadCredentials));
        assert_eq!(run(true, b"\0bob\0pw"), Err(AuthError::BadCredentials));
        assert!(matches!(run(true, b"\0alice\0pw\0"), Err(AuthError::Malformed { .. })));
        assert!(matches!(run(true, b"alice\0pw"), Err(AuthError::Malformed { .. })));
        assert!(matches!(run(true, b"bob\0alice\0pw"), Err(AuthError::Unsupported(_))));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = run(true, &bytes);
        }
    }
}
