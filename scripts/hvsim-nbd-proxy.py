#!/usr/bin/env python3
"""Serve a local file as proxy-mode virtual media of hvsim's Redfish BMC.

The BMC (hvsim) is the NBD client, this script the NBD server, over the
WebSocket of a proxy slot (`Managers/{vm}-bmc/VirtualMedia/Slot_N`, its
`Oem.OpenBMC.WebSocketEndpoint`), as OpenBMC's web UI does from a browser.
The medium is inserted while the script runs and ejected when it ends
(Ctrl-C), when the BMC ejects it (EjectMedia), or when the BMC sends
NBD_CMD_DISC.

NBD server side, the way OpenBMC's NBDServer.js speaks it: an 18-byte
greeting (NBDMAGIC, IHAVEOPT, flags FIXED_NEWSTYLE|NO_ZEROES); only
NBD_OPT_EXPORT_NAME is supported (the name is ignored), every other option
is answered NBD_REP_ERR_UNSUP; the export is read-only. READ is served;
WRITE and TRIM are answered EPERM; other commands EINVAL; a READ beyond the
end of the file is answered ENOSPC and the socket is closed.

    hvsim-nbd-proxy.py --url https://127.0.0.1:8000 --user admin \\
        --password s3cret --vm vm0 --slot 0 --cacert redfish.crt disk.iso

Needs the `websockets` package (PyPI).
"""

import argparse
import base64
import json
import os
import signal
import ssl
import struct
import sys
import urllib.error
import urllib.request

try:
    from websockets.sync.client import connect
except ImportError:  # pragma: no cover
    sys.exit("hvsim-nbd-proxy: needs the websockets package: pip install websockets")

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2
OPT_EXPORT_NAME = 1
REP_ERR_UNSUP = 0x80000001
CMD_READ, CMD_WRITE, CMD_DISC, CMD_TRIM = 0, 1, 2, 4
EPERM, EINVAL, ENOSPC = 1, 22, 28
TFLAG_HAS_FLAGS, TFLAG_READ_ONLY = 1, 2
# Bounds on what the BMC may send.
MAX_OPTION = 4096
MAX_WRITE = 32 << 20


class ProtocolError(Exception):
    """The BMC broke the NBD protocol."""


class Stream:
    """The byte stream carried by the socket's binary messages."""

    def __init__(self, ws):
        self.ws = ws
        self.buf = bytearray()

    def read(self, n):
        while len(self.buf) < n:
            m = self.ws.recv()
            if isinstance(m, str):
                raise ProtocolError("text message on the NBD socket")
            self.buf += m
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def simple_reply(err, handle):
    return struct.pack(">IIQ", SIMPLE_REPLY_MAGIC, err, handle)


