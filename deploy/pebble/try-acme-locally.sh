#!/bin/sh
# Try sniwalk's ACME on one machine, with no domain and no internet: Pebble
# (Let's Encrypt's test CA, Debian package `pebble`) issues a certificate
# for shop.test, which sniwalk then serves. README, "Try ACME locally".
#
#   sudo apt-get install pebble curl
#   sh deploy/pebble/try-acme-locally.sh
#
# Everything lives in a new temporary directory (or $WORK); Ctrl-C stops it
# all. The ports below are the defaults; set the variables to change them.
set -eu
SNIWALK=${SNIWALK:-sniwalk}
HTTP_PORT=${HTTP_PORT:-8080}      # sniwalk's http listener: Pebble checks HTTP-01 here
HTTPS_PORT=${HTTPS_PORT:-8443}    # sniwalk's https listener
ACME_PORT=${ACME_PORT:-14000}     # Pebble's ACME directory
ADMIN_PORT=${ADMIN_PORT:-15000}   # Pebble's management API (its root certificate)
DNS_PORT=${DNS_PORT:-8053}        # pebble-challtestsrv: every name is 127.0.0.1
DNS_ADMIN_PORT=${DNS_ADMIN_PORT:-8055}
work=${WORK:-$(mktemp -d)}
cd "$work"
pids=""
stop() {
    kill $pids 2>/dev/null || true
    wait 2>/dev/null || true
    pids=""
}
trap 'stop; echo "stopped; files kept in $work"' EXIT
trap 'exit 130' INT TERM

# 1. Pebble serves its API over HTTPS: give it a certificate for localhost.
"$SNIWALK" selfsigned --name localhost --days 30 --out pebble-tls >/dev/null
cat > pebble.json <<JSON
{ "pebble": {
    "listenAddress": "127.0.0.1:$ACME_PORT",
    "managementListenAddress": "127.0.0.1:$ADMIN_PORT",
    "certificate": "pebble-tls/server.crt",
    "privateKey": "pebble-tls/server.key",
    "httpPort": $HTTP_PORT,
    "tlsPort": $HTTPS_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false } }
JSON

# 2. A DNS server that answers 127.0.0.1 for every name, and Pebble using it.
pebble-challtestsrv -dns01 "127.0.0.1:$DNS_PORT" -defaultIPv6 "" -http01 "" \
    -https01 "" -tlsalpn01 "" -management "127.0.0.1:$DNS_ADMIN_PORT" >challtestsrv.log 2>&1 &
pids="$pids $!"
PEBBLE_VA_NOSLEEP=1 pebble -config pebble.json -dnsserver "127.0.0.1:$DNS_PORT" >pebble.log 2>&1 &
pids="$pids $!"

# Pebble answers before sniwalk asks (else its first order waits for a retry).
tries=0
until curl -sf --cacert pebble-tls/server.crt "https://localhost:$ACME_PORT/dir" >/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 50 ]; then
        echo "Pebble did not start; see $work/pebble.log" >&2
        exit 1
    fi
    sleep 0.2
done

# 3. sniwalk with ACME on for shop.test, trusting Pebble's API certificate.
cat > proxy.yaml <<YAML
master_domain: shop.test
state_dir: state
acme:
  directory: https://localhost:$ACME_PORT/dir
  ca_roots: pebble-tls/server.crt
domains:
  shop.test:
    acme: { enabled: true }
listeners:
  - { name: plain, kind: http, bind: "127.0.0.1:$HTTP_PORT" }
  - name: web
    kind: https
    bind: "127.0.0.1:$HTTPS_PORT"
    routes: [{ host: "*", status_page: true }]
YAML
"$SNIWALK" run --config proxy.yaml >sniwalk.log 2>&1 &
pids="$pids $!"

# 4. Wait for the certificate: served once curl trusts it (Pebble's root).
tries=0
until curl -sf --cacert pebble-tls/server.crt "https://localhost:$ADMIN_PORT/roots/0" >pebble-root.pem &&
    curl -sf --cacert pebble-root.pem --resolve "shop.test:$HTTPS_PORT:127.0.0.1" \
        "https://shop.test:$HTTPS_PORT/" >page.html; do
    tries=$((tries + 1))
    if [ "$tries" -gt 60 ]; then
        echo "no certificate after 60 s; see $work/sniwalk.log and $work/pebble.log" >&2
        exit 1
    fi
    sleep 1
done
echo "shop.test is served with a certificate from Pebble:"
"$SNIWALK" check --config proxy.yaml | grep -E 'NAME|shop.test'
if [ -n "${ONESHOT:-}" ]; then
    exit 0
fi
echo "try: curl --cacert $work/pebble-root.pem --resolve shop.test:$HTTPS_PORT:127.0.0.1 https://shop.test:$HTTPS_PORT/"
echo "Ctrl-C stops Pebble and sniwalk"
wait
