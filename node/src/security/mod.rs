//! Authentication and authorization in the node's shell: the user and ACL tables (one per
//! node, shared by every shard, persisted by [`store`] in the data dir or, in cluster
//! mode, kept in etcd under `{prefix}/security` and followed through the control view), each connection's [`Session`]
//! (which SASL exchange it is in, which principal it proved), and [`Access`], the check
//! every request passes at the dispatch point of both protocols.
//!
//! The SASL state machines and the ACL model are IO-free in `strand_core::auth`; this
//! module feeds them random bytes (getrandom) and the tables, logs failures without the
//! password or proofs, and counts them (`strand_auth_failures_total`).
//!
//! Without `--require-auth` nothing is enforced (a connection may still authenticate, and
//! the node behaves as before otherwise); with it, a connection must authenticate before
//! any request but the handshake and the SASL ones, and every request is checked against
//! the ACLs (default deny; superusers may do everything).

pub mod native;
pub mod store;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::RwLock;

use strand_core::auth::acl::{Denied, Kind, Operation, Target};
use strand_core::auth::scram::{ITERATIONS_DEFAULT, SALT_LEN};
use strand_core::auth::{AuthError, Authenticator, Mechanism, Step, STEP_ENTROPY_LEN};
use strand_wire::ErrorCode;
use tracing::{info, warn};

use crate::control::{ClusterView, ControlError, ControlHandle};
use crate::metrics::ShardMetrics;
pub use store::{StoreError, Tables, User};

/// Environment variable holding the first superuser's password (`--superuser NAME`).
pub const SUPERUSER_PASSWORD_ENV: &str = "STRAND_SUPERUSER_PASSWORD";

/// The node's users, ACLs and authentication settings.
pub struct Security {
    tables: RwLock<Snapshot>,
    dir: PathBuf,
    /// `--require-auth`: authenticate first, then ACLs (default deny).
    pub require_auth: bool,
    /// Keys the made-up salts of unknown users (stable for this process).
    mock_secret: [u8; 32],
    /// Cluster mode: the tables live in etcd (`{prefix}/security`), followed through the
    /// control plane's view; `None` = in the data dir.
    cluster: Option<ControlHandle>,
}

/// The tables and, in cluster mode, the etcd mod revision they were read at.
struct Snapshot {
    tables: Tables,
    revision: i64,
}

/// Attempts of a cluster-mode change that raced another node's change.
const CHANGE_ATTEMPTS: u32 = 5;

/// Why the security state could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("--superuser {0} needs its password in the {SUPERUSER_PASSWORD_ENV} environment variable")]
    NoPassword(String),
    #[error("--superuser {name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error("random source: {0}")]
    Random(String),
    #[error("users and ACLs in etcd: {0}")]
    Cluster(String),
}

fn random<const N: usize>() -> Result<[u8; N], SetupError> {
    let mut out = [0; N];
    getrandom::getrandom(&mut out).map_err(|e| SetupError::Random(e.to_string()))?;
    Ok(out)
}

/// Never the tables or the secret: the node's shared state is logged in debug output.
impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users = self.read(|t| t.users.len());
        f.debug_struct("Security").field("require_auth", &self.require_auth).field("users", &users).finish()
    }
}

/// The tables an etcd view holds (empty before the first user), or why not.
fn tables_of(view: &ClusterView) -> Result<(Tables, i64), String> {
    match &view.security {
        Some((revision, bytes)) => store::decode(bytes).map(|t| (t, *revision)),
        None => Ok((Tables::default(), 0)),
    }
}

