#!/usr/bin/env bash
# Instruction counts (valgrind callgrind, Ir) of one sniwalk release binary
# under three fixed loads: proxy instructions per HTTP/1.1 request, per
# HTTP/2 request and per echoed WebSocket message.
#
#   benches/callgrind.sh BIN [OUT_DIR]
#   (BIN: a sniwalk release binary; OUT_DIR default /tmp/cg/<basename BIN>-<stamp>)
#
# Why: on this 2-core machine wall-clock and CPU-time figures drift by up to
# 1.5x within minutes (see benches/side_by_side.sh), so a change of a few %
# cannot be seen there. User-space instruction counts do not depend on that
# noise: for the same binary and the same fixed amount of work, h1 and h2
# repeat within about 0.5 %, ws_echo within about 4 % (how many messages
# share one wake-up of the tokio worker depends on timing: that part is
# tokio park/unpark and timer code). To compare two builds, run this once on
# each and compare the Ir/op columns of the two summary.md files; for
# ws_echo, or a difference below 1 %, run each twice, interleaved. Instructions are not time:
# cache misses, syscalls and kernel TCP work are not counted, and valgrind
# runs all threads of the proxy on one core, one at a time.
#
# What it does:
# 1. the benchmark harness (BENCH_DIR; default /tmp/bench if it has
#    certs/ecdsa/names.txt and its tools built, else ../shared/bench beside
#    the repository) provides certificates, the client TLS settings
#    (conf/openssl-client.cnf), the backend's nginx.conf and wsload-rs;
# 2. starts its own backends on free 127.0.0.1 ports: nginx answering
#    `return 200 "ok"` with unlimited keep-alive (the harness's
#    conf/backend-nginx.conf.in, 1 worker) and `wsload-rs echo-server`;
# 3. writes the proxy config with benches/peer.sh start (SNIWALK_BIN=BIN,
#    WORKERS=1, WS_BACKEND_ADDR set: 1,000 domains, /ws to the echo server),
#    checks that this native instance answers 200, and stops it again. The
#    measured config (OUT_DIR/conf/proxy.yaml) is that one plus `rescan_interval:
#    24h`: the periodic re-scan of every certificate source (default every
#    60 s, about 50 M Ir here) would otherwise land in whichever window is
#    running at that moment. The certificates are a private copy
#    (OUT_DIR/certs): sniwalk watches their folders and its config's, and
#    reloads everything when they change (another benchmark refreshing the
#    harness did so in the middle of a window);
# 4. runs BIN with that config under `valgrind --tool=callgrind
#    --dump-instr=no` on PROXY_CPUS (the clients and backends on CLIENT_CPUS),
#    then for each load: a short unmeasured warm-up, `callgrind_control -z`,
#    the load, 1 s for the connections to close, `callgrind_control --dump`.
#    So each dump holds the proxy's instructions for that load only
#    (start-up, certificate loading and warm-up excluded):
#      h1       h2load --h1 -n H1_N (20,000) -c CONNS (8): HTTP/1.1 keep-alive
#      h2       h2load -n H2_N (20,000) -c CONNS (8) -m H2_STREAMS (10)
#      ws_echo  wsload-rs client, WS_CONNS (8) wss connections to /ws,
#               WS_SIZE (512) byte text messages, each echo checked, at
#               WS_RATE (1,500) msg/s in total for WS_DURATION (10) s: a fixed
#               schedule of WS_RATE x WS_DURATION (15,000) messages, each
#               relayed on its own (open loop, proxy about half busy under
#               valgrind). WS_RATE=0 runs closed-loop as fast as possible
#               instead (then the count and the batching vary with speed).
#    All requests go to https://d0000.example.test:<port>/ (SNI and Host;
#    TLS 1.3, AES-128-GCM, X25519 like the harness). Every request must get
#    a 2xx and every echo must come back, else the script fails.
#    Each window includes CONNS (WS_CONNS) full TLS handshakes; summary.md
#    gives their share (rustls handshake states, inclusive): below 1 % for
#    h1 and h2, about 3.5 % for ws_echo. Last, an IDLE (10 s) window with no
#    load shows what background work (timers) could add to a window.
# 5. writes OUT_DIR/summary.md (and summary.json): `load | ops | Ir total |
#    Ir/op`, then the top TOP (15) functions by exclusive Ir per load
#    (parsed here: callgrind_annotate 3.19's exclusive view puts everything
#    on `clone` for these dumps), and prints summary.md.
#
# OUT_DIR keeps callgrind.{h1,h2,ws_echo,idle}.out (one dump per window; open them
# with kcachegrind or `callgrind_annotate --inclusive=yes`),
# callgrind.rest.out (start-up, warm-ups, shutdown), the clients' outputs,
# proxy.log, the configs (peer/proxy.yaml from peer.sh, conf/proxy.yaml measured)
# and the backends' files.
#
# Bounds: every step runs under `timeout`, and the whole script under
# CG_LIMIT (900 s); a run takes about 2-3 minutes. Only 127.0.0.1 is used.
# Everything started (backends, the proxy, clients) is stopped by its PID
# at the end, also on error or interrupt.
#
# Knobs (environment, defaults): BENCH_DIR, H1_N (20000), H2_N (20000),
# CONNS (8), H2_STREAMS (10), WS_CONNS (8), WS_SIZE (512), WS_RATE (1500),
# WS_DURATION (10), WARMUP_N (1000 requests), WS_WARMUP (2 s), IDLE (10 s), TOP (15),
# PROXY_CPUS (0), CLIENT_CPUS (1), CG_LIMIT (900), READY_WAIT (300 s for the
# proxy to answer under valgrind), SNI (d0000.example.test), BACKENDS (1; 2
# balances each route over two members, see benches/peer.sh).
set -euo pipefail

