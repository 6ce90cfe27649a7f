#!/usr/bin/env python3
"""Validates Kubernetes manifests offline, for sous's tests of `sous export lws`.

Run with the interpreter of the venv scripts/install-k8s-validate makes (/var/cache/sous/k8s-validate/venv):

    k8s-validate.py [--lws-schema FILE] [--lws-crd FILE] MANIFEST.yaml...

Each file is parsed as YAML 1.1 with PyYAML's SafeLoader (what kubernetes-validate and the `kubernetes` Python
client load manifests with), every document then checked:
- core kinds (Service, ...) against the Kubernetes 1.37 OpenAPI schemas that the kubernetes-validate package ships,
  strict (an unknown field is an error, as `kubectl apply --validate=strict` makes it);
- LeaderWorkerSet against --lws-schema (sous's schema of the CRD's spec, whose pod templates are the core
  PodTemplateSpec of the same package) and, when given, --lws-crd: the CRD file itself, its openAPIV3Schema made
  strict the same way;
- what the schemas cannot say: names that must be DNS labels, `$(VAR)` references in command/args/env that no
  variable defines (Kubernetes leaves them as literal text), and no secret as a literal env value.
Prints one line per document and a closing `N passed, N failed`; exit 0 only when every document passed.
"""
import argparse
import json
import os
import re
import sys

import jsonschema
import referencing
import yaml
from kubernetes_validate import utils as kv

K8S_VERSION = "1.37.0"
DEFS_URI = "https://kubernetes.io/api/_definitions.json"
# pkg/utils/pod/pod_utils.go (kubernetes-sigs/lws, AddLWSVariables): the variables LWS adds to every container.
LWS_VARIABLES = {"LWS_LEADER_ADDRESS", "LWS_GROUP_SIZE", "LWS_WORKER_INDEX"}
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SECRETISH = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)
# k8s.io/kubernetes third_party/forked/golang/expansion: `$$` is a literal `$`, `$(NAME)` a reference.
REFERENCE = re.compile(r"\$(\$|\(([A-Za-z_][A-Za-z0-9_]*)\))")


def strict_dir():
    return os.path.join(os.path.dirname(kv.__file__), "kubernetes-json-schema", f"v{K8S_VERSION}-local-strict")


def definitions():
    with open(os.path.join(strict_dir(), "_definitions.json")) as f:
        return json.load(f)


def crd_schema(path):
    """The CRD's openAPIV3Schema as JSON Schema: strict (additionalProperties false where a structural schema
    lists properties and does not preserve unknown fields), int-or-string as written."""
    with open(path) as f:
        crd = yaml.safe_load(f)
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    schema = version["schema"]["openAPIV3Schema"]

    def tighten(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for value in node.values():
                tighten(value)
        elif isinstance(node, list):
            for value in node:
                tighten(value)
    tighten(schema)
    # The API server fills apiVersion, kind and metadata for every object, whatever the CRD lists there.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema, crd["spec"]["group"] + "/" + version["name"]


def references(text):
    return [m.group(2) for m in REFERENCE.finditer(text) if m.group(2)]


def check_pod(spec, template, problems):
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        defined = set(LWS_VARIABLES)
        names = [e["name"] for e in c.get("env", [])]
        if len(names) != len(set(names)):
            problems.append(f"{template}: container {c['name']}: an env variable is set twice: {names}")
        for e in c.get("env", []):
            # An env value may refer to variables defined before it (and LWS's, which it prepends).
            for ref in references(e.get("value", "")):
                if ref not in defined:
                    problems.append(f"{template}: container {c['name']}: env {e['name']} refers to $({ref}), defined by nothing before it")
            if SECRETISH.search(e["name"]) and "value" in e:
                problems.append(f"{template}: container {c['name']}: env {e['name']} holds a literal value; a secret comes from a secretKeyRef")
            defined.add(e["name"])
        for field in ("command", "args"):
            for word in c.get(field, []):
                for ref in references(word):
                    if ref not in defined:
                        problems.append(f"{template}: container {c['name']}: {field} refers to $({ref}), which no env variable defines")


def check_extra(doc, problems):
    name = doc.get("metadata", {}).get("name", "")
    if doc["kind"] in ("LeaderWorkerSet", "Service") and not (DNS1035.match(name) and len(name) <= 63):
        problems.append(f"metadata.name `{name}` is not a DNS-1035 label")
    ns = doc.get("metadata", {}).get("namespace")
    if ns is not None and not (DNS1123.match(ns) and len(ns) <= 63):
        problems.append(f"metadata.namespace `{ns}` is not a DNS-1123 label")
    if doc["kind"] == "LeaderWorkerSet":
        lwt = doc["spec"]["leaderWorkerTemplate"]
        for key in ("leaderTemplate", "workerTemplate"):
            if key in lwt:
                check_pod(lwt[key].get("spec", {}), key, problems)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lws-schema", help="JSON Schema of a LeaderWorkerSet (refers to the core definitions)")
    p.add_argument("--lws-crd", help="the LeaderWorkerSet CRD YAML, validated against as well")
    p.add_argument("files", nargs="+")
    a = p.parse_args()

    defs = referencing.Resource.from_contents(definitions())
    registry = referencing.Registry().with_resource(DEFS_URI, defs)
    validators = []
    if a.lws_schema:
        with open(a.lws_schema) as f:
            validators.append(("sous's LWS schema", "leaderworkerset.x-k8s.io/v1",
                               jsonschema.Draft202012Validator(json.load(f), registry=registry)))
    if a.lws_crd:
        schema, api = crd_schema(a.lws_crd)
        validators.append(("the LWS CRD", api, jsonschema.Draft7Validator(schema)))

    passed = failed = 0
    for path in a.files:
        with open(path) as f:
            docs = [d for d in yaml.load_all(f, Loader=yaml.SafeLoader) if d is not None]
        for i, doc in enumerate(docs):
            where = f"{path}[{i}] {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            problems = []
            if doc.get("kind") == "LeaderWorkerSet":
                if not validators:
                    problems.append("a LeaderWorkerSet, but neither --lws-schema nor --lws-crd was given")
                for label, api, v in validators:
                    if doc.get("apiVersion") != api:
                        problems.append(f"apiVersion {doc.get('apiVersion')}, {label} serves {api}")
                    for e in sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                        problems.append(f"{label}: {'.'.join(map(str, e.absolute_path))}: {e.message[:300]}")
            else:
                try:
                    kv.validate(doc, K8S_VERSION, strict=True)
                except kv.ValidationError as e:
                    problems.append(f"Kubernetes {K8S_VERSION}: {'.'.join(map(str, e.path))}: {e.message[:300]}")
                except kv.SchemaNotFoundError as e:
                    problems.append(f"no schema: {e.message}")
            if not problems:
                check_extra(doc, problems)
            if problems:
                failed += 1
                for line in problems:
                    print(f"FAIL {where}: {line}")
            else:
                passed += 1
                print(f"ok   {where}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
