// hvsim web console: a read-only NBD server over a WebSocket, for
// proxy-mode virtual media. The browser serves a local file; the BMC (hvsim)
// is the NBD client. Fixed newstyle handshake, NBD_OPT_EXPORT_NAME only,
// simple replies (protocol facts: the NBD protocol document; the BMC side
// follows OpenBMC's proxy mode).
"use strict";

const NBD = {
  NBDMAGIC: [0x4e42444d, 0x41474943],
  IHAVEOPT: [0x49484156, 0x454f5054],
  REPLY_MAGIC: [0x0003e889, 0x045565a9],
  REQUEST_MAGIC: 0x25609513,
  SIMPLE_REPLY_MAGIC: 0x67446698,
  FLAG_FIXED_NEWSTYLE: 1,
  FLAG_NO_ZEROES: 2,
  // Transmission flags: HAS_FLAGS | READ_ONLY.
  TRANSMISSION_FLAGS: 0x0003,
  OPT_EXPORT_NAME: 1,
  OPT_ABORT: 2,
  REP_ERR_UNSUP: 0x80000001,
  CMD_READ: 0, CMD_WRITE: 1, CMD_DISC: 2, CMD_TRIM: 4,
  EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28,
  // Largest option payload and read this server accepts: a client asks
  // for far less (hvsim reads at most 128 KiB at a time).
  MAX_OPTION: 4096,
  MAX_READ: 32 << 20,
  // Reads come in small pieces (hvsim asks for at most 128 KiB); the file
  // is read in larger chunks, a few kept, since each File read is a round
  // trip through the browser.
  CHUNK: 2 << 20,
  CHUNKS_KEPT: 8,
};

class NbdServer {
  // file: a File (or Blob); url: wss://...; protocols: the WebSocket
  // subprotocols (the XSRF token); onstate(state, detail) is told
  // "connecting", "open", "serving", "closed" and "error".
  constructor(file, url, protocols, onstate) {
    this.file = file;
    this.size = file.size;
    this.url = url;
    this.protocols = protocols;
    this.onstate = onstate || (() => {});
    this.buf = new Uint8Array(0);
    this.state = "flags";
    this.clientFlags = 0;
    this.skip = 0; // WRITE payload bytes still to discard
    this.pendingWrite = null;
    this.reads = 0;
    this.bytesRead = 0;
    this.closed = false;
    this.ws = null;
    this.chunks = new Map(); // chunk index -> Promise<ArrayBuffer>, oldest first
  }

  // The bytes [start, end) of the file: from a cached chunk when they lie
  // in one, else read directly.
  bytes(start, end) {
    const c = Math.floor(start / NBD.CHUNK);
    if (Math.floor((end - 1) / NBD.CHUNK) !== c) {
      return this.file.slice(start, end).arrayBuffer();
    }
    let p = this.chunks.get(c);
    if (p) {
      this.chunks.delete(c); // most recently used last
    } else {
      const base = c * NBD.CHUNK;
      p = this.file.slice(base, Math.min(base + NBD.CHUNK, this.size)).arrayBuffer();
      // A failed read is not kept: the next request tries again.
      p.catch(() => this.chunks.delete(c));
    }
    this.chunks.set(c, p);
    while (this.chunks.size > NBD.CHUNKS_KEPT) this.chunks.delete(this.chunks.keys().next().value);
    const off = start - c * NBD.CHUNK;
    return p.then((buf) => {
      if (buf.byteLength < off + (end - start)) throw new Error("short read");
      return new Uint8Array(buf, off, end - start);
    });
  }

