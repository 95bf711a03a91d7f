#!/usr/bin/env bash
# Small PKI helper around `openssl ca`, used by the fixture script, the end-to-end specs
# and the demo. `openssl ca` is used (not `x509 -days`) because it takes fixed
# -startdate/-enddate, which keeps fixtures reproducible in their dates.
#
# usage:
#   pki.sh ca      DIR NAME SUBJ [START END]              self-signed CA (EC P-256)
#   pki.sh leaf    DIR CA NAME SUBJ KEYSPEC EXT [START END SERIAL]
#       KEYSPEC: rsa:2048 | rsa:3072 | ec:P-256 | ec:P-384 | ed25519
#       EXT:     extension lines for the leaf, separated by ';' (e.g. "subjectAltName=DNS:a,URI:spiffe://x/y")
#       START/END: YYYYMMDDHHMMSSZ (default: now-1d .. now+365d); SERIAL: hex
set -euo pipefail

cmd=$1; shift
dir=$1; shift
mkdir -p "$dir"

genkey() { # keyspec out
  case $1 in
    rsa:*) openssl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${1#rsa:}" -out "$2" 2>/dev/null ;;
    ec:*) openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:${1#ec:}" -out "$2" 2>/dev/null ;;
    ed25519) openssl genpkey -algorithm ED25519 -out "$2" 2>/dev/null ;;
    *) echo "unknown key spec $1" >&2; exit 2 ;;
  esac
}

ca_conf() { # cadir
  cat > "$1/ca.cnf" <<CONF
[ca]
default_ca = local
[local]
dir = $1
database = $1/index.txt
new_certs_dir = $1/issued
serial = $1/serial
default_md = sha256
policy = anything
unique_subject = no
email_in_dn = yes
preserve = yes
copy_extensions = none
default_days = 365
[anything]
[req]
distinguished_name = dn
[dn]
CONF
  mkdir -p "$1/issued"
  : > "$1/index.txt"
  [ -f "$1/serial" ] || openssl rand -hex 16 > "$1/serial"
}

stamp() { date -u -d "$1" +%Y%m%d%H%M%SZ; }

case $cmd in
  ca)
    name=$1 subj=$2 start=${3:-$(stamp '-2 days')} end=${4:-$(stamp '+3650 days')}
    d="$dir/$name"; mkdir -p "$d"; ca_conf "$d"
    genkey ec:P-256 "$d/key.pem"
    openssl req -new -key "$d/key.pem" -subj "$subj" -utf8 -config "$d/ca.cnf" -out "$d/csr.pem"
    printf 'basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' > "$d/ext.cnf"
    openssl ca -batch -notext -selfsign -config "$d/ca.cnf" -keyfile "$d/key.pem" -in "$d/csr.pem" \
      -startdate "$start" -enddate "$end" -preserveDN -utf8 -multivalue-rdn -extfile "$d/ext.cnf" \
      -out "$d/cert.pem" 2>/dev/null
    ;;
  leaf)
    ca=$1 name=$2 subj=$3 keyspec=$4 ext=$5
    start=${6:-$(stamp '-1 day')} end=${7:-$(stamp '+365 days')} serial=${8:-}
    c="$dir/$ca"; d="$dir/$name"; mkdir -p "$d"
    genkey "$keyspec" "$d/key.pem"
    openssl req -new -key "$d/key.pem" -subj "$subj" -utf8 -config "$c/ca.cnf" -out "$d/csr.pem"
    printf 'basicConstraints=critical,CA:false\n' > "$d/ext.cnf"
    if [ -n "$ext" ]; then tr ';' '\n' <<<"$ext" >> "$d/ext.cnf"; fi
    [ -n "$serial" ] && echo "$serial" > "$c/serial"
    openssl ca -batch -notext -config "$c/ca.cnf" -cert "$c/cert.pem" -keyfile "$c/key.pem" -in "$d/csr.pem" \
      -startdate "$start" -enddate "$end" -preserveDN -utf8 -multivalue-rdn -extfile "$d/ext.cnf" \
      -out "$d/cert.pem" 2>/dev/null
    cat "$d/cert.pem" "$c/cert.pem" > "$d/chain.pem"
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
