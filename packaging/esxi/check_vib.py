#!/usr/bin/env python3
"""Read the hvsim VIB and offline bundle back and check them (issue 8).

    check_vib.py [--dir target/packages] [--acceptance LEVEL] [--no-live]

Checks, with Python's stdlib readers and the real tools (ar, unzip, file,
ldd, sh):

  * the .vib is an ar archive of descriptor.xml, sig.pkcs7, hvsim in that
    order (also as `ar t` lists it), owner root; sig.pkcs7 empty (unsigned);
  * descriptor.xml is well-formed, has every element VMware's tools write,
    in order, with the expected values; its payload size and sha-256 /
    gunzipped sha-256 / sha-1 match the payload; its file-list is the
    payload's files;
  * the payload is a gzipped tar, every entry owned by root, modes 0755 for
    the binary, the init script and directories, 01644 (sticky) for
    etc/hvsim/hvsim.toml, 0644 otherwise, no path outside the tree;
  * hvsim in it is statically linked (ELF: no interpreter, no DT_NEEDED;
    file and ldd agree) and runs `hvsim --help`;
  * the firewall ruleset is well-formed and opens exactly the non-loopback
    listeners of the packaged hvsim.toml (TCP: CIM https, Redfish, NBD;
    UDP: the IPMI range);
  * the init script starts, reports, restarts and stops the packaged hvsim
    with the packaged config (state and sockets moved to a temporary
    directory) inside a new network namespace, and refuses to start while
    the state directory's datastore is missing or the config is invalid;
  * the offline bundle zip holds index.xml, vendor-index.xml, metadata.zip
    and vib20/hvsim/<the same .vib>; `unzip -t` passes; the XML is
    well-formed and cross-references hold (vendor-index url, vib ID,
    relative path, packed size and sha-256 of the .vib).

Exits 1 with every failure listed.
"""

import argparse
import copy
import glob
import gzip
import hashlib
import io
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
import zipfile

FAILS = []


def check(ok, msg):
    if not ok:
        FAILS.append(msg)
        print("FAIL: " + msg)
    return ok


