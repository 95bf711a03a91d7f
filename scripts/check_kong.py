#!/usr/bin/env python3
"""Static checks of the Kong side of mtls-guard (CI has no Docker engine).

usage: check_kong.py --cli PATH --names PATH

  --cli    the `mtls-guard` binary (same parser as the filter)
  --names  the JSON written by spec/prometheus_alerts.rs
           (metric_names_for_the_kong_label_pattern_check): every metric name the filter
           can emit, its families, and metrics::KONG_LABEL_PATTERNS

Checks, each one able to fail:
  schema      kong-config/mtls_guard.meta.json is a valid Draft 4 schema; its fields equal
              the parser's serde fields at every level (read from the parser's own
              "unknown field" errors) and the README's configuration reference table
  examples    every mtls_guard config in kong-config/*.yaml and in the README's JSON
              blocks under "## Configuration" passes the Draft 4 validator AND the parser;
              edge cases that the parser accepts pass the schema too
  invalid     a table of invalid configs fails BOTH the schema and the parser
  labels      the meta's label_patterns equal metrics::KONG_LABEL_PATTERNS, and applied as
              Kong applies them (PCRE, via pcre2grep) decode every metric name
  deck        the decK files are well-formed YAML with the fields Kong's schemas require,
              consistent references, and the right form for their Kong versions
  pki         scripts/compose-pki.sh renders both decK files into loadable configs whose
              policies pass the legitimate upstream and reject the impostor
  compose     docker-compose.yaml parses with docker-compose (a real implementation)
  rules       promtool check rules / test rules; every dashboard query parses as PromQL
"""
import argparse
import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
META = ROOT / "kong-config" / "mtls_guard.meta.json"
README = ROOT / "README.md"
DECK_FILES = {
    # file: (form, Kong versions)
    "kong.yaml": "plugin",
    "kong-filter-chains.yaml": "filter_chains",
}
FILTER = "mtls_guard"

PIN_A = base64.b64encode(b"demo-pin:legit-current-key-spki!").decode()
PIN_B = base64.b64encode(b"demo-pin:next-rotation-key-spki!").decode()
HEX64 = "ab" * 32

# A valid value for every top-level field, used to probe where each field is allowed
# (top level, routes.<name>, shadow). A new serde field without a sample fails the check.
SAMPLES = {
    "mode": "report",
    "require_certificate": False,
    "pins": [{"id": "a", "spki_sha256": PIN_A}, {"id": "b", "spki_sha256": PIN_B}],
    "subject": {"dn": ["CN=orders.internal,O=Example Corp"]},
    "issuer": {"attributes": {"O": ["Example*"]}},
    "san": {"dns": ["orders.internal"]},
    "spiffe": {"trust_domain": "example.org"},
    "validity": {"min_remaining_days": 7},
    "revoked_serials": ["0c:b9"],
    "revoked_sha256": [HEX64],
    "headers": {"prefix": "x-peer-"},
    "deny_status": 503,
    "route_label": "orders",
    "pin_expiry_warning_days": 10,
    "enforce_percent": 50,
    "request_id_header": "x-trace-id",
    "quarantine_seconds": 30,
    "shadow": {"san": {"dns": ["orders.internal"]}},
    "cache_entries": 128,
    "routes": {"r1": {"mode": "enforce"}},
}

# Configs at the edges of the contract: the parser accepts them, so the schema must too.
VALID_EDGES = [
    {},
    {"mode": "enforce", "require_certificate": True},
    {"pins": [{"id": "fp", "cert_sha256": ":".join(["AB"] * 32)},
              {"id": "Next_Key-2", "spki_sha256": PIN_B, "not_before": "2027-01-01T00:00:00.5+02:00",
               "not_after": "2028-02-29t23:59:60z"}]},
    {"pins": [{"id": "only", "cert_sha256": "ab " * 31 + "cd"}]},
    {"subject": {"dn": ["CN=a"], "attributes": {"CN": ["*"], "2.5.4.10": ["Example"]}}},
    {"san": {"dns": ["*.orders.svc.cluster.local", "orders.internal."], "uri": ["urn:x"],
             "ip": ["10.0.0.7", "2001:db8::1"], "email": ["Ops@Example.org"]}},
    {"spiffe": {"trust_domain": "example.org", "path_prefix": "/ns/prod/"}},
    {"validity": {"reject_expired": False, "min_remaining_days": 3650}},
    {"revoked_serials": ["00:0C:B9", "0cb9", "0 c b 9"], "revoked_sha256": [":".join(["ff"] * 32)]},
    {"headers": {"stamp": False, "prefix": "x-upstream-"}},
    {"deny_status": 400}, {"deny_status": 599},
    {"route_label": "r" * 64},
    {"cache_entries": 0}, {"cache_entries": 65536},
    {"enforce_percent": 0}, {"enforce_percent": 100},
    {"quarantine_seconds": 86400},
    {"shadow": {"pins": [{"id": "a", "spki_sha256": PIN_A}], "require_certificate": False}},
    {"routes": {"orders/v1": {"mode": "enforce", "shadow": {"san": {"uri": ["spiffe://x/y"]}}},
                "pay": {"route_label": "payments", "headers": {"prefix": "x-pay-"}}}},
]

