#!/usr/bin/env bash
# Install what the tests drive: the real third-party clients and peers
# (Debian packages) and the Python tools (PyPI, in target/venv, which the
# tests find through HVSIM_PY or by default). Idempotent and quick when
# everything is there; `make test` and .ci/run both call it.
set -euo pipefail
cd "$(dirname "$0")/.."

# open-vm-tools: vmware-rpctool and vmtoolsd under `hvsim exec`; iproute2:
# network namespaces; ipmitool/openipmi: the BMC's client and peer;
# sblim-wbemcli: a CIM client; libnbd-bin/nbdkit/qemu-utils: NBD clients and
# peers; lintian/rpm/debootstrap: package checks; binutils (ar), file,
# unzip: the ESXi VIB check; python3-venv: the venv; xvfb/xclip: an X server
# and a desktop program for the clipboard tests; openssl: password hashes
# for the guest-operation tests' users; libpam0g-dev: to link vm-agent-auth
# (guest operations' PAM helper).
pkgs=(make open-vm-tools iproute2 ipmitool openipmi sblim-wbemcli python3-venv
      libnbd-bin nbdkit qemu-utils curl lintian rpm debootstrap
      binutils file unzip xvfb xclip openssl libpam0g-dev)
need=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            echo "test-deps: install these Debian packages as root: ${need[*]}" >&2
            exit 1
        fi
    fi
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi

# pywbem/pywbemtools (CIM), sushy and DMTF's Redfish-Service-Validator
# (Redfish), sushy-tools (the Redfish benchmark's peer).
if ! target/venv/bin/python -c 'import pywbem, sushy' 2>/dev/null \
    || [ ! -x target/venv/bin/rf_service_validator ] \
    || [ ! -x target/venv/bin/sushy-emulator ]; then
    python3 -m venv target/venv
    target/venv/bin/pip install --quiet pywbem pywbemtools sushy redfish-service-validator sushy-tools
fi
