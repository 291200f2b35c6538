//! The data dir's node token: 16 random bytes (hex) in `{data_dir}/node-token`, created
//! on first start and kept for the data dir's life. It goes into the node record so
//! registration can tell the same node restarting (same data dir, same token: allowed
//! to replace its own live record) from a second process claiming a live node id
//! (refused). Written to a temp file, fsynced, then renamed, so a crash leaves either
//! no token or a whole one.

use std::io::Write;
use std::path::Path;

/// File name of the token inside the data dir.
pub const TOKEN_FILE: &str = "node-token";

/// The data dir's token, created if absent.
pub fn load_or_create(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_token(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a node token (32 hex digits); remove it to get a new one", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = data_dir.join(format!("{TOKEN_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(token)
}

fn is_token(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert!(is_token(&first));
        assert_eq!(load_or_create(dir.path()).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap(), first);
        std::fs::write(dir.path().join(TOKEN_FILE), "garbage").unwrap();
        assert!(load_or_create(dir.path()).is_err());
    }
}