  start() {
    this.onstate("connecting", this.url);
    const ws = this.protocols && this.protocols.length
      ? new WebSocket(this.url, this.protocols)
      : new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      // The server speaks first: magic, IHAVEOPT, handshake flags.
      const g = new DataView(new ArrayBuffer(18));
      g.setUint32(0, NBD.NBDMAGIC[0]); g.setUint32(4, NBD.NBDMAGIC[1]);
      g.setUint32(8, NBD.IHAVEOPT[0]); g.setUint32(12, NBD.IHAVEOPT[1]);
      g.setUint16(16, NBD.FLAG_FIXED_NEWSTYLE | NBD.FLAG_NO_ZEROES);
      ws.send(g.buffer);
      this.onstate("open", "");
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        this.fail("the BMC sent text, not NBD bytes");
        return;
      }
      this.feed(new Uint8Array(e.data));
    };
    ws.onerror = () => { if (!this.closed) this.onstate("error", "the WebSocket failed (refused or lost)"); };
    ws.onclose = (e) => {
      this.closed = true;
      this.onstate("closed", e.reason || ("code " + e.code));
    };
  }

  // Close the socket: the BMC ejects the medium.
  stop(reason) {
    if (this.ws && !this.closed) {
      this.closed = true;
      try { this.ws.close(1000, reason || "ejected"); } catch (e) { /* already closing */ }
    }
  }

  fail(why) {
    this.onstate("error", why);
    this.stop(why.slice(0, 120));
  }

  send(bytes) {
    if (!this.closed && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  feed(bytes) {
    if (this.closed) return;
    if (this.buf.length === 0) {
      this.buf = bytes;
    } else {
      const b = new Uint8Array(this.buf.length + bytes.length);
      b.set(this.buf, 0); b.set(bytes, this.buf.length);
      this.buf = b;
    }
    // NBD messages may span WebSocket frames and a frame may hold several.
    for (;;) {
      if (this.closed) return;
      if (this.skip > 0) {
        const n = Math.min(this.skip, this.buf.length);
        this.buf = this.buf.subarray(n);
        this.skip -= n;
        if (this.skip > 0) return;
        this.reply(this.pendingWrite, NBD.EPERM);
        this.pendingWrite = null;
      }
      const used = this.step();
      if (used === 0) return;
      this.buf = this.buf.subarray(used);
    }
  }

  // Handle one message at the front of buf; the bytes it used (0: need more).
  step() {
    const b = this.buf;
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (this.state === "flags") {
      if (b.length < 4) return 0;
      this.clientFlags = dv.getUint32(0);
      this.state = "options";
      return 4;
    }
    if (this.state === "options") {
      if (b.length < 16) return 0;
      if (dv.getUint32(0) !== NBD.IHAVEOPT[0] || dv.getUint32(4) !== NBD.IHAVEOPT[1]) {
        this.fail("malformed NBD option (bad magic)");
        return 0;
      }
      const opt = dv.getUint32(8);
      const len = dv.getUint32(12);
      if (len > NBD.MAX_OPTION) {
        this.fail("NBD option of " + len + " bytes is too long");
        return 0;
      }
      if (b.length < 16 + len) return 0;
      if (opt === NBD.OPT_EXPORT_NAME) {
        // The name is ignored: this server has one export, the file.
        const zeroes = (this.clientFlags & NBD.FLAG_NO_ZEROES) ? 0 : 124;
        const r = new DataView(new ArrayBuffer(10 + zeroes));
        r.setBigUint64(0, BigInt(this.size));
        r.setUint16(8, NBD.TRANSMISSION_FLAGS);
        this.send(r.buffer);
        this.state = "transmission";
        this.onstate("serving", "");
      } else if (opt === NBD.OPT_ABORT) {
        this.stop("client aborted");
      } else {
        const r = new DataView(new ArrayBuffer(20));
        r.setUint32(0, NBD.REPLY_MAGIC[0]); r.setUint32(4, NBD.REPLY_MAGIC[1]);
        r.setUint32(8, opt);
        r.setUint32(12, NBD.REP_ERR_UNSUP);
        r.setUint32(16, 0);
        this.send(r.buffer);
      }
      return 16 + len;
    }
    // Transmission: 28-byte requests.
    if (b.length < 28) return 0;
    if (dv.getUint32(0) !== NBD.REQUEST_MAGIC) {
      this.fail("malformed NBD request (bad magic)");
      return 0;
    }
    const type = dv.getUint16(6);
    const handle = b.slice(8, 16);
    const offset = dv.getBigUint64(16);
    const length = dv.getUint32(24);
    switch (type) {
      case NBD.CMD_READ:
        this.read(handle, offset, length);
        break;
      case NBD.CMD_WRITE:
        // Consume the payload, then refuse: the medium is read-only.
        this.skip = length;
        this.pendingWrite = handle;
        if (length === 0) { this.reply(handle, NBD.EPERM); this.pendingWrite = null; }
        break;
      case NBD.CMD_DISC:
        this.stop("client disconnected");
        break;
      case NBD.CMD_TRIM:
        this.reply(handle, NBD.EPERM);
        break;
      default:
        this.reply(handle, NBD.EINVAL);
    }
    return 28;
  }

  // A simple reply: magic, error, handle, then the data (if any).
  reply(handle, error, data) {
    const n = data ? data.byteLength : 0;
    const out = new Uint8Array(16 + n);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, NBD.SIMPLE_REPLY_MAGIC);
    dv.setUint32(4, error);
    out.set(handle, 8);
    if (data) out.set(data instanceof Uint8Array ? data : new Uint8Array(data), 16);
    this.send(out.buffer);
  }

  read(handle, offset, length) {
    if (offset > BigInt(Number.MAX_SAFE_INTEGER) || Number(offset) + length > this.size) {
      // Past the end: refuse and hang up, the client is confused.
      this.reply(handle, NBD.ENOSPC);
      this.fail("the BMC read past the end of the file");
      return;
    }
    if (length > NBD.MAX_READ) {
      this.reply(handle, NBD.EINVAL);
      return;
    }
    const start = Number(offset);
    // Asynchronous: replies may leave in another order than the requests.
    this.bytes(start, start + length).then((data) => {
      if (data.byteLength !== length) {
        this.reply(handle, NBD.EIO);
        return;
      }
      this.reads += 1;
      this.bytesRead += length;
      this.reply(handle, 0, data);
    }, (err) => {
      // The file changed or vanished under us.
      this.reply(handle, NBD.EIO);
      this.onstate("error", "reading the file failed: " + err);
    });
  }
}

window.NbdServer = NbdServer;
