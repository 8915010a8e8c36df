#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test. CI runs this through
# .ci/run; run it yourself before pushing:   bash scripts/test.sh
#
# It installs what the tests need when it is missing (Debian packages; the
# machine may be new), so it needs root or sudo the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests call: openssl (s_client, key conversions); pebble and
# pebble-challtestsrv (the ACME test CA, tests/common/pebble.rs).
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if ! command -v pebble >/dev/null 2>&1 || ! command -v pebble-challtestsrv >/dev/null 2>&1; then
  missing+=(pebble)
fi
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Benchmarks and examples are built by `--all-targets` too (not timed).
cargo test --all-targets --no-fail-fast 2>&1 | tee "$log"
# One closing line for the whole suite: cargo prints one per test binary,
# and the last of those (a binary without tests) would read as "0 passed".
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo "== done"
echo "total: $passed passed, $failed failed"
