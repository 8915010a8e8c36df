#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test. CI runs this through
# .ci/run; run it yourself before pushing:   bash scripts/test.sh
#
# It installs what the tests need when it is missing (Debian packages; the
# machine may be new), so it needs root or sudo the first time.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests call: openssl (s_client, key conversions); pebble and
# pebble-challtestsrv (the ACME test CA, tests/common/pebble.rs); etcd and
# etcdctl (the etcd storage tests start their own on free ports,
# tests/common/etcd.rs; Debian's package starts no service here); haproxy;
# named, tsig-keygen and dig (BIND 9, the RFC 2136 tests); promtool (the
# alert rules, below).
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# libfuzzer-sys compiles libFuzzer (C++) for the fuzz targets.
command -v c++ >/dev/null 2>&1 || missing+=(g++)
if ! command -v pebble >/dev/null 2>&1 || ! command -v pebble-challtestsrv >/dev/null 2>&1; then
  missing+=(pebble)
fi
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# haproxy: the load balancer in front of sniwalk in the PROXY protocol tests
# (tests/common/haproxy.rs runs its own; Debian's package starts no service
# here, and the tests never use one).
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
# BIND 9: the RFC 2136 tests start their own `named` on a free port with a
# TSIG key from `tsig-keygen` and check what it serves with `dig`
# (tests/common/bind.rs; a system named, if the package starts one, is
# never used). Both are in /usr/sbin, which a user's PATH may lack: the
# tests look there too.
if ! [ -x /usr/sbin/named ] && ! command -v named >/dev/null 2>&1; then
  missing+=(bind9 bind9-utils)
elif ! [ -x /usr/sbin/tsig-keygen ] && ! command -v tsig-keygen >/dev/null 2>&1; then
  missing+=(bind9 bind9-utils)
fi
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
# The `etcd` feature's etcd-client crate compiles etcd's protobuf files.
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
# The package test (scripts/package-test.sh): build the .deb (dpkg-deb,
# dpkg-shlibdeps, strip), lint it, check the unit (systemd-analyze), run
# the installed binary as the service does (setpriv, under strace) and
# talk to it (curl, python3 for the notification socket, ss).
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v strip >/dev/null 2>&1 || missing+=(binutils)
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# promtool checks and unit tests the alert rules (deploy/prometheus); Debian
# ships it in the prometheus package, whose server is not wanted running.
want_promtool=""
command -v promtool >/dev/null 2>&1 || want_promtool=1
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ((${#missing[@]})) || [ -n "$want_promtool" ]; then
  $SUDO apt-get update -qq
fi
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
if [ -n "$want_promtool" ]; then
  echo "test.sh: installing prometheus (for promtool; its server is not started)" >&2
  # policy-rc.d answering 101 keeps the install from starting the server (and
  # its recommended exporters are not installed): Docker images carry one
  # already; one added here is removed again. With systemd running, the
  # service the package enables is disabled.
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
  if [ -n "$added_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  if [ -d /run/systemd/system ]; then $SUDO systemctl disable --now prometheus || true; fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
# Everything with the optional features on (the etcd storage engine); the
# default build, without them, is linted too.
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo clippy --all-targets --features etcd -- -D warnings"
cargo clippy --all-targets --features etcd -- -D warnings
echo "== cargo test --features etcd"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Benchmarks and examples are built by `--all-targets` too (not timed).
# A failure is counted below and fails the script at the end (not here, so
# that the rules are checked and the closing line printed all the same).
test_status=0
cargo test --all-targets --features etcd --no-fail-fast 2>&1 | tee "$log" || test_status=1
# One closing line for the whole suite: cargo prints one per test binary,
# and the last of those (a binary without tests) would read as "0 passed".
passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
# A build failure fails no test: count it once.
if [ "$test_status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
# The alert rules (README: Metrics, "Alert rules"): promtool checks them and
# runs their unit tests; each of the two counts as one test.
echo "== promtool check rules, promtool test rules"
rules_status=0
if promtool check rules deploy/prometheus/sniwalk-rules.yml; then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); rules_status=1
fi
if (cd deploy/prometheus && promtool test rules sniwalk-rules.test.yml); then
  passed=$((passed + 1))
else
  failed=$((failed + 1)); rules_status=1
fi
# Each fuzz target runs a few seconds on its seed corpus (README,
# "Fuzzing"); each counts as one test. FUZZ_SECONDS=0 skips them.
fuzz_seconds=${FUZZ_SECONDS:-8}
fuzz_status=0
if [ "$fuzz_seconds" != 0 ]; then
  echo "== fuzz (${fuzz_seconds} s per target)"
  fuzz_log=$(mktemp)
  trap 'rm -f "$log" "$fuzz_log"' EXIT
  bash scripts/fuzz.sh "$fuzz_seconds" 2>&1 | tee "$fuzz_log" || fuzz_status=1
  fuzz_ok=$(grep -Ec '^fuzz [a-z_]+: ok' "$fuzz_log" || true)
  fuzz_failed=$(grep -Ec '^fuzz [a-z_]+: FAILED' "$fuzz_log" || true)
  # A build failure fails no target: count it once.
  if [ "$fuzz_status" != 0 ] && [ "$fuzz_failed" = 0 ]; then fuzz_failed=1; fi
  passed=$((passed + fuzz_ok))
  failed=$((failed + fuzz_failed))
fi
# The Debian package, built (the suite's one release build, about 5 min)
# and installed on this machine (README, "Install (Debian package)"); each
# check counts as one test. PACKAGE_TEST=0 skips it (it needs root and
# ports 80, 443 and 9901).
package_status=0
if [ "${PACKAGE_TEST:-1}" != 0 ]; then
  echo "== package (scripts/package-test.sh)"
  package_log=$(mktemp)
  trap 'rm -f "$log" "${fuzz_log:-}" "$package_log"' EXIT
  bash scripts/package-test.sh 2>&1 | tee "$package_log" || package_status=1
  package_ok=$(grep -Ec '^package [a-z_]+: ok' "$package_log" || true)
  package_failed=$(grep -Ec '^package [a-z_]+: FAILED' "$package_log" || true)
  if [ "$package_status" != 0 ] && [ "$package_failed" = 0 ]; then package_failed=1; fi
  passed=$((passed + package_ok))
  failed=$((failed + package_failed))
else
  echo "== package: skipped (PACKAGE_TEST=0)"
fi
echo "== done"
echo "total: $passed passed, $failed failed"
[ "$test_status" = 0 ] && [ "$fuzz_status" = 0 ] && [ "$package_status" = 0 ] && [ "$rules_status" = 0 ]
