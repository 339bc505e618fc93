#!/usr/bin/env bash
# Installs what MOM needs that a fresh Debian machine may lack: ZooKeeper (Debian's package,
# which brings Java), Chromium and its WebDriver (for the dashboard's test, e2e/ui/) and a Rust
# toolchain check. Safe to run again; it only installs what's missing.
set -euo pipefail

missing=()
{ [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1; } || missing+=(zookeeper)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing from Debian's packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }
  # Refresh the package lists only when they do not know one of the packages yet, or when
  # installing from them fails (stale lists name files the mirror no longer has).
  for package in "${missing[@]}"; do
    if ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      $SUDO apt-get update -qq
      break
    fi
  done
  install || { $SUDO apt-get update -qq && install; }
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install a Rust toolchain (rustup) and run this again" >&2
  exit 1
fi
