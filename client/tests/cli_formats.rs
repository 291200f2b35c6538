//! The `strand` CLI's message formats and start positions against one real `strand-node`:
//! `produce --key-separator/--header/--format json`, `consume --format json`, the
//! `--print-*` fields and `--separator`, `--offset earliest|latest|-N`, `--from-timestamp`,
//! and `STRAND_BOOTSTRAP`. One node for the file; each part uses its own topic.

mod common;
mod support;

use std::process::{Command, Output, Stdio};

use common::cli::{ok, strand};
use serde_json::{json, Value};
use support::{cli_binary, Node};

#[test]
fn formats_offsets_timestamps_and_bootstrap() {
    let node = Node::start(1);
    key_separator_and_headers(&node.public);
    json_in_and_out(&node.public);
    tombstones(&node.public);
    offsets_from_the_end(&node.public);
    from_timestamp(&node.public);
    bootstrap_from_the_environment(&node.public);
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The stderr of a run that exited with `code` (1: a one-line reason; 2: clap's usage error).
fn failed(output: &Output, code: i32) -> String {
    assert_eq!(output.status.code(), Some(code), "stdout {:?}", String::from_utf8_lossy(&output.stdout));
    let text = stderr(output);
    if code == 1 {
        assert_eq!(text.lines().count(), 1, "one-line reason: {text}");
    }
    text
}

fn key_separator_and_headers(addr: &str) {
    ok(&strand(addr, &["topic", "create", "kv", "--partitions", "1"], None));
    let args = ["produce", "kv", "--key-separator", "::", "--header", "a=1", "--header", "b=x=y"];
    assert_eq!(ok(&strand(addr, &args, Some(b"k1::v1\n::empty key\nk3::v::3\n"))), "3\n");
    let fields = ["--print-offset", "--print-headers", "--print-key", "--separator", "|"];
    let consume = [&["consume", "kv", "--from-beginning", "--count", "3"][..], &fields].concat();
    assert_eq!(ok(&strand(addr, &consume, None)), "0|a:1,b:x=y|k1|v1\n1|a:1,b:x=y||empty key\n2|a:1,b:x=y|k3|v::3\n");

    // A line without the separator stops the run there: nothing from it on is sent.
    let bad = strand(addr, &["produce", "kv", "--key-separator", "::"], Some(b"k4::v4\nno separator\nk6::v6\n"));
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "1\n");
    let reason = failed(&bad, 1);
    assert!(reason.contains("stopped at line 2") && reason.contains("no key separator \"::\""), "{reason}");
    assert!(reason.contains("nothing after it stored"), "{reason}");
    let all = ok(&strand(addr, &["consume", "kv", "--from-beginning", "--timeout-ms", "300", "--print-key"], None));
    assert_eq!(all, "k1\tv1\n\tempty key\nk3\tv::3\nk4\tv4\n", "default separator is a tab");

    let keyless = ok(&strand(addr, &["produce", "kv"], Some(b"no key\n")));
    assert_eq!(keyless, "1\n");
    let last =
        ok(&strand(addr, &["consume", "kv", "--offset=-1", "--count", "1", "--print-key", "--print-headers"], None));
    assert_eq!(last, "NO_HEADERS\tnull\tno key\n", "markers for no headers and a null key");
    let mixed = strand(addr, &["consume", "kv", "--format", "json", "--print-key", "--count", "1"], None);
    assert!(failed(&mixed, 1).contains("--print-* and --separator apply to --format text"));
    // Checked before connecting: the same error with no node at all.
    let offline = strand("127.0.0.1:1", &["produce", "kv", "--format", "json", "--key", "k"], Some(b"{}\n"));
    assert!(failed(&offline, 1).contains("--key and --key-separator apply to --format text"));
}

fn json_in_and_out(addr: &str) {
    ok(&strand(addr, &["topic", "create", "js", "--partitions", "2"], None));
    let input = concat!(
        r#"{"key": "k", "value": "text", "headers": {"h": "1"}, "partition": 1, "timestamp": 1700000000000}"#,
        "\n",
        r#"{"value": {"base64": "/wA="}, "headers": [{"key": "x", "value": null}, {"key": "x", "value": "2"}], "partition": 0}"#,
        "\n",
        r#"{"value": "broken""#,
        "\n",
        r#"{"value": "never sent", "partition": 0}"#,
        "\n",
    );
    let produced = strand(addr, &["produce", "js", "--format", "json", "--header", "all=yes"], Some(input.as_bytes()));
    assert_eq!(String::from_utf8_lossy(&produced.stdout), "2\n");
    let reason = failed(&produced, 1);
    assert!(reason.contains("stopped at line 3, not stored: not a JSON message"), "{reason}");
    assert!(reason.contains("lines 1-2 all stored; nothing after it stored"), "{reason}");

    let out =
        ok(&strand(addr, &["consume", "js", "--from-beginning", "--timeout-ms", "300", "--format", "json"], None));
    let mut lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    lines.sort_by_key(|v| v["partition"].as_u64());
    assert_eq!(lines.len(), 2, "{out}");
    let raw = out.lines().next().expect("a line");
    let at = |field: &str| raw.find(&format!("\"{field}\":")).unwrap_or_else(|| panic!("{field} missing: {raw}"));
    let order = ["topic", "partition", "offset", "timestamp", "key", "value", "headers"].map(at);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "fields in the documented order: {raw}");
    let p0 = &lines[0];
    assert_eq!(
        (&p0["topic"], &p0["partition"], &p0["offset"], &p0["key"]),
        (&json!("js"), &json!(0), &json!(0), &Value::Null)
    );
    assert_eq!(p0["value"], json!({"base64": "/wA="}), "non-UTF-8 bytes are base64");
    let p0_headers = json!([{"key": "x", "value": null}, {"key": "x", "value": "2"}, {"key": "all", "value": "yes"}]);
    assert_eq!(p0["headers"], p0_headers);
    let p1 = &lines[1];
    assert_eq!(
        (&p1["key"], &p1["value"], &p1["timestamp"]),
        (&json!("k"), &json!("text"), &json!(1_700_000_000_000i64))
    );
    assert_eq!(p1["headers"], json!([{"key": "h", "value": "1"}, {"key": "all", "value": "yes"}]));

    // What consume prints, produce reads back (topic and offset are ignored).
    ok(&strand(addr, &["topic", "create", "js2", "--partitions", "2"], None));
    assert_eq!(ok(&strand(addr, &["produce", "js2", "--format", "json"], Some(out.as_bytes()))), "2\n");
    let copy =
        ok(&strand(addr, &["consume", "js2", "--from-beginning", "--timeout-ms", "300", "--format", "json"], None));
    let mut copied: Vec<Value> = copy.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    copied.sort_by_key(|v| v["partition"].as_u64());
    for (a, b) in lines.iter().zip(&copied) {
        for field in ["partition", "timestamp", "key", "value", "headers"] {
            assert_eq!(a[field], b[field], "{field}");
        }
    }

    // Text output of the same records: --print-partition and --print-timestamp.
    let text = ok(&strand(
        addr,
        &[
            "consume",
            "js",
            "--partition",
            "1",
            "--offset",
            "0",
            "--count",
            "1",
            "--print-timestamp",
            "--print-partition",
        ],
        None,
    ));
    assert_eq!(text, "1700000000000\t1\ttext\n");
}

