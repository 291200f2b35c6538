#!/usr/bin/env bash
# The whole Strand test suite: operator scripts first, then every Rust test in the workspace.
set -euo pipefail
cd "$(dirname "$0")"
# What the suite runs besides cargo, from Debian's packages: a real etcd for the cluster
# tests, shellcheck for the operator scripts, mkfs.ext4/losetup/mount for the ENOSPC and
# EIO tests, xfs_io for the power-cut tests, fio for the storage-limit checks, chromium
# (headless) for the console's browser test, kcat (librdkafka) for the Kafka API tests. As
# root they are installed here; otherwise the one command to run is printed.
need=(etcd:etcd-server shellcheck:shellcheck mkfs.ext4:e2fsprogs losetup:mount fio:fio xfs_io:xfsprogs chromium:chromium kcat:kcat)
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
# The Python Kafka client (confluent-kafka, librdkafka inside its wheel) for the Kafka API
# tests, from PyPI.
if ! python3 -c 'import confluent_kafka' 2>/dev/null; then
  echo "test.sh: installing the Python package confluent-kafka" >&2
  python3 -m pip install -q confluent-kafka || {
    echo "test.sh: run: python3 -m pip install confluent-kafka" >&2
    exit 1
  }
fi
bash linux-setup/test.sh
# `cargo test --workspace` builds every binary before it runs any test; the client, bench
# and reliability tests use that strand-node instead of building their own (a
# `cargo build -p strand-node` would resolve features differently and rebuild).
export STRAND_NODE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/strand-node"
cargo test --workspace --all-targets
