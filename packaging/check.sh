#!/usr/bin/env bash
# CI checks of the packages (issue 8), after packaging/build.sh:
#   1. the units pass `systemd-analyze verify`;
#   2. lintian reports no errors on the .debs;
#   3. each .rpm holds the same file set as the matching .deb;
#   4. the ESXi VIB and offline bundle read back (packaging/esxi/check_vib.py:
#      ar/tar/zip structure, modes, XML, checksums, firewall ports, the
#      static hvsim and its init script run in a network namespace);
#   5. in a Debian bookworm chroot (debootstrap minbase, cached under
#      target/debootstrap/): install, run vm-rpctool and vmware-rpctool,
#      upgrade to a bumped version, remove, purge; the same for hvsim.
#
#   packaging/check.sh [--no-build] [--no-chroot]
#
# Needs root for the chroot, and systemd-analyze, lintian, rpm, debootstrap.
# Nothing is mounted in the chroot and nothing is left running; the working
# copy of the chroot is deleted on exit. DEBOOTSTRAP_MIRROR picks the mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build_args=()
chroot_test=1
for a in "$@"; do
    case "$a" in
    --no-build) build_args+=(--no-build) ;;
    --no-chroot) chroot_test=0 ;;
    *) echo "check.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done

fail() { echo "check.sh: FAIL: $*" >&2; exit 1; }
step() { echo "== packaging: $*"; }

