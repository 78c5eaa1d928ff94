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
# and a desktop program for the clipboard tests; e2fsprogs/util-linux/mount:
# the quiesced-snapshot tests' loop-mounted ext4 image in a private mount
# namespace (mkfs.ext4, unshare, nsenter, mount -o loop, fsfreeze); wsl (with
# uuid-runtime and libxml2-utils): a WS-Management client; openssl: TLS
# handshake checks and the guest-operation
# tests' password hashes; systemd: systemd-detect-virt under `hvsim exec`
# (the DMI test); libpam0g-dev: to link vm-agent-auth (guest operations'
# PAM helper); netplan.io: `netplan generate` reads what guest
# customization writes; freeipmi-tools: FreeIPMI's
# clients (bmc-info, ipmipower, ipmiconsole, ipmi-config, bmc-watchdog...);
# chromium/chromium-driver: the web console's browser tests (headless,
# driven by Selenium).
pkgs=(make open-vm-tools iproute2 ipmitool openipmi sblim-wbemcli python3-venv
      libnbd-bin nbdkit qemu-utils curl lintian rpm debootstrap
      binutils file unzip xvfb xclip e2fsprogs util-linux mount
      wsl uuid-runtime libxml2-utils openssl systemd
      libpam0g-dev netplan.io freeipmi-tools chromium chromium-driver)
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

# pywbem/pywbemtools (CIM), sushy, DMTF's Redfish-Service-Validator,
# Redfish-Protocol-Validator and redfish-utilities (rf_power_reset.py,
# rf_boot_override.py, rf_sensor_list.py) (Redfish), sushy-tools (the Redfish
# benchmark's peer), pypsrp (a WS-Management client), pyghmi (the IPMI
# library of OpenStack Ironic), selenium (drives Chromium in the web
# console tests).
if ! target/venv/bin/python -c 'import pywbem, sushy, pypsrp, redfish_utilities, redfish_protocol_validator, pyghmi, selenium' 2>/dev/null \
    || [ ! -x target/venv/bin/rf_service_validator ] \
    || [ ! -x target/venv/bin/sushy-emulator ]; then
    python3 -m venv target/venv
    target/venv/bin/pip install --quiet pywbem pywbemtools sushy redfish-service-validator redfish-protocol-validator redfish-utilities sushy-tools pypsrp pyghmi selenium
fi

# websockets: scripts/hvsim-nbd-proxy.py, the proxy-mode virtual media client
# (tests/tests/vmedia_proxy.rs, vmedia-proxy-bench).
if ! target/venv/bin/python -c 'import websockets.sync.client' 2>/dev/null; then
    python3 -m venv target/venv
    target/venv/bin/python -m pip install --quiet 'websockets>=13'
fi

# pyvmomi (the vSphere API's client) and Ansible: ansible-core, with the
# community.vmware collection unpacked from the `ansible` release wheel
# (installing the whole wheel writes 600 MB of collections).
if ! target/venv/bin/python -c 'import pyVmomi' 2>/dev/null \
    || [ ! -x target/venv/bin/ansible-playbook ]; then
    target/venv/bin/pip install --quiet pyvmomi 'ansible-core==2.19.14'
fi
if [ ! -d target/ansible/ansible_collections/community/vmware ]; then
    rm -rf target/ansible-dl
    mkdir -p target/ansible-dl target/ansible
    target/venv/bin/pip download --quiet --no-deps -d target/ansible-dl 'ansible==12.3.0'
    unzip -q -o target/ansible-dl/ansible-12.3.0-py3-none-any.whl \
        'ansible_collections/community/vmware/*' -d target/ansible
    rm -rf target/ansible-dl
fi
