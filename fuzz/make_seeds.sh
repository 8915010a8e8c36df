#!/usr/bin/env bash
# Regenerates the certificate seeds of fuzz/corpus/pem and
# fuzz/corpus/admin_body with openssl (small keys: EC, plus one RSA).
# The other seeds are hand-written and kept as they are.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pem=corpus/pem
admin=corpus/admin_body
mkdir -p "$pem" "$admin"

cert() { # NAME KEYFILE [ISSUER_CERT ISSUER_KEY]
  local name=$1 key=$2
  if [ $# -gt 2 ]; then
    openssl req -new -key "$key" -subj "/CN=$name" -out "$tmp/$name.csr" 2>/dev/null
    openssl x509 -req -in "$tmp/$name.csr" -CA "$3" -CAkey "$4" -days 30 \
      -extfile <(printf 'subjectAltName=DNS:%s,DNS:*.%s\n' "$name" "$name") \
      -out "$tmp/$name.crt" 2>/dev/null
  else
    openssl req -x509 -new -key "$key" -subj "/CN=$name" -days 30 \
      -addext "subjectAltName=DNS:$name" -out "$tmp/$name.crt" 2>/dev/null
  fi
}

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/p256.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out "$tmp/p384.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out "$tmp/p521.key" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$tmp/ed.key" 2>/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/rsa.key" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ca.key" 2>/dev/null

cert ca.example "$tmp/ca.key"
cert example.com "$tmp/p256.key" "$tmp/ca.example.crt" "$tmp/ca.key"
cert p384.example.com "$tmp/p384.key"
cert p521.example.com "$tmp/p521.key"
cert ed.example.com "$tmp/ed.key"
cert rsa.example.com "$tmp/rsa.key"

# PKCS#8 key, leaf, chain; ACME markers in front (as stored by ACME).
{ echo "acme_issued=1764680000"; echo "acme_directory=https://acme.example/dir"
  cat "$tmp/p256.key" "$tmp/example.com.crt" "$tmp/ca.example.crt"; } >"$pem/p256-chain.pem"
# Chain before key, free text between blocks (OpenSSL's pkcs12 output style).
{ echo "subject=/CN=ca.example"; cat "$tmp/ca.example.crt"; echo "Bag Attributes"
  cat "$tmp/example.com.crt" "$tmp/p256.key"; } >"$pem/chain-first.pem"
# SEC1 (`EC PRIVATE KEY`) with `EC PARAMETERS`, CRLF line ends.
{ openssl ec -in "$tmp/p384.key" -param_out 2>/dev/null; openssl ec -in "$tmp/p384.key" 2>/dev/null
  cat "$tmp/p384.example.com.crt"; } | sed 's/$/\r/' >"$pem/p384-sec1-crlf.pem"
{ openssl ec -in "$tmp/p521.key" 2>/dev/null; cat "$tmp/p521.example.com.crt"; } >"$pem/p521-sec1.pem"
{ cat "$tmp/p521.key" "$tmp/p521.example.com.crt"; } >"$pem/p521-pkcs8.pem"
{ cat "$tmp/ed.key" "$tmp/ed.example.com.crt"; } >"$pem/ed25519.pem"
# PKCS#1 (`RSA PRIVATE KEY`).
{ openssl rsa -in "$tmp/rsa.key" -traditional 2>/dev/null; cat "$tmp/rsa.example.com.crt"; } >"$pem/rsa-pkcs1.pem"
# Flattened onto one line by a web form.
tr '\n' ' ' <"$pem/p256-chain.pem" >"$pem/p256-one-line.pem"
# Encrypted keys: PKCS#8 and legacy Proc-Type headers.
{ openssl pkcs8 -topk8 -in "$tmp/p256.key" -passout pass:x -v2 aes-128-cbc 2>/dev/null
  cat "$tmp/example.com.crt"; } >"$pem/encrypted-pkcs8.pem"
{ openssl ec -in "$tmp/p256.key" -aes128 -passout pass:x 2>/dev/null
  cat "$tmp/example.com.crt"; } >"$pem/encrypted-legacy.pem"
# A key that matches none of the certificates.
{ cat "$tmp/p384.key" "$tmp/example.com.crt"; } >"$pem/key-mismatch.pem"
# Cut off and damaged texts.
head -c 400 "$pem/p256-chain.pem" >"$pem/cut-off.pem"
sed '3s/[A-Za-z]/!/' "$pem/p256-chain.pem" >"$pem/bad-base64.pem"
printf 'just some text\nkey=value\n' >"$pem/no-blocks.pem"

# Admin API: PUT /domains/{name}/certificate with JSON (base64 DER) or text.
der() { openssl "$1" -in "$2" -outform DER 2>/dev/null | base64 -w0; }
printf '{"privatekey":"%s","certificate":"%s","chain":["%s"]}' \
  "$(openssl pkey -in "$tmp/p256.key" -outform DER | base64 -w0)" \
  "$(der x509 "$tmp/example.com.crt")" "$(der x509 "$tmp/ca.example.crt")" >"$admin/import-json-pkcs8.json"
printf '{"privatekey":"%s","certificate":"%s"}' \
  "$(openssl ec -in "$tmp/p384.key" -outform DER 2>/dev/null | base64 -w0)" \
  "$(der x509 "$tmp/p384.example.com.crt")" >"$admin/import-json-sec1.json"
cp "$pem/p256-chain.pem" "$admin/import-text.pem"
