#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ for a bounded time each, on the stable
# toolchain (libFuzzer through libfuzzer-sys, with the coverage flags
# cargo-fuzz passes, less the sanitizer that needs nightly).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]      (default: 10 s, all targets)
#
# Each target starts from its committed seed corpus (fuzz/corpus/TARGET),
# which it only reads: new inputs go to a temporary directory, merged back
# into fuzz/corpus/TARGET only with FUZZ_KEEP_CORPUS=1.
# A crash stops the run, is written to fuzz/artifacts/TARGET/ and makes this
# script exit non-zero. Extra libFuzzer flags: FUZZ_ARGS="-fork=2" (two
# processes; prefer it to -jobs, whose logs and crashes go elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-10}
shift || true
case $seconds in
  '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a number, got \`$seconds\`" >&2; exit 2 ;;
esac
all=(pem config names admin_body proxy_header)
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "fuzz.sh: no target \`$t\` (have: ${all[*]})" >&2; exit 2; }
done

host=$(rustc -vV | sed -n 's/^host: //p')
# What cargo-fuzz passes (cargo fuzz build --release --debug-assertions),
# without -Zsanitizer=address: the code under test forbids unsafe code, so
# panics (overflow, index, unwrap, assert) are what there is to find.
# --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR=fuzz/target
started=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
# Not --locked: fuzz/Cargo.lock (seeded from the root one) gains what a new
# dependency of the main crate needs without failing the run.
cargo build --manifest-path fuzz/Cargo.toml --release --target "$host" "${bins[@]}"
echo "fuzz.sh: build took $(($(date +%s) - started)) s"

# The last match of ERE $2 in file $1, narrowed to ERE $3; empty if none.
last() {
  grep -Eo "$2" "$1" | tail -n 1 | grep -Eo "$3" || true
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in "${targets[@]}"; do
  corpus="$work/corpus-$t"
  artifacts="fuzz/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  log="$work/$t.log"
  echo "== fuzz $t: ${seconds} s"
  # -artifact_prefix: where libFuzzer writes crash-*/leak-*/timeout-*/oom-*.
  # -timeout: one input taking longer than this is a hang (a finding).
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  if "fuzz/target/$host/release/$t" "$corpus" "fuzz/corpus/$t" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1; then
    # Final stats; -fork=N prints none, its last status line has the rate.
    execs=$(last "$log" 'stat::number_of_executed_units: *[0-9]+' '[0-9]+$')
    rate=$(last "$log" 'stat::average_exec_per_sec: *[0-9]+' '[0-9]+$')
    [ -n "$rate" ] || rate=$(last "$log" 'exec/s: [0-9]+' '[0-9]+$')
    cov=$(last "$log" 'cov: [0-9]+ ft: [0-9]+' '.*')
    echo "fuzz $t: ok, ${execs:-?} runs, ${rate:-?} exec/s, ${cov:-no coverage line}"
  else
    status=1
    tail -n 40 "$log"
    crash=$(last "$log" 'Test unit written to [^ ]+' '[^ ]+$')
    echo "fuzz $t: FAILED; input: ${crash:-see the log above}"
    [ -n "$crash" ] && echo "reproduce: fuzz/target/$host/release/$t $crash"
  fi
  if [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ]; then
    "fuzz/target/$host/release/$t" -merge=1 "fuzz/corpus/$t" "$corpus" >/dev/null 2>&1 || true
  fi
done
exit $status