def parse_ar(data):
    """[(name, uid, gid, mode, bytes)] of a System V / GNU ar archive."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("no ar magic")
    out, pos = [], 8
    while pos < len(data):
        h = data[pos : pos + 60]
        if len(h) < 60 or h[58:60] != b"`\n":
            raise ValueError("bad ar member header at %d" % pos)
        name = h[0:16].decode("ascii").rstrip()
        if name.endswith("/") and name != "/":
            name = name[:-1]
        size = int(h[48:58])
        body = data[pos + 60 : pos + 60 + size]
        if len(body) != size:
            raise ValueError("ar member %s truncated" % name)
        out.append((name, int(h[28:34]), int(h[34:40]), int(h[40:48], 8), body))
        pos += 60 + size + (size & 1)
    return out


DESCRIPTOR_ORDER = [
    "type", "name", "version", "vendor", "summary", "description",
    "release-date", "urls", "relationships", "software-tags",
    "system-requires", "file-list", "acceptance-level",
    "live-install-allowed", "live-remove-allowed", "cimom-restart",
    "stateless-ready", "overlay", "payloads",
]  # fmt: skip


def check_descriptor(root, acceptance, payload, tar_bytes, tar_files, what):
    check(root.tag == "vib" and root.get("version") == "5.0", what + ": root is not <vib version=\"5.0\">")
    tags = [c.tag for c in root]
    check(
        tags[: len(DESCRIPTOR_ORDER)] == DESCRIPTOR_ORDER,
        "%s: elements %s, wanted %s first" % (what, tags, DESCRIPTOR_ORDER),
    )
    want = {
        "type": "bootbank",
        "name": "hvsim",
        "vendor": "vmtools-rs",
        "acceptance-level": acceptance,
        "live-install-allowed": "true",
        "live-remove-allowed": "true",
        "cimom-restart": "false",
        "stateless-ready": "true",
        "overlay": "false",
    }
    for tag, value in want.items():
        check(root.findtext(tag) == value, "%s: <%s> is %r, wanted %r" % (what, tag, root.findtext(tag), value))
    check(
        root.findtext("acceptance-level") in ("community", "partner", "accepted", "certified"),
        what + ": unknown acceptance level",
    )
    check(bool(root.findtext("summary")) and bool(root.findtext("description")), what + ": empty summary/description")
    check(re.fullmatch(r"\d+\.\d+\.\d+-\S+", root.findtext("version") or "") is not None, what + ": version not X.Y.Z-R")
    check(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?", root.findtext("release-date") or "") is not None,
        what + ": release-date not ISO 8601",
    )
    check(root.find("urls/url") is not None, what + ": no <urls><url>")
    for rel in ("depends", "conflicts", "replaces", "provides", "compatibleWith"):
        check(root.find("relationships/" + rel) is not None, "%s: no relationships/%s" % (what, rel))
    check(root.findtext("system-requires/maintenance-mode") == "false", what + ": maintenance-mode is not false")
    files = [f.text for f in root.findall("file-list/file")]
    check(sorted(files) == sorted(tar_files), "%s: file-list %s != payload files %s" % (what, files, tar_files))
    payloads = root.findall("payloads/payload")
    check(len(payloads) == 1, what + ": not exactly one payload")
    if payloads:
        p = payloads[0]
        check(p.get("name") == "hvsim" and p.get("type") == "vgz", what + ": payload not name=hvsim type=vgz")
        check(p.get("size") == str(len(payload)), "%s: payload size %s, is %d" % (what, p.get("size"), len(payload)))
        sums = {(c.get("checksum-type"), c.get("verify-process")): c.text for c in p.findall("checksum")}
        want_sums = {
            ("sha-256", None): hashlib.sha256(payload).hexdigest(),
            ("sha-256", "gunzip"): hashlib.sha256(tar_bytes).hexdigest(),
            ("sha-1", "gunzip"): hashlib.sha1(tar_bytes).hexdigest(),
        }
        check(sums == want_sums, "%s: payload checksums %s, computed %s" % (what, sums, want_sums))


MODES = {
    "opt/hvsim/bin/hvsim": 0o755,
    "etc/init.d/hvsim": 0o755,
    "etc/hvsim/hvsim.toml": 0o1644,
    "etc/vmware/firewall/hvsim.xml": 0o644,
    "etc/vmware/secpolicy/tardisks/hvsim": 0o644,
}


def check_payload(tar_bytes):
    """Check the tar; return {path: bytes} of its files."""
    files = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for m in tar.getmembers():
            where = "payload " + m.name
            check(not m.name.startswith("/") and ".." not in m.name.split("/"), where + ": path leaves the tree")
            check(m.uid == 0 and m.gid == 0, "%s: owner %d:%d, not root" % (where, m.uid, m.gid))
            check(m.uname == "root" and m.gname == "root", "%s: owner names %s:%s" % (where, m.uname, m.gname))
            if m.isdir():
                check(m.mode == 0o755, "%s: directory mode %o" % (where, m.mode))
            elif m.isfile():
                want = MODES.get(m.name)
                check(want is not None, where + ": unexpected file")
                check(m.mode == want, "%s: mode %04o, wanted %04o" % (where, m.mode, want or 0))
                files[m.name] = tar.extractfile(m).read()
            else:
                check(False, where + ": neither file nor directory")
    check(sorted(files) == sorted(MODES), "payload files %s, wanted %s" % (sorted(files), sorted(MODES)))
    return files


def elf_static(data):
    """(has PT_INTERP, DT_NEEDED count) of a 64-bit little-endian ELF."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF")
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    interp, needed = False, 0
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            interp = True
        if p_type == 2:  # PT_DYNAMIC
            for j in range(p_offset, p_offset + p_filesz, 16):
                tag, _ = struct.unpack_from("<qQ", data, j)
                if tag == 0:
                    break
                if tag == 1:  # DT_NEEDED
                    needed += 1
    return interp, needed


def check_binary(path):
    with open(path, "rb") as f:
        interp, needed = elf_static(f.read())
    check(not interp and needed == 0, "hvsim: dynamically linked (PT_INTERP %s, %d DT_NEEDED)" % (interp, needed))
    out = subprocess.run(["file", "-b", path], capture_output=True, text=True).stdout
    print("file: " + out.strip())
    check("statically linked" in out or "static-pie linked" in out, "file(1) does not say static: " + out)
    r = subprocess.run(["ldd", path], capture_output=True, text=True)
    print("ldd: " + (r.stdout + r.stderr).strip())
    check(
        "not a dynamic executable" in r.stdout + r.stderr or "statically linked" in r.stdout + r.stderr,
        "ldd lists libraries: " + r.stdout,
    )
    r = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and "Usage: hvsim" in r.stdout, "hvsim --help: exit %d, %r" % (r.returncode, r.stdout[:200]))


