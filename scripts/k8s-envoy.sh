#!/usr/bin/env bash
# Renders the Envoy config the Kubernetes manifests mount (k8s/base/envoy/): the same
# template as `make run`, with the gRPC services' headless Services as upstreams and
# the paths where the Envoy pod mounts the keys and the descriptor set.
# Usage: scripts/k8s-envoy.sh [OUT_DIR]   (default k8s/base/envoy; `make k8s-envoy`)
# tests/test_k8s_policy.py renders into a temporary folder and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
out=${1:-k8s/base/envoy}
mkdir -p "$out"
# Prometheus scrapes GET /stats/prometheus on 9464 (the `metrics` port, as for the
# services); the admin itself stays on 127.0.0.1:9901.
# Short names resolve in the pods' own namespace, so one config serves every overlay.
"$PY" -m devstack.gateway \
  --upstream quiz=quiz:50051 \
  --upstream score=score:50052 \
  --upstream leaderboard=leaderboard:50053 \
  --upstream stream=stream:50054 \
  --port 8080 \
  --admin-port 9901 \
  --stats-port 9464 \
  --stats-address 0.0.0.0 \
  --jwks /etc/quizmesh/keys/jwks.json \
  --envoy-descriptor /etc/envoy/quizmesh.pb \
  --output "$out/envoy.yaml"
# The pod's copy without source info (the protos' comments): Envoy needs only the
# types and the HTTP rules, and the ConfigMap must stay under kubectl apply's 256 KiB.
"$PY" - "$out/quizmesh.pb" <<'PY'
import pathlib, sys
from google.protobuf import descriptor_pb2
fds = descriptor_pb2.FileDescriptorSet.FromString(pathlib.Path("gen/quizmesh.pb").read_bytes())
for file in fds.file:
    file.ClearField("source_code_info")
pathlib.Path(sys.argv[1]).write_bytes(fds.SerializeToString(deterministic=True))
PY
