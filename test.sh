#!/usr/bin/env bash
# The whole Strand test suite: operator scripts first, then every Rust test in the workspace.
set -euo pipefail
cd "$(dirname "$0")"
# What the suite runs besides cargo, from Debian's packages: a real etcd for the cluster
# tests, shellcheck for the operator scripts, mkfs.ext4/losetup/mount for the ENOSPC and
# EIO tests, xfs_io for the power-cut tests, fio for the storage-limit checks, chromium
# (headless) for the console's browser test. As root they are installed here; otherwise the
# one command to run is printed.
need=(etcd:etcd-server shellcheck:shellcheck mkfs.ext4:e2fsprogs losetup:mount fio:fio xfs_io:xfsprogs chromium:chromium)
missing=()
for pair in "${need[@]}"; do
  cmd=${pair%%:*} pkg=${pair##*:}
  if [ "$cmd" = etcd ] && [ -n "${ETCD_BIN:-}" ] && [ -x "$ETCD_BIN" ]; then continue; fi
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "test.sh: missing ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
bash linux-setup/test.sh
# `cargo test --workspace` builds every binary before it runs any test; the client, bench
# and reliability tests use that strand-node instead of building their own (a
# `cargo build -p strand-node` would resolve features differently and rebuild).
export STRAND_NODE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/strand-node"
cargo test --workspace --all-targets
