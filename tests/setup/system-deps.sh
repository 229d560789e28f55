#!/usr/bin/env bash
# Install the Debian packages the tests (or, with "demo", the demo) need, when run as root on Debian;
# otherwise say what is missing.
set -euo pipefail
if [ "${1:-test}" = demo ]; then
  PACKAGES=(zstd gzip sqlite3 tar)
else
  PACKAGES=(postgresql postgresql-contrib mariadb-server mariadb-client zstd gzip age rsync sqlite3 tar shellcheck
    # systemd-analyze checks the schedule role's timer units (the test hosts do not run systemd)
    systemd
    # the molecule test hosts: rootful podman with runc and netavark, images built with debootstrap, reached over ssh
    podman runc netavark iptables debootstrap debian-archive-keyring openssh-client)
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packaged services must not start on install: the tests run their own throwaway servers.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.appvault && chmod +x /usr/sbin/policy-rc.d.appvault
  [ -e /usr/sbin/policy-rc.d ] || ln -s /usr/sbin/policy-rc.d.appvault /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$(readlink /usr/sbin/policy-rc.d 2>/dev/null)" = /usr/sbin/policy-rc.d.appvault ] && rm -f /usr/sbin/policy-rc.d
  rm -f /usr/sbin/policy-rc.d.appvault
else
  echo "missing packages (install them, or run as root on Debian): ${missing[*]}" >&2
  exit 1
fi