# The whole run under one deadline (the trap below still cleans up on TERM).
if [[ -z ${CALLGRIND_SH_BOUNDED:-} ]]; then
  CALLGRIND_SH_BOUNDED=1 exec timeout -k 60 "${CG_LIMIT:-900}" bash "$0" "$@"
fi

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
say() { printf '[%(%H:%M:%S)T] callgrind: %s\n' -1 "$*" >&2; }
fail() { say "ERROR: $*"; exit 1; }

[[ $# -ge 1 && $# -le 2 && $1 != -h && $1 != --help ]] || {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }
BIN=$(readlink -f "$1")
[[ -x $BIN && -f $BIN ]] || fail "not an executable: $1"
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${2:-/tmp/cg/$(basename "$BIN")-$STAMP}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

H1_N=${H1_N:-20000} H2_N=${H2_N:-20000} CONNS=${CONNS:-8} H2_STREAMS=${H2_STREAMS:-10}
WS_CONNS=${WS_CONNS:-8} WS_SIZE=${WS_SIZE:-512} WS_RATE=${WS_RATE:-1500} WS_DURATION=${WS_DURATION:-10}
WARMUP_N=${WARMUP_N:-1000} WS_WARMUP=${WS_WARMUP:-2} TOP=${TOP:-15}
READY_WAIT=${READY_WAIT:-300} SNI=${SNI:-d0000.example.test}
if (($(nproc) >= 2)); then PROXY_CPUS=${PROXY_CPUS:-0} CLIENT_CPUS=${CLIENT_CPUS:-1}
else PROXY_CPUS=${PROXY_CPUS:-0} CLIENT_CPUS=${CLIENT_CPUS:-0}; fi
HOST=127.0.0.1

# ---- the harness ----------------------------------------------------------------
ready_bench() {
  [[ -s $1/certs/ecdsa/names.txt && -f $1/conf/openssl-client.cnf && -f $1/conf/backend-nginx.conf.in \
    && -x $1/tools/wsload-rs/target/release/wsload-rs && -f $1/lib/common.sh ]]
}
if [[ -n ${BENCH_DIR:-} ]]; then BENCH=$BENCH_DIR
elif ready_bench /tmp/bench; then BENCH=/tmp/bench
else BENCH=$REPO/../shared/bench; fi
BENCH=$(cd "$BENCH" 2>/dev/null && pwd) || fail "no benchmark harness at $BENCH (set BENCH_DIR)"
ready_bench "$BENCH" || fail "harness $BENCH is not ready (needs certs/ecdsa/names.txt and tools/wsload-rs built:
  run benches/side_by_side.sh once, or the harness's setup/install.sh and setup/gen_certs.sh ecdsa in a copy)"
CERT_DIR=$OUT/certs   # a private copy, filled below
WSLOAD=$BENCH/tools/wsload-rs/target/release/wsload-rs
export OPENSSL_CONF=$BENCH/conf/openssl-client.cnf   # wrk/h2load: TLS 1.3, AES-128-GCM, X25519
for t in valgrind callgrind_control h2load nginx python3 taskset timeout; do
  command -v "$t" >/dev/null || fail "$t is not installed"
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- process bookkeeping: stop exactly what we started, by PID ---------------------
STARTED=()     # PIDs of long-running processes we started (backends, the proxy)
LOAD_PID=''    # the client currently running, if any
PEER_RUN=''    # set while the native instance of peer.sh may be running
stop_pid() {   # stop_pid PID [GRACE_S]: TERM, wait, KILL
  local pid=$1 grace=${2:-10} i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  say "pid $pid ignored TERM for ${grace}s: KILL"
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local i
  [[ -n $LOAD_PID ]] && stop_pid "$LOAD_PID" 5
  if [[ -n $PEER_RUN ]]; then
    BENCH=$BENCH RUN_BASE=$OUT timeout 30 "$REPO/benches/peer.sh" stop "$PEER_RUN" || true
  fi
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED[i]}" 30; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_bounded NAME LIMIT CMD...: a client on CLIENT_CPUS, output to OUT/NAME.txt.
# Runs in the background so that a signal reaches the trap at once.
run_bounded() {
  local name=$1 limit=$2 rc=0; shift 2
  timeout -k 10 "$limit" taskset -c "$CLIENT_CPUS" "$@" > "$OUT/$name.txt" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=''
  return "$rc"
}

# free_ports N: N ports on 127.0.0.1 that nothing is bound to, below the ephemeral range
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
n, out, p = int(sys.argv[1]), [], random.randrange(20000, 30000)
while len(out) < n:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); out.append(p)
    except OSError:
        pass
    finally:
        s.close()
    p += 1
print(*out)
PY
}

