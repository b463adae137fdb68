#!/usr/bin/env bash
# Make sure node and npm exist: the Argo CD manifest tests validate Applications with the
# published @kubernetes-models/argo-cd validators, which run on Node.js. Installs Debian's
# nodejs and npm when the user is root or has sudo; otherwise prints the one command that would.
set -euo pipefail

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo_cmd=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo_cmd="sudo -n"
else
    echo "node: node and npm are missing and this user cannot install packages. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y nodejs npm" >&2
    exit 1
fi

echo "node: installing Debian's nodejs and npm"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nodejs npm >/dev/null
