#!/usr/bin/env bash
# Installs the Debian 12 packages lwwsync needs to build, test and demo.
# Runs apt-get only when something is missing; uses sudo when not root.
set -euo pipefail
PACKAGES=(g++ make pkg-config sqlite3 libsqlite3-dev rapidjson-dev libgtest-dev libbenchmark-dev
          libcurl4-openssl-dev libpq-dev postgresql-15 postgresql-client-15 postgresql-server-dev-15
          libcpp-httplib-dev libmicrohttpd-dev libbrotli-dev libssl-dev zlib1g-dev curl openssl faketime procps iproute2
          clang libclang-rt-14-dev   # clang + libFuzzer/sanitizer runtimes: make fuzz
          clang-format)              # make format-check (.clang-format)
# The host tests (tests/hosts): Debian's python3 (its sqlite3 loads
# extensions) and Node.js with npm. A machine with its own Node.js (one that
# ships npm with it) keeps it: Debian's npm package would replace it.
PACKAGES+=(python3)
command -v node >/dev/null && command -v npm >/dev/null || PACKAGES+=(nodejs npm)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
