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
