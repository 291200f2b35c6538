//! The node runs its host checks before anything else and refuses to start, with
//! exit code 78 and a one-line reason, where it cannot work.

use std::process::Command;

#[test]
fn unusable_data_dir_refuses_to_start_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strand-node"))
        .args(["--data-dir", file.join("data").to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--shard-port-base", "0", "--shards", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "stderr: {stderr}");
    assert!(stderr.contains("host check data_dir failed"), "stderr: {stderr}");
    assert!(!stderr.contains("listening"), "must not serve: {stderr}");
}