# Invalid configs: each must be refused by the schema AND by the parser.
INVALID = [
    ("unknown top-level key", {"mdoe": "report"}),
    ("unknown pin key", {"pins": [{"id": "a", "spki_sha256": PIN_A, "extra": 1}]}),
    ("unknown san kind", {"san": {"dnss": ["a.example"]}}),
    ("unknown key in a route", {"routes": {"r": {"mdoe": "report"}}}),
    ("mode", {"mode": "block"}),
    ("mode type", {"mode": 1}),
    ("require_certificate type", {"require_certificate": "yes"}),
    ("empty pins", {"pins": []}),
    ("pin without hash", {"pins": [{"id": "a"}]}),
    ("pin with both hashes", {"pins": [{"id": "a", "spki_sha256": PIN_A, "cert_sha256": HEX64}]}),
    ("pin without id", {"pins": [{"spki_sha256": PIN_A}]}),
    ("pin id charset", {"pins": [{"id": "a b", "spki_sha256": PIN_A}]}),
    ("pin id length", {"pins": [{"id": "p" * 65, "spki_sha256": PIN_A}]}),
    ("spki not 32 bytes", {"pins": [{"id": "a", "spki_sha256": "AAAA"}]}),
    ("spki not base64", {"pins": [{"id": "a", "spki_sha256": "!" * 43 + "="}]}),
    ("cert hash short", {"pins": [{"id": "a", "cert_sha256": "abcd"}]}),
    ("cert hash not hex", {"pins": [{"id": "a", "cert_sha256": "zz" * 32}]}),
    ("not_before format", {"pins": [{"id": "a", "spki_sha256": PIN_A, "not_before": "tomorrow"}]}),
    ("not_after month", {"pins": [{"id": "a", "spki_sha256": PIN_A, "not_after": "2027-13-01T00:00:00Z"}]}),
    ("not_after without zone", {"pins": [{"id": "a", "spki_sha256": PIN_A, "not_after": "2027-01-01T00:00:00"}]}),
    ("empty subject", {"subject": {}}),
    ("empty dn list", {"subject": {"dn": []}}),
    ("empty attributes", {"issuer": {"attributes": {}}}),
    ("empty attribute patterns", {"subject": {"attributes": {"CN": []}}}),
    ("empty san", {"san": {}}),
    ("empty san list", {"san": {"email": []}}),
    ("wildcard over a TLD", {"san": {"dns": ["*.com"]}}),
    ("wildcard not left-most", {"san": {"dns": ["a.*.example.com"]}}),
    ("uri without scheme", {"san": {"uri": ["orders"]}}),
    ("ip", {"san": {"ip": ["not-an-ip"]}}),
    ("email", {"san": {"email": ["nobody"]}}),
    ("spiffe without trust domain", {"spiffe": {}}),
    ("spiffe trust domain case", {"spiffe": {"trust_domain": "Example.ORG"}}),
    ("spiffe path prefix", {"spiffe": {"trust_domain": "example.org", "path_prefix": "ns"}}),
    ("min_remaining_days range", {"validity": {"min_remaining_days": 3651}}),
    ("min_remaining_days sign", {"validity": {"min_remaining_days": -1}}),
    ("serial odd digits", {"revoked_serials": ["abc"]}),
    ("serial not hex", {"revoked_serials": ["xyz"]}),
    ("revoked_sha256 short", {"revoked_sha256": ["00"]}),
    ("header prefix case", {"headers": {"prefix": "X-Up"}}),
    ("header prefix too broad", {"headers": {"prefix": "x-"}}),
    ("deny_status low", {"deny_status": 200}),
    ("deny_status high", {"deny_status": 600}),
    ("route_label charset", {"route_label": "orders api"}),
    ("pin_expiry_warning_days", {"pin_expiry_warning_days": 3651}),
    ("cache_entries", {"cache_entries": 65537}),
    ("enforce_percent", {"enforce_percent": 101}),
    ("request_id_header case", {"request_id_header": "X-Id"}),
    ("quarantine_seconds", {"quarantine_seconds": 86401}),
    ("shadow with mode", {"shadow": {"mode": "report"}}),
    ("shadow with route_label", {"shadow": {"route_label": "x"}}),
    ("nested shadow", {"routes": {"r": {"shadow": {"shadow": {}}}}}),
    ("nested routes", {"routes": {"r": {"routes": {}}}}),
    ("cache_entries in a route", {"routes": {"r": {"cache_entries": 1}}}),
    ("empty route name", {"routes": {"": {}}}),
    ("bad value in a route", {"routes": {"r": {"pins": [{"id": "a", "spki_sha256": "short"}]}}}),
    ("not an object", []),
    ("a string", "enforce"),
]

failures = []


def fail(area, msg):
    failures.append(f"[{area}] {msg}")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


# ---------------------------------------------------------------------------------------
# The two readers of a config: the Draft 4 schema and the filter's parser.

