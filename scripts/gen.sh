#!/usr/bin/env bash
# Regenerates everything in gen/ from proto/: messages, gRPC stubs, .pyi stubs and
# the descriptor set Envoy's transcoder reads. Deterministic, so CI can diff it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$PWD/.venv/bin/python}
site=$("$PY" -c 'import google.api.annotations_pb2 as m, os; print(os.path.dirname(m.__file__))')

# The HTTP annotation protos, and the rich error types Envoy prints in JSON error
# bodies (google.rpc.BadRequest), vendored from the installed wheel.
mkdir -p third_party/googleapis/google/api third_party/googleapis/google/rpc
cp "$site/annotations.proto" "$site/http.proto" third_party/googleapis/google/api/
cp "$site/../rpc/status.proto" "$site/../rpc/error_details.proto" third_party/googleapis/google/rpc/

rm -rf gen && mkdir -p gen
mapfile -t protos < <(cd proto && find quizmesh -name '*.proto' | LC_ALL=C sort)
(cd proto && "$PY" -m grpc_tools.protoc \
  -I . -I ../third_party/googleapis \
  --python_out=../gen --grpc_python_out=../gen \
  --mypy_out=../gen --mypy_grpc_out=../gen \
  --plugin=protoc-gen-mypy="$(dirname "$PY")/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$(dirname "$PY")/protoc-gen-mypy_grpc" \
  "${protos[@]}")
# Envoy's descriptor set also carries google.rpc's error details, so that the
# transcoder can print a BadRequest in an HTTP error body (their Python code comes
# from googleapis-common-protos, so it is not generated here).
(cd proto && "$PY" -m grpc_tools.protoc \
  -I . -I ../third_party/googleapis \
  --include_imports --include_source_info \
  --descriptor_set_out=../gen/quizmesh.pb \
  "${protos[@]}" google/rpc/status.proto google/rpc/error_details.proto)
# Generated code is a plain import root (gen/ is on sys.path); mark the packages
# so mypy and setuptools see them.
find gen/quizmesh -type d -exec touch {}/__init__.py \;
"$PY" - <<'PY'
import pathlib
# Record which services Envoy transcodes: the exact list, taken from the contract.
from google.protobuf import descriptor_pb2
fds = descriptor_pb2.FileDescriptorSet.FromString(pathlib.Path("gen/quizmesh.pb").read_bytes())
names = sorted(f"{f.package}.{s.name}" for f in fds.file if f.package.startswith("quizmesh.") for s in f.service)
pathlib.Path("gen/services.txt").write_text("\n".join(names) + "\n")
PY
echo "gen/ regenerated: ${#protos[@]} protos"