step "build the packages"
packaging/build.sh "${build_args[@]}"
pkgs=target/packages
upg=target/packages-upgrade
packaging/build.sh --no-build --no-esxi --version-suffix .1 --out "$upg" >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/vmtools-pkgcheck.XXXXXX")
cleanup() {
    # Kill anything still running inside the chroot (nothing should be),
    # then delete the working copy; refuse if anything is mounted in it.
    if [ -d "$work/root" ]; then
        for p in /proc/[0-9]*; do
            if [ "$(readlink "$p/root" 2>/dev/null)" = "$work/root" ]; then
                echo "check.sh: killing leftover ${p#/proc/} in the chroot" >&2
                kill -9 "${p#/proc/}" 2>/dev/null || true
            fi
        done
        if grep -q " $work/root" /proc/self/mounts; then
            echo "check.sh: something is mounted under $work/root; leaving it" >&2
            return
        fi
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step "systemd-analyze verify"
mkdir -p "$work/units"
for u in packaging/systemd/*.service; do
    # verify checks that ExecStart exists: point it at the packaged binaries.
    sed "s#/usr/bin/#$root/target/packaging/bin/#" "$u" > "$work/units/$(basename "$u")"
done
systemd-analyze verify --man=no "$work"/units/*.service
for u in packaging/systemd/*.service; do
    systemd-analyze security --offline=true "$u" | tail -n 1
done

deb() { ls "$1"/"$2"_*.deb; }
rpm_of() { ls "$1"/"$2"-*.rpm; }

step "lintian"
for p in vm-agent hvsim; do
    lintian --fail-on error --tag-display-limit 0 "$(deb $pkgs $p)" || fail "lintian errors in $p"
done

step "rpm and deb hold the same files"
for p in vm-agent hvsim; do
    # dpkg -c lists directories too (ending in /); rpm -qlp only what the
    # package owns. Compare files and symlinks, less the two files Debian
    # policy adds to every .deb (an RPM carries them in its header) and
    # lintian's overrides (Debian-only).
    dpkg -c "$(deb $pkgs $p)" | awk '{print $6}' | sed 's#^\./#/#' | grep -v '/$' \
        | grep -Ev "^/usr/share/doc/$p/(copyright|changelog\.Debian\.gz)$" \
        | grep -v "^/usr/share/lintian/overrides/" | sort > "$work/$p.deb.list"
    rpm -qlp "$(rpm_of $pkgs $p)" 2>/dev/null | sort > "$work/$p.rpm.list"
    if ! diff -u "$work/$p.deb.list" "$work/$p.rpm.list"; then
        fail "$p: .deb and .rpm file sets differ"
    fi
    echo "$p: $(wc -l < "$work/$p.deb.list") files in both"
done

step "ESXi VIB and offline bundle"
python3 packaging/esxi/check_vib.py --dir "$pkgs" || fail "ESXi VIB or offline bundle"

[ "$chroot_test" = 1 ] || { step "chroot test skipped (--no-chroot)"; exit 0; }

step "chroot: Debian bookworm minbase"
cache=target/debootstrap/bookworm-minbase
if [ ! -f "$cache/.complete" ]; then
    rm -rf "$cache"
    mkdir -p "$cache"
    timeout 900 debootstrap --variant=minbase bookworm "$cache" \
        "${DEBOOTSTRAP_MIRROR:-http://deb.debian.org/debian}" > "$work/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work/debootstrap.log"; rm -rf "$cache"; fail "debootstrap"; }
    touch "$cache/.complete"
fi
R="$work/root"
cp -a "$cache" "$R"
rm -f "$R/.complete"
mkdir -p "$R/tmp/pkgs"
cp "$pkgs"/*.deb "$upg"/*.deb "$R/tmp/pkgs/"

# Run in the chroot with a clean environment, bounded in time.
in_chroot() {
    timeout 120 chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive "$@"
}
dpkg_i() { in_chroot dpkg --force-confdef --force-confold -i "/tmp/pkgs/$(basename "$1")"; }
version_of() { in_chroot dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
status_of() { in_chroot dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || echo "un"; }

step "chroot: install vm-agent"
dpkg_i "$(deb $pkgs vm-agent)"
[ -x "$R/usr/bin/vm-agent" ] || fail "no /usr/bin/vm-agent"
[ "$(readlink "$R/usr/bin/vmware-rpctool")" = vm-rpctool ] || fail "vmware-rpctool is not a symlink to vm-rpctool"
[ "$(readlink "$R/usr/bin/vmware-toolbox-cmd")" = vm-toolbox ] || fail "vmware-toolbox-cmd is not a symlink to vm-toolbox"
set +e
in_chroot vmware-toolbox-cmd stat speed 2> "$work/tb.err"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q 'must be run inside a virtual machine' "$work/tb.err" \
    || fail "vmware-toolbox-cmd outside a VM: exit $rc, $(cat "$work/tb.err")"
in_chroot vm-rpctool --help > "$work/help.out" || fail "vm-rpctool --help failed"
grep -q '^Usage: vm-rpctool' "$work/help.out" || fail "vm-rpctool --help: no usage"
in_chroot vm-agent --version || fail "vm-agent --version"
# The customization helper runs only with a job from vm-agent: without one
# it says so and exits 64.
set +e
in_chroot vm-agent-deploy < /dev/null 2> "$work/deploy.err"
rc=$?
set -e
[ "$rc" = 64 ] && grep -q 'started by vm-agent' "$work/deploy.err" \
    || fail "vm-agent-deploy without a job: exit $rc, $(cat "$work/deploy.err")"
set +e
in_chroot vmware-rpctool 'info-get x' > "$work/rpc.out" 2> "$work/rpc.err"
rc=$?
set -e
cat "$work/rpc.err"
[ "$rc" = 1 ] || fail "vmware-rpctool outside a VM: exit $rc, wanted 1"
grep -q 'not running on a VMware hypervisor' "$work/rpc.err" || fail "vmware-rpctool did not say it is not in a VM"
[ ! -s "$work/rpc.out" ] || fail "vmware-rpctool printed on stdout outside a VM"
in_chroot dpkg-query -W -f='${Conflicts}|${Replaces}|${Provides}\n' vm-agent | grep -q 'open-vm-tools|open-vm-tools|open-vm-tools' \
    || fail "vm-agent does not conflict with, replace and provide open-vm-tools"

step "chroot: upgrade vm-agent, the edited config stays"
echo '# edited by the administrator' >> "$R/etc/vm-agent/agent.toml"
old=$(version_of vm-agent)
dpkg_i "$(deb $upg vm-agent)"
new=$(version_of vm-agent)
[ "$old" != "$new" ] || fail "upgrade kept version $old"
echo "vm-agent $old -> $new"
grep -q '^# edited by the administrator' "$R/etc/vm-agent/agent.toml" || fail "upgrade lost the edited agent.toml"
in_chroot vm-rpctool --help > /dev/null || fail "vm-rpctool --help after the upgrade"

step "chroot: remove and purge vm-agent"
in_chroot dpkg -r vm-agent
[ ! -e "$R/usr/bin/vm-agent" ] && [ ! -L "$R/usr/bin/vmware-rpctool" ] || fail "binaries left after remove"
[ -f "$R/etc/vm-agent/agent.toml" ] || fail "remove deleted the config (only purge may)"
[ "$(status_of vm-agent)" = "rc " ] || fail "vm-agent status after remove: $(status_of vm-agent)"
in_chroot dpkg -P vm-agent
[ ! -e "$R/etc/vm-agent" ] || fail "/etc/vm-agent left after purge"
[ "$(status_of vm-agent)" = "un" ] || [ -z "$(version_of vm-agent)" ] || fail "vm-agent still known after purge"

step "chroot: hvsim install, upgrade, remove, purge"
dpkg_i "$(deb $pkgs hvsim)"
in_chroot getent passwd hvsim > /dev/null || fail "no hvsim system user"
in_chroot hvsim --version || fail "hvsim --version"
[ -f "$R/etc/hvsim/hvsim.toml" ] || fail "no /etc/hvsim/hvsim.toml"
dpkg_i "$(deb $upg hvsim)"
mkdir -p "$R/var/lib/hvsim" && echo state > "$R/var/lib/hvsim/state.db"
in_chroot dpkg -r hvsim
[ -f "$R/var/lib/hvsim/state.db" ] || fail "remove deleted hvsim's state (only purge may)"
in_chroot dpkg -P hvsim
[ ! -e "$R/var/lib/hvsim" ] && [ ! -e "$R/etc/hvsim" ] || fail "hvsim state or config left after purge"

step "chroot: nothing left"
leftover=$(cd "$R" && find usr etc var run \( -name '*vm-agent*' -o -name '*hvsim*' -o -name '*rpctool*' \) 2>/dev/null || true)
[ -z "$leftover" ] || fail "left after purge: $leftover"
echo "== packaging checks passed"
