#!/usr/bin/env bash
# RF=1 vs RF=3 produce throughput and latency through a real 3-node cluster on 127.0.0.1:
# starts etcd (free ports, temp data dir) and three strand-node processes in cluster mode,
# then runs strand-bench --bootstrap against node 1 once per replication factor, with the
# same workload (default acks=all), and prints a one-line summary per run plus machine load.
#
#   bench-harness/scripts/cluster-bench.sh [--bin-dir DIR] [--rf "1 3"] [--node-args "ARGS"] [--keep DIR] [-- <strand-bench flags>]
#
# --bin-dir: where strand-node and strand-bench are (default target/release; build with
#   cargo build --release -p strand-node -p strand-bench). ETCD_BIN overrides /usr/bin/etcd.
# Flags after `--` go to every strand-bench run (default: --acks all --duration 10 --warmup 2
# --partitions 4 --producers 4 --message-size 100 --batch-size 16384). Results (JSON per run,
# node and etcd logs) stay in --keep DIR if given. Everything is killed on exit.
# --node-args: extra strand-node flags for all three nodes (e.g. "--fsync never").
# Each run also prints the nodes' CPU time per GB of message values produced per replica
# (utime+stime of the three processes over the whole strand-bench invocation, warm-up
# included, divided by produce rate x invocation time x RF), and the loopback round trip
# (`strand-bench rtt`) is printed first as the per-hop reference.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
bin_dir="$root/target/release"
rfs="1 3"
keep=""
node_args=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --rf) rfs="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --node-args) node_args="$2"; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "cluster-bench: unknown option $1 (strand-bench flags go after --)" >&2; exit 2 ;;
  esac
done
bench_args=("$@")
if [[ ${#bench_args[@]} -eq 0 ]]; then
  bench_args=(--acks all --duration 10 --warmup 2 --partitions 4 --producers 4 --message-size 100 --batch-size 16384)
fi
etcd_bin="${ETCD_BIN:-/usr/bin/etcd}"
for b in "$bin_dir/strand-node" "$bin_dir/strand-bench" "$etcd_bin"; do
  [[ -x "$b" ]] || { echo "cluster-bench: $b not found" >&2; exit 1; }
done

out="${keep:-$(mktemp -d)}"
mkdir -p "$out"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n "$keep" ]] || rm -rf "$out"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_etcd() {
  local cport pport
  cport="$(free_port)"; pport="$(free_port)"
  while [[ "$pport" == "$cport" ]]; do pport="$(free_port)"; done
  etcd_url="http://127.0.0.1:$cport"
  "$etcd_bin" --name=bench --data-dir="$out/etcd" \
    --listen-client-urls="$etcd_url" --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="http://127.0.0.1:$pport" --initial-advertise-peer-urls="http://127.0.0.1:$pport" \
    --initial-cluster="bench=http://127.0.0.1:$pport" --logger=zap --log-level=warn 2>"$out/etcd.log" &
  pids+=($!)
  for _ in $(seq 1 200); do
    curl -sf "$etcd_url/health" | grep -q '"health":"true"' && return 0
    sleep 0.1
  done
  echo "cluster-bench: etcd not healthy; log:" >&2; tail -20 "$out/etcd.log" >&2; exit 1
}

start_node() { # id; sets $public (no command substitution: its subshell would lose the pid)
  local id="$1" log="$out/node$1.log"
  "$bin_dir/strand-node" --data-dir "$out/node$id" --listen 127.0.0.1:0 --admin 127.0.0.1:0 --kafka-listen 127.0.0.1:0 \
    --shard-port-base 0 --node-id "$id" --etcd "$etcd_url" --lease-ttl-s 2 --replication-port-base 0 $node_args 2>"$log" &
  pids+=($!)
  for _ in $(seq 1 300); do
    if grep -q "strand-node listening:" "$log"; then
      public="$(grep -o "public=[^ ]*" "$log" | head -1 | cut -d= -f2)"
      return 0
    fi
    sleep 0.1
  done
  echo "cluster-bench: node $id did not start; log:" >&2; tail -20 "$log" >&2; exit 1
}

start_etcd
start_node 1
bootstrap="$public"
start_node 2
start_node 3
sleep 2 # every node registered (leases) before the first topic is placed
node_pids=("${pids[@]:1}")
cpu_ticks() { local t=0 pid; for pid in "${node_pids[@]}"; do t=$((t + $(cut -d' ' -f14 /proc/$pid/stat) + $(cut -d' ' -f15 /proc/$pid/stat))); done; echo "$t"; }
"$bin_dir/strand-bench" rtt --count 20000
echo "cluster: etcd $etcd_url, bootstrap $bootstrap; cores $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"

for rf in $rfs; do
  echo "== RF=$rf: strand-bench --bootstrap $bootstrap --replication $rf ${bench_args[*]}" >&2
  ticks_before="$(cpu_ticks)"; started="$(date +%s.%N)"
  "$bin_dir/strand-bench" --bootstrap "$bootstrap" --replication "$rf" --quiet --json "$out/rf$rf.json" \
    "${bench_args[@]}" | tee "$out/rf$rf.txt"
  ticks="$(( $(cpu_ticks) - ticks_before ))"; ended="$(date +%s.%N)"
  python3 - "$out/rf$rf.json" "$rf" "$ticks" "$(getconf CLK_TCK)" "$started" "$ended" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
rf, ticks, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
wall = float(sys.argv[6]) - float(sys.argv[5])
p, e = r["publish"], r["end_to_end"]
cpu_s = ticks / hz
gb = r['produce']['mb_per_sec'] * wall / 1e3
per_gb = cpu_s / (gb * rf) if gb > 0 else float('nan')
print(f"RF={rf}: produce {r['produce']['msgs_per_sec']:.0f} msg/s {r['produce']['mb_per_sec']:.1f} MB/s; "
      f"publish p50 {p['p50_us']/1e3:.2f} ms p99 {p['p99_us']/1e3:.2f} ms max {p['max_us']/1e3:.1f} ms; "
      f"e2e p99 {e['p99_us']/1e3:.2f} ms; errors {r['errors']} {r['first_error'] or ''}; "
      f"nodes {cpu_s:.1f} CPU-s over {wall:.1f} s = {per_gb:.2f} CPU-s per GB per replica")
EOF
  echo "load after RF=$rf: $(cut -d' ' -f1-3 /proc/loadavg)"
done
