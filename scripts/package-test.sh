#!/usr/bin/env bash
# The Debian package, built and used for real (README, "Install (Debian
# package)"); scripts/test.sh runs it after the cargo tests:
#     bash scripts/package-test.sh
#
# Builds the .deb (scripts/build-deb.sh: the one release build of the
# suite), checks its contents, control fields, maintainer scripts, lintian
# and the unit's `systemd-analyze security` score, then INSTALLS it on this
# machine, starts the installed binary as the `sniwalk` user with only the
# unit's capability and a NOTIFY_SOCKET of its own (traced with strace, so
# the unit's sandbox is checked too: scripts/check-sandbox-trace.py),
# talks to it on ports 443, 80 and the admin port, reloads and stops it,
# then removes and purges the package.
#
# Needs root, a Debian machine, and ports 80, 443 and 9901 free; it refuses
# to run where the sniwalk package is already installed (it would purge
# it). Each check prints `package NAME: ok` or `package NAME: FAILED`;
# the exit status is 1 when any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

THRESHOLD=1.4 # the highest `systemd-analyze security` exposure accepted (measured: 1.4)
UNIT=/lib/systemd/system/sniwalk.service
CONFIG=/etc/sniwalk/proxy.yaml
STATE=/var/lib/sniwalk
WAIT_SECS=30

passed=0
failed=0
ok() {
  echo "package $1: ok"
  passed=$((passed + 1))
}
fail() {
  echo "package $1: FAILED: $2"
  failed=$((failed + 1))
}
# check NAME DESCRIPTION COMMAND...: runs COMMAND (in this shell: it may
# signal and wait for the service), ok when it succeeds; shows its output.
check() {
  local name=$1 what=$2
  shift 2
  if "$@" >"$check_out" 2>&1; then
    ok "$name"
    sed 's/^/    /' "$check_out"
  else
    fail "$name" "$what"$'\n'"$(cat "$check_out")"
  fi
}
finish() {
  echo "package test: $passed passed, $failed failed ($(($(date +%s) - started)) s)"
  [ "$failed" = 0 ]
  exit $?
}
started=$(date +%s)
work=$(mktemp -d)
chmod 0711 "$work"
check_out=$work/check.out
trap 'rm -rf "$work"' EXIT

# --- preconditions: say what is wrong rather than skip -------------------
if [ "$(id -u)" != 0 ]; then
  fail preconditions "must run as root (it installs the package); CI runs as root"
  finish
fi
if dpkg-query -W -f='${Status}' sniwalk 2>/dev/null | grep -q 'installed'; then
  fail preconditions "the sniwalk package is installed on this machine; this test installs and purges it: purge it first (dpkg --purge sniwalk) or run on a CI machine"
  finish
