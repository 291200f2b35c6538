#!/usr/bin/env bash
# The whole Strand test suite: operator scripts first, then every Rust test in the workspace.
set -euo pipefail
cd "$(dirname "$0")"
# Building strand-node needs protoc (the etcd client's gRPC code is generated at build
# time); the cluster tests start a real etcd.
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v "${ETCD_BIN:-etcd}" >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || missing+=(etcd-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: missing ${missing[*]}: sudo apt-get install -y ${missing[*]} (see README)" >&2
  exit 1
fi
bash linux-setup/test.sh
# `cargo test --workspace` builds every binary before it runs any test; the client, bench
# and reliability tests use that strand-node instead of building their own (a
# `cargo build -p strand-node` would resolve features differently and rebuild).
export STRAND_NODE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/strand-node"
cargo test --workspace --all-targets
