#!/usr/bin/env python3
"""Writes the committed seed corpus (fuzz/corpus/<target>/seed-*) from the project's own
material: the test certificates (tests/fixtures), the DNs they carry, and the configs in
README.md, envoy/ and kong-config/ (read only). Run it after the fixtures or the
documented configs change: `python3 fuzz/seed_corpus.py`. Needs openssl and PyYAML."""

import base64
import glob
import json
import os
import re
import shutil
import subprocess
import urllib.parse

import yaml

FUZZ = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(FUZZ)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def out_dir(target):
    d = os.path.join(FUZZ, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for old in glob.glob(os.path.join(d, "seed-*")):
        os.remove(old)
    return d


def write(d, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def pem_to_der(pem):
    body = pem.split(b"-----BEGIN CERTIFICATE-----")[1].split(b"-----END CERTIFICATE-----")[0]
    return base64.b64decode(b"".join(body.split()))


def certificates():
    """(name, bytes) for every fixture, as PEM, as DER, and one URL-encoded PEM (the form
    Envoy documents for upstream.peer_certificate)."""
    out = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.pem"))):
        name = os.path.splitext(os.path.basename(path))[0]
        pem = open(path, "rb").read()
        out.append((name + ".pem", pem))
        out.append((name + ".der", pem_to_der(pem)))
        if name == "ec256_spiffe":
            out.append((name + ".urlenc", urllib.parse.quote(pem).encode()))
    seen = {data for _, data in out}
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.der"))):
        data = open(path, "rb").read()
        if data not in seen:  # the committed .der files are the PEMs, decoded
            out.append((os.path.basename(path), data))
    return out


def dns():
    """Subject and issuer of every fixture as OpenSSL prints them (what the headers carry),
    plus hand-written names covering the RFC 4514 corners."""
    names = set()
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.pem"))):
        for what in ("subject", "issuer"):
            line = subprocess.run(
                ["openssl", "x509", "-in", path, "-noout", "-" + what, "-nameopt", "RFC2253"],
                check=True, capture_output=True, text=True,
            ).stdout.strip()
            names.add(line.split("=", 1)[1] if line.startswith(what + "=") else line)
    names.update([
        "CN=orders.internal,O=Example Corp,C=US",
        "cn=orders , o = Example Corp",
        "commonName=a,2.5.4.10=b",
        "OID.2.5.4.3=a",
        "CN=a+OU=b,O=c",
        "CN=a\\,b\\+c\\;d\\\"e\\<f\\>g\\\\h",
        "CN=\\#hash\\ ",
        "CN=caf\\C3\\A9",
        "CN=caf\u00e9",
        "CN=#0C0568656C6C6F",
        "1.2.3.4=#0403010203",
        "CN=line\\0Abreak",
        "emailAddress=a@b.c,E=d@e.f",
        "UID=jsmith,DC=example,DC=net",
        "CN=x;O=y",
        "CN=#1E0400680069",
        "serialNumber=1234+CN=multi",
    ])
    return sorted(names)


def configs():
    """Every mtls_guard config the project documents, as JSON."""
    out = []
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for i, block in enumerate(re.findall(r"```[a-z]*\n(.*?)```", readme, re.S)):
        try:
            value = json.loads(block)
        except ValueError:
            continue
        # Skip the CLI's output (inspect, explain), keep configs.
        if isinstance(value, dict) and not {"outcome", "sha256"} & value.keys():
            out.append(("readme-%d" % i, value))
    envoy = os.path.join(ROOT, "envoy", "envoy-example.yaml")
    if os.path.exists(envoy):
        for i, m in enumerate(re.findall(r"value: \|\n((?:\s{20,}.*\n)+)", open(envoy).read())):
            out.append(("envoy-%d" % i, json.loads(m)))

    def plugin_configs(node):
        if isinstance(node, dict):
            if node.get("name") == "mtls_guard" and isinstance(node.get("config"), (dict, str)):
                c = node["config"]
                yield json.loads(c) if isinstance(c, str) else c
            for v in node.values():
                yield from plugin_configs(v)
        elif isinstance(node, list):
            for v in node:
                yield from plugin_configs(v)

    for path in sorted(glob.glob(os.path.join(ROOT, "kong-config", "*.yaml"))):
        doc = yaml.safe_load(open(path))
        base = os.path.splitext(os.path.basename(path))[0]
        for i, c in enumerate(plugin_configs(doc)):
            out.append(("%s-%d" % (base, i), c))
    return out


def extra_configs():
    """Keys the documented examples do not use, so the fuzzer starts with every path."""
    return [
        ("every-key", {
            "mode": "enforce", "require_certificate": True,
            "pins": [
                {"id": "a", "cert_sha256": "00:" * 31 + "00", "not_after": "2030-01-01T00:00:00Z"},
                {"id": "b", "spki_sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                 "not_before": "2026-01-01T00:00:00+01:00"},
            ],
            "subject": {"dn": ["CN=orders,O=Example Corp,C=US"], "attributes": {"OU": ["a*"]}},
            "issuer": {"attributes": {"2.5.4.10": ["Example Corp"]}},
            "san": {"dns": ["*.example.com"], "uri": ["https://x/"], "ip": ["::1", "10.0.0.1"],
                    "email": ["a@b.c"]},
            "spiffe": {"trust_domain": "example.org"},
            "validity": {"reject_expired": False, "min_remaining_days": 3650},
            "revoked_serials": ["0a1b2c", "00"], "revoked_sha256": ["ab" * 32],
            "headers": {"stamp": False, "prefix": "x-mtls-"},
            "deny_status": 403, "route_label": "r", "pin_expiry_warning_days": 0,
            "enforce_percent": 10, "request_id_header": "x-rid", "quarantine_seconds": 86400,
            "shadow": {"require_certificate": False, "subject": {"dn": ["CN=a"]}},
            "cache_entries": 0,
            "routes": {"r1": {"mode": "report"}, "weird route/\u00e9": {"pins": [
                {"id": "c", "spki_sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}]}},
        }),
        ("empty", {}),
    ]


def main():
    certs = certificates()
    for target in ("cert_parse", "filter_flow"):
        d = out_dir(target)
        for name, data in certs:
            write(d, name, data)
    d = out_dir("dn_parse")
    for i, name in enumerate(dns()):
        write(d, "%02d" % i, name)
    d = out_dir("config_parse")
    for name, value in configs() + extra_configs():
        write(d, name + ".json", json.dumps(value, indent=1, ensure_ascii=False))
    write(d, "whitespace.json", " \n")
    for target in ("cert_parse", "dn_parse", "config_parse", "filter_flow"):
        n = len(glob.glob(os.path.join(FUZZ, "corpus", target, "seed-*")))
        print("%s: %d seeds" % (target, n))


if __name__ == "__main__":
    main()
