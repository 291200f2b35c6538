//! The node's users and ACLs, and their file `<data dir>/security.dat`.
//!
//! Layout (little-endian), rewritten whole on every change — temp file, fsync, rename,
//! directory fsync, so a crash leaves the old or the new file, never a torn one:
//!
//! ```text
//! 0   8  magic "STRNDSEC"
//! 8   4  version (1)
//! 12  4  body length
//! 16  4  CRC-32 (crc32fast) of the body
//! 20  -  body: JSON {"users": [...], "acls": [...]} (docs/FORMATS.md)
//! ```
//!
//! A user is kept as SCRAM verifiers (salt, iterations, StoredKey, ServerKey; base64 in
//! the JSON), never as a password. A file whose magic, version, length or CRC is wrong is
//! refused at start with its path, never half-read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use strand_core::auth::acl::{Acls, Entry, Kind, Operation, Pattern};
use strand_core::auth::{Credentials, ScramCredential, ScramMechanism};

/// File name inside the data dir.
pub const SECURITY_FILE: &str = "security.dat";
const MAGIC: &[u8; 8] = b"STRNDSEC";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 20;
/// Most users and ACL entries kept (each a bound on the file and on every check's scan).
pub const USERS_MAX: usize = 10_000;
pub const ACLS_MAX: usize = 10_000;

/// A user: verifiers per SCRAM mechanism, and whether it is a superuser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub superuser: bool,
    pub credentials: Vec<ScramCredential>,
}

/// Users and ACLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    pub users: BTreeMap<String, User>,
    pub acls: Acls,
}

impl Credentials for Tables {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.users.get(user)?.credentials.iter().find(|c| c.mechanism == mechanism).cloned()
    }
}

/// Why the file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged: {reason}; restore it from a backup or move it away (users and ACLs are then empty)")]
    Damaged { path: PathBuf, reason: String },
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    users: Vec<FileUser>,
    acls: Vec<FileAcl>,
}

#[derive(Serialize, Deserialize)]
struct FileUser {
    name: String,
    superuser: bool,
    credentials: Vec<FileCredential>,
}

#[derive(Serialize, Deserialize)]
struct FileCredential {
    mechanism: String,
    salt: String,
    iterations: u32,
    stored_key: String,
    server_key: String,
}

#[derive(Serialize, Deserialize)]
struct FileAcl {
    principal: String,
    /// `topic`, `group` or `cluster`.
    resource: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    prefix: bool,
    operation: String,
}

/// Reads the tables from `dir` (empty when there is no file yet).
pub fn load(dir: &Path) -> Result<Tables, StoreError> {
    let path = dir.join(SECURITY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tables::default()),
        Err(source) => return Err(StoreError::Io { path, source }),
    };
    decode(&bytes).map_err(|reason| StoreError::Damaged { path, reason })
}