fn offsets_from_the_end(addr: &str) {
    ok(&strand(addr, &["topic", "create", "off", "--partitions", "1"], None));
    let input: String = (0..10).map(|i| format!("m{i}\n")).collect();
    assert_eq!(ok(&strand(addr, &["produce", "off"], Some(input.as_bytes()))), "10\n");
    let read = |offset: &str| ok(&strand(addr, &["consume", "off", "--offset", offset, "--timeout-ms", "300"], None));
    assert_eq!(read("-3"), "m7\nm8\nm9\n");
    assert_eq!(read("-50"), input, "-N is clamped at the log start");
    assert_eq!(read("earliest"), input);
    assert_eq!(read("latest"), "");
    assert_eq!(read("8"), "m8\nm9\n");
    let bad = strand(addr, &["consume", "off", "--offset", "-x"], None);
    assert!(failed(&bad, 2).contains("expected an offset, earliest, latest or -N"), "{}", stderr(&bad));
}

fn from_timestamp(addr: &str) {
    ok(&strand(addr, &["topic", "create", "ts", "--partitions", "1"], None));
    let t0 = 1_700_000_000_000i64;
    let input: String =
        (0..3).map(|i| format!("{{\"value\": \"at{i}\", \"timestamp\": {}}}\n", t0 + i * 1000)).collect();
    assert_eq!(ok(&strand(addr, &["produce", "ts", "--format", "json"], Some(input.as_bytes()))), "3\n");
    let from = |at: &str| ok(&strand(addr, &["consume", "ts", "--from-timestamp", at, "--timeout-ms", "300"], None));
    assert_eq!(from(&(t0 + 1000).to_string()), "at1\nat2\n");
    assert_eq!(from(&(t0 + 1).to_string()), "at1\nat2\n", "the first record at or after the time");
    // t0 + 2000 ms, in UTC and at +02:00.
    assert_eq!(from("2023-11-14T22:13:22.000Z"), "at2\n");
    assert_eq!(from("2023-11-15T00:13:22+02:00"), "at2\n");
    assert_eq!(from(&(t0 + 2001).to_string()), "", "after the newest record: the log end");
    let bad = strand(addr, &["consume", "ts", "--from-timestamp", "yesterday"], None);
    assert!(failed(&bad, 2).contains("RFC 3339"), "{}", stderr(&bad));
}