class Readers:
    def __init__(self, cli, meta):
        self.cli = cli
        self.schema = meta["config_schema"]
        self.validator = jsonschema.Draft4Validator(self.schema)

    def schema_errors(self, config):
        return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}"
                for e in self.validator.iter_errors(config)]

    def parser(self, config):
        """(accepted, error line)"""
        r = run([self.cli, "check-config", "-"], input=json.dumps(config))
        if r.returncode not in (0, 2):
            raise SystemExit(f"{self.cli} check-config exited {r.returncode}: {r.stderr}")
        return r.returncode == 0, r.stderr.strip()

    def error_path(self, config):
        ok, err = self.parser(config)
        if ok:
            return None, ""
        m = re.search(r"(\$\S*): (.*)$", err)
        return (m.group(1), m.group(2)) if m else ("?", err)


# ---------------------------------------------------------------------------------------
# Schema helpers

def resolve(schema, node):
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = schema
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def props(schema, node):
    return set(resolve(schema, node).get("properties", {}))


def schema_levels(schema):
    """level name -> set of property names, for every object level with fixed keys."""
    top = schema
    p = lambda name: resolve(schema, top["properties"][name])
    levels = {
        "top": props(schema, top),
        "routes.<name>": props(schema, resolve(schema, top["properties"]["routes"])["additionalProperties"]),
        "shadow": props(schema, p("shadow")),
        "pins[]": props(schema, p("pins")["items"]),
    }
    for section in ("subject", "issuer", "san", "spiffe", "validity", "headers"):
        levels[section] = props(schema, p(section))
    return levels


def flatten(schema):
    """README-style keys: `pins`, `pins[].id`, `subject.dn`, `routes.<name>` ..."""
    keys = set()
    for name, node in resolve(schema, schema)["properties"].items():
        keys.add(name)
        node = resolve(schema, node)
        if name == "routes":
            keys.add("routes.<name>")
            continue
        if name == "shadow":
            continue  # its keys are top-level keys
        if node.get("type") == "object" and "properties" in node:
            keys.update(f"{name}.{k}" for k in node["properties"])
        if node.get("type") == "array" and "properties" in resolve(schema, node.get("items", {})):
            keys.update(f"{name}[].{k}" for k in resolve(schema, node["items"])["properties"])
    return keys


def serde_fields(readers, probe, expected_path):
    path, rule = readers.error_path(probe)
    if path != expected_path or "unknown field" not in rule:
        fail("schema", f"probe {json.dumps(probe)}: expected an unknown-field error at "
                       f"{expected_path}, got {path}: {rule}")
        return set()
    tail = rule.split("expected", 1)[1] if "expected" in rule else ""
    tail = re.sub(r" at line \d+ column \d+$", "", tail)
    return set(re.findall(r"`([^`]+)`", tail))


def check_schema(readers, meta):
    try:
        jsonschema.Draft4Validator.check_schema(meta["config_schema"])
    except jsonschema.SchemaError as e:
        fail("schema", f"config_schema is not a valid Draft 4 schema: {e.message}")
        return
    extra = set(meta) - {"config_schema", "metrics"}
    if extra:
        fail("schema", f"unexpected top-level keys in the meta file: {sorted(extra)}")
    if "$schema" in meta["config_schema"]:
        fail("schema", "leave `$schema` out: Kong sets Draft 4 itself")

    def walk(node, where):
        node_type = node.get("type")
        if node_type == "object" and "properties" in node and node.get("additionalProperties") is not False:
            fail("schema", f"{where}: objects need additionalProperties: false")
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{where}/{k}")
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    if isinstance(x, dict):
                        walk(x, f"{where}/{k}/{i}")
    walk(meta["config_schema"], "#")
    for name, d in meta["config_schema"]["definitions"].items():
        if "description" not in d:
            fail("schema", f"definitions/{name} has no description")

    schema = meta["config_schema"]
    levels = schema_levels(schema)
    z = {"zz": 1}
    probes = {
        "top": (z, "$.zz"),
        "routes.<name>": ({"routes": {"r": z}}, "$.routes.r.zz"),
        "shadow": ({"shadow": z}, "$.shadow.zz"),
        "pins[]": ({"pins": [z]}, "$.pins[0].zz"),
        "subject": ({"subject": z}, "$.subject.zz"),
        "issuer": ({"issuer": z}, "$.issuer.zz"),
        "san": ({"san": z}, "$.san.zz"),
        "spiffe": ({"spiffe": z}, "$.spiffe.zz"),
        "validity": ({"validity": z}, "$.validity.zz"),
        "headers": ({"headers": z}, "$.headers.zz"),
    }
    serde = {level: serde_fields(readers, probe, path) for level, (probe, path) in probes.items()}

    # Levels that reuse the top-level struct: which fields the parser refuses there.
    for f in sorted(serde["top"]):
        if f not in SAMPLES:
            fail("schema", f"new config field `{f}`: add a valid sample to SAMPLES in {__file__}")
            continue
        ok, err = readers.parser({f: SAMPLES[f]})
        if not ok:
            fail("schema", f"the sample for `{f}` is refused at the top level: {err}")
    for level, wrap, prefix in (("routes.<name>", lambda c: {"routes": {"r": c}}, "$.routes.r"),
                                ("shadow", lambda c: {"shadow": c}, "$.shadow")):
        allowed = set()
        for f in serde[level]:
            if f not in SAMPLES:
                continue
            path, _ = readers.error_path(wrap({f: SAMPLES[f]}))
            if path is None or not path.startswith(f"{prefix}.{f}"):
                allowed.add(f)
        serde[level] = allowed

    for level in probes:
        s, m = serde[level], levels.get(level, set())
        if s != m:
            fail("schema", f"{level}: parser and meta schema disagree: only in the parser "
                           f"{sorted(s - m)}, only in the schema {sorted(m - s)}")

    # The README's configuration reference table.
    if not README.exists():
        fail("schema", "README.md is missing")
        return
    text = README.read_text()
    m = re.search(r"^### Configuration reference\s*$(.*?)(?=^#{1,3} |\Z)", text, re.M | re.S)
    if not m:
        fail("schema", "README.md has no '### Configuration reference' section")
        return
    rows = re.findall(r"^\|\s*`([^`]+)`\s*\|", m.group(1), re.M)
    readme = set(rows)
    if len(rows) != len(readme):
        fail("schema", f"README table lists a key twice: {sorted(k for k in readme if rows.count(k) > 1)}")
    expected = flatten(schema)
    if readme != expected:
        fail("schema", f"README table and meta schema disagree: only in the README "
                       f"{sorted(readme - expected)}, only in the schema {sorted(expected - readme)}")
    print(f"schema: {sum(len(v) for v in levels.values())} fields on {len(levels)} levels agree "
          f"with the parser; {len(readme)} README rows")


