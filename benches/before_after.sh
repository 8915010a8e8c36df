#!/usr/bin/env bash
# sniwalk "before" vs "after" a refactoring, each measured against nginx in the
# same run of the benchmark harness (../shared/bench beside the repository), interleaved per round.
#
#   SNIWALK_BEFORE_BIN=old/sniwalk SNIWALK_AFTER_BIN=new/sniwalk benches/before_after.sh
#   (two release builds, e.g. from two git worktrees; results in OUT_ROOT)
#
# Each round runs every workload once (RUNS=1 measured run of DURATION s after
# the harness's WARMUP) for each of the three peers; the peer order rotates
# from round to round (round 1: nginx before after, round 2: before after
# nginx, round 3: after nginx before), and for each workload the three peers
# run back to back, so the peers compared within one round are minutes apart.
#
# Peers (the harness names a peer after its script's file name):
#   nginx            the harness's peers/nginx.sh, port 8443
#   sniwalk_before   /tmp/peers/sniwalk_before.sh -> PEER_SH with SNIWALK_BIN=$SNIWALK_BEFORE_BIN, port 8447
#   sniwalk_after    /tmp/peers/sniwalk_after.sh  -> PEER_SH with SNIWALK_BIN=$SNIWALK_AFTER_BIN,  port 8448
#
# Knobs (environment, defaults):
#   SNIWALK_BEFORE_BIN (/tmp/sniwalk-before)   SNIWALK_AFTER_BIN (/tmp/sniwalk-after)
#   SNIWALK_PEER_SH (benches/peer.sh of this repository)  the sniwalk plug-in both wrappers exec
#   SNIWALK_BEFORE_BACKENDS / SNIWALK_AFTER_BACKENDS (1): BACKENDS for each peer (2: each
#   route balanced over two members, see peer.sh), e.g. the same binary with 1 and 2
#   WORKLOADS (hs_full,h1_keepalive)  ROUNDS (= RUNS, 3)  DURATION (10)  WARMUP (3)
#   and the harness's other knobs (PIN, QUIET_WAIT, NOISE_MAX, RETRIES, ...)
#   SNIWALK_BEFORE_COMMIT / SNIWALK_AFTER_COMMIT: recorded in env.txt (default: the file
#   BIN.commit beside the binary, else the git HEAD of the work tree whose target/ holds it)
#   OUT_ROOT (/tmp/bench-before-after): results go to OUT_ROOT/<stamp>/, and
#   OUT_ROOT/latest points at the newest
#   BENCH_DIR (../shared/bench beside the repository), BENCH_COPY (/tmp/bench): the harness is always run
#   from the copy (refreshed when the shared scripts changed); tools are installed and
#   certificates generated there when missing, as benches/side_by_side.sh does. Nothing
#   is written into BENCH_DIR.
#
# Output in OUT_ROOT/<stamp>/:
#   env.txt                 machine, versions, binaries (sha256, git commits)
#   round-N/<peer>/<wl>/run-1.{json,log}   the harness's raw files per round
#   round-N.md/.csv/.json   tools/summarize.py of that round alone
#   summary.md/.csv/.json   tools/summarize.py over all rounds (medians)
#   ratios.md / ratios.json per round: µs/op, req|hs/s, p99, errors, foreign CPU per peer,
#                           and the ratios before/nginx, after/nginx, after/before
#                           (µs/op and p99), plus the medians of the ratios
#   run.log                 the harness's log
# Every load is bounded by the harness (DURATION per run, at most QUIET_WAIT=120 s
# wait for idle before each run, at most RETRIES=2 repeats of a noisy run), and
# only 127.0.0.1 is targeted.
set -euo pipefail
say() { printf '[%(%H:%M:%S)T] before_after: %s\n' -1 "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

export SNIWALK_BEFORE_BIN=${SNIWALK_BEFORE_BIN:-/tmp/sniwalk-before}
export SNIWALK_AFTER_BIN=${SNIWALK_AFTER_BIN:-/tmp/sniwalk-after}
REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export SNIWALK_PEER_SH=${SNIWALK_PEER_SH:-$REPO/benches/peer.sh}
WORKLOADS=${WORKLOADS:-hs_full,h1_keepalive}
ROUNDS=${ROUNDS:-${RUNS:-3}}
PEERS_DIR=${PEERS_DIR:-/tmp/peers}
OUT_ROOT=${OUT_ROOT:-/tmp/bench-before-after}
SRC_BENCH=${BENCH_DIR:-$REPO/../shared/bench}
BEFORE_PORT=${BEFORE_PORT:-8447}
AFTER_PORT=${AFTER_PORT:-8448}

for b in "$SNIWALK_BEFORE_BIN" "$SNIWALK_AFTER_BIN"; do [[ -x $b ]] || fail "no sniwalk binary at $b"; done
[[ -x $SNIWALK_PEER_SH ]] || fail "no sniwalk plug-in at $SNIWALK_PEER_SH"

# ---- the two wrapper peers (re-written each time; the harness names a peer after its file) ----
mkdir -p "$PEERS_DIR"
for w in before after; do
  W=${w^^}
  cat > "$PEERS_DIR/sniwalk_$w.sh" <<EOF
#!/usr/bin/env bash
# Harness peer "sniwalk_$w" (the harness names a peer after its script file):
# the project's plug-in with SNIWALK_BIN = \${SNIWALK_${W}_BIN:-/tmp/sniwalk-$w}.
export SNIWALK_BIN=\${SNIWALK_${W}_BIN:-/tmp/sniwalk-$w}
export BACKENDS=\${SNIWALK_${W}_BACKENDS:-1}
exec "\${SNIWALK_PEER_SH}" "\$@"
EOF
  chmod +x "$PEERS_DIR/sniwalk_$w.sh"
done

# ---- the harness: a writable copy, tools installed, certificates made -------------
# Always a copy: the shared harness is read-only by mode, but root can write there anyway
# (a mkdir test passes), and its certs/, run/ and build outputs must not land in shared/.
SRC_BENCH=$(cd "$SRC_BENCH" && pwd) || fail "no harness at $SRC_BENCH"
[[ -x $SRC_BENCH/run.sh && -f $SRC_BENCH/lib/common.sh ]] || fail "$SRC_BENCH is not the benchmark harness"
BENCH=${BENCH_COPY:-/tmp/bench}
[[ $BENCH != "$SRC_BENCH" ]] || fail "BENCH_COPY must not be the shared harness itself"
if ! [[ -x $BENCH/run.sh ]] || ! diff -rq -x run -x certs -x target -x hsload -x Cargo.lock -x results "$SRC_BENCH" "$BENCH" > /dev/null; then
  say "copying the harness $SRC_BENCH to $BENCH"
  mkdir -p "$BENCH"
  tar -C "$SRC_BENCH" --exclude=./run --exclude=./results/raw -cf - . | tar -C "$BENCH" -xf -
  chmod -R u+w "$BENCH"
fi
export BENCH
missing=()
for t in nginx wrk h2load openssl python3 taskset; do command -v "$t" >/dev/null || missing+=("$t"); done
[[ -x $BENCH/tools/hsload && -x $BENCH/tools/hsload-rs/target/release/hsload-rs ]] || missing+=(hsload)
grep -q 'd0000.example.test' /etc/hosts || missing+=(/etc/hosts)
if ((${#missing[@]})); then
  say "missing: ${missing[*]}: running $BENCH/setup/install.sh"
  bash "$BENCH/setup/install.sh" || fail "setup/install.sh failed"
fi
d=$BENCH/certs/ecdsa
if ! [[ -s $d/names.txt ]] || (($(find "$d/sites" -name '*.pem' 2>/dev/null | wc -l) < $(wc -l < "$d/names.txt"))); then
  say "certificates (ecdsa) missing: running $BENCH/setup/gen_certs.sh ecdsa"
  bash "$BENCH/setup/gen_certs.sh" ecdsa || fail "setup/gen_certs.sh failed"
fi

# ---- run ---------------------------------------------------------------------------
# shellcheck source=/dev/null
source "$BENCH/lib/common.sh"     # BENCH, PIN/CPUs, WORKERS, backend_start/stop, log
STAMP=$(date +%Y%m%d-%H%M%S)
TOP=$OUT_ROOT/$STAMP
mkdir -p "$TOP"
ln -sfn "$STAMP" "$OUT_ROOT/latest"
exec > >(tee -a "$TOP/run.log") 2>&1

commit_of() {   # the commit a binary was built from: BIN.commit beside a copied binary, or its work tree
  local dir; dir=$(dirname "$(readlink -f "$1")")
  if [[ -s $1.commit ]]; then head -1 "$1.commit"; return; fi
  case $dir in */target/release) git -C "${dir%/target/release}" rev-parse HEAD 2>/dev/null || echo '?' ;; *) echo "? (no $1.commit)" ;; esac
}
{
  echo "date: $(date -Iseconds)"; echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) x $(nproc)"
  echo "mem: $(free -m | awk '/Mem:/{print $2}') MiB"
  echo "harness: $BENCH (copy of $SRC_BENCH)"
  echo "nginx: $(nginx -v 2>&1)"
  echo "sniwalk_before: $SNIWALK_BEFORE_BIN sha256 $(sha256sum "$SNIWALK_BEFORE_BIN" | cut -c1-16) ($("$SNIWALK_BEFORE_BIN" --version 2>&1 | head -1)) built from: ${SNIWALK_BEFORE_COMMIT:-$(commit_of "$SNIWALK_BEFORE_BIN")}"
  echo "sniwalk_after:  $SNIWALK_AFTER_BIN sha256 $(sha256sum "$SNIWALK_AFTER_BIN" | cut -c1-16) ($("$SNIWALK_AFTER_BIN" --version 2>&1 | head -1)) built from: ${SNIWALK_AFTER_COMMIT:-$(commit_of "$SNIWALK_AFTER_BIN")}"
  echo "sniwalk plug-in: $SNIWALK_PEER_SH sha256 $(sha256sum "$SNIWALK_PEER_SH" | cut -c1-16)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"; echo "openssl: $(openssl version)"; echo "python: $(python3 --version)"
  echo "pin: $PIN proxy_cpus=$PROXY_CPUS client_cpus=$CLIENT_CPUS backend_cpus=$BACKEND_CPUS workers=$WORKERS"
  echo "duration: ${DURATION}s warmup: ${WARMUP:-3}s rounds: $ROUNDS (1 run per peer per workload per round) workloads: $WORKLOADS"
  echo "ports: nginx 8443, sniwalk_before $BEFORE_PORT, sniwalk_after $AFTER_PORT"
  for k in net.ipv4.tcp_tw_reuse net.ipv4.ip_local_port_range net.core.somaxconn; do echo "$k = $(sysctl -n $k)"; done
  echo "nofile: $(ulimit -n)"
} > "$TOP/env.txt"
cat "$TOP/env.txt"
say "results in $TOP"

backend_start
trap 'backend_stop' EXIT
trap 'exit 130' INT TERM

base_order=(nginx sniwalk_before sniwalk_after)
IFS=, read -ra wls <<< "$WORKLOADS"
failed=()
for ((r = 1; r <= ROUNDS; r++)); do
  order=()
  for ((i = 0; i < 3; i++)); do order+=("${base_order[$(((i + r - 1) % 3))]}"); done
  say "round $r/$ROUNDS: order ${order[*]}"
  for wl in "${wls[@]}"; do
    for p in "${order[@]}"; do
      case $p in
        nginx)          penv=(env -u PORT); plugin=nginx ;;
        sniwalk_before) penv=(env PORT="$BEFORE_PORT"); plugin=$PEERS_DIR/sniwalk_before.sh ;;
        sniwalk_after)  penv=(env PORT="$AFTER_PORT"); plugin=$PEERS_DIR/sniwalk_after.sh ;;
      esac
      wr=()
      [[ $wl == mem_* ]] && wr=(RETRIES=0)
      "${penv[@]}" "${wr[@]}" OUT="$TOP/round-$r" "$BENCH/run.sh" "$plugin" "$wl" 1 \
        || { say "harness failed: round $r $p $wl"; failed+=("r$r:$p:$wl"); }
    done
  done