impl Security {
    /// Loads the tables — from `dir`, or in cluster mode from etcd — and creates
    /// `superuser` (password from the environment) unless a user of that name exists
    /// already (left as it is).
    pub fn open(
        dir: PathBuf,
        require_auth: bool,
        superuser: Option<&str>,
        cluster: Option<ControlHandle>,
    ) -> Result<Security, SetupError> {
        let (mut tables, mut revision) = match &cluster {
            Some(control) => tables_of(&control.latest()).map_err(SetupError::Cluster)?,
            None => (store::load(&dir)?, 0),
        };
        if let Some(name) = superuser {
            if !tables.users.contains_key(name) {
                let password =
                    std::env::var(SUPERUSER_PASSWORD_ENV).map_err(|_| SetupError::NoPassword(name.into()))?;
                let credentials = derive(name, &password)?;
                let user = User { superuser: true, credentials };
                match &cluster {
                    Some(control) => (tables, revision) = create_in_etcd(control, name, user)?,
                    None => {
                        tables.users.insert(name.to_string(), user);
                        store::save(&dir, &tables)?;
                    }
                }
                info!(user = name, "superuser created");
            }
        }
        let snapshot = Snapshot { tables, revision };
        Ok(Security { tables: RwLock::new(snapshot), dir, require_auth, mock_secret: random()?, cluster })
    }

    /// Reads the tables (in cluster mode, the newest the control plane has seen).
    pub fn read<T>(&self, f: impl FnOnce(&Tables) -> T) -> T {
        self.refresh();
        match self.tables.read() {
            Ok(t) => f(&t.tables),
            Err(poisoned) => f(&poisoned.into_inner().tables),
        }
    }

    /// Cluster mode: takes a newer `{prefix}/security` from the control plane's view.
    fn refresh(&self) {
        let Some(control) = &self.cluster else { return };
        let view = control.latest();
        let newer = match (&view.security, self.tables.read()) {
            (Some((revision, _)), Ok(current)) => *revision > current.revision,
            _ => false,
        };
        if !newer {
            return;
        }
        match tables_of(&view) {
            Ok((tables, revision)) => {
                let mut current = self.tables.write().unwrap_or_else(|p| p.into_inner());
                if revision > current.revision {
                    *current = Snapshot { tables, revision };
                }
            }
            Err(reason) => warn!(%reason, "users and ACLs in etcd do not decode; keeping the previous ones"),
        }
    }

    /// Changes the tables and persists them (data dir, or etcd guarded by the revision
    /// read, retried when another node changed them meanwhile); nothing changes if they
    /// cannot be saved.
    pub async fn change<T>(&self, f: impl Fn(&mut Tables) -> Result<T, String>) -> Result<T, String> {
        let Some(control) = &self.cluster else {
            let mut current = self.tables.write().unwrap_or_else(|p| p.into_inner());
            let mut next = current.tables.clone();
            let out = f(&mut next)?;
            store::save(&self.dir, &next).map_err(|e| e.to_string())?;
            current.tables = next;
            return Ok(out);
        };
        for _ in 0..CHANGE_ATTEMPTS {
            self.refresh();
            let (mut next, expected) = {
                let current = self.tables.read().unwrap_or_else(|p| p.into_inner());
                (current.tables.clone(), current.revision)
            };
            let out = f(&mut next)?;
            match control.put_security(store::encode(&next), expected).await {
                Ok(revision) => {
                    let mut current = self.tables.write().unwrap_or_else(|p| p.into_inner());
                    if revision > current.revision {
                        *current = Snapshot { tables: next, revision };
                    }
                    return Ok(out);
                }
                Err(ControlError::Conflict) => glommio::timer::sleep(std::time::Duration::from_millis(50)).await,
                Err(e) => return Err(format!("saving users and ACLs in etcd: {e}")),
            }
        }
        Err("users and ACLs changed concurrently on other nodes; try again".into())
    }

    fn is_superuser(&self, principal: &str) -> bool {
        self.read(|t| t.users.get(principal).is_some_and(|u| u.superuser))
    }
}

/// Adds `user` to the tables in etcd at start (blocking), unless another node created
/// it meanwhile.
fn create_in_etcd(control: &ControlHandle, name: &str, user: User) -> Result<(Tables, i64), SetupError> {
    for _ in 0..CHANGE_ATTEMPTS {
        let (mut tables, revision) = tables_of(&control.latest()).map_err(SetupError::Cluster)?;
        if tables.users.contains_key(name) {
            return Ok((tables, revision));
        }
        tables.users.insert(name.to_string(), user.clone());
        match control.put_security_blocking(store::encode(&tables), revision) {
            Ok(revision) => return Ok((tables, revision)),
            Err(ControlError::Conflict) => std::thread::sleep(std::time::Duration::from_millis(100)),
            Err(e) => return Err(SetupError::Cluster(e.to_string())),
        }
    }
    Err(SetupError::Cluster("changed concurrently by other nodes at every attempt".into()))
}