# ---------------------------------------------------------------------------------------
# Example and invalid configs

def deck_filter_configs(doc):
    """(where, config) for every mtls_guard config in a decK document."""
    out = []

    def visit(node, where):
        if isinstance(node, dict):
            for i, p in enumerate(node.get("plugins") or []):
                if isinstance(p, dict) and p.get("name") == FILTER:
                    out.append((f"{where}.plugins[{i}]", p.get("config")))
            for i, fc in enumerate(node.get("filter_chains") or []):
                for j, f in enumerate((fc or {}).get("filters") or []):
                    if isinstance(f, dict) and f.get("name") == FILTER:
                        out.append((f"{where}.filter_chains[{i}].filters[{j}]", f.get("config")))
            for k, v in node.items():
                if k in ("plugins", "filter_chains"):
                    continue
                if isinstance(v, list):
                    for i, x in enumerate(v):
                        name = x.get("name", i) if isinstance(x, dict) else i
                        visit(x, f"{where}.{k}[{name}]")
    visit(doc, "")
    return [(w.lstrip("."), json.loads(c) if isinstance(c, str) else c) for w, c in out]


def readme_configs():
    if not README.exists():
        return []
    text = README.read_text()
    m = re.search(r"^## Configuration\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        return []
    blocks = re.findall(r"^```json\s*\n(.*?)^```", m.group(1), re.M | re.S)
    return [(f"README.md ## Configuration, json block {i + 1}", json.loads(b)) for i, b in enumerate(blocks)]


def check_examples(readers):
    examples = []
    for f in sorted((ROOT / "kong-config").glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        found = deck_filter_configs(doc) if isinstance(doc, dict) else []
        if f.name in DECK_FILES and not found:
            fail("examples", f"{f.name}: no {FILTER} config found")
        examples += [(f"{f.name}: {w}", c) for w, c in found]
    examples += readme_configs()
    examples += [(f"edge case {json.dumps(c)}", c) for c in VALID_EDGES]
    for where, config in examples:
        errs = readers.schema_errors(config)
        if errs:
            fail("examples", f"{where}: refused by the meta schema: {errs}")
        ok, err = readers.parser(config)
        if not ok:
            fail("examples", f"{where}: refused by the parser: {err}")
    n_readme = len(readme_configs())
    print(f"examples: {len(examples)} configs ({n_readme} from the README) pass schema and parser")

    for what, config in INVALID:
        if not readers.schema_errors(config):
            fail("invalid", f"{what}: {json.dumps(config)} passes the meta schema")
        ok, _ = readers.parser(config)
        if ok:
            fail("invalid", f"{what}: {json.dumps(config)} passes the parser")
    print(f"invalid: {len(INVALID)} invalid configs fail schema and parser")


# ---------------------------------------------------------------------------------------
# Label patterns, with PCRE (pcre2grep), the way Kong's Prometheus plugin applies them:
# for each {label, pattern}: the first match of ngx.re.match(key, pattern); the value is
# capture 2; the name is cut where capture 1 starts (computed as Kong does: end of the
# match minus the length of capture 1); then `:` becomes `_`.

def pcre_first_matches(pattern, lines, workdir):
    path = Path(workdir) / "keys.txt"
    path.write_text("".join(l + "\n" for l in lines))
    pos = run(["pcre2grep", "-n", "--line-offsets", pattern, str(path)])
    caps = run(["pcre2grep", "-n", "-o1", "-o2", "--om-separator=\t", pattern, str(path)])
    if pos.returncode > 1 or caps.returncode > 1:
        raise SystemExit(f"pcre2grep failed on {pattern}: {pos.stderr}{caps.stderr}")
    first = {}
    for line in pos.stdout.splitlines():
        n, rest = line.split(":", 1)
        off, length = map(int, rest.split(","))
        first.setdefault(int(n), [off, length, None, None])
    seen = set()
    for line in caps.stdout.splitlines():
        n, rest = line.split(":", 1)
        n = int(n)
        if n in seen:
            continue
        seen.add(n)
        c1, c2 = rest.split("\t", 1)
        first[n][2], first[n][3] = c1, c2
    return first


def check_labels(meta, names_dump, workdir):
    patterns = meta.get("metrics", {}).get("label_patterns")
    rust = names_dump["kong_label_patterns"]
    if patterns != rust:
        fail("labels", "kong-config/mtls_guard.meta.json metrics.label_patterns differ from "
                       "metrics::KONG_LABEL_PATTERNS; the meta file should say:\n"
                       + json.dumps({"label_patterns": rust}, indent=2))
        return
    families = {f["name"]: f["labels"] for f in names_dump["families"]}
    names = names_dump["names"]
    keys = [f"pw:{FILTER}:{n}" for n in names]
    decoded = {i: [] for i in range(len(keys))}
    first_pos = {i: len(k) for i, k in enumerate(keys)}
    for p in patterns:
        for n, (off, length, c1, c2) in pcre_first_matches(p["pattern"], keys, workdir).items():
            i = n - 1
            if c2 is None:
                continue
            label_pos = off + length - len(c1)
            decoded[i].append((p["label"], c2))
            first_pos[i] = min(first_pos[i], label_pos)
    bad = 0
    for i, (name, key) in enumerate(zip(names, keys)):
        base, *rest = name.split(".")
        intended = list(zip(rest[0::2], rest[1::2]))
        exported = key[:first_pos[i]].replace(":", "_")
        problems = []
        if [k for k, _ in intended] != families.get(base):
            problems.append(f"label keys {[k for k, _ in intended]} are not the family's {families.get(base)}")
        if exported != f"pw_{FILTER}_{base}":
            problems.append(f"exported as {exported}")
        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", exported):
            problems.append(f"{exported} is not a Prometheus metric name")
        if sorted(decoded[i]) != sorted(intended) or len(decoded[i]) != len(dict(decoded[i])):
            problems.append(f"labels {decoded[i]}, intended {intended}")
        if problems:
            bad += 1
            if bad <= 12:
                fail("labels", f"{name}: " + "; ".join(problems))
    if bad > 12:
        fail("labels", f"... and {bad - 12} more names decode wrongly")
    print(f"labels: {len(names)} metric names of {len(families)} families decoded with "
          f"{len(patterns)} PCRE patterns ({len(names) - bad} correct)")


# ---------------------------------------------------------------------------------------
# decK files: the fields Kong's schemas require, for the entities used here.

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ENTITY_FIELDS = {
    "certificates": {"id", "cert", "key", "cert_alt", "key_alt", "tags", "snis"},
    "ca_certificates": {"id", "cert", "cert_digest", "tags"},
    "services": {"id", "name", "protocol", "host", "port", "path", "url", "retries",
                 "connect_timeout", "write_timeout", "read_timeout", "tags", "enabled",
                 "client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates",
                 "routes", "plugins", "filter_chains"},
    "routes": {"id", "name", "protocols", "methods", "hosts", "paths", "headers", "snis",
               "sources", "destinations", "https_redirect_status_code", "regex_priority",
               "strip_path", "path_handling", "preserve_host", "request_buffering",
               "response_buffering", "tags", "expression", "priority", "plugins",
               "filter_chains"},
    "plugins": {"id", "name", "instance_name", "config", "enabled", "protocols", "tags",
                "ordering", "route", "service", "consumer"},
    "filter_chains": {"id", "name", "enabled", "filters", "tags"},
    "filters": {"name", "enabled", "config"},
}
PROMETHEUS_FIELDS = {"per_consumer", "status_code_metrics", "ai_metrics", "latency_metrics",
                     "bandwidth_metrics", "upstream_health_metrics", "wasm_metrics"}


def check_deck(path, form):
    where = path.name
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        fail("deck", f"{where}: not YAML: {e}")
        return
    if not isinstance(doc, dict) or doc.get("_format_version") != "3.0":
        fail("deck", f"{where}: needs _format_version: \"3.0\"")
        return
    known = {"_format_version", "_transform", "certificates", "ca_certificates", "services",
             "routes", "plugins", "upstreams", "consumers", "filter_chains"}
    if set(doc) - known:
        fail("deck", f"{where}: unknown top-level keys {sorted(set(doc) - known)}")

    def entity(kind, e, at, required):
        if not isinstance(e, dict):
            fail("deck", f"{where}: {at} is not a mapping")
            return False
        unknown = set(e) - ENTITY_FIELDS[kind]
        if unknown:
            fail("deck", f"{where}: {at}: fields Kong does not know: {sorted(unknown)}")
        for r in required:
            if e.get(r) in (None, "", []):
                fail("deck", f"{where}: {at}: `{r}` is required")
        if "id" in e and not UUID.match(str(e["id"])):
            fail("deck", f"{where}: {at}: id is not a UUID")
        return True

    certs, cas = set(), set()
    for i, c in enumerate(doc.get("certificates") or []):
        if entity("certificates", c, f"certificates[{i}]", ["id", "cert", "key"]):
            certs.add(c["id"])
    for i, c in enumerate(doc.get("ca_certificates") or []):
        if entity("ca_certificates", c, f"ca_certificates[{i}]", ["id", "cert"]):
            cas.add(c["id"])
    for pem in [c.get("cert") for c in (doc.get("certificates") or []) + (doc.get("ca_certificates") or [])]:
        if not isinstance(pem, str):
            fail("deck", f"{where}: a certificate's `cert` is not a string")

    names = {"services": [], "routes": [], "filter_chains": []}
    filter_uses = []

    def plugins(ps, at, nested):
        for j, p in enumerate(ps or []):
            pat = f"{at}.plugins[{j}]"
            if not entity("plugins", p, pat, ["name"]):
                continue
            if p["name"] == FILTER:
                filter_uses.append(("plugin", pat))
                if not nested:
                    fail("deck", f"{where}: {pat}: a Wasm filter plugin needs a service or route")
                if not isinstance(p.get("config"), dict):
                    fail("deck", f"{where}: {pat}: config must be a mapping (the meta schema's object)")
            elif p["name"] == "prometheus":
                cfg = p.get("config") or {}
                if set(cfg) - PROMETHEUS_FIELDS:
                    fail("deck", f"{where}: {pat}: unknown prometheus fields {sorted(set(cfg) - PROMETHEUS_FIELDS)}")
                if form == "filter_chains" and "wasm_metrics" in cfg:
                    fail("deck", f"{where}: {pat}: wasm_metrics needs Kong 3.10; this file is for 3.4-3.8")
                if form == "plugin" and cfg.get("wasm_metrics") is not True:
                    fail("deck", f"{where}: {pat}: set wasm_metrics: true to export the filter's metrics")

    def chains(fcs, at):
        if len(fcs or []) > 1:
            fail("deck", f"{where}: {at}: Kong allows one filter chain per route or service")
        for j, fc in enumerate(fcs or []):
            fat = f"{at}.filter_chains[{j}]"
            if not entity("filter_chains", fc, fat, ["filters"]):
                continue
            if fc.get("name"):
                names["filter_chains"].append(fc["name"])
            for k, f in enumerate(fc.get("filters") or []):
                if entity("filters", f, f"{fat}.filters[{k}]", ["name"]) and f["name"] == FILTER:
                    filter_uses.append(("filter_chain", f"{fat}.filters[{k}]"))

    for i, s in enumerate(doc.get("services") or []):
        at = f"services[{s.get('name', i) if isinstance(s, dict) else i}]"
        if not entity("services", s, at, ["name"]):
            continue
        names["services"].append(s["name"])
        if not (s.get("url") or s.get("host")):
            fail("deck", f"{where}: {at}: needs `host` (or `url`)")
        proto = s.get("protocol") or (str(s.get("url", "")).split(":", 1)[0] if s.get("url") else "http")
        tls_fields = [k for k in ("client_certificate", "tls_verify", "ca_certificates") if k in s]
        if tls_fields and proto != "https":
            fail("deck", f"{where}: {at}: {tls_fields} need protocol https")
        if s.get("client_certificate") is not None and s["client_certificate"] not in certs:
            fail("deck", f"{where}: {at}: client_certificate {s['client_certificate']} is not in certificates")
        for ca in s.get("ca_certificates") or []:
            if ca not in cas:
                fail("deck", f"{where}: {at}: ca_certificates entry {ca} is not in ca_certificates")
        if "tls_verify" in s and not isinstance(s["tls_verify"], bool):
            fail("deck", f"{where}: {at}: tls_verify must be a boolean")
        depth = s.get("tls_verify_depth")
        if depth is not None and not (isinstance(depth, int) and 0 <= depth <= 64):
            fail("deck", f"{where}: {at}: tls_verify_depth must be an integer 0-64")
        if s.get("tls_verify") is not True:
            fail("deck", f"{where}: {at}: the examples keep Kong's own upstream verification on (tls_verify: true)")
        port = s.get("port")
        if port is not None and not (isinstance(port, int) and 0 <= port <= 65535):
            fail("deck", f"{where}: {at}: port must be 0-65535")
        plugins(s.get("plugins"), at, True)
        chains(s.get("filter_chains"), at)
        for j, r in enumerate(s.get("routes") or []):
            rat = f"{at}.routes[{r.get('name', j) if isinstance(r, dict) else j}]"
            if not entity("routes", r, rat, ["name"]):
                continue
            names["routes"].append(r["name"])
            if not any(r.get(k) for k in ("paths", "hosts", "methods", "headers", "snis", "expression")):
                fail("deck", f"{where}: {rat}: an http route needs paths, hosts, methods, headers or snis")
            for p in r.get("paths") or []:
                if not str(p).startswith("/") and not str(p).startswith("~"):
                    fail("deck", f"{where}: {rat}: path {p} must start with /")
            plugins(r.get("plugins"), rat, True)
            chains(r.get("filter_chains"), rat)
    plugins(doc.get("plugins"), "plugins", False)

    for kind, ns in names.items():
        dupes = sorted({n for n in ns if ns.count(n) > 1})
        if dupes:
            fail("deck", f"{where}: duplicate {kind} names {dupes}")
    kinds = {k for k, _ in filter_uses}
    want = {"plugin"} if form == "plugin" else {"filter_chain"}
    if kinds != want:
        fail("deck", f"{where}: uses the filter as {sorted(kinds)}; this file is the {form} form")
    print(f"deck: {where}: {len(names['services'])} services, {len(names['routes'])} routes, "
          f"{len(filter_uses)} {FILTER} instances ({form} form)")


# ---------------------------------------------------------------------------------------
# The compose PKI step renders the decK files into configs that work.

def check_pki(readers, workdir):
    script = ROOT / "scripts" / "compose-pki.sh"
    for deck in DECK_FILES:
        pki = Path(workdir) / f"pki-{deck}"
        env = dict(os.environ, PKI_DIR=str(pki), KONG_CONFIG_TEMPLATE=str(ROOT / "kong-config" / deck))
        r = run(["sh", str(script)], env=env)
        if r.returncode != 0:
            fail("pki", f"compose-pki.sh on {deck}: {r.stderr}{r.stdout}")
            continue
        rendered = (pki / "kong.yaml").read_text()
        if re.search(r"^\s*# @pki:", rendered, re.M) or PIN_A in rendered or PIN_B in rendered:
            fail("pki", f"{deck}: placeholders left after rendering")
        doc = yaml.safe_load(rendered)
        pems = [c["cert"] for c in doc["certificates"] + doc["ca_certificates"]]
        for pem in pems:
            if run(["openssl", "x509", "-noout"], input=pem).returncode != 0:
                fail("pki", f"{deck}: a rendered certificate does not parse")
        if run(["openssl", "pkey", "-noout"], input=doc["certificates"][0]["key"]).returncode != 0:
            fail("pki", f"{deck}: the rendered client key does not parse")
        pin = lambda name: run([readers.cli, "pin", str(pki / name / "cert.pem")]).stdout.strip()
        legit = pin("legit")
        if legit not in rendered:
            fail("pki", f"{deck}: the legit upstream's pin {legit} is not in the rendered config")
        # What each route does with each upstream, on a Kong that exposes the certificate.
        expect = {
            ("orders-enforce", "legit"): [],
            ("orders-enforce", "impostor"): ["pin_mismatch"],
            ("orders-report", "legit"): [],
            ("impostor-enforce", "impostor"): ["pin_mismatch"],
            ("impostor-report", "impostor"): ["pin_mismatch"],
        }
        configs = {w.split("routes[")[1].split("]")[0]: c for w, c in deck_filter_configs(doc)}
        for (route, upstream), reasons in expect.items():
            cfg = Path(workdir) / "explain.json"
            cfg.write_text(json.dumps(configs[route]))
            r = run([readers.cli, "explain", "--config", str(cfg), str(pki / upstream / "cert.pem")])
            got = json.loads(r.stdout)["reasons"] if r.returncode in (0, 1) else r.stderr
            if got != reasons:
                fail("pki", f"{deck}: route {route} with the {upstream} upstream: reasons {got}, expected {reasons}")
        errs = [readers.schema_errors(c) for c in configs.values()]
        if any(errs):
            fail("pki", f"{deck}: rendered configs fail the meta schema: {errs}")
    print(f"pki: compose-pki.sh renders {len(DECK_FILES)} decK files; the policies pass the legit "
          "upstream and reject the impostor")


# ---------------------------------------------------------------------------------------
# docker-compose.yaml, with a real Compose implementation.

def check_compose():
    compose = shutil.which("docker-compose")
    if not compose:
        fail("compose", "docker-compose not found (make kong-setup installs it)")
        return
    for deck in DECK_FILES:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KONG_", "LEGIT_"))}
        env["KONG_DECK_FILE"] = deck
        r = run([compose, "-f", str(ROOT / "docker-compose.yaml"), "--project-directory", str(ROOT),
                 "config"], env=env, cwd=ROOT)
        if r.returncode != 0:
            fail("compose", f"docker-compose config (KONG_DECK_FILE={deck}): {r.stderr.strip()}")
            return
        cfg = yaml.safe_load(r.stdout)
    services = cfg["services"]
    for name in ("pki", "upstream-legit", "upstream-impostor", "kong", "prometheus", "grafana"):
        if name not in services:
            fail("compose", f"service {name} is missing")
    for name, s in services.items():
        for v in s.get("volumes") or []:
            src = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            if src.startswith("/") or src.startswith("."):
                rel = Path(src)
                if src.startswith("/") and str(rel).startswith(str(ROOT)):
                    rel = rel.relative_to(ROOT)
                if str(rel) != "dist" and not (ROOT / rel).exists():
                    fail("compose", f"{name}: mounts {src}, which does not exist")
        for p in s.get("ports") or []:
            host_ip = p.get("host_ip") if isinstance(p, dict) else str(p).split(":")[0]
            if host_ip != "127.0.0.1":
                fail("compose", f"{name}: port {p} is not bound to 127.0.0.1")
    kong = services.get("kong", {})
    env = kong.get("environment") or {}
    for k, v in {"KONG_WASM": "on", "KONG_DATABASE": "off", "KONG_WASM_FILTERS_PATH": "/wasm"}.items():
        if env.get(k) != v:
            fail("compose", f"kong: {k} should be {v}, is {env.get(k)}")
    if not any(str(v).endswith("/dist:/wasm:ro") for v in kong.get("volumes") or []):
        fail("compose", "kong: dist/ is not mounted at /wasm")
    if "KONG_STATUS_LISTEN" not in env:
        fail("compose", "kong: KONG_STATUS_LISTEN is not set (Prometheus scrapes the Status API)")
    prom = yaml.safe_load((ROOT / "kong-config" / "prometheus.yml").read_text())
    targets = [t for sc in prom["scrape_configs"] for sg in sc["static_configs"] for t in sg["targets"]]
    status_port = env.get("KONG_STATUS_LISTEN", "").rsplit(":", 1)[-1]
    if f"kong:{status_port}" not in targets:
        fail("compose", f"kong-config/prometheus.yml does not scrape kong:{status_port}")
    print(f"compose: docker-compose config accepts docker-compose.yaml ({len(services)} services)")


# ---------------------------------------------------------------------------------------
# Alert rules (promtool) and the Grafana dashboard's queries.

def check_rules(workdir):
    obs = ROOT / "observability"
    rules = obs / "prometheus" / "mtls-guard.rules.yml"
    r = run(["promtool", "check", "rules", str(rules)])
    if r.returncode != 0:
        fail("rules", f"promtool check rules: {r.stdout}{r.stderr}")
    r = run(["promtool", "test", "rules", "mtls-guard.rules.test.yml"], cwd=obs / "prometheus")
    if r.returncode != 0:
        fail("rules", f"promtool test rules: {r.stdout}{r.stderr}")
    dash = json.loads((obs / "grafana" / "dashboards" / "mtls-guard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"].replace("label_values(", "count by (x) (").rsplit(",", 1)[0] + ")"
              for v in dash["templating"]["list"] if v.get("type") == "query"]
    subst = {"$__rate_interval": "5m", "$__range": "1h", "$route": ".*", "$instance": ".*"}
    group = []
    for i, e in enumerate(exprs):
        for k, v in subst.items():
            e = e.replace(k, v)
        group.append({"record": f"dashboard:query_{i}", "expr": e})
    tmp = Path(workdir) / "dashboard-queries.yml"
    tmp.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": group}]}))
    r = run(["promtool", "check", "rules", str(tmp)])
    if r.returncode != 0:
        fail("rules", f"dashboard queries do not parse as PromQL: {r.stdout}{r.stderr}")
    for base in ("cert_not_after_seconds", "checks_total", "pin_matches_total", "no_cert_source_total"):
        if not any(f"(pw_mtls_guard_)?mtls_guard_{base}" in e for e in exprs):
            fail("rules", f"the dashboard does not query mtls_guard_{base} under both hosts' names")
    prov = yaml.safe_load((obs / "grafana" / "provisioning" / "dashboards" / "mtls-guard.yml").read_text())
    if prov["providers"][0]["options"]["path"] != "/var/lib/grafana/dashboards":
        fail("rules", "the dashboard provider path does not match the compose mount")
    print(f"rules: promtool check/test rules pass; {len(exprs)} dashboard queries parse")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--names", required=True)
    args = ap.parse_args()
    meta = json.loads(META.read_text())
    readers = Readers(args.cli, meta)
    names_dump = json.loads(Path(args.names).read_text())
    with tempfile.TemporaryDirectory(prefix="check-kong-") as workdir:
        checks = [
            ("schema", lambda: check_schema(readers, meta)),
            ("examples", lambda: check_examples(readers)),
            ("labels", lambda: check_labels(meta, names_dump, workdir)),
            ("deck", lambda: [check_deck(ROOT / "kong-config" / f, form) for f, form in DECK_FILES.items()]),
            ("pki", lambda: check_pki(readers, workdir)),
            ("compose", check_compose),
            ("rules", lambda: check_rules(workdir)),
        ]
        passed = 0
        for name, check in checks:
            before = len(failures)
            check()
            passed += len(failures) == before
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    print(f"kong: {passed} passed, {len(checks) - passed} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
