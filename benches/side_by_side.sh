#!/usr/bin/env bash
# nginx and sniwalk side by side, in one run of the benchmark harness
# (../shared/bench beside the repository), summarized into benches/results/.
#
#   benches/side_by_side.sh
#
# 1. builds sniwalk (`cargo build --release`) and stops if that fails;
# 2. makes sure the harness is ready (its setup/install.sh and
#    setup/gen_certs.sh, both idempotent, run only when something is missing);
# 3. starts the harness's backend once, measures it alone (h1_plain), then
#    runs ROUNDS interleaved rounds: in each, every peer in PEERS runs every
#    workload RUNS times (sniwalk through the plug-in benches/peer.sh, via a
#    symlink named sniwalk.sh so the harness files its results as
#    "sniwalk"). The machine drifts by up to 1.5x within minutes, so peers
#    are compared within a round, never across rounds;
# 4. writes the summary (the harness's tools/summarize.py, medians over all
#    rounds) to benches/results/<date>.md, .csv and .json (<date>-2 etc. if
#    taken), headed by benches/ratios.py's per-round ratios (sniwalk ÷ each
#    peer, and their median); the raw runs go to
#    benches/results/raw/<stamp>/round<k>/.
#
# Every load is bounded by the harness (DURATION=10 s per run, 3 s warm-up;
# before each run it waits at most QUIET_WAIT=120 s for the machine to be
# idle and repeats a noisy run at most RETRIES=2 times). With the defaults
# (3 rounds x 3 peers x 8 workloads) and a quiet machine it takes about 30
# minutes.
#
# Knobs (environment): WORKLOADS (default
# hs_full,hs_resume,hs_sni_spread,h1_keepalive,h2_keepalive,mem_idle_conns,ws_idle,ws_echo),
# PEERS (default "nginx haproxy sniwalk"), ROUNDS (3), RUNS (per peer and
# round, 1), DURATION, WARMUP, PIN, WS_CONNS and the other knobs of the
# harness's run.sh; SNIWALK_PORT (8446); BASELINE=0 skips the
# backend-alone run; BUILD=0 skips the build (uses SNIWALK_BIN or
# target/release/sniwalk as it is); BENCH_DIR (the harness); RESULT_NAME
# (file name of the summary, default the date); RESULTS_DIR (benches/results).
# The harness is always run from a copy in BENCH_COPY (/tmp/bench), never
# written into where it lives.
set -euo pipefail
REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
say() { printf '[%(%H:%M:%S)T] side_by_side: %s\n' -1 "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

BENCH=$(cd "${BENCH_DIR:-$REPO/../shared/bench}" 2>/dev/null && pwd) \
  || fail "no benchmark harness at ${BENCH_DIR:-$REPO/../shared/bench} (set BENCH_DIR)"
[[ -x $BENCH/run.sh && -f $BENCH/lib/common.sh ]] || fail "$BENCH is not the benchmark harness (no run.sh)"
WORKLOADS=${WORKLOADS:-hs_full,hs_resume,hs_sni_spread,h1_keepalive,h2_keepalive,mem_idle_conns,ws_idle,ws_echo}
read -ra PEER_LIST <<< "${PEERS:-nginx haproxy sniwalk}"
export RUNS=${RUNS:-1}
ROUNDS=${ROUNDS:-3}
SNIWALK_PORT=${SNIWALK_PORT:-8446}
RESULTS=${RESULTS_DIR:-$REPO/benches/results}

wants_sniwalk=0
for p in "${PEER_LIST[@]}"; do [[ $p == sniwalk ]] && wants_sniwalk=1; done

# ---- 1. build sniwalk ---------------------------------------------------------
if ((wants_sniwalk)); then
  if [[ ${BUILD:-1} != 0 ]]; then
    say "cargo build --release in $REPO"
    (cd "$REPO" && cargo build --release) \
      || fail "cargo build --release failed in $REPO: nothing was measured. Fix the build and run again."
  fi
  export SNIWALK_BIN=${SNIWALK_BIN:-$REPO/target/release/sniwalk}
  [[ -x $SNIWALK_BIN ]] || fail "no sniwalk binary at $SNIWALK_BIN"
fi

# ---- 2. the harness: writable, tools built, certificates made -----------------
# Always a copy: the shared harness is not ours to write into (as root, a
# write test would pass on a read-only folder and fill it with certificates,
# run files and a cargo target/). The copy keeps what was built in it.
copy=${BENCH_COPY:-/tmp/bench}
if [[ $copy != "$BENCH" ]]; then
  say "running a copy of $BENCH in $copy"
  mkdir -p "$copy"
  tar -C "$BENCH" --exclude=./run --exclude=./results/raw --exclude=./certs \
    --exclude='./tools/*/target' -cf - . | tar -C "$copy" -xf -
  chmod -R u+w "$copy"
  BENCH=$copy
fi
missing=()
for t in nginx wrk h2load openssl python3 taskset; do command -v "$t" >/dev/null || missing+=("$t"); done
[[ -x $BENCH/tools/hsload && -x $BENCH/tools/hsload-rs/target/release/hsload-rs && -x $BENCH/tools/wsload-rs/target/release/wsload-rs ]] || missing+=(hsload wsload-rs)
if ((${#missing[@]})); then
  say "missing: ${missing[*]}: running $BENCH/setup/install.sh"
  bash "$BENCH/setup/install.sh" || fail "setup/install.sh failed"
fi
cert_types=(ecdsa); [[ $WORKLOADS == *_rsa* || $WORKLOADS == all ]] && cert_types+=(rsa)
for t in "${cert_types[@]}"; do
  d=$BENCH/certs/$t
  if ! [[ -s $d/names.txt ]] || (($(find "$d/sites" -name '*.pem' 2>/dev/null | wc -l) < $(wc -l < "$d/names.txt"))); then
    say "certificates ($t) missing: running $BENCH/setup/gen_certs.sh $t (about a minute)"
    bash "$BENCH/setup/gen_certs.sh" "$t" || fail "setup/gen_certs.sh failed"
  fi
done

# ---- 3. one harness run: backend baseline, then interleaved rounds ---------------------
# shellcheck source=/dev/null
source "$BENCH/lib/common.sh"    # BENCH, PIN/CPUs, WORKERS, backend_start/stop
STAMP=$(date +%Y%m%d-%H%M%S)
export OUT=${OUT:-$RESULTS/raw/$STAMP}
mkdir -p "$OUT"
tmp=$(mktemp -d /tmp/sniwalk-bench.XXXXXX)
cleanup() { backend_stop; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
ln -s "$REPO/benches/peer.sh" "$tmp/sniwalk.sh"   # the harness names a peer after its script

{
  echo "date: $(date -Iseconds)"; echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) x $(nproc)"
  echo "mem: $(free -m | awk '/Mem:/{print $2}') MiB"
  echo "harness: $BENCH"
  echo "nginx: $(nginx -v 2>&1)"
  ((wants_sniwalk)) && echo "sniwalk: $("$SNIWALK_BIN" --version 2>&1 | head -1) ($SNIWALK_BIN)"
  echo "sniwalk repo: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(
    [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]] && echo ' + uncommitted changes')"
  echo "h2load: $(h2load --version | head -1)"; echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "openssl: $(openssl version)"; echo "python: $(python3 --version)"
  echo "pin: $PIN proxy_cpus=$PROXY_CPUS client_cpus=$CLIENT_CPUS backend_cpus=$BACKEND_CPUS workers=$WORKERS"
  echo "duration: ${DURATION}s runs: $RUNS warmup: ${WARMUP:-3}s workloads: $WORKLOADS peers: ${PEER_LIST[*]}"
  for k in net.ipv4.tcp_tw_reuse net.ipv4.ip_local_port_range net.core.somaxconn; do echo "$k = $(sysctl -n $k)"; done
  echo "nofile: $(ulimit -n)"
} > "$OUT/env.txt"
say "raw results in $OUT"

backend_start
failed=()
if [[ ${BASELINE:-1} != 0 ]]; then
  env -u PORT OUT="$OUT/baseline" "$BENCH/run.sh" backend h1_plain "$RUNS" || failed+=(backend)
fi
# The memory workloads run apart with RETRIES=0: when run.sh retries a noisy
# run it does not restart the peer first, so the retry's "idle" RSS would
# include the previous attempt's connections (a near-zero KB/conn).
[[ $WORKLOADS == all ]] && WORKLOADS=hs_full,hs_resume,hs_sni_spread,hs_full_rsa,h1_keepalive,h2_keepalive,mem_idle_conns,ws_idle,ws_echo
IFS=, read -ra wl_all <<< "$WORKLOADS"
cpu_wls=(); mem_wls=()
for w in "${wl_all[@]}"; do
  if [[ $w == mem_* || $w == ws_idle ]]; then mem_wls+=("$w"); else cpu_wls+=("$w"); fi
done
# Interleaved: ROUNDS rounds, each running every peer once (RUNS runs per
# workload), so that peers are compared within a round while the machine
# drifts between rounds (README, Performance). Round k goes to $OUT/round<k>.
for ((round = 1; round <= ROUNDS; round++)); do
  for p in "${PEER_LIST[@]}"; do
    say "round $round/$ROUNDS, peer $p: $WORKLOADS"
    if [[ $p == sniwalk ]]; then plugin=$tmp/sniwalk.sh; penv=(env PORT="$SNIWALK_PORT")
    else plugin=$p; penv=(env -u PORT); fi
    penv+=(OUT="$OUT/round$round")
    ok=1
    if ((${#cpu_wls[@]})); then
      "${penv[@]}" "$BENCH/run.sh" "$plugin" "$(IFS=,; echo "${cpu_wls[*]}")" "$RUNS" || ok=0
    fi
    if ((${#mem_wls[@]})); then
      "${penv[@]}" RETRIES=0 "$BENCH/run.sh" "$plugin" "$(IFS=,; echo "${mem_wls[*]}")" "$RUNS" || ok=0
    fi
    ((ok)) || failed+=("$p/round$round")
  done
done

# ---- 4. summary -----------------------------------------------------------------
mkdir -p "$RESULTS"
name=${RESULT_NAME:-$(date +%F)}
if [[ -z ${RESULT_NAME:-} ]]; then
  n=1; while [[ -e $RESULTS/$name.md ]]; do n=$((n + 1)); name=$(date +%F)-$n; done
fi
{
  [[ -f $RESULTS/$name.notes.md ]] && { cat "$RESULTS/$name.notes.md"; echo; }
  echo "## How this was run"; echo
  echo "\`benches/side_by_side.sh\` (harness \`$BENCH\`, raw runs \`${OUT#"$REPO"/}\`)."
  ((${#failed[@]})) && { echo; echo "**Incomplete: the harness failed for ${failed[*]}** (see the raw logs)."; }
  echo; echo '```'; cat "$OUT/env.txt"; echo '```'
} > "$OUT/notes.md"
if compgen -G "$OUT/*/*/*/run-*.json" > /dev/null; then
  python3 "$REPO/benches/ratios.py" "$BENCH" "$OUT" "${PEER_LIST[@]}" >> "$OUT/notes.md" \
    || fail "benches/ratios.py failed on $OUT"
  python3 "$BENCH/tools/summarize.py" "$OUT"/baseline "$OUT"/round* --md "$RESULTS/$name.md" --csv "$RESULTS/$name.csv" \
    --json "$RESULTS/$name.json" --title "$(echo "${PEER_LIST[*]}" | sed "s/ / vs /g") on loopback, $(date +%F)" --notes "$OUT/notes.md"
  say "summary: $RESULTS/$name.md (.csv, .json)"
else
  say "no run finished: no summary written"
fi
((${#failed[@]} == 0)) || fail "the harness failed for: ${failed[*]}"
