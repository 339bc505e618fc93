#!/usr/bin/env bash
# Installs what MOM needs that a fresh Debian machine may lack: ZooKeeper (Debian's package,
# which brings Java) and a Rust toolchain check. Safe to run again; it only installs what's missing.
set -euo pipefail

missing=()
{ [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1; } || missing+=(zookeeper)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing from Debian's packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install a Rust toolchain (rustup) and run this again" >&2
  exit 1
fi
