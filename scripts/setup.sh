#!/usr/bin/env bash
# Installs what meshbench and its tests need, idempotently. Safe to run often:
# it only calls apt-get when a package is missing, and only as root.
set -euo pipefail

# Debian packages: iproute2 (ip netns, veth, bridge), iptables (the platform's
# FORWARD rule and transparent interception), util-linux (taskset for CPU
# placement), procps (ps, for the leftover checks in tests), haproxy and
# nginx with its stream module (the reference data planes meshbench compares
# its own with; the stream module carries TCP load), and chromium (the HTML
# report's test renders it headless and screenshots it), and debootstrap (the
# kind platform's offline node image starts from a Debian root filesystem).
packages=(iproute2 iptables util-linux procps haproxy nginx-light libnginx-mod-stream chromium debootstrap)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run as root (or install them: apt-get install ${missing[*]}); without them meshbench uses the loopback platform" >&2
  elif ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing packages ${missing[*]} and no apt-get on this host; install them with your package manager" >&2
  else
    echo "setup: installing ${missing[*]}"
    "$(dirname "$0")/apt-install.sh" "${missing[@]}"
  fi
fi

command -v go >/dev/null 2>&1 || { echo "setup: Go is required (https://go.dev/dl); not found in PATH" >&2; exit 1; }
go mod download