wait_tcp() {   # wait_tcp PORT SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

H2LOAD_TLS=(--tls13-ciphers=TLS_AES_128_GCM_SHA256 --groups=X25519 -t 1)
# h2_ok FILE N: h2load's output says all N requests succeeded with a 2xx
h2_ok() {
  grep -Eq "^requests: $2 total, $2 started, $2 done, $2 succeeded, 0 failed, 0 errored, 0 timeout" "$1" \
    && grep -Eq "^status codes: $2 2xx," "$1"
}
# wait_proxy PID SECONDS: until one HTTPS request through the proxy gets a 2xx
wait_proxy() {
  local pid=$1 t=$2 start=$SECONDS
  while ((SECONDS - start < t)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if run_bounded ready 30 h2load --h1 -n 1 -c 1 "${H2LOAD_TLS[@]}" --connect-to="$HOST:$PROXY_PORT" \
         "https://$SNI:$PROXY_PORT/" && h2_ok "$OUT/ready.txt" 1; then
      rm -f "$OUT/ready.txt"; return 0
    fi
    sleep 1
  done
  return 1
}

read -r BACKEND_PORT WS_PORT PROXY_PORT < <(free_ports 3)
say "binary $BIN, output $OUT, harness $BENCH"
say "ports: backend $BACKEND_PORT, ws echo $WS_PORT, proxy $PROXY_PORT (127.0.0.1)"

# ---- certificates: a private copy ---------------------------------------------------
# sniwalk watches the folders of its config and certificates (inotify) and
# reloads when anything there changes: another benchmark refreshing the
# harness (chmod -R) in a window would add a full reload to it. So the proxy
# reads a copy, and its config lives in a folder nothing else writes to.
mkdir -p "$CERT_DIR"
cp -r "$BENCH/certs/ecdsa/." "$CERT_DIR/"

# ---- backends -------------------------------------------------------------------
mkdir -p "$OUT/backend"
sed -e "s#@LISTEN@#$HOST:$BACKEND_PORT#g" -e "s#@DIR@#$OUT/backend#g" -e "s#@WORKERS@#1#g" \
  "$BENCH/conf/backend-nginx.conf.in" > "$OUT/backend/nginx.conf"
LIFE=${CG_LIMIT:-900}   # the long-running processes cannot outlive the script's own deadline
timeout -k 10 "$LIFE" taskset -c "$CLIENT_CPUS" nginx -e "$OUT/backend/error.log" -c "$OUT/backend/nginx.conf" \
  -p "$OUT/backend" > "$OUT/backend/stdout.log" 2>&1 &
STARTED+=("$!")
timeout -k 10 "$LIFE" taskset -c "$CLIENT_CPUS" "$WSLOAD" echo-server --listen "$HOST:$WS_PORT" \
  > "$OUT/ws-backend.log" 2>&1 &
STARTED+=("$!")
wait_tcp "$BACKEND_PORT" 20 || fail "the backend nginx did not start (see $OUT/backend)"
wait_tcp "$WS_PORT" 20 || fail "wsload-rs echo-server did not start (see $OUT/ws-backend.log)"

# ---- the proxy config, from benches/peer.sh (checked natively, then stopped) --------
PEER_RUN=$OUT/peer
SNIWALK_BIN=$BIN WORKERS=1 BIND_HOST=$HOST WS_BACKEND_ADDR=$HOST:$WS_PORT BENCH=$BENCH \
  timeout -k 10 60 taskset -c "$PROXY_CPUS" "$REPO/benches/peer.sh" start "$CERT_DIR" "$HOST:$BACKEND_PORT" \
  "$PROXY_PORT" "$PEER_RUN" || fail "benches/peer.sh start failed (see $PEER_RUN/stdout.log)"
wait_proxy "$(head -1 "$PEER_RUN/pids")" 60 \
  || fail "sniwalk (native, started by benches/peer.sh) did not answer 200 (see $PEER_RUN/stdout.log)"
BENCH=$BENCH RUN_BASE=$OUT timeout 30 "$REPO/benches/peer.sh" stop "$PEER_RUN"
PEER_RUN=''
# The periodic re-scan of every certificate source (rescan_interval, default
# 60 s) costs tens of millions of Ir and would land in whichever window is
# running at that moment: push it out of the run.
mkdir -p "$OUT/conf"
cp "$OUT/peer/proxy.yaml" "$OUT/conf/proxy.yaml"
if grep -qa rescan_interval "$BIN"; then
  printf '# callgrind.sh: no periodic re-scan during the measurement\nrescan_interval: 24h\n' >> "$OUT/conf/proxy.yaml"
else
  say "WARNING: $BIN does not know rescan_interval: a 60 s re-scan may fall into a window (see the idle note)"
fi
say "config $OUT/peer/proxy.yaml checked (native instance answered 200, stopped); measured with $OUT/conf/proxy.yaml"

# ---- the proxy under callgrind ------------------------------------------------------
say "starting $BIN under callgrind (loading the certificates takes a while)"
RUST_LOG=warn timeout -k 30 "$LIFE" taskset -c "$PROXY_CPUS" valgrind --tool=callgrind --dump-instr=no \
  --callgrind-out-file="$OUT/callgrind.out.%p" "$BIN" run --config "$OUT/conf/proxy.yaml" > "$OUT/proxy.log" 2>&1 &
TPID=$!
STARTED+=("$TPID")
VPID=''
for ((i = 0; i < 100 && ${#VPID} == 0; i++)); do
  VPID=$(ps -o pid= --ppid "$TPID" | tr -d ' ') || true; [[ -n $VPID ]] || sleep 0.1
done
[[ -n $VPID ]] || fail "valgrind did not start (see $OUT/proxy.log)"
wait_proxy "$VPID" "$READY_WAIT" || fail "the proxy under valgrind did not answer within ${READY_WAIT}s (see $OUT/proxy.log)"
say "proxy ready under callgrind (pid $VPID, port $PROXY_PORT)"

cg() { timeout -k 5 60 callgrind_control "$@" "$VPID" >> "$OUT/callgrind_control.log" 2>&1; }
WIN_T0=0
begin_window() {   # after the warm-up: let its connections close, then zero the counters
  sleep 1
  cg --zero || fail "callgrind_control --zero failed (see $OUT/callgrind_control.log)"
  WIN_T0=$SECONDS
}
end_window() {     # end_window NAME OPS UNIT [LIST]: let the connections close, dump, file it
  local name=$1 f='' i
  sleep 1
  cg --dump="$name" || fail "callgrind_control --dump failed (see $OUT/callgrind_control.log)"
  for ((i = 0; i < 300; i++)); do
    f=$(compgen -G "$OUT/callgrind.out.$VPID.*" | head -1) || true
    [[ -n $f ]] && tail -n 3 "$f" | grep -q '^totals:' && break
    f=''; sleep 0.1
  done
  [[ -n $f ]] || fail "no callgrind dump for $name"
  mv "$f" "$OUT/callgrind.$name.out"
  printf '%s\t%s\t%s\t%s\n' "$name" "$2" "$3" "$((SECONDS - WIN_T0))" >> "$OUT/${4:-loads}.tsv"
}
: > "$OUT/loads.tsv"; : > "$OUT/idle.tsv"
URL=https://$SNI:$PROXY_PORT/
H2L=("${H2LOAD_TLS[@]}" --connect-to="$HOST:$PROXY_PORT")

# 1. h1: HTTP/1.1 keep-alive
say "h1: warm-up ($WARMUP_N requests), then h2load --h1 -n $H1_N -c $CONNS"
{ run_bounded h1.warmup 300 h2load --h1 -n "$WARMUP_N" -c "$CONNS" "${H2L[@]}" "$URL" \
  && h2_ok "$OUT/h1.warmup.txt" "$WARMUP_N"; } || fail "h1 warm-up failed (see $OUT/h1.warmup.txt)"
begin_window
run_bounded h1 600 h2load --h1 -n "$H1_N" -c "$CONNS" "${H2L[@]}" "$URL" || fail "h1 load failed (see $OUT/h1.txt)"
end_window h1 "$H1_N" requests
h2_ok "$OUT/h1.txt" "$H1_N" || fail "h1: not every request got a 2xx (see $OUT/h1.txt)"

# 2. h2: HTTP/2, CONNS connections x H2_STREAMS streams
say "h2: warm-up ($WARMUP_N requests), then h2load -n $H2_N -c $CONNS -m $H2_STREAMS"
{ run_bounded h2.warmup 300 h2load -n "$WARMUP_N" -c "$CONNS" -m "$H2_STREAMS" "${H2L[@]}" "$URL" \
  && h2_ok "$OUT/h2.warmup.txt" "$WARMUP_N"; } || fail "h2 warm-up failed (see $OUT/h2.warmup.txt)"
begin_window
run_bounded h2 600 h2load -n "$H2_N" -c "$CONNS" -m "$H2_STREAMS" "${H2L[@]}" "$URL" || fail "h2 load failed (see $OUT/h2.txt)"
end_window h2 "$H2_N" requests
h2_ok "$OUT/h2.txt" "$H2_N" || fail "h2: not every request got a 2xx (see $OUT/h2.txt)"
grep -q '^Application protocol: h2' "$OUT/h2.txt" || fail "h2: h2 was not negotiated (see $OUT/h2.txt)"

# 3. ws_echo: WebSocket echo through /ws
# ws_msgs FILE: the echoed messages from wsload-rs's JSON line; fails unless ok and no error
ws_msgs() {
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{"tool"')]
if not rows or not rows[-1].get("ok") or rows[-1].get("errors") != 0:
    sys.exit(1)
print(rows[-1]["messages"])
PY
}
ws_args=(client --connect "$HOST:$PROXY_PORT" --sni "$SNI" --path /ws --conns "$WS_CONNS" --rate "$WS_RATE"
  --size "$WS_SIZE" --open-timeout 60 --ca "$CERT_DIR/ca.crt")
say "ws_echo: warm-up (${WS_WARMUP}s), then $WS_CONNS connections, $WS_SIZE B messages, rate $WS_RATE/s for ${WS_DURATION}s"
{ run_bounded ws_echo.warmup $((WS_WARMUP + 150)) "$WSLOAD" "${ws_args[@]}" --duration "$WS_WARMUP" \
  --deadline $((WS_WARMUP + 120)) && ws_msgs "$OUT/ws_echo.warmup.txt" > /dev/null; } \
  || fail "ws_echo warm-up failed (see $OUT/ws_echo.warmup.txt)"
begin_window
run_bounded ws_echo $((WS_DURATION + 150)) "$WSLOAD" "${ws_args[@]}" --duration "$WS_DURATION" \
  --deadline $((WS_DURATION + 120)) || fail "ws_echo load failed (see $OUT/ws_echo.txt)"
msgs=$(ws_msgs "$OUT/ws_echo.txt") || fail "ws_echo: errors or lost echoes (see $OUT/ws_echo.txt)"
end_window ws_echo "$msgs" messages
if [[ $WS_RATE != 0 ]] && ! python3 -c 'import sys; sys.exit(abs(float(sys.argv[1]) - float(sys.argv[2]) * float(sys.argv[3])) > 1)' \
    "$msgs" "$WS_RATE" "$WS_DURATION"; then
  say "WARNING: ws_echo sent $msgs messages, not WS_RATE x WS_DURATION"
fi

# 4. idle: the same window with no load, to show background work (timers, re-scans)
say "idle: ${IDLE:-10}s without load"
begin_window
sleep "${IDLE:-10}"
end_window idle "${IDLE:-10}" seconds idle

# ---- stop everything, then the summary ---------------------------------------------
say "stopping the proxy (callgrind writes the rest of the run) and the backends"
stop_pid "$TPID" 120
[[ -f $OUT/callgrind.out.$VPID ]] && mv "$OUT/callgrind.out.$VPID" "$OUT/callgrind.rest.out"
for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED[i]}" 30; done
STARTED=()

{
  echo "binary=$BIN"
  echo "sha256=$(sha256sum "$BIN" | cut -c1-16)"
  echo "version=$("$BIN" --version 2>&1 | head -1)"
  echo "date=$(date -Iseconds)"
  echo "valgrind=$(valgrind --version)"
  echo "h2load=$(h2load --version | head -1)"
  echo "harness=$BENCH"
  echo "conns=$CONNS"
  echo "ws_conns=$WS_CONNS"
  echo "load_h1=h2load --h1 -n $H1_N -c $CONNS (keep-alive)"
  echo "load_h2=h2load -n $H2_N -c $CONNS -m $H2_STREAMS"
  echo "load_ws_echo=wsload-rs client --conns $WS_CONNS --size $WS_SIZE --rate $WS_RATE --duration $WS_DURATION (text, echo checked)"
} > "$OUT/meta.txt"

python3 - "$OUT" "$TOP" <<'PY'
"""Per load: Ir total, Ir/op, top functions by exclusive Ir (grouped), handshake share.
Exclusive costs are parsed from the callgrind file itself (name compression,
calls= lines followed by the call's inclusive cost), as callgrind_annotate
3.19's exclusive view puts everything on `clone` for these dumps."""
import collections, json, re, sys
out, top = sys.argv[1], int(sys.argv[2])
meta = dict(l.rstrip("\n").split("=", 1) for l in open(f"{out}/meta.txt") if "=" in l)
NS = {"fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl", "fn": "fn", "cfn": "fn", "ob": "ob", "cob": "ob"}
# the TLS handshake: rustls' server states for ClientHello (key exchange, certificate
# lookup, signature) and Finished, inclusive
HS = re.compile(r"^<rustls::server::(hs::ExpectClientHello|tls13::ExpectFinished|tls12::ExpectFinished) as rustls::common_state::State<.*>>::handle$")

def parse(path):
    names = {"fl": {}, "fn": {}, "ob": {}}
    def res(kind, val):
        m = re.match(r"\((\d+)\)(?: (.*))?$", val)
        if not m:
            return val
        d = names[NS[kind]]
        if m.group(2) is not None:
            d[m.group(1)] = m.group(2)
        return d.get(m.group(1), "?")
    excl = collections.Counter(); fnfile = {}; fnobj = {}
    cur_fn = cur_fl = cur_ob = cfn = None; after_call = False; summary = None; hs = 0
    for line in open(path):
        line = line.rstrip("\n")
        if not line:
            continue
        c = line[0]
        if c.isdigit() or c in "+-*":
            parts = line.split()
            if after_call:
                after_call = False
                if len(parts) >= 2 and cfn and HS.match(cfn) and not HS.match(cur_fn or ""):
                    hs += int(parts[-1])
                continue
            if len(parts) >= 2:
                excl[cur_fn] += int(parts[-1])
            continue
        if line.startswith("summary:"):
            summary = int(line.split()[1]); continue
        if "=" not in line:
            continue
        k, v = line.split("=", 1)
        if k in NS:
            r = res(k, v)
            if k == "fn":
                cur_fn = r; fnfile.setdefault(r, cur_fl); fnobj.setdefault(r, cur_ob)
            elif k == "fl":
                cur_fl = r
            elif k == "ob":
                cur_ob = r
            elif k == "cfn":
                cfn = r
        elif k == "calls":
            after_call = True
    return excl, fnfile, fnobj, summary, hs

def cat(fn, fl, ob):
    s = fn + " " + (fl or "")
    if ob and ("libc.so" in ob or "ld-linux" in ob):
        if re.search(r"malloc|free|calloc|realloc|tcache|_int_|cfree|unlink", fn): return "malloc/free"
        if re.search(r"mem(cpy|move|set|cmp)|str", fn): return "libc memcpy/memset"
        return "syscalls/libc"
    if re.search(r"aws_lc|aws-lc|ring::|ring_core|p256|sha256|gcm|aes_|_hw_|rustls::crypto|ghash|chacha", s): return "crypto"
    if re.search(r"rustls", s): return "rustls"
    if re.search(r"\bh2::|/h2-0", s): return "h2"
    if re.search(r"http::header|header/map|HeaderMap|HeaderName|HeaderValue|/http-1", s): return "HeaderMap/http"
    if re.search(r"httparse", s): return "httparse"
    if re.search(r"hyper_util.*client|hyper-util.*client|pool", s): return "hyper_util client"
    if re.search(r"hyper::client|hyper-1.*client", s): return "hyper client"
    if re.search(r"hyper_util|hyper-util", s): return "hyper_util"
    if re.search(r"hyper", s): return "hyper"
    if re.search(r"tokio::io::util::copy|copy_bidirectional", s): return "tokio copy"
    if re.search(r"mio::|tokio::net|tokio::runtime::io|registration|poll_evented|/mio-", s): return "tokio I/O"
    if re.search(r"tokio::time|/time/", s) and "tokio" in s: return "tokio timers"
    if re.search(r"tokio|futures|task_tracker|tokio_util", s): return "tokio sched/sync"
    if re.search(r"tracing", s): return "tracing"
    if re.search(r"sniwalk", s): return "sniwalk"
    if re.search(r"sip.rs|hash|fnv|ahash|foldhash", s): return "hashing"
    if re.search(r"bytes", s): return "bytes"
    if re.search(r"alloc|raw_vec|__rust|/core/|/alloc/|/std/", s): return "Rust std/alloc"
    if ob and "vgpreload" in ob: return "malloc/free"
    return "other"

loads = []
for l in open(f"{out}/loads.tsv"):
    name, ops, unit, wall = l.rstrip("\n").split("\t")
    excl, fnfile, fnobj, summary, hs = parse(f"{out}/callgrind.{name}.out")
    tot = sum(excl.values())
    ir = summary if summary is not None else tot
    ops = int(ops)
    tops = [{"fn": fn, "ir": v, "group": cat(fn, fnfile.get(fn), fnobj.get(fn))} for fn, v in excl.most_common(top)]
    loads.append({"load": name, "ops": ops, "unit": unit, "wall_s": int(wall), "ir": ir, "ir_per_op": ir / ops,
                  "excl_sum": tot, "handshake_ir": hs, "top": tops, "file": f"callgrind.{name}.out"})

L = []
L.append(f"# callgrind instruction counts: {meta['binary']}\n")
L.append(f"- binary: `{meta['binary']}` (sha256 {meta['sha256']}…, `{meta['version']}`)")
L.append(f"- {meta['date']}, {meta['valgrind']} (`--tool=callgrind --dump-instr=no`), {meta['h2load']}, harness `{meta['harness']}`")
L.append("- proxy: benches/peer.sh config (1,000 domains + wildcard, worker_threads 1, /ws to the wsload-rs echo server), backend nginx `return 200 \"ok\"`")
L.append(f"- loads: h1 `{meta['load_h1']}`; h2 `{meta['load_h2']}`; ws_echo `{meta['load_ws_echo']}`")
L.append("- each window: warm-up excluded (counters zeroed after it), connections' close included; Ir of the proxy process only (all threads, user space)\n")
L.append("| load | ops | Ir total | Ir/op |")
L.append("|---|---:|---:|---:|")
for d in loads:
    L.append(f"| {d['load']} | {d['ops']:,} {d['unit']} | {d['ir']:,} | {d['ir_per_op']:,.0f} |")
L.append("")
L.append("Notes:")
hs = ", ".join(f"{d['load']} {d['handshake_ir']/1e6:.1f} M Ir = {100*d['handshake_ir']/d['ir']:.2f} % "
               f"({d['handshake_ir']/d['ops']:,.0f} Ir/op)" for d in loads)
L.append(f"- TLS handshakes: each window opens {meta['conns']} (h1, h2) or {meta['ws_conns']} (ws_echo) connections, "
         f"each with a full TLS 1.3 handshake. rustls' ClientHello+Finished handling, inclusive: {hs}.")
L.append("- wall time of each window under valgrind: " + ", ".join(f"{d['load']} {d['wall_s']} s" for d in loads) + ".")
try:
    name, secs, _, wall = open(f"{out}/idle.tsv").read().split("\t")
    excl, fnfile, fnobj, summary, _ = parse(f"{out}/callgrind.{name}.out")
    busiest = ", ".join(f"`{fn[:60]}` {v:,}" for fn, v in excl.most_common(3))
    L.append(f"- background: {secs} s without load (after the loads, callgrind.idle.out): {summary:,} Ir "
             f"(top: {busiest}). A window of the loads above lasts {min(d['wall_s'] for d in loads)}-"
             f"{max(d['wall_s'] for d in loads)} s, so background work is about "
             f"{summary / int(secs) * max(d['wall_s'] for d in loads) / min(d['ir'] for d in loads) * 100:.2f} % of a window or less.")
except (OSError, ValueError) as e:
    L.append(f"- background: no idle window ({e})")
bad = [d["load"] for d in loads if abs(d["excl_sum"] - d["ir"]) > 0.001 * d["ir"]]
if bad:
    L.append(f"- WARNING: the exclusive costs do not add up to the dump's total for {', '.join(bad)}.")
L.append("- compare two binaries by Ir/op. The same binary repeats within about 0.5 % for h1 and h2 and about 4 % "
         "for ws_echo (tokio wake-ups per message depend on timing).")
for d in loads:
    L.append(f"\n## {d['load']}: top {top} functions by exclusive Ir ({d['file']})\n")
    L.append(f"| Ir | % | Ir/op | function | group |")
    L.append("|---:|---:|---:|---|---|")
    for t in d["top"]:
        fn = t["fn"] if len(t["fn"]) <= 110 else t["fn"][:109] + "…"
        L.append(f"| {t['ir']:,} | {100*t['ir']/d['ir']:.2f} | {t['ir']/d['ops']:,.0f} | `{fn}` | {t['group']} |")
open(f"{out}/summary.md", "w").write("\n".join(L) + "\n")
json.dump({"meta": meta, "loads": loads}, open(f"{out}/summary.json", "w"), indent=1)
PY
say "done: $OUT/summary.md"
cat "$OUT/summary.md"