/// Writes the tables to `dir` atomically and durably.
pub fn save(dir: &Path, tables: &Tables) -> Result<(), StoreError> {
    let path = dir.join(SECURITY_FILE);
    let tmp = dir.join(format!("{SECURITY_FILE}.tmp"));
    let io = |source| StoreError::Io { path: path.clone(), source };
    let bytes = encode(tables);
    let mut out = File::create(&tmp).map_err(io)?;
    out.write_all(&bytes).map_err(io)?;
    out.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// The file's bytes for `tables`.
pub fn encode(tables: &Tables) -> Vec<u8> {
    let body = FileBody {
        users: tables
            .users
            .iter()
            .map(|(name, u)| FileUser {
                name: name.clone(),
                superuser: u.superuser,
                credentials: u
                    .credentials
                    .iter()
                    .map(|c| FileCredential {
                        mechanism: c.mechanism.name().to_string(),
                        salt: B64.encode(&c.salt),
                        iterations: c.iterations,
                        stored_key: B64.encode(&c.stored_key),
                        server_key: B64.encode(&c.server_key),
                    })
                    .collect(),
            })
            .collect(),
        acls: tables.acls.entries().map(file_acl).collect(),
    };
    // Plain data of strings, numbers and booleans always serializes.
    let body = serde_json::to_vec(&body).expect("security tables serialize");
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The tables in `bytes`, or why they cannot be trusted.
pub fn decode(bytes: &[u8]) -> Result<Tables, String> {
    let header = bytes.get(..HEADER_LEN).ok_or("shorter than its header")?;
    let word = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    if &header[..8] != MAGIC {
        return Err("not a Strand security file (bad magic)".into());
    }
    if word(8) != VERSION {
        return Err(format!("version {} (this node reads {VERSION})", word(8)));
    }
    let body = &bytes[HEADER_LEN..];
    if body.len() != word(12) as usize {
        return Err(format!("body is {} bytes, header says {}", body.len(), word(12)));
    }
    if crc32fast::hash(body) != word(16) {
        return Err("CRC mismatch".into());
    }
    let file: FileBody = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    if file.users.len() > USERS_MAX || file.acls.len() > ACLS_MAX {
        return Err("more users or ACLs than the node keeps".into());
    }
    let mut tables = Tables::default();
    for u in file.users {
        let credentials = u.credentials.iter().map(credential).collect::<Result<Vec<_>, _>>()?;
        tables.users.insert(u.name, User { superuser: u.superuser, credentials });
    }
    for a in &file.acls {
        tables.acls.add(entry(a)?).map_err(|e| e.to_string())?;
    }
    Ok(tables)
}

fn credential(c: &FileCredential) -> Result<ScramCredential, String> {
    let mechanism =
        ScramMechanism::parse(&c.mechanism).ok_or_else(|| format!("unknown mechanism {:?}", c.mechanism))?;
    let b64 = |s: &str| B64.decode(s).map_err(|e| format!("credential: {e}"));
    ScramCredential::from_parts(mechanism, b64(&c.salt)?, c.iterations, b64(&c.stored_key)?, b64(&c.server_key)?)
        .map_err(|e| format!("credential: {e}"))
}

fn file_acl(e: &Entry) -> FileAcl {
    let (resource, name, prefix) = match &e.pattern {
        Pattern::Literal(k, n) => (k.name(), n.clone(), false),
        Pattern::Prefix(k, n) => (k.name(), n.clone(), true),
        Pattern::Cluster => ("cluster", String::new(), false),
    };
    FileAcl {
        principal: e.principal.clone(),
        resource: resource.to_string(),
        name,
        prefix,
        operation: e.operation.name().to_string(),
    }
}

fn entry(a: &FileAcl) -> Result<Entry, String> {
    let operation = Operation::parse(&a.operation).ok_or_else(|| format!("unknown ACL operation {:?}", a.operation))?;
    let kind = match a.resource.as_str() {
        "topic" => Kind::Topic,
        "group" => Kind::Group,
        "cluster" => return Ok(Entry { principal: a.principal.clone(), pattern: Pattern::Cluster, operation }),
        other => return Err(format!("unknown ACL resource {other:?}")),
    };
    let pattern = if a.prefix { Pattern::Prefix(kind, a.name.clone()) } else { Pattern::Literal(kind, a.name.clone()) };
    Ok(Entry { principal: a.principal.clone(), pattern, operation })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Tables {
        let mut tables = Tables::default();
        let credentials = strand_core::auth::derive_user("pw", 4096, b"salt-a", b"salt-b").unwrap();
        tables.users.insert("root".into(), User { superuser: true, credentials });
        let reader = Entry {
            principal: "reader".into(),
            pattern: Pattern::Prefix(Kind::Topic, "logs-".into()),
            operation: Operation::Read,
        };
        tables.acls.add(reader).unwrap();
        tables
            .acls
            .add(Entry { principal: "ops".into(), pattern: Pattern::Cluster, operation: Operation::Admin })
            .unwrap();
        tables
    }

    #[test]
    fn tables_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Tables::default(), "no file yet");
        save(dir.path(), &sample()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), sample());
        let text = String::from_utf8_lossy(&std::fs::read(dir.path().join(SECURITY_FILE)).unwrap()).to_string();
        assert!(!text.contains("\"pw\""), "no password in the file");
    }

    #[test]
    fn every_damaged_byte_is_refused() {
        let bytes = encode(&sample());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(decode(&bad).is_err(), "a flipped bit at {at} went unnoticed");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&bytes[..10]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
