#!/usr/bin/env bash
# Makes a Docker engine answer, for the kind platform and its tests:
#   scripts/engine.sh BIN    (BIN: the meshbench binary, for the runtime wrapper)
# Idempotent. An engine that already answers `docker info` is left alone.
# Otherwise, as root: installs Debian's docker.io when dockerd is missing, and
# starts dockerd with a configuration of meshbench's own (/etc/meshbench,
# never /etc/docker): no iptables rules or default bridge of Docker's on the
# host (kind makes its own network; meshbench's tests check the host's rules),
# and, where this host's capability bounding set lacks a capability Docker
# asks for privileged containers (kind's nodes), meshbench's OCI runtime
# wrapper as the default runtime, which leaves those out before calling runc.
set -euo pipefail

bin=${1:?usage: scripts/engine.sh path/to/meshbench}
conf_dir=/etc/meshbench
libexec=/usr/local/libexec/meshbench
log=/var/log/meshbench-dockerd.log

# The runtime wrapper is needed where the bounding set lacks a capability
# (bit 24, CAP_SYS_RESOURCE, on the machines this was written on).
missing=$("$bin" oci-runtime --missing)

if docker info >/dev/null 2>&1; then
  runtime=$(docker info --format '{{.DefaultRuntime}}' 2>/dev/null || true)
  if [ "$runtime" = meshbench ] && [ -w "$libexec" ] && ! cmp -s "$bin" "$libexec/meshbench"; then
    # Ours: keep the wrapper's binary current (dockerd calls it by path).
    install -m 0755 "$bin" "$libexec/meshbench.new" && mv "$libexec/meshbench.new" "$libexec/meshbench"
  fi
  if [ -n "$missing" ] && [ "$runtime" != meshbench ]; then
    echo "engine: warning: this host's bounding set lacks $missing and the running engine's default runtime is $runtime: kind's privileged nodes will fail (\"unable to apply caps\"); stop it and run this script to start one with meshbench's runtime wrapper" >&2
  fi
  echo "engine: a Docker engine answers; leaving it alone"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "engine: no Docker engine answers and this is not root: start one (the kind platform needs it)" >&2
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "engine: no dockerd and no apt-get: install a Docker engine" >&2; exit 1; }
  echo "engine: installing Debian's docker.io"
  "$(dirname "$0")/apt-install.sh" docker.io
fi

mkdir -p "$conf_dir"
runtime_json=""
if [ -n "$missing" ]; then
  mkdir -p "$libexec"
  # A copy, so that the engine does not depend on a checkout's binary.
  if ! cmp -s "$bin" "$libexec/meshbench"; then
    install -m 0755 "$bin" "$libexec/meshbench.new" && mv "$libexec/meshbench.new" "$libexec/meshbench"
  fi
  # dockerd calls a runtime by path with runc's arguments.
  printf '#!/bin/sh\nexec %s/meshbench oci-runtime -- "$@"\n' "$libexec" > "$libexec/oci-runtime.new"
  chmod 0755 "$libexec/oci-runtime.new" && mv "$libexec/oci-runtime.new" "$libexec/oci-runtime"
  echo "engine: the capability bounding set lacks $missing: dockerd runs containers through meshbench's runtime wrapper"
  runtime_json=', "runtimes": {"meshbench": {"path": "'"$libexec/oci-runtime"'"}}, "default-runtime": "meshbench"'
fi
cat > "$conf_dir/dockerd.json.new" <<JSON
{"iptables": false, "bridge": "none"$runtime_json}
JSON
mv "$conf_dir/dockerd.json.new" "$conf_dir/dockerd.json"

echo "engine: starting dockerd (log: $log)"
setsid nohup dockerd --config-file "$conf_dir/dockerd.json" >>"$log" 2>&1 < /dev/null &
pid=$!
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    echo "engine: dockerd answers ($(docker version --format '{{.Server.Version}}'))"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "engine: dockerd exited; the end of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "engine: dockerd did not answer within 60 s; the end of $log:" >&2
tail -n 20 "$log" >&2
exit 1