done

# ---- summaries -----------------------------------------------------------------------
for ((r = 1; r <= ROUNDS; r++)); do
  compgen -G "$TOP/round-$r/*/*/run-*.json" > /dev/null || continue
  python3 "$BENCH/tools/summarize.py" "$TOP/round-$r" --md "$TOP/round-$r.md" --csv "$TOP/round-$r.csv" \
    --json "$TOP/round-$r.json" --title "round $r: nginx vs sniwalk_before vs sniwalk_after, $(date +%F)" > /dev/null
done
rounds=("$TOP"/round-*/)
python3 "$BENCH/tools/summarize.py" "${rounds[@]}" --md "$TOP/summary.md" --csv "$TOP/summary.csv" \
  --json "$TOP/summary.json" --title "nginx vs sniwalk_before vs sniwalk_after, medians of $ROUNDS interleaved rounds, $(date +%F)"

python3 - "$BENCH/tools" "$TOP" "$WORKLOADS" <<'PY'
import glob, json, os, statistics, sys
sys.path.insert(0, sys.argv[1])
from summarize import per_run          # the harness's own µs/op, p99 and error accounting
top, wls = sys.argv[2], sys.argv[3].split(',')
peers = ('nginx', 'sniwalk_before', 'sniwalk_after')
rounds = sorted((d for d in glob.glob(os.path.join(top, 'round-*')) if os.path.isdir(d)),
                key=lambda d: int(d.rsplit('-', 1)[1]))
