# tests/lib.sh: helpers for integration tests (sourced). Exit codes: 0 pass, 77 skip with
# the reason as the last output line, anything else fail.
set -euo pipefail
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BIN="$BUILD/bin"
LIB="$BUILD/lib"

skip() { echo "skipped: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "-- $*"; }

# A scratch directory removed on exit (kept when KEEP_TMP=1).
TMP=$(mktemp -d "${TMPDIR:-/tmp}/itest.XXXXXX")
cleanup_hooks=()
on_exit() { cleanup_hooks+=("$1"); }
_cleanup() {
  local i
  for ((i = ${#cleanup_hooks[@]} - 1; i >= 0; i--)); do eval "${cleanup_hooks[$i]}" || true; done
  [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$TMP"
}
trap _cleanup EXIT

# Hardware probes: skip with the reason when the hardware is not there.
need_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU ||
    skip "no NVIDIA GPU on this machine (nvidia-smi lists none)"
}
need_rdma() {
  [ -n "$(ls /sys/class/infiniband 2>/dev/null)" ] ||
    skip "no RDMA device (/sys/class/infiniband is empty; no InfiniBand or Soft-RoCE)"
}

# expect_contains TEXT NEEDLE WHAT
expect_contains() { [[ "$1" == *"$2"* ]] || fail "$3: expected to find '$2' in: $1"; }

# ---- NCL helpers ---------------------------------------------------------------------

# ncl_setup N: start N local ncl-server peers private to this test (own run directory and
# ports, stopped on exit) and export SPLITFT_PEERS.
ncl_setup() {
  # Ports below the kernel's ephemeral range (32768+), so no client connection holds them.
  export NCL_RUN_DIR="$TMP/ncl" NCL_BASE_PORT=$((20000 + ($$ % 1200) * 10))
  export NCL_CAPACITY=${NCL_CAPACITY:-64M}
  on_exit "'$ROOT/scripts/ncl-peers' stop >/dev/null 2>&1"
  local line
  line=$("$ROOT/scripts/ncl-peers" start "$1" | tail -n 1) || fail "peers did not start"
  export "${line?}"
}
ncl_peers() { "$ROOT/scripts/ncl-peers" "$@"; }

# dfs_setup: the GlusterFS volume (scripts/dfs start, idempotent; left running for the next
# test) and SPLITFT_DFS exported. Skips without root or FUSE; fails when Gluster does.
dfs_setup() {
  [ "$(id -u)" = 0 ] || skip "the GlusterFS volume needs root"
  [ -e /dev/fuse ] || skip "no /dev/fuse: the GlusterFS mount needs FUSE"
  local out
  out=$("$ROOT/scripts/dfs" start 2>&1) || fail "scripts/dfs start: $out"
  export "${out##*$'\n'}"
  [ -n "${SPLITFT_DFS:-}" ] && [ -d "$SPLITFT_DFS" ] || fail "scripts/dfs start printed no mount: $out"
}

# count_lines FILE PREFIX: lines of FILE starting with PREFIX; 0 while FILE does not exist
# yet (grep then prints nothing, and callers compare the count as a number).
count_lines() {
  local n
  n=$(grep -c "^$2" "$1" 2>/dev/null) || true
  echo "${n:-0}"
}

# wait_lines FILE PREFIX N [SECONDS]: until FILE has N lines starting with PREFIX.
wait_lines() {
  local deadline=$((SECONDS + ${4:-30}))
  while [ "$(count_lines "$1" "$2")" -lt "$3" ]; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $3 '$2' lines in $1 ($(count_lines "$1" "$2") so far)"
    sleep 0.05
  done
}

# ncl_wait_caught_up HOST:PORT MIN [SECONDS]: until the peer at HOST:PORT has started at
# least MIN catch-ups (its STATS "catch_ups") and finished them (no client's log is
# "catching_up" any more), polled: how long a rejoin takes depends on the machine's load.
ncl_wait_caught_up() {
  local deadline=$((SECONDS + ${3:-30})) j
  while :; do
    j=$("$BIN/splitft" --peers "$1" stats 2>&1) || true
    python3 - "$2" "$j" <<'PY' && return 0
import json, sys
try:
    s = json.loads(sys.argv[2])["stats"]
except (ValueError, KeyError):
    sys.exit(1)  # down or unreachable: not caught up yet
done = s["catch_ups"] >= int(sys.argv[1]) and s["clients"]
sys.exit(0 if done and not any(c["catching_up"] for c in s["clients"]) else 1)
PY
    [ $SECONDS -lt $deadline ] || fail "peer $1 not caught up after ${3:-30} s (want $2 catch-ups): $j"
    sleep 0.1
  done
}

# ncl_catch_ups HOST:PORT: the catch-ups the peer at HOST:PORT has started so far.
ncl_catch_ups() {
  "$BIN/splitft" --peers "$1" stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["catch_ups"])' ||
    fail "no statistics from peer $1"
}

# pid_alive PID: running and not a zombie.
pid_alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# ncl_check_file FILE SIZE LOAD_OUTPUT: every record that ncl-load reported acknowledged is
# in FILE with its exact bytes; prints how many were checked.
ncl_check_file() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys
path, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
acked = [int(l.split()[1]) for l in open(out) if l.startswith("ack ")]
data = open(path, "rb").read() if acked else b""
bad = []
for i in acked:
    want = bytes(ord("A") + (i * 7 + j) % 26 for j in range(size))
    if data[i * size:(i + 1) * size] != want:
        bad.append(i)
if bad:
    print(f"LOST or wrong: {len(bad)} of {len(acked)} acknowledged records, first {bad[:10]}")
    sys.exit(1)
print(f"all {len(acked)} acknowledged records present")
PY
}
