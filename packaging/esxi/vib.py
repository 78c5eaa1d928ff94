#!/usr/bin/env python3
"""Build the hvsim VIB and ESXi offline bundle (issue 8), Python 3 stdlib only.

    vib.py --binary target/x86_64-unknown-linux-gnu/release/hvsim \\
           --version 0.1.0-1 [--acceptance community] [--out target/packages]

Writes, in --out:

  vmtools-rs_bootbank_hvsim_VERSION.vib   an ar archive: descriptor.xml,
                                          sig.pkcs7 (empty: unsigned), hvsim
                                          (the payload, a gzipped tar)
  hvsim-VERSION-offline-bundle.zip        index.xml, vendor-index.xml,
                                          metadata.zip, vib20/hvsim/*.vib

The layout follows what VMware's VIB tools produce. Everything is
reproducible: owners root, fixed modes, times from SOURCE_DATE_EPOCH (else
now). packaging/esxi/check_vib.py reads the results back.
"""

import argparse
import gzip
import hashlib
import io
import os
import sys
import tarfile
import time
import zipfile
from xml.sax.saxutils import escape

HERE = os.path.dirname(os.path.abspath(__file__))

NAME = "hvsim"
# The payload name is the tardisk's name on the host: at most 8 characters.
PAYLOAD = "hvsim"
VENDOR = "vmtools-rs"
VENDOR_CODE = "VTR"
URL = "https://github.com/vmtools-rs/vmtools-rs"
CONTACT = "vmtools-rs@users.noreply.github.com"
SUMMARY = "hvsim: a simulated VMware host (backdoor, CIM, IPMI, Redfish, NBD)"
DESCRIPTION = (
    "hvsim simulates a VMware host for guest images, cloud-init and "
    "provisioning tests: per-VM backdoor sockets speaking the backdoor and "
    "GuestRPC protocols, guest variables, a control socket, IPMI, CIM-XML, "
    "Redfish and NBD. /etc/init.d/hvsim runs it with /etc/hvsim/hvsim.toml."
)
# ESXi releases the bundle declares itself for (softwarePlatform).
PLATFORMS = ["7.0.0", "8.0.0"]
ACCEPTANCE = ["community", "partner", "accepted", "certified"]

# (path in the payload, source, mode). Directories are added for every
# parent. The config carries the sticky bit: ESXi then keeps it writable
# in /etc and saves it across reboots.
FILES = [
    ("opt/hvsim/bin/hvsim", None, 0o755),  # source: --binary
    ("etc/init.d/hvsim", "hvsim.init", 0o755),
    ("etc/hvsim/hvsim.toml", "hvsim.toml", 0o1644),
    ("etc/vmware/firewall/hvsim.xml", "hvsim-firewall.xml", 0o644),
    ("etc/vmware/secpolicy/tardisks/hvsim", "hvsim.secpolicy", 0o644),
]


def tar_payload(binary, mtime):
    """The payload tar (uncompressed) as bytes: ustar, owner root."""
    entries = {}
    for path, src, mode in FILES:
        with open(binary if src is None else os.path.join(HERE, src), "rb") as f:
            entries[path] = (f.read(), mode)
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            entries.setdefault("/".join(parts[:i]) + "/", (None, 0o755))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(entries):
            data, mode = entries[path]
            info = tarfile.TarInfo(path.rstrip("/"))
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = mtime
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data, mtime):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=mtime, compresslevel=9) as g:
        g.write(data)
    return buf.getvalue()


def iso_date(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(epoch))


def el(tag, text, indent):
    return "%s<%s>%s</%s>\n" % ("  " * indent, tag, escape(text), tag)


