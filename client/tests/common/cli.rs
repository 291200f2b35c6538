//! Runs the real `strand` CLI binary against a test node and checks its output.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::support::cli_binary;

/// Runs `strand --bootstrap <bootstrap> args…`, feeding `stdin` when given; waits for it.
pub fn strand(bootstrap: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(cli_binary())
        .args(["--bootstrap", bootstrap])
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strand");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        // A run refused before it reads stdin (bad flags) may exit first: its status and
        // stderr are what the caller checks, so a closed pipe is not an error here.
        if let Err(e) = pipe.write_all(input) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
    }
    child.wait_with_output().expect("strand output")
}

/// The stdout of a successful run; panics with its stderr otherwise.
pub fn ok(output: &Output) -> String {
    assert!(output.status.success(), "strand failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf8 stdout")
}
