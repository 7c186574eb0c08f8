#!/usr/bin/env bash
# Installs Debian packages without letting their scripts start system
# services (nginx, docker.io): meshbench runs its own instances, so the
# package scripts are forbidden to start any (policy-rc.d exit 101: "action
# forbidden") while apt runs, and what was there is put back.
#   scripts/apt-install.sh PACKAGE...
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then saved=$(mktemp); cp -p "$policy" "$saved"; fi
printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
trap 'if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