def descriptor(version, acceptance, release_date, tar_bytes, vgz):
    """descriptor.xml: the VIB's metadata, as VMware's VIB tools write it."""
    files = "".join(el("file", p, 2) for p, _, _ in FILES)
    platforms = platforms_xml("softwarePlatform", 2)
    return (
        '<vib version="5.0">\n'
        + el("type", "bootbank", 1)
        + el("name", NAME, 1)
        + el("version", version, 1)
        + el("vendor", VENDOR, 1)
        + el("summary", SUMMARY, 1)
        + el("description", DESCRIPTION, 1)
        + el("release-date", release_date, 1)
        + "  <urls>\n"
        + '    <url key="website">%s</url>\n' % escape(URL)
        + "  </urls>\n"
        + "  <relationships>\n"
        + "    <depends/>\n"
        + "    <conflicts/>\n"
        + "    <replaces/>\n"
        + "    <provides/>\n"
        + "    <compatibleWith/>\n"
        + "  </relationships>\n"
        + "  <software-tags/>\n"
        + "  <system-requires>\n"
        + "    <maintenance-mode>false</maintenance-mode>\n"
        + platforms
        + "  </system-requires>\n"
        + "  <file-list>\n"
        + files
        + "  </file-list>\n"
        + el("acceptance-level", acceptance, 1)
        + el("live-install-allowed", "true", 1)
        + el("live-remove-allowed", "true", 1)
        + el("cimom-restart", "false", 1)
        + el("stateless-ready", "true", 1)
        + el("overlay", "false", 1)
        + "  <payloads>\n"
        + '    <payload name="%s" type="vgz" size="%d">\n' % (PAYLOAD, len(vgz))
        + '      <checksum checksum-type="sha-256">%s</checksum>\n'
        % hashlib.sha256(vgz).hexdigest()
        + '      <checksum checksum-type="sha-256" verify-process="gunzip">%s</checksum>\n'
        % hashlib.sha256(tar_bytes).hexdigest()
        + '      <checksum checksum-type="sha-1" verify-process="gunzip">%s</checksum>\n'
        % hashlib.sha1(tar_bytes).hexdigest()
        + "    </payload>\n"
        + "  </payloads>\n"
        + "</vib>\n"
    )


def ar_archive(members, mtime):
    """A System V / GNU ar archive of (name, bytes) in the given order."""
    out = [b"!<arch>\n"]
    for name, data in members:
        if len(name) > 15:
            raise ValueError("ar member name too long: " + name)
        header = "%-16s%-12d%-6d%-6d%-8o%-10d`\n" % (name + "/", mtime, 0, 0, 0o100644, len(data))
        out.append(header.encode("ascii"))
        out.append(data)
        if len(data) % 2:
            out.append(b"\n")
    return b"".join(out)


def zip_bytes(entries, epoch):
    """A zip of (name, bytes), stored in the given order, mode 0644."""
    stamp = time.gmtime(max(epoch, 315532800))[:6]  # zip times start in 1980
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100644 & 0xFFFF) << 16
            info.create_system = 3  # Unix, so the mode above counts
            z.writestr(info, data)
    return buf.getvalue()


def platforms_xml(tag, indent):
    return "".join(
        '%s<%s locale="" version="%s.*" productLineID="embeddedEsx"/>\n'
        % ("  " * indent, tag, p.split(".")[0])
        for p in PLATFORMS
    )


