#!/bin/sh
# One-shot PKI for docker-compose.yaml (POSIX sh + openssl; also runs on the host).
#
# Makes, under $PKI_DIR (default /pki), once (kept across restarts):
#   ca/        the internal CA (EC P-256)
#   gateway/   Kong's client certificate (clientAuth)
#   legit/     the legitimate upstream, valid $LEGIT_CERT_DAYS days (default 365)
#   impostor/  same CA, same subject and names, another key
#   next/      a key only: the staged `next` pin of a rotation
# then renders $KONG_CONFIG_TEMPLATE (default /kong-config/kong.yaml) into
# $PKI_DIR/kong.yaml: each line `<indent># @pki:<file>` becomes that file's lines with
# the same indentation, and the placeholder pins become the real ones.
set -eu

PKI_DIR=${PKI_DIR:-/pki}
TEMPLATE=${KONG_CONFIG_TEMPLATE:-/kong-config/kong.yaml}
LEGIT_CERT_DAYS=${LEGIT_CERT_DAYS:-365}
PLACEHOLDER_CURRENT=ZGVtby1waW46bGVnaXQtY3VycmVudC1rZXktc3BraSE=
PLACEHOLDER_NEXT=ZGVtby1waW46bmV4dC1yb3RhdGlvbi1rZXktc3BraSE=
SANS="URI:spiffe://example.org/ns/prod/sa/orders,DNS:orders.internal"

key() { # dir
  mkdir -p "$1"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1/key.pem" 2>/dev/null
}

leaf() { # name subject days extensions...
  name=$1 subj=$2 days=$3; shift 3
  key "$PKI_DIR/$name"
  : > "$PKI_DIR/$name/ext.cnf"
  printf 'basicConstraints=critical,CA:false\n' >> "$PKI_DIR/$name/ext.cnf"
  for e in "$@"; do printf '%s\n' "$e" >> "$PKI_DIR/$name/ext.cnf"; done
  openssl req -new -key "$PKI_DIR/$name/key.pem" -subj "$subj" -out "$PKI_DIR/$name/csr.pem"
  openssl x509 -req -in "$PKI_DIR/$name/csr.pem" -CA "$PKI_DIR/ca/cert.pem" \
    -CAkey "$PKI_DIR/ca/key.pem" -set_serial "0x$(openssl rand -hex 16)" -days "$days" \
    -sha256 -extfile "$PKI_DIR/$name/ext.cnf" -out "$PKI_DIR/$name/cert.pem" 2>/dev/null
}

spki_pin() { # key.pem -> RFC 7469 pin-sha256
  openssl pkey -in "$1" -pubout -outform DER | openssl dgst -sha256 -binary | openssl base64 -A
}

if [ ! -f "$PKI_DIR/ca/cert.pem" ]; then
  key "$PKI_DIR/ca"
  openssl req -x509 -new -key "$PKI_DIR/ca/key.pem" -sha256 -days 3650 \
    -subj "/O=Example Corp/CN=Example Internal CA" \
    -addext "basicConstraints=critical,CA:true" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$PKI_DIR/ca/cert.pem"
  leaf gateway "/O=Example Corp/CN=kong-gateway" 365 "extendedKeyUsage=clientAuth"
  leaf legit "/C=US/O=Example Corp/CN=orders.internal" "$LEGIT_CERT_DAYS" \
    "extendedKeyUsage=serverAuth" "subjectAltName=$SANS,DNS:upstream-legit"
  leaf impostor "/C=US/O=Example Corp/CN=orders.internal" 365 \
    "extendedKeyUsage=serverAuth" "subjectAltName=$SANS,DNS:upstream-impostor"
  key "$PKI_DIR/next"
  echo "compose-pki: new PKI in $PKI_DIR"
fi

current=$(spki_pin "$PKI_DIR/legit/key.pem")
next=$(spki_pin "$PKI_DIR/next/key.pem")

awk -v dir="$PKI_DIR" '
  /^ *# @pki:/ {
    indent = $0; sub(/#.*/, "", indent)
    file = $0; sub(/^ *# @pki:/, "", file)
    path = dir "/" file
    n = 0
    while ((getline line < path) > 0) { print indent line; n++ }
    close(path)
    if (n == 0) { print "compose-pki: cannot read " path > "/dev/stderr"; exit 1 }
    next
  }
  { print }
' "$TEMPLATE" | sed -e "s|$PLACEHOLDER_CURRENT|$current|g" -e "s|$PLACEHOLDER_NEXT|$next|g" \
  > "$PKI_DIR/kong.yaml.tmp"
mv "$PKI_DIR/kong.yaml.tmp" "$PKI_DIR/kong.yaml"
# Kong and nginx run as unprivileged users in their images: a throw-away demo PKI.
chmod -R a+rX "$PKI_DIR"
echo "compose-pki: rendered $TEMPLATE into $PKI_DIR/kong.yaml (current pin $current, next pin $next)"
