#!/usr/bin/env bash
# The whole Strand test suite: operator scripts first, then every Rust test in the workspace.
set -euo pipefail
cd "$(dirname "$0")"
bash linux-setup/test.sh
# `cargo test --workspace` builds every binary before it runs any test; the client, bench
# and reliability tests use that strand-node instead of building their own (a
# `cargo build -p strand-node` would resolve features differently and rebuild).
export STRAND_NODE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/strand-node"
cargo test --workspace --all-targets