/// A user's verifiers for both SCRAM mechanisms, with fresh salts.
fn derive(name: &str, password: &str) -> Result<Vec<strand_core::auth::ScramCredential>, SetupError> {
    if name.is_empty() || name.len() > strand_core::auth::USER_NAME_LEN_MAX {
        return Err(SetupError::Invalid { name: name.into(), reason: "user names are 1 to 255 bytes".into() });
    }
    let (a, b) = (random::<SALT_LEN>()?, random::<SALT_LEN>()?);
    strand_core::auth::derive_user(password, ITERATIONS_DEFAULT, &a, &b)
        .map_err(|e| SetupError::Invalid { name: name.into(), reason: e.to_string() })
}

/// What a connection has proven. One per connection, used by its reader only.
#[derive(Default)]
pub struct Session {
    /// Whether the connection is TLS (PLAIN is refused otherwise). Always false until the
    /// node speaks TLS.
    tls: bool,
    principal: RefCell<Option<Rc<str>>>,
    exchange: RefCell<Option<(Mechanism, Authenticator)>>,
}

/// The outcome of one SASL step, as both protocols answer it.
pub enum SaslAnswer {
    /// Send these bytes; the exchange goes on.
    Challenge(Vec<u8>),
    /// Authenticated; send these bytes (maybe empty).
    Done { principal: Rc<str>, final_message: Vec<u8> },
    /// Failed: answer with this text and close the connection.
    Failed(String),
}

impl Session {
    pub fn new(tls: bool) -> Session {
        Session { tls, ..Session::default() }
    }

    /// The authenticated principal, if any.
    pub fn principal(&self) -> Option<Rc<str>> {
        self.principal.borrow().clone()
    }

    /// Starts an exchange of the mechanism named `name`; `Err` = not offered (with the
    /// mechanisms that are) or an exchange was already started.
    pub fn begin(&self, security: &Security, name: &str) -> Result<Mechanism, String> {
        let mechanism = Mechanism::parse(name).ok_or_else(|| {
            let offered: Vec<_> = Mechanism::ALL.iter().map(|m| m.name()).collect();
            // The name is the client's: at most 32 characters of it go into the answer and the log.
            let shown: String = name.chars().take(32).collect();
            format!("mechanism {shown:?} is not offered (this node offers {})", offered.join(", "))
        })?;
        let mut exchange = self.exchange.borrow_mut();
        if exchange.is_some() || self.principal.borrow().is_some() {
            return Err("an authentication exchange was already started on this connection".into());
        }
        *exchange = Some((mechanism, Authenticator::new(mechanism, self.tls, security.mock_secret)));
        Ok(mechanism)
    }

    /// Feeds the client's next SASL message to the exchange [`Session::begin`] started.
    pub fn step(&self, security: &Security, metrics: &ShardMetrics, peer: &str, input: &[u8]) -> SaslAnswer {
        let mut slot = self.exchange.borrow_mut();
        let Some((mechanism, auth)) = slot.as_mut() else {
            return SaslAnswer::Failed("no authentication exchange was started".into());
        };
        let mechanism = *mechanism;
        let mut entropy = [0u8; STEP_ENTROPY_LEN];
        if let Err(e) = getrandom::getrandom(&mut entropy) {
            warn!(error = %e, "random source failed; authentication refused");
            return SaslAnswer::Failed("authentication failed".into());
        }
        let stepped = security.read(|tables| auth.step(input, tables, &entropy));
        match stepped {
            Ok(Step::Challenge(bytes)) => SaslAnswer::Challenge(bytes),
            Ok(Step::Done { principal, final_message }) => {
                *slot = None;
                let principal: Rc<str> = principal.into();
                *self.principal.borrow_mut() = Some(principal.clone());
                info!(peer, user = %principal, %mechanism, "authenticated");
                SaslAnswer::Done { principal, final_message }
            }
            Err(e) => {
                *slot = None;
                metrics.auth_failures.fetch_add(1, Relaxed);
                // The reason (never the message: it may hold a password or a proof).
                warn!(peer, %mechanism, reason = %e, "authentication failed");
                SaslAnswer::Failed(client_text(&e))
            }
        }
    }
}

