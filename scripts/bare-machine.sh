#!/usr/bin/env bash
# Runs a command where none of this machine's servers (MariaDB, Redis, NATS, ...) can
# be reached: in a network namespace of its own with only loopback and a veth pair
# whose two ends are both inside it (without a non-loopback interface Chromium
# believes it is offline). The namespace is deleted afterwards. Needs root.
#
#   scripts/bare-machine.sh make test
#
# The namespace has no route out, so whatever the command installs from the
# network (the venv, Chromium, mariadb-server) must be installed before.
set -euo pipefail
test $# -gt 0 || { echo "usage: $0 COMMAND..." >&2; exit 2; }
ns="quizmesh-bare-$$"
ip netns add "$ns"
trap 'ip netns delete "$ns"' EXIT
ip -n "$ns" link set lo up
ip -n "$ns" link add bare0 type veth peer name bare1
ip -n "$ns" addr add 10.213.0.1/30 dev bare0
ip -n "$ns" addr add 10.213.0.2/30 dev bare1
ip -n "$ns" link set bare0 up
ip -n "$ns" link set bare1 up
# Proof that the host's servers are out of reach before the command starts.
for port in 3306 6379 4222; do
  if ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
    echo "something answers on 127.0.0.1:$port inside $ns" >&2
    exit 1
  fi
done
echo "in $ns: nothing answers on 127.0.0.1:3306, 6379 or 4222" >&2
ip netns exec "$ns" "$@"
