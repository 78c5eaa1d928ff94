#!/usr/bin/env bash
# Build the packages into target/packages/:
#   vm-agent_VERSION_ARCH.deb, vm-agent-VERSION.ARCH.rpm   (the guest)
#   hvsim_VERSION_ARCH.deb,    hvsim-VERSION.ARCH.rpm      (the simulator)
#
#   packaging/build.sh [--no-build] [--version-suffix SUFFIX] [--out DIR]
#
# --no-build packages the existing target/release binaries; --version-suffix
# appends to the Debian revision and RPM release, --out writes elsewhere
# (the CI upgrade test builds a bumped set with both). Needs cargo-deb and cargo-generate-rpm; installs
# them (cargo install --locked) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
build=1
suffix=""
out=target/packages
while [ $# -gt 0 ]; do
    case "$1" in
    --no-build) build=0 ;;
    --version-suffix) suffix="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

for tool in cargo-deb cargo-generate-rpm; do
    command -v "$tool" >/dev/null || cargo install --locked "$tool"
done

if [ "$build" = 1 ]; then
    cargo build --release --locked -p agent -p rpctool -p hypervisor-sim --bins
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

# Stripped binaries for the .rpm (cargo-deb strips its own with --strip).
mkdir -p "$stage/bin"
for b in vm-agent vm-rpctool hvsim; do
    strip --strip-unneeded -o "$stage/bin/$b" "target/release/$b"
done

# Debian changelogs (one entry for this version).
date_r=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
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
ls -l "$out"
