#!/usr/bin/env bash
# Upstream certificates for `make bench`, all signed by the bench CA and all on ONE key
# (so that one SPKI pin matches every one of them while each certificate, and so each
# cache key, is distinct):
#   OUT/key.pem             the shared EC P-256 key
#   OUT/orders.pem          the single-upstream certificate (SNI orders.internal)
#   OUT/rot/uNNNN.pem       COUNT certificates for the rotation listener (SNI uNNNN.DOMAIN)
# Every certificate: subject C=US,O=Example Corp,CN=orders.internal, the SPIFFE ID
# spiffe://example.org/ns/prod/sa/orders, 365 days from now.
# usage: certs.sh OUT CA_CERT CA_KEY COUNT DOMAIN
set -euo pipefail
out=$1 ca=$2 cakey=$3 count=$4 domain=$5
mkdir -p "$out/rot"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/key.pem" 2>/dev/null
cat > "$out/req.cnf" <<'CNF'
[req]
distinguished_name = dn
x509_extensions = leaf
[dn]
[leaf]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SAN
CNF
issue() { # out-file dns serial
  SAN="DNS:$2,URI:spiffe://example.org/ns/prod/sa/orders" openssl req -x509 -new \
    -config "$out/req.cnf" -key "$out/key.pem" -CA "$ca" -CAkey "$cakey" \
    -subj "/C=US/O=Example Corp/CN=orders.internal" -days 365 -set_serial "$3" -out "$1" 2>/dev/null
}
issue "$out/orders.pem" orders.internal 4096
for ((i = 0; i < count; i++)); do
  name=$(printf 'u%04d' "$i")
  issue "$out/rot/$name.pem" "$name.$domain" $((8192 + i)) &
  # A few openssl processes at a time: the machine is small.
  if (((i + 1) % 8 == 0)); then wait; fi
done
wait
made=$(find "$out/rot" -name 'u*.pem' | wc -l)
[ "$made" -eq "$count" ] || { echo "certs.sh: made $made of $count certificates" >&2; exit 1; }