def parse_port_rules(xml_bytes):
    """[(protocol, begin, end)] of the inbound rules of ruleset hvsim."""
    root = ET.fromstring(xml_bytes)
    check(root.tag == "ConfigRoot", "firewall: root is not ConfigRoot")
    services = root.findall("service")
    check(len(services) == 1 and services[0].findtext("id") == "hvsim", "firewall: not one service with id hvsim")
    rules = []
    for s in services:
        check(s.findtext("enabled") in ("true", "false"), "firewall: <enabled> missing")
        check(s.findtext("required") == "false", "firewall: <required> is not false")
        ids = [r.get("id") for r in s.findall("rule")]
        check(len(set(ids)) == len(ids), "firewall: duplicate rule ids")
        for r in s.findall("rule"):
            check(r.findtext("direction") == "inbound", "firewall: rule %s not inbound" % r.get("id"))
            check(r.findtext("porttype") == "dst", "firewall: rule %s porttype not dst" % r.get("id"))
            proto = r.findtext("protocol")
            check(proto in ("tcp", "udp"), "firewall: rule %s protocol %s" % (r.get("id"), proto))
            port = r.find("port")
            if port.find("begin") is not None:
                b, e = int(port.findtext("begin")), int(port.findtext("end"))
            else:
                b = e = int(port.text)
            check(0 < b <= e < 65536, "firewall: rule %s bad port range" % r.get("id"))
            rules.append((proto, b, e))
    return rules


def listeners(config):
    """[(protocol, host, port, what)] of the packaged config's listeners."""
    out = []

    def add(proto, addr, what):
        if addr:
            host, port = addr.rsplit(":", 1)
            out.append((proto, host.strip("[]"), int(port), what))

    cim = config.get("cim", {})
    add("tcp", cim.get("http"), "cim.http")
    add("tcp", cim.get("https"), "cim.https")
    add("tcp", config.get("redfish", {}).get("listen"), "redfish.listen")
    add("tcp", config.get("nbd", {}).get("listen"), "nbd.listen")
    for vm in config.get("vm", []):
        add("udp", (vm.get("ipmi") or {}).get("listen"), "vm %s ipmi.listen" % vm.get("name"))
    return out


def check_firewall(rules, config):
    ls = listeners(config)
    for key in ("cim.https", "redfish.listen", "nbd.listen"):
        check(any(w == key for *_, w in ls), "packaged hvsim.toml sets no %s (the firewall opens it)" % key)
    check(any(w.endswith("ipmi.listen") for *_, w in ls), "packaged hvsim.toml sets no ipmi.listen")
    used = set()
    for proto, host, port, what in ls:
        hits = [r for r in rules if r[0] == proto and r[1] <= port <= r[2]]
        if host in ("127.0.0.1", "::1", "localhost"):
            check(not hits, "firewall opens %s/%d, which %s binds to loopback only" % (proto, port, what))
        else:
            check(bool(hits), "firewall does not open %s/%d (%s on %s)" % (proto, port, what, host))
            used.update(hits)
    for r in rules:
        check(r in used, "firewall rule %s/%d-%d matches no listener in hvsim.toml" % r)


