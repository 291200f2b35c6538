#!/usr/bin/env bash
# linux-setup/test.sh: tests for check, tune, install, the systemd unit and the
# configuration reference in docs/OPERATIONS.md. Called by ./test.sh (CI).
#
# Every test runs the real script against real files in a temp dir; nothing outside the
# temp dir is changed (tune and install only run with --dry-run or --root). Each test
# prints `ok - NAME` or `not ok - NAME: why`; the script exits 1 if any test failed.
set -uo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
skipped=0

ok() { echo "ok - $1"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $1: $2"; failed=$((failed + 1)); }
skip() { echo "skip - $1: $2"; skipped=$((skipped + 1)); }

# expect NAME CONDITION-COMMAND... ; the message on failure is the command.
expect() {
  local name="$1"
  shift
  if "$@"; then ok "$name"; else not_ok "$name" "$*"; fi
}

readonly CHECK_NAMES=(kernel io_uring_disabled io_uring_probe memlock cap_ipc_lock nofile data_dir fs_type
  o_direct free_space disk cpus governor thp numa clocksource net.core.rmem_max net.core.wmem_max
  net.ipv4.tcp_rmem net.ipv4.tcp_wmem net.core.somaxconn)
readonly LINE_RE='^(PASS|WARN|FAIL|INFO) [a-z][a-z0-9_.]* [^ ].*$'

# line_of OUTPUT NAME -> the line of check NAME
line_of() { grep -E "^[A-Z]{4} ${2//./\\.} " <<<"$1"; }
status_of() { line_of "$1" "$2" | cut -d' ' -f1; }

# ---------------------------------------------------------------------------------------
# lint
# ---------------------------------------------------------------------------------------
test_shellcheck() {
  if ! command -v shellcheck >/dev/null; then
    skip shellcheck "shellcheck not installed (apt-get install shellcheck)"
    return
  fi
  expect "shellcheck clean" shellcheck "$here/check" "$here/tune" "$here/install" "$here/test.sh"
}

# ---------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------
test_check_format() {
  local out rc name bad missing=""
  mkdir -p "$tmp/data"
  out=$("$here/check" --data-dir "$tmp/data")
  rc=$?
  bad=$(grep -vE "$LINE_RE" <<<"$out")
  expect "check: every line is STATUS NAME DETAIL" test -z "$bad"
  for name in "${CHECK_NAMES[@]}"; do
    [ "$(line_of "$out" "$name" | wc -l)" -eq 1 ] || missing="$missing $name"
  done
  expect "check: each check reported exactly once (missing/dup:${missing:- none})" test -z "$missing"
  expect "check: one line per check, nothing else" test "$(wc -l <<<"$out")" -eq "${#CHECK_NAMES[@]}"
  if grep -q '^FAIL' <<<"$out"; then
    expect "check: exit 2 when a check fails" test "$rc" -eq 2
  else
    expect "check: exit 0 without failures" test "$rc" -eq 0
  fi
  expect "check: probe file removed from the data dir" test -z "$(ls -A "$tmp/data")"
  "$here/check" --data-dir "$tmp/absent/deeper" >/dev/null
  expect "check: a missing data dir is not created" test ! -e "$tmp/absent"
}

test_check_json() {
  local text json
  text=$("$here/check" --data-dir "$tmp/data")
  json=$("$here/check" --data-dir "$tmp/data" --json)
  if ! command -v python3 >/dev/null; then
    skip "check --json" "python3 not installed"
    return
  fi
  expect "check --json: valid, counts and names agree with the text output" python3 - "$text" "$json" <<'EOF'
import json, sys
text, doc = sys.argv[1].splitlines(), json.loads(sys.argv[2])
names = [line.split(" ")[1] for line in text]
statuses = [line.split(" ")[0].lower() for line in text]
assert [c["name"] for c in doc["checks"]] == names, "names differ"
assert [c["status"] for c in doc["checks"]] == statuses, "statuses differ"
for s in ("pass", "warn", "fail", "info"):
    assert doc["counts"][s] == statuses.count(s), s
want = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
assert doc["result"] == want, doc["result"]
assert doc["schema_version"] == 1
EOF
}

test_check_quiet() {
  local out full rc want=0
  out=$("$here/check" --data-dir "$tmp/data" --quiet)
  rc=$?
  full=$("$here/check" --data-dir "$tmp/data")
  grep -q '^WARN' <<<"$full" && want=1
  grep -q '^FAIL' <<<"$full" && want=2
  expect "check --quiet: exit $want matches the worst status" test "$rc" -eq "$want"
  expect "check --quiet: prints only WARN/FAIL lines" test -z "$(grep -vE '^(WARN|FAIL) ' <<<"$out")"
  expect "check --quiet: prints every WARN/FAIL line" test "$out" = "$(grep -E '^(WARN|FAIL) ' <<<"$full")"
}

test_check_failures() {
  local out rc
  "$here/check" --bogus >/dev/null 2>&1
  expect "check: bad usage exits 64" test $? -eq 64
  out=$("$here/check" --data-dir "$tmp/data" --shards 100000)
  rc=$?
  expect "check: more shards than CPUs is a FAIL, exit 2" test "$(status_of "$out" cpus)$rc" = FAIL2
  : >"$tmp/a-file"
  out=$("$here/check" --data-dir "$tmp/a-file")
  expect "check: data dir that is a file is a FAIL" test "$(status_of "$out" data_dir)" = FAIL
  out=$(ulimit -l 256 && "$here/check" --data-dir "$tmp/data")
  expect "check: memlock below glommio's 512 KiB is a FAIL" test "$(status_of "$out" memlock)" = FAIL
  out=$("$here/check" --data-dir "$tmp/data" --min-free-mib 999999999)
  expect "check: too little free space is a FAIL" test "$(status_of "$out" free_space)" = FAIL
}

# The memlock verdict must depend on CAP_IPC_LOCK (without it glommio silently skips its
# registered buffers): same limit, with and without.
test_check_cap_ipc_lock() {
  local with without
  if ! capsh --has-p=cap_ipc_lock 2>/dev/null || ! capsh --has-p=cap_setpcap 2>/dev/null; then
    skip "check: CAP_IPC_LOCK" "needs capsh and CAP_IPC_LOCK + CAP_SETPCAP to drop it"
    return
  fi
  with=$(ulimit -l 8192 && "$here/check" --data-dir "$tmp/data" --io-memory-mib 100)
  without=$(ulimit -l 8192 && capsh --drop=cap_ipc_lock -- -c "'$here/check' --data-dir '$tmp/data' --io-memory-mib 100")
  expect "check: limit below need + CAP_IPC_LOCK = PASS" test "$(status_of "$with" memlock)" = PASS
  expect "check: limit below need, no CAP_IPC_LOCK = WARN" test "$(status_of "$without" memlock)" = WARN
  expect "check: capability reported absent" grep -q '^INFO cap_ipc_lock absent' <<<"$without"
}

test_check_pid() {
  local pid out
  (ulimit -n 1000 && exec sleep 20) &
  pid=$!
  sleep 0.2
  out=$("$here/check" --data-dir "$tmp/data" --pid "$pid")
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  expect "check --pid: judges that process's nofile limit" grep -q '^WARN nofile 1000 ' <<<"$out"
}

test_check_tmpfs_and_config() {
  local shm out
  shm=$(mktemp -d /dev/shm/strand-test.XXXXXX 2>/dev/null) || { skip "check: tmpfs" "no /dev/shm"; return; }
  if [ "$(stat -f -c %T "$shm")" != tmpfs ]; then
    rm -rf "$shm"
    skip "check: tmpfs" "/dev/shm is not tmpfs"
    return
  fi
  out=$("$here/check" --data-dir "$shm" --io-mode direct)
  expect "check: tmpfs data dir with io_mode=direct is a FAIL" test "$(status_of "$out" fs_type)" = FAIL
  printf 'data_dir = "%s"  # test\nio_mode = "direct"\nshards = 1\n' "$shm" >"$tmp/strand.toml"
  out=$("$here/check" --config "$tmp/strand.toml")
  expect "check --config: reads data_dir and io_mode from strand.toml" test "$(status_of "$out" fs_type)" = FAIL
  out=$("$here/check" --config "$tmp/strand.toml" --io-mode buffered)
  expect "check --config: flags override the file (buffered tmpfs = WARN)" test "$(status_of "$out" fs_type)" = WARN
  rm -rf "$shm"
}

# ---------------------------------------------------------------------------------------
# tune
# ---------------------------------------------------------------------------------------
snapshot() { # what tune may touch on this host
  cat /etc/sysctl.d/60-strand.conf /etc/security/limits.d/strand.conf 2>/dev/null
  cat /proc/sys/net/core/rmem_max /proc/sys/net/core/wmem_max /proc/sys/net/ipv4/tcp_wmem 2>/dev/null
  cat /proc/irq/*/smp_affinity_list 2>/dev/null
}

test_tune_dry_run() {
  local before out rc last_cpu
  last_cpu=$(($(getconf _NPROCESSORS_ONLN) - 1))
  before=$(snapshot)
  out=$("$here/tune" --dry-run --shard-cores "$last_cpu")
  rc=$?
  expect "tune --dry-run: exit 0" test "$rc" -eq 0
  expect "tune --dry-run: host unchanged" test "$before" = "$(snapshot)"
  expect "tune --dry-run: every line is a verb line or indented content" \
    test -z "$(grep -vE '^((CHANGE|OK|SKIP|NOTE) [^ ]|    )' <<<"$out")"
  expect "tune --dry-run: CHANGE lines say they are not applied" \
    test -z "$(grep '^CHANGE' <<<"$out" | grep -v '(dry run, not applied)$')"
  expect "tune --dry-run: sysctl file shown" grep -q '60-strand.conf' <<<"$out"
  "$here/tune" --dry-run --shard-cores 99999 >/dev/null 2>&1
  expect "tune: shard cores that are not online exit 64" test $? -eq 64
  "$here/tune" --dry-run --shard-cores 3-1 >/dev/null 2>&1
  expect "tune: malformed CPU list exits 64" test $? -eq 64
}

test_tune_root_idempotent() {
  local r="$tmp/tune-root" out key min val
  mkdir -p "$r"
  "$here/tune" --dry-run --root "$r" >/dev/null
  expect "tune --dry-run --root: writes nothing" test -z "$(find "$r" -mindepth 1)"
  out=$("$here/tune" --root "$r")
  expect "tune --root: exit 0 and files written" test -f "$r/etc/sysctl.d/60-strand.conf" -a \
    -f "$r/etc/security/limits.d/strand.conf"
  out=$("$here/tune" --root "$r")
  expect "tune --root: second run changes nothing" test -z "$(grep '^CHANGE' <<<"$out")"
  for key in net.core.rmem_max:16777216 net.core.wmem_max:16777216 net.core.somaxconn:4096; do
    min=${key#*:}
    val=$(sed -n "s/^${key%%:*} = //p" "$r/etc/sysctl.d/60-strand.conf")
    expect "tune: ${key%%:*} in file >= $min" test "${val:-0}" -ge "$min"
  done
  val=$(sed -n 's/^net.ipv4.tcp_wmem = //p' "$r/etc/sysctl.d/60-strand.conf" | awk '{ print $3 }')
  expect "tune: tcp_wmem max in file >= 16 MiB" test "${val:-0}" -ge 16777216
  expect "tune: limits file sets memlock unlimited" grep -q '^strand hard memlock unlimited$' \
    "$r/etc/security/limits.d/strand.conf"
}

# ---------------------------------------------------------------------------------------
# install and the unit
# ---------------------------------------------------------------------------------------
make_fake_target() {
  mkdir -p "$tmp/target"
  printf '#!/bin/sh\necho strand-node stand-in\n' >"$tmp/target/strand-node"
  chmod 0755 "$tmp/target/strand-node"
}

test_install() {
  local r="$tmp/root" out unit
  make_fake_target
  mkdir -p "$r"
  "$here/install" --target-dir "$tmp/target" --root "$r" --dry-run >/dev/null
  expect "install --dry-run: writes nothing" test -z "$(find "$r" -mindepth 1)"
  out=$("$here/install" --target-dir "$tmp/target" --root "$r" --prefix /opt/strand)
  expect "install: exit 0" test $? -eq 0
  expect "install: node binary, mode 755" test "$(stat -c %a "$r/opt/strand/bin/strand-node")" = 755
  expect "install: check and tune installed" test -x "$r/opt/strand/bin/strand-check" -a -x "$r/opt/strand/bin/strand-tune"
  expect "install: data dir mode 750" test "$(stat -c %a "$r/var/lib/strand")" = 750
  expect "install: config from the template" cmp -s "$here/strand.toml.example" "$r/etc/strand/strand.toml"
  unit="$r/etc/systemd/system/strand-node.service"
  expect "install: unit runs the prefixed binary with the config" \
    grep -qx 'ExecStart=/opt/strand/bin/strand-node --config /etc/strand/strand.toml' "$unit"
  echo '# operator edit' >>"$r/etc/strand/strand.toml"
  out=$("$here/install" --target-dir "$tmp/target" --root "$r" --prefix /opt/strand)
  expect "install: second run changes nothing" test -z "$(grep '^CHANGE' <<<"$out")"
  expect "install: an edited config is kept" grep -q '^# operator edit$' "$r/etc/strand/strand.toml"
  "$here/install" --target-dir "$tmp/nothing-here" --root "$r" >/dev/null 2>&1
  expect "install: missing strand-node binary exits 64" test $? -eq 64
}

test_unit_verify() {
  local unit="$tmp/verify/strand-node.service" out rc
  for key in User=strand LimitMEMLOCK=infinity LimitNOFILE=1048576 Restart=on-failure KillSignal=SIGTERM \
    'ExecStart=/usr/local/bin/strand-node --config /etc/strand/strand.toml'; do
    expect "unit: has $key" grep -qx "$key" "$here/strand-node.service"
  done
  expect "unit: has TimeoutStopSec" grep -q '^TimeoutStopSec=' "$here/strand-node.service"
  expect "unit: has a CPUAffinity example" grep -q '^# CPUAffinity=' "$here/strand-node.service"
  if ! command -v systemd-analyze >/dev/null; then
    skip "systemd-analyze verify" "systemd-analyze not installed (apt-get install systemd)"
    return
  fi
  make_fake_target
  mkdir -p "$tmp/verify"
  # verify insists that ExecStart exists, so point it at a stand-in binary.
  sed "s|/usr/local/bin/strand-node|$tmp/target/strand-node|" "$here/strand-node.service" >"$unit"
  out=$(systemd-analyze verify "$unit" 2>&1)
  rc=$?
  expect "systemd-analyze verify: exit 0 and no warnings${out:+ ($out)}" test "$rc" -eq 0 -a -z "$out"
}

# ---------------------------------------------------------------------------------------
# docs/OPERATIONS.md and strand.toml.example against node/src/config.rs
# ---------------------------------------------------------------------------------------
struct_fields() { # struct_fields NAME FILE -> field names of `pub struct NAME`
  awk -v s="pub struct $1 {" 'index($0, s) { on = 1; next } on && /^}/ { exit }
    on && match($0, /^ *pub [a-z_0-9]+:/) { f = substr($0, RSTART, RLENGTH); sub(/^ *pub /, "", f);
      sub(/:$/, "", f); print f }' "$2" | sort
}

test_config_reference() {
  local cfg="$repo/node/src/config.rs" ops="$repo/docs/OPERATIONS.md" fields doc_keys example_keys flag missing=""
  expect "docs/OPERATIONS.md exists" test -f "$ops"
  [ -f "$ops" ] || return
  # shellcheck disable=SC2016 # the backticks are literal markdown
  expect "OPERATIONS.md says which config.rs it was checked against" \
    grep -q 'checked against `node/src/config.rs` at commit' "$ops"
  example_keys=$(sed -n -E 's/^#? ?([a-z_]+) = ["0-9].*/\1/p' "$here/strand.toml.example" | sort)
  if command -v python3 >/dev/null; then
    expect "strand.toml.example is valid TOML" python3 -c \
      'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$here/strand.toml.example"
  fi
  if [ ! -f "$cfg" ]; then
    skip "config reference vs config.rs" "node/src/config.rs not present"
    return
  fi
  fields=$(struct_fields FileConfig "$cfg")
  expect "config.rs FileConfig parsed" test -n "$fields"
  # shellcheck disable=SC2016 # the backticks are literal markdown
  doc_keys=$(sed -n '/<!-- config-keys:begin -->/,/<!-- config-keys:end -->/p' "$ops" |
    sed -n -E 's/^\| `([a-z_]+)` \|.*/\1/p' | sort)
  expect "OPERATIONS.md TOML keys == FileConfig fields (diff: $(comm -3 <(echo "$fields") <(echo "$doc_keys") | tr -d '\t' | tr '\n' ' '))" \
    test "$fields" = "$doc_keys"
  expect "strand.toml.example only uses FileConfig keys (extra: $(comm -13 <(echo "$fields") <(echo "$example_keys") | tr '\n' ' '))" \
    test -z "$(comm -13 <(echo "$fields") <(echo "$example_keys"))"
  for flag in $(struct_fields Cli "$cfg"); do
    grep -q -- "--${flag//_/-}" "$ops" || missing="$missing --${flag//_/-}"
  done
  expect "OPERATIONS.md documents every strand-node flag (missing:${missing:- none})" test -z "$missing"
}

main() {
  test_shellcheck
  test_check_format
  test_check_json
  test_check_quiet
  test_check_failures
  test_check_cap_ipc_lock
  test_check_pid
  test_check_tmpfs_and_config
  test_tune_dry_run
  test_tune_root_idempotent
  test_install
  test_unit_verify
  test_config_reference
  echo "linux-setup: $passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
}

main
