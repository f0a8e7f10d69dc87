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
