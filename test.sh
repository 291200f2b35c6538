#!/usr/bin/env bash
# The whole Strand test suite: operator scripts first, then every Rust test in the workspace.
set -euo pipefail
cd "$(dirname "$0")"
bash linux-setup/test.sh
cargo test --workspace --all-targets
