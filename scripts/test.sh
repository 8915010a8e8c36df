#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test. CI runs this through
# .ci/run; run it yourself before pushing:   bash scripts/test.sh
#
# It installs what the tests need when it is missing (Debian packages; the
# machine may be new), so it needs root or sudo the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests call: openssl (s_client, key conversions).
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
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
cargo test --all-targets --no-fail-fast
# cargo bench targets run once each under `cargo test --all-targets`, which
# proves they work without timing anything.
echo "== done"
