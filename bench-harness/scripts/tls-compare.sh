#!/usr/bin/env bash
# TLS against plaintext on one machine (issue #20): the same two workloads through an
# embedded node, alternately without and with --tls (a throwaway CA and certificate for
# 127.0.0.1), RUNS times each, and one line per workload with the medians, the spread and
# the TLS/plaintext ratio.
#
#   bench-harness/scripts/tls-compare.sh [--bin-dir DIR] [--runs N] [--backlog SIZE] [--only produce|catchup]
#
# produce:  max-rate produce, 1 partition, 1 producer, 1000 B messages in 1 MiB batches,
#           buffered IO, fsync=never, 15 s after 3 s warm-up (the suite's max-buffered);
# catch-up: a SIZE backlog (default 1GiB) written first, then read back from the page cache
#           by 1 consumer (the suite's catchup); plaintext fetches go by sendfile, TLS ones
#           are read into a buffer and encrypted in user space.
# Also the node's CPU per GB for each. Run it on a quiet machine (scripts/quiet-run).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="$root/target/release"
runs=3
backlog="1GiB"
kinds="produce catchup"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --backlog) backlog="$2"; shift 2 ;;
    --only) kinds="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "tls-compare: unknown option $1" >&2; exit 2 ;;
  esac
done
bench="$bin_dir/strand-bench"
[[ -x "$bench" ]] || { echo "tls-compare: $bench missing (cargo build --release -p strand-node -p strand-bench)" >&2; exit 2; }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

produce=(--partitions 1 --producers 1 --consumers 0 --message-size 1000 --batch-size 1048576 --linger-ms 1
         --rate max --duration 15 --warmup 3 --io-mode buffered --fsync never)
catchup=(--partitions 1 --producers 1 --consumers 1 --message-size 1000 --batch-size 262144 --linger-ms 1
         --rate max --backlog "$backlog" --duration 60 --warmup 0 --io-mode buffered --fsync never)

for i in $(seq 1 "$runs"); do
  for mode in plain tls; do
    tls=(); [[ $mode == tls ]] && tls=(--tls)
    for kind in $kinds; do
      if [[ $kind == produce ]]; then args=("${produce[@]}"); else args=("${catchup[@]}"); fi
      "$bench" --embedded "${tls[@]}" "${args[@]}" --json "$out/$kind-$mode-$i.json" >/dev/null
    done
    echo "run $i $mode done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  done
done

python3 - "$out" "$runs" "$kinds" <<'EOF'
import json, statistics, sys
out, runs, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def load(kind, mode, i):
    return json.load(open(f"{out}/{kind}-{mode}-{i}.json"))["results"]
def cpu_per_gb(r):
    node = r.get("node") or {}
    return node.get("cpu_s_per_gb") or node.get("cpu_seconds_per_gb")
rows = []
for kind, side in [(k, s) for k, s in [("produce", "produce"), ("catchup", "consume")] if k in kinds]:
    med = {}
    for mode in ("plain", "tls"):
        vals = [load(kind, mode, i)[side]["mb_per_sec"] for i in range(1, runs + 1)]
        cpus = [cpu_per_gb(load(kind, mode, i)) for i in range(1, runs + 1)]
        cpus = [c for c in cpus if c is not None]
        med[mode] = statistics.median(vals)
        cpu = f", node {statistics.median(cpus):.2f} CPU-s/GB over the whole run" if cpus else ""
        print(f"{kind:8} {mode:5} {med[mode]:8.1f} MB/s  (min {min(vals):.1f}, max {max(vals):.1f}{cpu})")
    print(f"{kind:8} tls/plain {med['tls'] / med['plain']:.2f}")
EOF
