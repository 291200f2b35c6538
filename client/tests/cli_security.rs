//! `strand user` and `strand acl` against a real `strand-node --require-auth`: the CLI
//! authenticates with `STRAND_USER` / `STRAND_PASSWORD`, manages users and ACLs as the
//! superuser, and a read-only user's refused produce names the missing permission.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};

use support::{cli_binary, node_binary};

const ADMIN_PASSWORD: &str = "Adm1n-Pw-CLI";
const READER_PASSWORD: &str = "Re4der-Pw-CLI";

/// A node with `--require-auth --superuser admin`; killed on drop.
struct SecureNode {
    child: Child,
    public: String,
    _dir: tempfile::TempDir,
}

impl SecureNode {
    fn start() -> SecureNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(node_binary())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--kafka-listen", "off"])
            .args(["--shard-port-base", "0", "--shards", "1", "--require-auth", "--superuser", "admin"])
            .env("STRAND_SUPERUSER_PASSWORD", ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strand-node");
        let stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
        let mut lines = stderr.lines().map_while(Result::ok);
        let listening = lines.find(|l| l.contains("strand-node listening:")).expect("node exited before listening");
        std::thread::spawn(move || lines.for_each(drop));
        let public = listening.split_whitespace().find_map(|f| f.strip_prefix("public=")).expect("public=").to_string();
        SecureNode { child, public, _dir: dir }
    }
}

impl Drop for SecureNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI as `user` (no credentials when `None`) with extra environment.
fn strand_as(
    node: &SecureNode,
    user: Option<(&str, &str)>,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Output {
    let mut command = Command::new(cli_binary());
    command.args(["--bootstrap", &node.public]).args(args).env_remove("STRAND_USER").env_remove("STRAND_PASSWORD");
    if let Some((name, password)) = user {
        command.env("STRAND_USER", name).env("STRAND_PASSWORD", password);
    }
    let mut child = command
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand");
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("strand output")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "strand failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    assert!(!out.status.success(), "strand succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn users_and_acls_from_the_cli_and_a_refusal_that_names_the_permission() {
    let node = SecureNode::start();
    let admin = Some(("admin", ADMIN_PASSWORD));
    let reader = Some(("reader", READER_PASSWORD));

    let line = err(&strand_as(&node, None, &["topic", "list"], b"", &[]));
    assert!(line.starts_with("strand: AUTHENTICATION_REQUIRED"), "{line}");
    let line = err(&strand_as(&node, Some(("admin", "wrong")), &["topic", "list"], b"", &[]));
    assert!(line.contains("AUTHENTICATION_FAILED: authentication failed: invalid user name or password"), "{line}");

    ok(&strand_as(&node, admin, &["topic", "create", "orders", "--partitions", "1"], b"", &[]));
    ok(&strand_as(&node, admin, &["produce", "orders"], b"first\n", &[]));
    let created =
        strand_as(&node, admin, &["user", "create", "reader"], b"", &[("STRAND_NEW_PASSWORD", READER_PASSWORD)]);
    assert_eq!(ok(&created), "user reader saved\n");
    let added =
        strand_as(&node, admin, &["acl", "add", "--user", "reader", "--topic", "orders", "--allow", "read"], b"", &[]);
    assert_eq!(ok(&added), "added: user reader read topic orders\n");
    assert_eq!(ok(&strand_as(&node, admin, &["acl", "list"], b"", &[])), "user reader read topic orders\n");
    let users = ok(&strand_as(&node, admin, &["user", "list"], b"", &[]));
    assert_eq!(users, "admin\tSCRAM-SHA-256,SCRAM-SHA-512 superuser\nreader\tSCRAM-SHA-256,SCRAM-SHA-512\n");
    assert!(!users.contains(READER_PASSWORD));

    // The reader reads, with SCRAM-SHA-512 too, and is refused a write with the permission named.
    let args = ["consume", "orders", "--from-beginning", "--count", "1", "--timeout-ms", "5000"];
    assert_eq!(ok(&strand_as(&node, reader, &args, b"", &[("STRAND_SASL_MECHANISM", "SCRAM-SHA-512")])), "first\n");
    let line = err(&strand_as(&node, reader, &["produce", "orders"], b"nope\n", &[]));
    assert!(
        line.contains("TOPIC_AUTHORIZATION_FAILED: not authorized: user reader lacks write on topic orders"),
        "{line}"
    );
    let line = err(&strand_as(&node, reader, &["user", "list"], b"", &[]));
    assert_eq!(line, "strand: CLUSTER_AUTHORIZATION_FAILED: not authorized: user reader lacks admin on cluster\n");

    // Deleting the user removes its entries; it can no longer sign in.
    ok(&strand_as(&node, admin, &["user", "delete", "reader"], b"", &[]));
    assert_eq!(ok(&strand_as(&node, admin, &["acl", "list"], b"", &[])), "");
    let line = err(&strand_as(&node, reader, &["topic", "list"], b"", &[]));
    assert!(line.contains("invalid user name or password"), "{line}");
}
