#!/usr/bin/env bash
# Peer plug-in for the side-by-side benchmark harness (../shared/bench,
# following its peers/_template.sh): sniwalk as TLS terminator.
#
#   benches/peer.sh start CERT_DIR BACKEND_ADDR PORT RUN_DIR   (start in background, write RUN_DIR/pids)
#   benches/peer.sh stop  RUN_DIR
#   benches/peer.sh version
# Env from the harness: WORKERS (= CPUs given to the proxy), BIND_HOST, NOFILE,
# BENCH (the harness directory). The harness runs `start` under
# `taskset -c $PROXY_CPUS`.
#
# Run it through the harness from the repository root:
#     PORT=8446 ../shared/bench/run.sh benches/peer.sh hs_full,h1_keepalive
# (the harness names a peer after the script's file name, so results are
# filed as "peer"; benches/side_by_side.sh calls it through a symlink named
# sniwalk.sh so they are filed as "sniwalk").
#
# Config (RUN_DIR/proxy.yaml): the wildcard certificate on the master domain
# example.test (names below it walk up to it), one domain with its own
# certificate per name in CERT_DIR/names.txt, the harness's default
# certificate, tokio worker threads = WORKERS, one https listener whose
# only route forwards everything to BACKEND_ADDR, no access log. With
# WS_BACKEND_ADDR (the harness's ws_* workloads) a first route sends /ws
# there, as the nginx plug-in's `location /ws` does.
# With BACKENDS=2 each route has two members behind `balance: least_conn`:
# the backend by its address and by the name d0000.example.test (which the
# harness's /etc/hosts line points at 127.0.0.1). The same backend process
# either way, so a run measures what balancing costs sniwalk, not a second
# backend's capacity.
# The harness's .pem files are leaf + PKCS#8 key, a valid certificate_pem.
set -euo pipefail
cmd=${1:-}; shift || true
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
SNIWALK_BIN=${SNIWALK_BIN:-$here/../target/release/sniwalk}
case $cmd in
version)
  "$SNIWALK_BIN" --version 2>&1 | head -1
  ;;
start)
  CERT_DIR=$1 BACKEND=$2 PORT=$3 RUN=$4
  mkdir -p "$RUN"
  CERT_DIR=$(cd "$CERT_DIR" && pwd) RUN=$(cd "$RUN" && pwd)   # the config needs absolute paths
  {
    cat <<CONF
master_domain: example.test
state_dir: "$RUN/state"
default_certificate: "$CERT_DIR/default.pem"
worker_threads: ${WORKERS:-1}
domains:
  example.test:
    certificate_file: "$CERT_DIR/wildcard.pem"
CONF
    while read -r n; do
      [[ -n $n ]] || continue
      printf '  %s:\n    certificate_file: "%s"\n' "$n" "$CERT_DIR/sites/$n.pem"
    done < "$CERT_DIR/names.txt"
    cat <<CONF
listeners:
  - name: bench
    kind: https
    bind: "${BIND_HOST:-127.0.0.1}:$PORT"
    access_log: false
    max_connections: 20000
    # The harness: keep-alive idle timeout of at least 300 s; tunnels 1 h
    # like nginx's proxy_read_timeout on /ws.
    idle_timeout: 300s
    tunnel_idle_timeout: 1h
    routes:
CONF
    # ws_* workloads only (the harness sets WS_BACKEND_ADDR): /ws goes to the
    # WebSocket echo backend. Without it the routes are unchanged.
    target() {   # the route's backend lines for ADDR
      if [[ ${BACKENDS:-1} == 2 ]]; then
        printf '        backends: ["http://%s", "http://d0000.example.test:%s"]\n        balance: least_conn\n' "$1" "${1##*:}"
      else
        printf '        backend: "http://%s"\n' "$1"
      fi
    }
    if [[ -n ${WS_BACKEND_ADDR:-} ]]; then
      printf '      - host: "*"\n        path: /ws\n'
      target "$WS_BACKEND_ADDR"
    fi
    printf '      - host: "*"\n'
    target "$BACKEND"
  } > "$RUN/proxy.yaml"
  RUST_LOG=warn "$SNIWALK_BIN" run --config "$RUN/proxy.yaml" > "$RUN/stdout.log" 2>&1 &
  pid=$!
  echo "$pid" > "$RUN/pids"
  # Fail at once (not after the harness's 120 s readiness wait) if it exits
  # on start, e.g. on a configuration error; return as soon as it listens.
  for ((i = 0; i < 50; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" && rc=0 || rc=$?
      echo "sniwalk exited at start (status $rc):" >&2
      cat "$RUN/stdout.log" >&2
      exit 1
    fi
    (exec 3<>"/dev/tcp/${BIND_HOST:-127.0.0.1}/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  ;;
stop)
  RUN=$1
  # stop_pids: TERM, wait up to 10 s, then KILL, only these PIDs. BENCH is
  # exported by the harness; else the harness beside the repository.
  # shellcheck source=/dev/null
  source "${BENCH:-$here/../../shared/bench}/lib/common.sh"
  stop_pids "$RUN/pids"
  ;;
*) echo "usage: $0 start CERT_DIR BACKEND_ADDR PORT RUN_DIR | stop RUN_DIR | version" >&2; exit 2 ;;
esac
