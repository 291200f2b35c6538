//! The node runs its host checks before anything else and refuses to start, with
//! exit code 78 and a one-line reason, where it cannot work.

mod common;

use std::path::Path;
use std::process::Command;

use common::Node;

#[test]
fn unusable_data_dir_refuses_to_start_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strand-node"))
        .args(["--data-dir", file.join("data").to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--kafka-listen",
            "127.0.0.1:0",
            "--shard-port-base",
            "0",
            "--shards",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "stderr: {stderr}");
    assert!(stderr.contains("host check data_dir failed"), "stderr: {stderr}");
    assert!(!stderr.contains("listening"), "must not serve: {stderr}");
}

/// The README's run command uses the default relative `./strand-data`: a relative data dir
/// must work (glommio's directory opens reject relative paths, so the node resolves it).
#[test]
fn relative_data_dir_serves() {
    let cwd = tempfile::tempdir().unwrap();
    let node = Node::start_in(cwd.path(), Path::new("rel/data"), 2, &[]);
    assert!(node.data_dir.join("topics/__consumer_offsets").is_dir());
    assert!(cwd.path().join("rel/data/topics/__consumer_offsets").is_dir());
}

/// Secure by default (issue #20): a node asked to serve clients on a non-loopback address
/// without `--require-auth` refuses to start, exit 78, in one line that names the address
/// and both ways out — before it binds anything (so this test never listens beyond lo).
#[test]
fn non_loopback_without_auth_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, addr) in [("--listen", "0.0.0.0:0"), ("--kafka-listen", "0.0.0.0:0"), ("--admin", "0.0.0.0:0")] {
        let mut args = vec!["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"];
        let at = args.iter().position(|a| *a == flag).unwrap();
        args[at + 1] = addr;
        let out = Command::new(env!("CARGO_BIN_EXE_strand-node"))
            .args(["--data-dir", dir.path().join("data").to_str().unwrap(), "--shard-port-base", "0", "--shards", "1"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{flag}: stderr: {stderr}");
        let line = stderr.lines().find(|l| l.contains("refusing to serve")).unwrap_or_else(|| panic!("{stderr}"));
        assert!(
            line.contains(flag) && line.contains("--require-auth") && line.contains("--insecure-no-auth"),
            "{line}"
        );
        assert!(!stderr.contains("listening"), "must not serve: {stderr}");
        assert!(!dir.path().join("data").exists(), "nothing is created before the refusal");
    }
}
