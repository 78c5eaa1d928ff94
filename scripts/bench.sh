#!/usr/bin/env bash
# Build release binaries and print the wire-path, trap-frontend, guest agent,
# IPMI, CIM, Redfish (and proxy-mode virtual media) and WS-Management
# benchmark tables (Markdown).
# Pass --quick for a short smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins >&2
# The agent and vm-rpctool are measured as they ship (static, guest profile).
scripts/guest-build.sh >&2
echo "machine: $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
./target/release/wire-bench "$@"
./target/release/trap-bench "$@"
./target/release/agent-bench "$@"
./target/release/ipmi-bench "$@"
./target/release/cim-bench "$@"
./target/release/redfish-bench "$@"
./target/release/vmedia-proxy-bench "$@"
./target/release/wsman-bench "$@"
./target/release/guestops-bench "$@"
./target/release/vsphere-bench "$@"
