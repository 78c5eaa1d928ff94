#!/usr/bin/env bash
# Build the packages into target/packages/:
#   vm-agent_VERSION_ARCH.deb, vm-agent-VERSION.ARCH.rpm   (the guest)
#   hvsim_VERSION_ARCH.deb,    hvsim-VERSION.ARCH.rpm      (the simulator)
#   vmtools-rs_bootbank_hvsim_VERSION-REV.vib,
#   hvsim-VERSION-REV-offline-bundle.zip                   (hvsim for ESXi)
#
#   packaging/build.sh [--no-build] [--version-suffix SUFFIX] [--out DIR]
#                      [--no-esxi] [--acceptance LEVEL]
#
# --no-build packages the existing target/release binaries; --version-suffix
# appends to the Debian revision and RPM release, --out writes elsewhere
# (the CI upgrade test builds a bumped set with both). Needs cargo-deb and cargo-generate-rpm; installs
# them (cargo install --locked) when missing.
# The ESXi VIB carries a statically linked hvsim (glibc, crt-static) built
# into target/x86_64-unknown-linux-gnu/release/; --no-esxi skips it, and
# --acceptance sets the VIB's acceptance level: community (default),
# partner, accepted or certified (packaging/esxi/vib.py writes it).
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
suffix=""
out=target/packages
esxi=1
acceptance=community
while [ $# -gt 0 ]; do
    case "$1" in
    --no-build) build=0 ;;
    --version-suffix) suffix="$2"; shift ;;
    --out) out="$2"; shift ;;
    --no-esxi) esxi=0 ;;
    --acceptance) acceptance="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

case "$acceptance" in
community|partner|accepted|certified) ;;
*) echo "build.sh: --acceptance must be community, partner, accepted or certified" >&2; exit 2 ;;
esac

for tool in cargo-deb cargo-generate-rpm; do
    command -v "$tool" >/dev/null || cargo install --locked "$tool"
done

if [ "$build" = 1 ]; then
    cargo build --release --locked -p hypervisor-sim --bins
    # The guest binaries ship static, from the `guest` profile (LTO, abort on
    # panic): see scripts/guest-build.sh.
    scripts/guest-build.sh
    if [ "$esxi" = 1 ]; then
        # --target keeps the static build in its own subtree (and keeps
        # RUSTFLAGS off build scripts), so target/release stays valid.
        RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
            --target x86_64-unknown-linux-gnu -p hypervisor-sim --bin hvsim
    fi
fi
static_hvsim=target/x86_64-unknown-linux-gnu/release/hvsim
if [ "$esxi" = 1 ] && [ ! -x "$static_hvsim" ]; then
    echo "build.sh: no $static_hvsim (build without --no-build, or pass --no-esxi)" >&2
    exit 1
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
revision="1${suffix}"
stage=target/packaging
rm -rf "$stage"
mkdir -p "$out" "$stage/man" "$stage/vm-agent" "$stage/hvsim"

# Man pages (hand-written: vm-agent and vm-rpctool parse arguments by hand),
# compressed reproducibly.
for m in packaging/man/*.[0-9]; do
    gzip -9n -c "$m" > "$stage/man/$(basename "$m").gz"
done

# Stripped binaries for both packages: the guest's static ones and hvsim.
guest=target/x86_64-unknown-linux-gnu/guest
mkdir -p "$stage/bin"
for b in vm-agent vm-agent-session vm-rpctool vm-toolbox vm-agent-auth vm-agent-deploy; do
    if [ ! -x "$guest/$b" ]; then
        echo "build.sh: no $guest/$b (build without --no-build, or run scripts/guest-build.sh)" >&2
        exit 1
    fi
    strip --strip-unneeded -o "$stage/bin/$b" "$guest/$b"
done
strip --strip-unneeded -o "$stage/bin/hvsim" target/release/hvsim

# Debian changelogs (one entry for this version).
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
date_r=$(date -R -d "@$epoch")
for p in vm-agent hvsim; do
    cat > "$stage/$p/changelog" <<CL
$p ($version-$revision) unstable; urgency=medium

  * Built from vmtools-rs $(git rev-parse --short HEAD 2>/dev/null || echo unknown).

 -- vmtools-rs developers <vmtools-rs@users.noreply.github.com>  $date_r
CL
done

rm -f "$out"/vm-agent[_-]*.deb "$out"/vm-agent-*.rpm "$out"/hvsim[_-]*.deb "$out"/hvsim-*.rpm
cargo deb --no-build --strip -p agent --deb-revision "$revision" -o "$out/"
cargo deb --no-build --strip -p hypervisor-sim --deb-revision "$revision" -o "$out/"
cargo generate-rpm -p agent -s "release = \"$revision\"" -o "$out/"
cargo generate-rpm -p hypervisor-sim -s "release = \"$revision\"" -o "$out/"

# ESXi: the VIB and the offline bundle (esxcli software vib install -d ...).
rm -f "$out"/vmtools-rs_bootbank_hvsim_*.vib "$out"/hvsim-*-offline-bundle.zip
if [ "$esxi" = 1 ]; then
    mkdir -p "$stage/esxi"
    strip --strip-unneeded -o "$stage/esxi/hvsim" "$static_hvsim"
    SOURCE_DATE_EPOCH=$epoch python3 packaging/esxi/vib.py --binary "$stage/esxi/hvsim" --version "$version-$revision" \
        --acceptance "$acceptance" --out "$out"
fi
ls -l "$out"