def run(cmd, env, timeout=60):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def connects(proto, port):
    if proto == "tcp":
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            return False
    # UDP: the port is bound when binding it again fails.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("0.0.0.0", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def live_init(root):
    """Run in a fresh network namespace: drive etc/init.d/hvsim."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = os.path.join(root, "live")
    os.makedirs(os.path.join(work, "datastore1"))
    text = open(os.path.join(root, "etc/hvsim/hvsim.toml")).read()
    config = tomllib.loads(text)
    check(
        config.get("state_dir", "").startswith("/vmfs/volumes/"),
        "packaged state_dir %r is not on a datastore" % config.get("state_dir"),
    )
    # The packaged config, with the datastore and /var/run moved here.
    text = text.replace(config["state_dir"], work + "/datastore1/hvsim")
    text = text.replace("/var/run/hvsim", work + "/run")
    conf = os.path.join(work, "hvsim.toml")
    with open(conf, "w") as f:
        f.write(text)
    init = os.path.join(root, "etc/init.d/hvsim")
    env = dict(
        os.environ,
        HVSIM_BIN=os.path.join(root, "opt/hvsim/bin/hvsim"),
        HVSIM_CONFIG=conf,
        HVSIM_RUN_DIR=work + "/run",
        RUST_LOG="info",
    )
    sh = ["sh", init]
    pidfile = work + "/run/hvsim.pid"

    rc, out = run(sh + ["status"], env)
    check(rc == 3 and "not running" in out, "init status before start: %d %r" % (rc, out))
    t = time.monotonic()
    rc, out = run(sh + ["start"], env)
    print("init start: " + out.strip())
    check(rc == 0 and "started" in out, "init start: %d %r" % (rc, out))
    pid = open(pidfile).read().strip() if os.path.exists(pidfile) else ""
    check(pid.isdigit() and os.path.exists("/proc/" + pid), "no live pid in %s" % pidfile)
    rc, out = run(sh + ["status"], env)
    check(rc == 0 and ("pid %s" % pid) in out, "init status while running: %d %r" % (rc, out))
    for proto, _, port, what in listeners(tomllib.loads(text)):
        check(connects(proto, port), "%s (%s/%d) not listening after start" % (what, proto, port))
    check(os.path.exists(work + "/datastore1/hvsim/hvsim.log"), "no hvsim.log in the state directory")
    check(os.path.exists(work + "/datastore1/hvsim"), "state directory not created on the datastore")
    rc, out = run(sh + ["start"], env)
    check(rc == 0 and "already running" in out, "second start: %d %r" % (rc, out))
    rc, out = run(sh + ["restart"], env)
    new = open(pidfile).read().strip() if os.path.exists(pidfile) else ""
    check(rc == 0 and new.isdigit() and new != pid, "restart: %d %r (pid %s -> %s)" % (rc, out, pid, new))
    check(not os.path.exists("/proc/" + pid), "old pid %s alive after restart" % pid)
    rc, out = run(sh + ["stop"], env)
    check(rc == 0 and "stopped" in out, "stop: %d %r" % (rc, out))
    check(not os.path.exists("/proc/" + new), "pid %s alive after stop" % new)
    check(not os.path.exists(pidfile), "pidfile left after stop")
    rc, out = run(sh + ["status"], env)
    check(rc == 3, "status after stop: %d %r" % (rc, out))
    rc, out = run(sh + ["stop"], env)
    check(rc == 0 and "not running" in out, "stop when stopped: %d %r" % (rc, out))
    print("init start/status/restart/stop: %.1fs" % (time.monotonic() - t))

    # No datastore: a clear refusal, nothing started.
    bad = text.replace(work + "/datastore1/hvsim", work + "/datastore2/hvsim")
    with open(conf, "w") as f:
        f.write(bad)
    rc, out = run(sh + ["start"], env)
    check(rc == 1 and "not mounted" in out, "start without the datastore: %d %r" % (rc, out))
    check(not os.path.exists(pidfile), "pidfile left after refusing to start")
    # An invalid config: start fails at once with hvsim's reason.
    with open(conf, "w") as f:
        f.write(text + "\nno_such_key = 1\n")
    t = time.monotonic()
    rc, out = run(sh + ["start"], env)
    check(rc == 1 and "no_such_key" in out, "start with a bad config: %d %r" % (rc, out))
    check(time.monotonic() - t < 10, "a failed start took %.1fs" % (time.monotonic() - t))
    check(not os.path.exists(pidfile), "pidfile left after a failed start")
    return 1 if FAILS else 0


def canon(e):
    """An element as text, without the whitespace that follows it."""
    if e is None:
        return None
    e = copy.deepcopy(e)
    e.tail = None
    return ET.tostring(e)


def check_bundle(path, vib_name, vib, descriptor_bytes):
    r = subprocess.run(["unzip", "-tq", path], capture_output=True, text=True)
    check(r.returncode == 0, "unzip -t %s: %s" % (path, r.stdout + r.stderr))
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        relpath = "vib20/hvsim/" + vib_name
        check(
            sorted(names) == sorted(["index.xml", "vendor-index.xml", "metadata.zip", relpath]),
            "bundle holds %s" % names,
        )
        for info in z.infolist():
            check((info.external_attr >> 16) & 0o7777 == 0o644, "bundle %s: mode %o" % (info.filename, info.external_attr >> 16))
        check(z.read(relpath) == vib if relpath in names else False, "bundle's .vib differs from " + vib_name)
        index = ET.fromstring(z.read("index.xml"))
        check(index.tag == "vendorList", "index.xml: root is not vendorList")
        v = index.find("vendor")
        check(v is not None and v.findtext("indexfile") == "vendor-index.xml", "index.xml: indexfile is not vendor-index.xml")
        check(v is not None and bool(v.findtext("name")) and bool(v.findtext("code")), "index.xml: vendor name/code empty")
        check(
            v is not None and v.findtext("content/type") == "http://www.vmware.com/depotmanagement/esx",
            "index.xml: content type is not depotmanagement/esx",
        )
        vindex_bytes = z.read("vendor-index.xml")
        vindex = ET.fromstring(vindex_bytes)
        check(vindex.tag == "metaList" and len(vindex.findall("metadata")) >= 1, "vendor-index.xml: no metaList/metadata")
        for m in vindex.findall("metadata"):
            check(m.findtext("productId") == "embeddedEsx", "vendor-index.xml: productId not embeddedEsx")
            check(m.findtext("url") in names, "vendor-index.xml: url %s not in the bundle" % m.findtext("url"))
            check(bool(m.findtext("version")), "vendor-index.xml: empty version")
        meta = zipfile.ZipFile(io.BytesIO(z.read("metadata.zip")))
    mnames = meta.namelist()
    bulletins = [n for n in mnames if n.startswith("bulletins/") and n.endswith(".xml")]
    vibs = [n for n in mnames if n.startswith("vibs/") and n.endswith(".xml")]
    check("vmware.xml" in mnames and "vendor-index.xml" in mnames, "metadata.zip lacks vmware.xml/vendor-index.xml: %s" % mnames)
    check(len(bulletins) == 1 and len(vibs) == 1 and len(mnames) == 4, "metadata.zip holds %s" % mnames)
    check(meta.read("vendor-index.xml") == vindex_bytes, "metadata.zip's vendor-index.xml differs from the bundle's")
    desc = ET.fromstring(descriptor_bytes)
    vib_id = "%s_%s_%s_%s" % (desc.findtext("vendor"), desc.findtext("type"), desc.findtext("name"), desc.findtext("version"))
    sha = hashlib.sha256(vib).hexdigest()
    if vibs:
        vm = ET.fromstring(meta.read(vibs[0]))
        check(vm.findtext("relative-path") == relpath, "vibs xml: relative-path %s" % vm.findtext("relative-path"))
        check(vm.findtext("packed-size") == str(len(vib)), "vibs xml: packed-size %s" % vm.findtext("packed-size"))
        check(vm.findtext("checksum[@checksum-type='sha-256']") == sha, "vibs xml: .vib sha-256 differs")
        for c in desc:
            check(
                canon(vm.find(c.tag)) == canon(c), "vibs xml: <%s> differs from descriptor.xml" % c.tag
            )
    if bulletins:
        b = ET.fromstring(meta.read(bulletins[0]))
        check(b.tag == "bulletin" and bulletins[0] == "bulletins/%s.xml" % b.findtext("id"), "bulletin id/name mismatch")
        check([e.text for e in b.findall("vibList/vibID")] == [vib_id], "bulletin vibList is not [%s]" % vib_id)
        for tag in ("vendor", "summary", "severity", "category", "urgency", "releaseType", "releaseDate"):
            check(bool(b.findtext(tag)), "bulletin: empty <%s>" % tag)
        check(b.findtext("releaseType") == "extension", "bulletin: releaseType is not extension")
        check(b.find("platforms/softwarePlatform") is not None, "bulletin: no platforms")
    r = ET.fromstring(meta.read("vmware.xml"))
    check(r.tag == "metadataResponse" and r.findtext("version") == "3.0", "vmware.xml: not metadataResponse 3.0")
    vibs_in = r.findall("bulletin/vibList/vib")
    check(len(vibs_in) == 1, "vmware.xml: not one vib")
    for x in vibs_in:
        check(x.findtext("vibID") == vib_id, "vmware.xml: vibID %s" % x.findtext("vibID"))
        check(x.findtext("vibFile/relativePath") == relpath, "vmware.xml: relativePath")
        check(x.findtext("vibFile/packedSize") == str(len(vib)), "vmware.xml: packedSize")
        check(x.findtext("vibFile/checksum/checksum") == sha, "vmware.xml: .vib sha-256 differs")
    print("offline bundle: %s; metadata.zip: %s" % (", ".join(sorted(names)), ", ".join(sorted(mnames))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="target/packages")
    ap.add_argument("--acceptance", default="community")
    ap.add_argument("--no-live", action="store_true", help="skip running the init script")
    ap.add_argument("--live-init", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.live_init:
        return live_init(a.live_init)

    vibs = glob.glob(os.path.join(a.dir, "vmtools-rs_bootbank_hvsim_*.vib"))
    bundles = glob.glob(os.path.join(a.dir, "hvsim-*-offline-bundle.zip"))
    if len(vibs) != 1 or len(bundles) != 1:
        print("FAIL: want one .vib and one offline bundle in %s, found %s %s" % (a.dir, vibs, bundles))
        return 1
    vib_path, bundle_path = vibs[0], bundles[0]
    version = vib_path.rsplit("_", 1)[1][: -len(".vib")]
    check(os.path.basename(bundle_path) == "hvsim-%s-offline-bundle.zip" % version, "bundle name does not carry " + version)
    vib = open(vib_path, "rb").read()

    members = parse_ar(vib)
    names = [m[0] for m in members]
    check(names == ["descriptor.xml", "sig.pkcs7", "hvsim"], "ar members %s" % names)
    listed = subprocess.run(["ar", "t", vib_path], capture_output=True, text=True, check=True).stdout.split()
    check(listed == ["descriptor.xml", "sig.pkcs7", "hvsim"], "`ar t` lists %s" % listed)
    for name, uid, gid, mode, _ in members:
        check(uid == 0 and gid == 0 and mode & 0o7777 == 0o644, "ar %s: %d:%d mode %o" % (name, uid, gid, mode))
    body = {m[0]: m[4] for m in members}
    check(body.get("sig.pkcs7") == b"", "sig.pkcs7 is not empty (this build does not sign)")
    payload = body.get("hvsim", b"")
    check(payload[:2] == b"\x1f\x8b", "payload is not gzip")
    tar_bytes = gzip.decompress(payload)
    files = check_payload(tar_bytes)
    desc_bytes = body.get("descriptor.xml", b"")
    desc = ET.fromstring(desc_bytes)  # raises on malformed XML
    check_descriptor(desc, a.acceptance, payload, tar_bytes, sorted(files), "descriptor.xml")
    check(desc.findtext("version") == version, "descriptor version %s, file name says %s" % (desc.findtext("version"), version))

    with tempfile.TemporaryDirectory(prefix="hvsim-vib-") as root:
        # Unpacked by tar(1), as the host would: modes as recorded.
        subprocess.run(
            ["tar", "-x", "--preserve-permissions", "--no-same-owner", "-C", root],
            input=tar_bytes,
            check=True,
        )
        check(os.stat(os.path.join(root, "etc/hvsim/hvsim.toml")).st_mode & 0o7777 == 0o1644, "extracted config lost the sticky bit")
        check_binary(os.path.join(root, "opt/hvsim/bin/hvsim"))
        config = tomllib.loads(files["etc/hvsim/hvsim.toml"].decode())
        rules = parse_port_rules(files["etc/vmware/firewall/hvsim.xml"])
        print("firewall: " + ", ".join("%s/%d-%d" % r for r in rules))
        check_firewall(rules, config)
        r = subprocess.run(["sh", "-n", os.path.join(root, "etc/init.d/hvsim")], capture_output=True, text=True)
        check(r.returncode == 0, "init script syntax: " + r.stderr)
        if a.no_live:
            print("init script not run (--no-live)")
        else:
            ns = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--net"]
            r = subprocess.run(ns + [sys.executable, os.path.abspath(__file__), "--live-init", root], timeout=300)
            check(r.returncode == 0, "init script run in a network namespace failed (exit %d)" % r.returncode)
        shutil.rmtree(os.path.join(root, "live"), ignore_errors=True)

    check_bundle(bundle_path, os.path.basename(vib_path), vib, desc_bytes)
    if FAILS:
        print("check_vib: %d failure(s)" % len(FAILS))
        return 1
    print(
        "check_vib: %s (%d bytes, payload %d bytes, acceptance %s) and %s: OK"
        % (os.path.basename(vib_path), len(vib), len(payload), desc.findtext("acceptance-level"), os.path.basename(bundle_path))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