data, L = {}, []
ratios = {}   # (wl, metric) -> list
def rat(a, b):
    return round(a / b, 3) if a is not None and b not in (None, 0) else None
for rd in rounds:
    rn = int(rd.rsplit('-', 1)[1])
    for wl in wls:
        row = {}
        for p in peers:
            f = os.path.join(rd, p, wl, 'run-1.json')
            if not os.path.exists(f):
                continue
            r = json.load(open(f))
            d = per_run(r)
            noisy = len(glob.glob(os.path.join(rd, p, wl, 'run-1.noisy*.json')))
            row[p] = {'us_per_op': d['proxy_us_per_op'], 'per_s': d['per_s'], 'p50_ms': d['lat_p50_ms'],
                      'p99_ms': d['lat_p99_ms'], 'errors': d['errors'], 'proxy_cpu_pct': d['proxy_cpu_pct'],
                      'foreign_cpu_pct': d['other_cpu_pct'], 'noisy_retries': noisy, 'date': r.get('date'),
                      'ok': r['result'].get('ok'), 'resumed_pct': d.get('resumed_pct')}
        n, b, a = (row.get(p, {}) for p in peers)
        rr = {
            'before/nginx us_per_op': rat(b.get('us_per_op'), n.get('us_per_op')),
            'after/nginx us_per_op': rat(a.get('us_per_op'), n.get('us_per_op')),
            'after/before us_per_op': rat(a.get('us_per_op'), b.get('us_per_op')),
            'before/nginx p99': rat(b.get('p99_ms'), n.get('p99_ms')),
            'after/nginx p99': rat(a.get('p99_ms'), n.get('p99_ms')),
            'after/before p99': rat(a.get('p99_ms'), b.get('p99_ms')),
        }
        fc = [x.get('foreign_cpu_pct') for x in (n, b, a) if x.get('foreign_cpu_pct') is not None]
        rr['max foreign CPU %'] = max(fc) if fc else None
        for k, v in rr.items():
            if v is not None:
                ratios.setdefault((wl, k), []).append(v)
        data.setdefault(rn, {})[wl] = {'peers': row, 'ratios': rr}