/// Runs the CLI without `--bootstrap` (unless given in `args`), with `STRAND_BOOTSTRAP` set.
fn strand_env(bootstrap_env: &str, args: &[&str]) -> Output {
    Command::new(cli_binary())
        .args(args)
        .env("STRAND_BOOTSTRAP", bootstrap_env)
        .stdin(Stdio::null())
        .output()
        .expect("run strand")
}

fn bootstrap_from_the_environment(addr: &str) {
    let listed = ok(&strand_env(addr, &["topic", "list"]));
    assert!(listed.lines().any(|l| l.starts_with("kv\t")), "{listed}");
    // A port nothing listens on: bind one, then free it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    let refused = strand_env(&dead, &["topic", "list"]);
    let reason = failed(&refused, 1);
    assert!(reason.starts_with(&format!("strand: cannot connect to {dead} (from STRAND_BOOTSTRAP): ")), "{reason}");
    // The flag wins over the variable, and its errors say so.
    assert!(ok(&strand_env(&dead, &["--bootstrap", addr, "topic", "list"])).contains("kv\t"));
    let flag = strand_env(addr, &["--bootstrap", &dead, "topic", "list"]);
    assert!(failed(&flag, 1).contains(&format!("cannot connect to {dead} (from --bootstrap)")));
}

/// docs/CLIENT.md shows the quickstart examples as they are in client/examples/ (which CI
/// compiles), so the documented code compiles too.
#[test]
fn the_client_doc_shows_the_compiled_examples() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("../docs/CLIENT.md")).expect("docs/CLIENT.md");
    for example in ["quickstart_producer.rs", "quickstart_consumer.rs"] {
        let source = std::fs::read_to_string(root.join("examples").join(example)).expect("example");
        let code: String =
            source.lines().skip_while(|l| l.starts_with("//!") || l.is_empty()).map(|l| format!("{l}\n")).collect();
        assert!(
            doc.contains(&format!("```rust\n{code}```")),
            "docs/CLIENT.md does not show examples/{example} as it is"
        );
    }
}

/// A JSON line with `"value": null` is a tombstone: stored with a null value, printed as
/// `null` in text and JSON, and replayed as a tombstone again.
fn tombstones(addr: &str) {
    ok(&strand(addr, &["topic", "create", "tomb", "--partitions", "1"], None));
    let input = concat!(r#"{"key": "gone", "value": null}"#, "\n", r#"{"key": "kept", "value": "v"}"#, "\n");
    assert_eq!(ok(&strand(addr, &["produce", "tomb", "--format", "json"], Some(input.as_bytes()))), "2\n");
    let consume = ["consume", "tomb", "--from-beginning", "--timeout-ms", "300"];
    let text = ok(&strand(addr, &[&consume[..], &["--print-key"]].concat(), None));
    assert_eq!(text, "gone\tnull\nkept\tv\n");
    let out = ok(&strand(addr, &[&consume[..], &["--format", "json"]].concat(), None));
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!((&lines[0]["key"], &lines[0]["value"]), (&json!("gone"), &Value::Null), "{out}");
    assert_eq!(lines[1]["value"], json!("v"));
    ok(&strand(addr, &["topic", "create", "tomb2", "--partitions", "1"], None));
    assert_eq!(ok(&strand(addr, &["produce", "tomb2", "--format", "json"], Some(out.as_bytes()))), "2\n");
    let copy = ["consume", "tomb2", "--from-beginning", "--timeout-ms", "300", "--print-key"];
    assert_eq!(ok(&strand(addr, &copy, None)), "gone\tnull\nkept\tv\n", "replayed as a tombstone");
}