fi
busy=""
for port in 80 443 9901; do
  if [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then busy="$busy $port"; fi
done
if [ -n "$busy" ]; then
  fail preconditions "port(s)$busy already in use on this machine (the packaged proxy.yaml binds 80, 443 and 127.0.0.1:9901): stop what listens there ($(ss -Hltnp | grep -E ":(${busy// /|})\b" | tr -s ' ' | cut -c1-200))"
  finish
fi
for tool in dpkg-deb lintian systemd-analyze setpriv strace python3 curl openssl ss; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    fail preconditions "$tool is missing (scripts/test.sh installs it)"
    finish
  fi
done

pids=()
installed_here=""
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  if [ -n "$installed_here" ] && dpkg-query -W sniwalk >/dev/null 2>&1; then
    dpkg --purge sniwalk >/dev/null 2>&1
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- the package ---------------------------------------------------------
build_started=$(date +%s)
if deb=$(bash scripts/build-deb.sh 2>"$work/build.log" | tail -1) && [ -f "$deb" ]; then
  deb=$(realpath "$deb")
  ok build
  grep '^build-deb:' "$work/build.log"
else
  fail build "scripts/build-deb.sh failed:"$'\n'"$(tail -30 "$work/build.log")"
  finish
fi
echo "package: built in $(($(date +%s) - build_started)) s: $deb"

version=$(cargo pkgid --offline 2>/dev/null || cargo pkgid)
version="${version##*[#@]}-1"
arch=$(dpkg --print-architecture)

contents=$(dpkg-deb -c "$deb")
contents_ok() {
  local line mode path missing=""
  # mode and path of every file the package must hold
  while read -r mode path; do
    line=$(awk -v p="./$path" '$6 == p' <<<"$contents")
    if [ -z "$line" ]; then
      missing="$missing"$'\n'"missing: $path"
    elif [ "$(awk '{print $1" "$2}' <<<"$line")" != "$mode root/root" ]; then
      missing="$missing"$'\n'"$path: $(awk '{print $1" "$2}' <<<"$line"), want $mode root/root"
    fi
  done <<'EOF'
-rwxr-xr-x usr/bin/sniwalk
-rw-r--r-- etc/sniwalk/proxy.yaml
-rw-r--r-- lib/systemd/system/sniwalk.service
drwxr-xr-x var/lib/sniwalk/
drwxr-xr-x var/log/sniwalk/
-rw-r--r-- usr/share/doc/sniwalk/copyright
-rw-r--r-- usr/share/doc/sniwalk/changelog.Debian.gz
-rw-r--r-- usr/share/doc/sniwalk/README.md.gz
-rw-r--r-- usr/share/man/man1/sniwalk.1.gz
-rw-r--r-- usr/share/bash-completion/completions/sniwalk
-rw-r--r-- usr/share/zsh/vendor-completions/_sniwalk
-rw-r--r-- usr/share/fish/vendor_completions.d/sniwalk.fish
-rw-r--r-- usr/share/sniwalk/proxy.schema.json
EOF
  [ -z "$missing" ] || { echo "$missing"; echo "$contents"; return 1; }
}
check contents "dpkg-deb -c: a path is missing or has the wrong mode" contents_ok

control_ok() {
  local field want got
  for pair in "Package=sniwalk" "Version=$version" "Architecture=$arch"; do
    field=${pair%%=*} want=${pair#*=}
    got=$(dpkg-deb -f "$deb" "$field")
    [ "$got" = "$want" ] || { echo "$field: $got, want $want"; return 1; }
  done
  got=$(dpkg-deb -f "$deb" Depends)
  [[ "$got" =~ libc6\ \(\>=\ [0-9.]+\) ]] || { echo "Depends lacks libc6 (>= ...): $got"; return 1; }
  [[ "$got" == *adduser* ]] || { echo "Depends lacks adduser (postinst uses it): $got"; return 1; }
  dpkg-deb -e "$deb" "$work/control"
  [ "$(cat "$work/control/conffiles")" = "$CONFIG" ] || { echo "conffiles: $(cat "$work/control/conffiles")"; return 1; }
  for script in postinst prerm postrm; do
    [ -x "$work/control/$script" ] || { echo "$script is missing or not executable"; return 1; }
    sh -n "$work/control/$script" || { echo "$script: shell syntax"; return 1; }
  done
  echo "Depends: $(dpkg-deb -f "$deb" Depends)"
}
check control "dpkg-deb -I: control fields or maintainer scripts" control_ok

lintian_ok() {
  # --fail-on error: warnings are reported, errors fail (overrides, each
  # with its reason, are in packaging/debian/lintian-overrides).
  lintian --fail-on error --tag-display-limit 0 "$deb"
}
check lintian "lintian reports errors" lintian_ok

dpkg-deb -x "$deb" "$work/root"
security_ok() {
  local out score
  out=$(systemd-analyze security --offline=true --no-pager "$work/root$UNIT" 2>&1)
  score=$(sed -n 's/.*Overall exposure level for sniwalk.service: \([0-9.]*\).*/\1/p' <<<"$out")
  [ -n "$score" ] || { echo "$out"; return 1; }
  echo "systemd-analyze security: exposure $score (threshold $THRESHOLD)"
  awk -v s="$score" -v t="$THRESHOLD" 'BEGIN { exit !(s <= t) }' || { grep '✗' <<<"$out"; return 1; }
}
check security "systemd-analyze security: exposure above $THRESHOLD" security_ok

# --- installed for real --------------------------------------------------
installed_here=yes
check install "apt-get install ./$(basename "$deb")" \
  env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$deb"
if ! [ -x /usr/bin/sniwalk ]; then
  fail install "nothing installed; the rest cannot run"
  finish
fi

# After installing: the binary and the man page exist, as on a server.
verify_ok() {
  local out
  out=$(systemd-analyze verify "$UNIT" 2>&1) || { echo "$out"; return 1; }
  [ -z "$out" ] || { echo "$out"; return 1; }
}
check verify "systemd-analyze verify $UNIT is not clean" verify_ok

user_ok() {
  local entry
  entry=$(getent passwd sniwalk) || { echo "no sniwalk user"; return 1; }
  IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
  [ "$uid" -lt 1000 ] || { echo "sniwalk is not a system user (uid $uid)"; return 1; }
  [ "$home" = "$STATE" ] || { echo "home $home, want $STATE"; return 1; }
  [ "$shell" = /usr/sbin/nologin ] || { echo "shell $shell, want /usr/sbin/nologin"; return 1; }
  getent group sniwalk >/dev/null || { echo "no sniwalk group"; return 1; }
  for dir in "$STATE" /var/log/sniwalk; do
    [ "$(stat -c '%U:%G %a' "$dir")" = "sniwalk:sniwalk 750" ] ||
      { echo "$dir: $(stat -c '%U:%G %a' "$dir"), want sniwalk:sniwalk 750"; return 1; }
  done
  [ "$(stat -c '%U:%G %a' /etc/sniwalk/admin.token)" = "root:sniwalk 640" ] ||
    { echo "admin.token: $(stat -c '%U:%G %a' /etc/sniwalk/admin.token), want root:sniwalk 640"; return 1; }
  [ "$(tr -d '\n' </etc/sniwalk/admin.token | wc -c)" = 64 ] || { echo "admin.token is not 32 bytes in hex"; return 1; }
  dpkg-query -W -f='${Conffiles}\n' sniwalk | grep -q "^ $CONFIG " || { echo "dpkg does not track $CONFIG as a conffile"; return 1; }
}
check user "the sniwalk user, $STATE or the admin token" user_ok

# As the unit runs it: the sniwalk user, CAP_NET_BIND_SERVICE alone (in
# the ambient set, as AmbientCapabilities= does), no new privileges, the
# unit's umask and environment, / as the working directory.
as_service() {
  (
    cd /
    umask 0077
    exec setpriv --reuid=sniwalk --regid=sniwalk --init-groups \
      --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
      --bounding-set=-all,+net_bind_service --no-new-privs \
      env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      HOME="$STATE" USER=sniwalk LOGNAME=sniwalk SHELL=/usr/sbin/nologin LANG=C.UTF-8 \
      ${NOTIFY_SOCKET:+NOTIFY_SOCKET=$NOTIFY_SOCKET} "$@"
  )
}
check check_config "sniwalk check --config $CONFIG as the sniwalk user" \
  as_service /usr/bin/sniwalk check --config "$CONFIG"

# The service manager's end of NOTIFY_SOCKET: each datagram as one line.
cat >"$work/listen.py" <<'EOF'
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
with open(out, "a", buffering=1) as f:
    while True:
        f.write(s.recv(4096).decode(errors="replace").strip().replace("\n", " | ") + "\n")
EOF
python3 "$work/listen.py" "$work/notify" "$work/notifications" &
pids+=($!)
disown $!
for _ in $(seq 50); do [ -S "$work/notify" ] && break; sleep 0.1; done
touch "$work/notifications"

# wait_for COUNT PATTERN: until COUNT notifications match PATTERN.
wait_for() {
  local deadline=$(($(date +%s) + WAIT_SECS))
  while [ "$(grep -c -- "$2" "$work/notifications")" -lt "$1" ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "waited ${WAIT_SECS}s for notification #$1 matching '$2'; got:"
      cat "$work/notifications"
      echo "log:"
      tail -20 "$work/sniwalk.log"
      return 1
    fi
    sleep 0.1
  done
}

(
  cd /
  umask 0077
  exec strace -f -qq -y -o "$work/trace" -- \
    setpriv --reuid=sniwalk --regid=sniwalk --init-groups \
    --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
    --bounding-set=-all,+net_bind_service --no-new-privs \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$STATE" USER=sniwalk LOGNAME=sniwalk SHELL=/usr/sbin/nologin LANG=C.UTF-8 \
    NOTIFY_SOCKET="$work/notify" /usr/bin/sniwalk run --config "$CONFIG"
) >"$work/sniwalk.log" 2>&1 &
tracer=$!
pids+=("$tracer")

check ready "READY=1 from the service" wait_for 1 'READY=1'
service_pid=$(pgrep -P "$tracer" -x sniwalk || true)
[ -n "$service_pid" ] && pids+=("$service_pid")

https_ok() {
  local subject code
  subject=$(openssl s_client -connect 127.0.0.1:443 -servername example.com </dev/null 2>/dev/null |
    openssl x509 -noout -subject) || { echo "no TLS handshake on 127.0.0.1:443"; return 1; }
  [[ "$subject" == *"sniwalk self-signed"* ]] || { echo "not the generated default certificate: $subject"; return 1; }
  code=$(curl -sk --max-time 10 -o "$work/health" -w '%{http_code}' https://127.0.0.1/health)
  [ "$code" = 200 ] && [ "$(cat "$work/health")" = ok ] || { echo "GET https://127.0.0.1/health: $code $(cat "$work/health")"; return 1; }
  code=$(curl -sk --max-time 10 -o /dev/null -w '%{http_code}' https://127.0.0.1/)
  [ "$code" = 200 ] || { echo "GET https://127.0.0.1/ (status page): $code"; return 1; }
}
check https "port 443 with the generated default certificate" https_ok

http_ok() {
  local answer
  answer=$(curl -s --max-time 10 -o /dev/null -w '%{http_code} %{redirect_url}' http://127.0.0.1/some/path)
  [ "$answer" = "308 https://127.0.0.1/some/path" ] || { echo "GET http://127.0.0.1/some/path: $answer"; return 1; }
}
check http "port 80 redirects to https://" http_ok

admin_ok() {
  local code
  code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' http://127.0.0.1:9901/status)
  [ "$code" = 401 ] || { echo "GET /status without the token: $code, want 401"; return 1; }
  code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer $(tr -d '\n' </etc/sniwalk/admin.token)" http://127.0.0.1:9901/status)
  [ "$code" = 200 ] || { echo "GET /status with the token: $code, want 200"; return 1; }
  /usr/bin/sniwalk status --config "$CONFIG" >/dev/null || { echo "sniwalk status failed"; return 1; }
}
check admin "the admin API on 127.0.0.1:9901 with the packaged token" admin_ok

reload_ok() {
  [ -n "$service_pid" ] || { echo "no sniwalk process under strace"; return 1; }
  kill -HUP "$service_pid"
  wait_for 1 'RELOADING=1' && wait_for 2 'READY=1' || return 1
  # RELOADING=1 came before the second READY=1.
  awk '/RELOADING=1/ { r = NR } /READY=1/ { n++; if (n == 2) s = NR } END { exit !(r && s > r) }' \
    "$work/notifications" || { cat "$work/notifications"; return 1; }
}
check reload "SIGHUP: RELOADING=1, then READY=1" reload_ok

state_ok() {
  local foreign
  [ -f "$STATE/default.pem" ] || { echo "no $STATE/default.pem"; ls -la "$STATE"; return 1; }
  [ "$(stat -c '%U %a' "$STATE/default.pem")" = "sniwalk 600" ] ||
    { echo "default.pem: $(stat -c '%U %a' "$STATE/default.pem"), want sniwalk 600"; return 1; }
  foreign=$(find "$STATE" -mindepth 1 ! -user sniwalk)
  [ -z "$foreign" ] || { echo "not owned by sniwalk: $foreign"; return 1; }
}
check state "files under $STATE" state_ok

stop_ok() {
  [ -n "$service_pid" ] || { echo "no sniwalk process under strace"; return 1; }
  kill -TERM "$service_pid"
  wait_for 1 'STOPPING=1' || return 1
  local status
  wait "$tracer"
  status=$?
  [ "$status" = 0 ] || { echo "exit status $status, want 0"; tail -20 "$work/sniwalk.log"; return 1; }
}
check stop "SIGTERM: STOPPING=1, then exit 0" stop_ok
echo "package: notifications received:"
sed 's/^/    /' "$work/notifications"

check sandbox "the trace breaks the unit's sandbox (scripts/check-sandbox-trace.py)" \
  python3 scripts/check-sandbox-trace.py "$UNIT" "$work/trace"
# The checker itself: the same trace with two planted violations fails.
checker_ok() {
  { cat "$work/trace"
    echo '1 openat(AT_FDCWD</>, "/etc/sniwalk/planted", O_WRONLY|O_CREAT|O_CLOEXEC, 0600) = 3'
    echo '1 ptrace(PTRACE_TRACEME) = 0'
  } >"$work/trace.planted"
  local out
  out=$(python3 scripts/check-sandbox-trace.py "$UNIT" "$work/trace.planted") && { echo "passed: $out"; return 1; }
  grep -q 'read-only' <<<"$out" && grep -q 'system call ptrace' <<<"$out" || { echo "$out"; return 1; }
}
check sandbox_checker "check-sandbox-trace.py misses planted violations" checker_ok

# --- upgrade, remove, purge ----------------------------------------------
reinstall_ok() {
  echo "# edited by the package test" >>"$CONFIG"
  local token
  token=$(cat /etc/sniwalk/admin.token)
  DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" >/dev/null || return 1
  grep -q '^# edited by the package test$' "$CONFIG" || { echo "the edited conffile was replaced"; return 1; }
  [ "$(cat /etc/sniwalk/admin.token)" = "$token" ] || { echo "the admin token was replaced"; return 1; }
}
check reinstall "a reinstall keeps the edited conffile and the token" reinstall_ok

remove_ok() {
  dpkg --remove sniwalk >/dev/null || return 1
  [ ! -e /usr/bin/sniwalk ] || { echo "/usr/bin/sniwalk left"; return 1; }
  [ -f "$CONFIG" ] || { echo "remove took the conffile (only purge may)"; return 1; }
  [ -f "$STATE/default.pem" ] || { echo "remove took the state (only purge may)"; return 1; }
}
check remove "dpkg --remove keeps configuration and state" remove_ok

purge_ok() {
  dpkg --purge sniwalk >/dev/null || return 1
  local left
  for left in "$STATE" /var/log/sniwalk "$CONFIG" /etc/sniwalk/admin.token /etc/sniwalk "$UNIT"; do
    [ ! -e "$left" ] || { echo "$left left after purge"; return 1; }
  done
  getent passwd sniwalk >/dev/null || { echo "the sniwalk user was removed (Debian keeps it)"; return 1; }
}
check purge "dpkg --purge removes state, logs, conffile and token" purge_ok

echo "package: $(($(date +%s) - started)) s in all"
finish