med = {f'{wl} {k}': round(statistics.median(v), 3) for (wl, k), v in ratios.items() if 'foreign' not in k}
json.dump({'rounds': data, 'median_ratios': med}, open(os.path.join(top, 'ratios.json'), 'w'), indent=1)

f = lambda x, nd=1: '-' if x is None else (f'{x:,.{nd}f}' if isinstance(x, float) else str(x))  # noqa: E731
L += ['# sniwalk before vs after, each against nginx, interleaved rounds', '',
      'µs/op = proxy CPU time per handshake (hs_full) or request (h1_keepalive), from the harness '
      '(tools/summarize.py per_run). Ratio < 1: sniwalk uses less CPU per op than nginx.', '',
      '## Per round', '',
      '| round | workload | peer | µs/op | /s | p50 ms | p99 ms | errors | proxy CPU % | foreign CPU % | noisy retries | date |',
      '|' + '---|' * 12]
for rn in sorted(data):
    for wl in wls:
        for p in peers:
            x = data[rn].get(wl, {}).get('peers', {}).get(p)
            if x:
                L.append(f'| {rn} | {wl} | {p} | {f(x["us_per_op"])} | {f(x["per_s"], 0)} | {f(x["p50_ms"], 2)} '
                         f'| {f(x["p99_ms"], 2)} | {f(x["errors"])} | {f(x["proxy_cpu_pct"])} | {f(x["foreign_cpu_pct"])} '
                         f'| {x["noisy_retries"]} | {x["date"]} |')
L += ['', '## Ratios per round', '',
      '| round | workload | before/nginx µs/op | after/nginx µs/op | after/before µs/op | before/nginx p99 | after/nginx p99 | after/before p99 | max foreign CPU % of the 3 runs |',
      '|' + '---|' * 9]
keys = ['before/nginx us_per_op', 'after/nginx us_per_op', 'after/before us_per_op',
        'before/nginx p99', 'after/nginx p99', 'after/before p99']
for rn in sorted(data):
    for wl in wls:
        rr = data[rn].get(wl, {}).get('ratios', {})
        L.append(f'| {rn} | {wl} | ' + ' | '.join(f(rr.get(k), 3) for k in keys) + f' | {f(rr.get("max foreign CPU %"))} |')
L += ['', '## Medians of the per-round ratios', '',
      'A run with foreign CPU above NOISE_MAX (15 % of a core) after its retries is kept (the harness keeps the last attempt); '
      'see the last column above.', '', '| workload | ' + ' | '.join(keys) + ' |', '|' + '---|' * 7]
for wl in wls:
    L.append(f'| {wl} | ' + ' | '.join(f(med.get(f'{wl} {k}'), 3) for k in keys) + ' |')
env = open(os.path.join(top, 'env.txt')).read()
L += ['', '## Environment', '', '```', env.rstrip(), '```']
open(os.path.join(top, 'ratios.md'), 'w').write('\n'.join(L) + '\n')
print('\n'.join(L))
PY
say "done: $TOP/ratios.md, $TOP/summary.md (raw: $TOP/round-*/)"
((${#failed[@]} == 0)) || fail "the harness failed for: ${failed[*]}"
