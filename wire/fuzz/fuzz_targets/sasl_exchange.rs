//! The node's SASL server over arbitrary bytes (strand_core::auth): a selector byte picks
//! the mechanism (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN over TLS or not), then the rest is
//! split at the first 0xff into the client's first and final messages. Each step must
//! return a challenge, a success or an error — never panic — and no made-up input may
//! authenticate (the one user's password is not derivable from the fuzzer's bytes short of
//! guessing "pw" for PLAIN, which is checked against).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use strand_core::auth::{Authenticator, Credentials, Mechanism, ScramCredential, ScramMechanism, Step};

struct One(Vec<ScramCredential>);

impl Credentials for One {
    fn scram(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
        (user == "alice").then(|| self.0.iter().find(|c| c.mechanism == m).cloned()).flatten()
    }
}

fuzz_target!(|data: &[u8]| {
    static STORE: OnceLock<One> = OnceLock::new();
    let store = STORE.get_or_init(|| One(strand_core::auth::derive_user("pw", 4096, b"salt1", b"salt2").unwrap()));
    let Some((&selector, rest)) = data.split_first() else { return };
    let (mechanism, tls) = match selector % 4 {
        0 => (Mechanism::Scram(ScramMechanism::Sha256), false),
        1 => (Mechanism::Scram(ScramMechanism::Sha512), false),
        2 => (Mechanism::Plain, false),
        _ => (Mechanism::Plain, true),
    };
    let (first, last) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let mut auth = Authenticator::new(mechanism, tls, [9; 32]);
    let mut outcome = auth.step(first, store, &[1; 24]);
    if let Ok(Step::Challenge(_)) = outcome {
        outcome = auth.step(last, store, &[1; 24]);
    }
    if let Ok(Step::Done { .. }) = outcome {
        let plain_guess = mechanism == Mechanism::Plain && first.ends_with(b"\0pw");
        assert!(plain_guess, "authenticated from made-up bytes: {data:?}");
    }
});
