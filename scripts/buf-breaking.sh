#!/usr/bin/env bash
# buf breaking against the previous commit of main that had protos (FILE rules).
set -euo pipefail
cd "$(dirname "$0")/.."
BUF=${BUF:-.venv/bin/buf}
base=$(git rev-parse -q --verify HEAD~1 2>/dev/null || true)
if [ -z "$base" ] || ! git cat-file -e "$base:buf.yaml" 2>/dev/null; then
  echo "buf breaking: no earlier commit with protos; nothing to compare"
  exit 0
fi
"$BUF" breaking --against ".git#ref=$base"
echo "buf breaking: no breaking change against $(git rev-parse --short "$base")"