def bundle(version, desc, vib_name, vib, release_date, timestamp):
    """The offline bundle's files: index.xml, vendor-index.xml, metadata.zip."""
    relpath = "vib20/%s/%s" % (NAME, vib_name)
    vib_sha256 = hashlib.sha256(vib).hexdigest()
    vib_id = "%s_bootbank_%s_%s" % (VENDOR, NAME, version)
    bulletin_id = "%s-%s-%s" % (VENDOR, NAME, version)
    index = (
        "<vendorList>\n"
        "  <vendor>\n"
        + el("name", VENDOR, 2)
        + el("code", VENDOR_CODE, 2)
        + el("indexfile", "vendor-index.xml", 2)
        + "    <patchUrl></patchUrl>\n"
        "    <relativePath></relativePath>\n"
        "    <content>\n"
        + el("name", "VMware ESX", 3)
        + el("type", "http://www.vmware.com/depotmanagement/esx", 3)
        + "    </content>\n"
        "  </vendor>\n"
        "</vendorList>\n"
    )
    vendor_index = "<metaList>\n"
    for p in PLATFORMS:
        vendor_index += (
            "  <metadata>\n"
            + el("productId", "embeddedEsx", 2)
            + el("version", p, 2)
            + "    <locale></locale>\n"
            "    <patchUrl></patchUrl>\n"
            + el("url", "metadata.zip", 2)
            + el("channelName", "default", 2)
            + "  </metadata>\n"
        )
    vendor_index += "</metaList>\n"

    def bulletin_head(indent):
        i = indent
        return (
            el("id", bulletin_id, i)
            + el("vendor", VENDOR, i)
            + el("summary", SUMMARY, i)
            + el("severity", "general", i)
            + el("category", "general", i)
            + el("urgency", "general", i)
            + el("releaseType", "extension", i)
            + el("description", DESCRIPTION, i)
            + el("kbUrl", URL, i)
            + el("contact", CONTACT, i)
            + '%s<componentNameSpec name="%s" uiString="hvsim simulated VMware host"/>\n'
            % ("  " * i, NAME)
            + '%s<componentVersionSpec version="%s" uiString="%s"/>\n' % ("  " * i, version, version)
            + el("releaseDate", release_date, i)
            + "  " * i + "<platforms>\n"
            + platforms_xml("softwarePlatform", i + 1)
            + "  " * i + "</platforms>\n"
        )

    bulletin = (
        "<bulletin>\n"
        + bulletin_head(1)
        + "  <vibList>\n"
        + el("vibID", vib_id, 2)
        + "  </vibList>\n"
        "</bulletin>\n"
    )
    vmware = (
        "<metadataResponse>\n"
        + el("version", "3.0", 1)
        + el("timestamp", timestamp, 1)
        + "  <bulletin>\n"
        + bulletin_head(2)
        + "    <vibList>\n"
        "      <vib>\n"
        + el("vibVersion", "5.0", 4)
        + el("vibID", vib_id, 4)
        + el("name", NAME, 4)
        + el("version", version, 4)
        + el("vendor", VENDOR, 4)
        + el("vibType", "bootbank", 4)
        + el("summary", SUMMARY, 4)
        + "        <systemReqs>\n"
        + el("maintenance-mode", "false", 5)
        + platforms_xml("swPlatform", 5)
        + "        </systemReqs>\n"
        "        <relationships/>\n"
        "        <postInstall>\n"
        + el("rebootRequired", "false", 5)
        + el("hostdRestart", "false", 5)
        + "        </postInstall>\n"
        "        <softwareTags/>\n"
        "        <vibFile>\n"
        "          <sourceUrl></sourceUrl>\n"
        + el("relativePath", relpath, 5)
        + el("packedSize", str(len(vib)), 5)
        + "          <checksum>\n"
        + el("checksumType", "sha-256", 6)
        + el("checksum", vib_sha256, 6)
        + "          </checksum>\n"
        "        </vibFile>\n"
        "      </vib>\n"
        "    </vibList>\n"
        "  </bulletin>\n"
        "</metadataResponse>\n"
    )
    # The depot's copy of descriptor.xml says where the .vib is and what it
    # weighs.
    vib_meta = desc.replace(
        "</vib>\n",
        "  <relative-path>%s</relative-path>\n"
        "  <packed-size>%d</packed-size>\n"
        '  <checksum checksum-type="sha-256">%s</checksum>\n'
        "</vib>\n" % (escape(relpath), len(vib), vib_sha256),
    )
    return relpath, index, vendor_index, [
        ("vmware.xml", vmware),
        ("vendor-index.xml", vendor_index),
        ("bulletins/%s.xml" % bulletin_id, bulletin),
        ("vibs/%s-%s.xml" % (NAME, vib_sha256[:10]), vib_meta),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True, help="the statically linked hvsim")
    ap.add_argument("--version", required=True, help="VIB version, e.g. 0.1.0-1")
    ap.add_argument("--acceptance", default="community", choices=ACCEPTANCE)
    ap.add_argument("--out", default="target/packages")
    a = ap.parse_args()

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or time.time())
    release_date = iso_date(epoch)
    tar_bytes = tar_payload(a.binary, epoch)
    vgz = gzip_bytes(tar_bytes, epoch)
    desc = descriptor(a.version, a.acceptance, release_date, tar_bytes, vgz)
    # sig.pkcs7 stays empty: this build does not sign. Community VIBs carry
    # no signature; the other levels then install only with --no-sig-check.
    vib = ar_archive(
        [("descriptor.xml", desc.encode()), ("sig.pkcs7", b""), (PAYLOAD, vgz)], epoch
    )
    vib_name = "%s_bootbank_%s_%s.vib" % (VENDOR, NAME, a.version)
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000", time.gmtime(epoch))
    relpath, index, vendor_index, meta = bundle(
        a.version, desc, vib_name, vib, release_date, timestamp
    )
    metadata_zip = zip_bytes([(n, d.encode()) for n, d in meta], epoch)
    offline = zip_bytes(
        [
            ("index.xml", index.encode()),
            ("vendor-index.xml", vendor_index.encode()),
            ("metadata.zip", metadata_zip),
            (relpath, vib),
        ],
        epoch,
    )
    os.makedirs(a.out, exist_ok=True)
    for name, data in [
        (vib_name, vib),
        ("%s-%s-offline-bundle.zip" % (NAME, a.version), offline),
    ]:
        path = os.path.join(a.out, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        print("%s (%d bytes)" % (path, len(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