/// What the client is told: the same words for a wrong password and an unknown user.
fn client_text(e: &AuthError) -> String {
    match e {
        AuthError::BadCredentials => "authentication failed: invalid user name or password".into(),
        other => format!("authentication failed: {other}"),
    }
}

/// One request's right to act: the connection's principal, checked against the ACLs
/// when `--require-auth` is on.
#[derive(Clone)]
pub struct Access {
    principal: Option<Rc<str>>,
    enforce: bool,
}

/// A refusal with the wire code of its resource kind.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Access {
    pub fn new(security: &Security, session: &Session) -> Access {
        Access { principal: session.principal(), enforce: security.require_auth }
    }

    /// Everything allowed (requests the node makes for itself, and tests).
    pub fn everything() -> Access {
        Access { principal: None, enforce: false }
    }

    /// Whether the connection may send requests at all (`--require-auth`).
    pub fn authenticated(&self) -> bool {
        !self.enforce || self.principal.is_some()
    }

    /// Checks `operation` on `target`.
    pub fn check(&self, security: &Security, operation: Operation, target: Target<'_>) -> Result<(), Refusal> {
        if !self.enforce {
            return Ok(());
        }
        let code = match target {
            Target::Named(Kind::Topic, _) => ErrorCode::TopicAuthorizationFailed,
            Target::Named(Kind::Group, _) => ErrorCode::GroupAuthorizationFailed,
            Target::Cluster => ErrorCode::ClusterAuthorizationFailed,
        };
        let Some(principal) = &self.principal else {
            return Err(Refusal { code: ErrorCode::AuthenticationRequired, message: "authenticate first".into() });
        };
        let superuser = security.is_superuser(principal);
        security
            .read(|t| t.acls.check(principal, superuser, operation, target))
            .map_err(|d: Denied| Refusal { code, message: d.to_string() })
    }

    /// `operation` on topic `name`.
    pub fn topic(&self, security: &Security, operation: Operation, name: &str) -> Result<(), Refusal> {
        self.check(security, operation, Target::Named(Kind::Topic, name))
    }

    /// `operation` on group `name`.
    pub fn group(&self, security: &Security, operation: Operation, name: &str) -> Result<(), Refusal> {
        self.check(security, operation, Target::Named(Kind::Group, name))
    }

    /// Cluster admin, or admin on the topic: create, delete, alter a topic.
    pub fn topic_admin(&self, security: &Security, name: &str) -> Result<(), Refusal> {
        self.check(security, Operation::Admin, Target::Cluster)
            .or_else(|_| self.topic(security, Operation::Admin, name))
            .map_err(|mut r| {
                r.message = format!("{}; topic changes need admin on the cluster or the topic", r.message);
                r
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_superuser_needs_its_password_and_an_existing_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        // Not set by any test of this crate; the env is process-wide, so only one test reads it.
        std::env::remove_var(SUPERUSER_PASSWORD_ENV);
        let err = Security::open(dir.path().into(), true, Some("root"), None).expect_err("no password");
        assert_eq!(
            err.to_string(),
            "--superuser root needs its password in the STRAND_SUPERUSER_PASSWORD environment variable"
        );
        std::env::set_var(SUPERUSER_PASSWORD_ENV, "first");
        let security = Security::open(dir.path().into(), true, Some("root"), None).unwrap();
        let kept = security.read(|t| t.users["root"].clone());
        assert!(kept.superuser);
        std::env::set_var(SUPERUSER_PASSWORD_ENV, "second");
        let again = Security::open(dir.path().into(), true, Some("root"), None).unwrap();
        assert_eq!(again.read(|t| t.users["root"].clone()), kept, "an existing superuser is left as it is");
        std::env::remove_var(SUPERUSER_PASSWORD_ENV);
    }
}
