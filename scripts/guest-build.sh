#!/usr/bin/env bash
# Build the guest binaries as they ship: vm-agent (with vm-agent-session and
# vm-agent-deploy, its desktop-session and customization helpers), vm-rpctool
# and vm-toolbox, statically linked (glibc, +crt-static), whole-program LTO,
# abort on panic, stripped (the `guest` profile in Cargo.toml), into
#   target/x86_64-unknown-linux-gnu/guest/{vm-agent,vm-agent-session,vm-agent-deploy,
#       vm-rpctool,vm-toolbox,vm-agent-auth}
#
# Static, because in a guest the agent's resident memory is mostly mapped
# code: with libc.so, the pages of libc the agent touches count too (1.2 MiB
# of a 2.7 MiB RSS); linked in, only the parts it uses are there. The explicit
# --target keeps +crt-static off build scripts and proc macros.
#
# Relative relocations packed (DT_RELR, -z pack-relative-relocs): a
# static-pie relocates itself at start, reading every entry, so its
# relocation table is resident too; packed, vm-agent's is 1.5 KiB instead of
# 73 KiB (glibc applies RELR in static-pie since 2.36; the binary carries
# its libc, so the guest's glibc does not matter).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs" \
    cargo build --locked --profile guest --target x86_64-unknown-linux-gnu \
    -p agent -p rpctool --bins "$@"
# vm-agent-auth, the PAM login helper of guest operations, stays dynamic:
# PAM loads its modules with dlopen, which a static binary cannot do. It
# runs only while a login is checked, so its libraries cost no idle memory.
# Its own target directory: the same profile and target with other
# RUSTFLAGS would make the two builds rebuild each other.
cargo build --locked --profile guest --target x86_64-unknown-linux-gnu \
    --target-dir target/guest-dynamic -p vm-agent-auth --bins "$@"
cp target/guest-dynamic/x86_64-unknown-linux-gnu/guest/vm-agent-auth \
    target/x86_64-unknown-linux-gnu/guest/vm-agent-auth