def serve(ws, f, size, log):
    """Speak NBD (server side) on `ws` for file object `f` of `size` bytes."""
    s = Stream(ws)
    ws.send(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
    (client_flags,) = struct.unpack(">I", s.read(4))
    if not client_flags & FLAG_FIXED_NEWSTYLE:
        raise ProtocolError("client does not speak fixed newstyle")
    zeroes = not client_flags & FLAG_NO_ZEROES
    while True:
        magic, opt, length = struct.unpack(">QII", s.read(16))
        if magic != IHAVEOPT:
            raise ProtocolError("option magic %#x" % magic)
        if length > MAX_OPTION:
            raise ProtocolError("option of %d bytes" % length)
        s.read(length)
        if opt == OPT_EXPORT_NAME:
            reply = struct.pack(">QH", size, TFLAG_HAS_FLAGS | TFLAG_READ_ONLY)
            ws.send(reply + (b"\0" * 124 if zeroes else b""))
            break
        ws.send(struct.pack(">QIII", REPLY_MAGIC, opt, REP_ERR_UNSUP, 0))
    log("serving %d bytes" % size)
    fd = f.fileno()
    while True:
        magic, _flags, kind, handle, offset, length = struct.unpack(">IHHQQI", s.read(28))
        if magic != REQUEST_MAGIC:
            raise ProtocolError("request magic %#x" % magic)
        if kind == CMD_READ:
            if offset + length > size:
                ws.send(simple_reply(ENOSPC, handle))
                log("read beyond the end (%d+%d > %d): closing" % (offset, length, size))
                return
            data = os.pread(fd, length, offset)
            if len(data) != length:
                # The file shrank under us: an error, then hang up.
                ws.send(simple_reply(5, handle))
                log("the file ended early at %d: closing" % (offset + len(data)))
                return
            ws.send(simple_reply(0, handle) + data)
        elif kind == CMD_DISC:
            log("the BMC disconnected")
            return
        elif kind == CMD_WRITE:
            if length > MAX_WRITE:
                raise ProtocolError("write of %d bytes" % length)
            s.read(length)
            ws.send(simple_reply(EPERM, handle))
        elif kind == CMD_TRIM:
            ws.send(simple_reply(EPERM, handle))
        else:
            ws.send(simple_reply(EINVAL, handle))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", help="the image to serve (read-only)")
    p.add_argument("--url", required=True, help="the BMC's base URL, https://HOST:PORT")
    p.add_argument("--user", help="account name")
    p.add_argument("--password", help="its password")
    p.add_argument(
        "--auth",
        choices=["basic", "session", "cookie"],
        default="basic",
        help="basic: credentials on the upgrade; session: log in and send "
        "X-Auth-Token; cookie: log in as a browser (session cookie, XSRF "
        "token as the WebSocket subprotocol)",
    )
    p.add_argument("--token", help="an existing X-Auth-Token (no --user needed)")
    p.add_argument("--vm", default="vm0", help="the VM (its manager is VM-bmc)")
    p.add_argument("--slot", type=int, default=0, help="the proxy slot number (Slot_N)")
    p.add_argument("--endpoint", help="the WebSocket path (default: read from Redfish)")
    p.add_argument("--cacert", help="PEM file of the BMC's certificate or CA")
    p.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()

    def log(msg):
        if not a.quiet:
            print("hvsim-nbd-proxy: " + msg, file=sys.stderr, flush=True)

    ctx = ssl.create_default_context(cafile=a.cacert)
    if a.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    base = a.url.rstrip("/")
    headers = {}
    subprotocols = None
    session = None
    if a.token:
        headers["X-Auth-Token"] = a.token
    elif a.user is None or a.password is None:
        sys.exit("hvsim-nbd-proxy: give --user and --password, or --token")
    elif a.auth == "basic":
        cred = base64.b64encode(("%s:%s" % (a.user, a.password)).encode()).decode()
        headers["Authorization"] = "Basic " + cred
    else:
        login = {"UserName": a.user, "Password": a.password}
        h = {"Content-Type": "application/json"}
        if a.auth == "cookie":
            h["X-Requested-With"] = "XMLHttpRequest"
        req = urllib.request.Request(
            base + "/redfish/v1/SessionService/Sessions",
            data=json.dumps(login).encode(),
            headers=h,
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, context=ctx) as r:
                session = r.headers["Location"]
                if a.auth == "session":
                    headers["X-Auth-Token"] = r.headers["X-Auth-Token"]
                else:
                    cookies = {}
                    for c in r.headers.get_all("Set-Cookie") or []:
                        k, _, v = c.split(";")[0].partition("=")
                        cookies[k.strip()] = v.strip()
                    headers["Cookie"] = "; ".join("%s=%s" % kv for kv in cookies.items())
                    subprotocols = [cookies["XSRF-TOKEN"]]
        except urllib.error.HTTPError as e:
            sys.exit("hvsim-nbd-proxy: login failed: %s %s" % (e.code, e.read().decode(errors="replace")))
    endpoint = a.endpoint
    if endpoint is None:
        uri = "%s/redfish/v1/Managers/%s-bmc/VirtualMedia/Slot_%d" % (base, a.vm, a.slot)
        h = dict(headers)
        req = urllib.request.Request(uri, headers=h)
        try:
            with urllib.request.urlopen(req, context=ctx) as r:
                slot = json.load(r)
        except urllib.error.HTTPError as e:
            sys.exit("hvsim-nbd-proxy: %s: %s %s" % (uri, e.code, e.read().decode(errors="replace")))
        endpoint = slot["Oem"]["OpenBMC"]["WebSocketEndpoint"]
    wss = "wss://" + base.split("://", 1)[1] + endpoint
    f = open(a.file, "rb")
    size = os.fstat(f.fileno()).st_size
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    code = 0
    try:
        with connect(
            wss,
            additional_headers=headers,
            subprotocols=subprotocols,
            ssl=ctx,
            compression=None,
            max_size=None,
            open_timeout=30,
        ) as ws:
            log("connected to %s" % wss)
            try:
                serve(ws, f, size, log)
            except ProtocolError as e:
                log("protocol error: %s" % e)
                code = 1
    except Exception as e:  # websockets' closed/refused errors
        name = type(e).__name__
        if name in ("ConnectionClosedOK",):
            log("the BMC closed the socket")
        else:
            log("%s: %s" % (name, e))
            code = 1
    finally:
        if session and a.auth == "session":
            req = urllib.request.Request(base + session, headers=headers, method="DELETE")
            try:
                urllib.request.urlopen(req, context=ctx).close()
            except Exception:
                pass
    sys.exit(code)


if __name__ == "__main__":
    main()
