#!/usr/bin/env bash
# The Kubernetes gate, without a cluster (`make k8s-check`, part of `make lint`):
# hadolint on the Dockerfile, every overlay through kustomize, and every rendered
# object against the Kubernetes schemas in strict mode (an unknown or misspelt field
# fails), for the oldest Kubernetes we support and the newest. The rules the schemas
# cannot express (probes, hardening, grace periods, ...) are tests/test_k8s_policy.py.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
# 1.30: the oldest with the preStop `sleep` action on by default.
VERSIONS=${K8S_VERSIONS:-1.30.0 1.37.0}
out=build/k8s
rm -rf "$out" && mkdir -p "$out"

"$BIN/hadolint" Dockerfile
for overlay in k8s/overlays/*/; do
  name=$(basename "$overlay")
  "$BIN/kubectl" kustomize "$overlay" > "$out/$name.yaml"
done
for version in $VERSIONS; do
  "$BIN/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$out"/*.yaml
done
echo "k8s: Dockerfile lints clean; $(cd "$out" && echo *.yaml) render and validate against Kubernetes ${VERSIONS// /, }"
