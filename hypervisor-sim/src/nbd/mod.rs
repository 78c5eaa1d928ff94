//! The NBD server: one export per inserted virtual medium, named `VM/SLOT`
//! (`vm0/Cd`), on `[nbd] listen` (default 127.0.0.1:10809, IANA's NBD port).
//!
//! Protocol (the NBD project's `doc/proto.md`): fixed newstyle handshake
//! only; options EXPORT_NAME, ABORT, LIST, INFO, GO and STRUCTURED_REPLY
//! (others answer NBD_REP_ERR_UNSUP); block size information; commands READ,
//! WRITE, FLUSH and DISC, with simple or structured replies. Several
//! connections per export are fine (CAN_MULTI_CONN: every write goes straight
//! to the backend, so a FLUSH on one connection covers the others).
//!
//! [`wire`] holds the wire layout and the pure parsers; this module does the
//! I/O. READs of a read-only medium backed by a local file leave with
//! `sendfile(2)` straight from the page cache (the reply header first, with
//! MSG_MORE); other media are read into a per-connection buffer and sent
//! with one writev of header and data.
//!
//! Threat table: clients are untrusted and unauthenticated (bind to
//! loopback, like qemu-nbd's default). Option payloads are bounded by
//! [`wire::MAX_OPTION`], request payloads by [`wire::MAX_PAYLOAD`] (a larger
//! WRITE closes the connection: it cannot be skipped safely; a larger READ
//! answers EINVAL), requests outside the image answer EINVAL (reads) or
//! ENOSPC (writes), writes to write-protected media EPERM. A bad request
//! magic closes the connection. Idle connections close after
//! [`IDLE_TIMEOUT`], and during the handshake after [`HANDSHAKE_TIMEOUT`];
//! connections are bounded by [`MAX_CONNECTIONS`] (lower when the
//! descriptor budget is small, [`crate::budget`]) and a quarter of them per
//! client address, so one client cannot hold them all. An
//! ejected medium answers ESHUTDOWN and closes.

pub mod client;
pub mod proxy;
pub mod wire;

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::media::{MediaError, Medium};
use wire::*;

/// Default listener (IANA port 10809).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10809";
/// Idle connections close after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Most concurrent connections.
pub const MAX_CONNECTIONS: usize = 128;
/// A client that sends nothing for this long during the handshake (before
/// it has picked an export) is gone.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The exported media by name (`vm0/Cd`), shared with Redfish.
#[derive(Debug, Default)]
pub struct Exports {
    map: RwLock<BTreeMap<String, Arc<Medium>>>,
}

impl Exports {
    /// A new, empty table.
    pub fn new() -> Arc<Exports> {
        Arc::new(Exports::default())
    }

    /// Export `medium` as `name`, replacing (and ejecting) what was there.
    pub fn insert(&self, name: &str, medium: Arc<Medium>) {
        let old = self
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), medium);
        if let Some(o) = old {
            o.eject();
        }
    }

    /// Stop exporting `name`; returns the medium.
    pub fn remove(&self, name: &str) -> Option<Arc<Medium>> {
        let m = self
            .map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(m) = &m {
            m.eject();
        }
        m
    }

    /// The medium exported as `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Medium>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Export names.
    pub fn names(&self) -> Vec<String> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// Why the NBD server could not start.
#[derive(Debug, thiserror::Error)]
pub enum NbdStartError {
    /// The listener could not bind.
    #[error("cannot listen for NBD on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The accept thread could not start.
    #[error("cannot start the NBD listener: {0}")]
    Thread(std::io::Error),
}

/// Serve `listener` on a background thread.
pub fn spawn(listener: TcpListener, exports: Arc<Exports>) -> Result<(), NbdStartError> {
    // Two descriptors a connection (reader and writer), from the budget's
    // network share; a quarter of them per client address.
    let cap = crate::budget::global().listener_cap(MAX_CONNECTIONS, 2);
    let slots = crate::budget::Slots::new("nbd", cap, crate::budget::Slots::per_peer_for(cap));
    std::thread::Builder::new()
        .name("nbd-accept".into())
        .spawn(move || {
            let mut backoff = crate::budget::AcceptBackoff::new("nbd");
            loop {
                let (stream, peer) = match listener.accept() {
                    Ok(s) => s,
                    Err(e) => {
                        backoff.failed(&e);
                        continue;
                    }
                };
                backoff.accepted();
                // Refused: closed before the greeting, as nbd-server does.
                let Ok(slot) = slots.take(Some(peer.ip())) else {
                    continue;
                };
                let ex = exports.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("nbd-conn".into())
                        .spawn(move || {
                            let _slot = slot;
                            if let Err(e) = serve(stream, &ex) {
                                log::debug!("nbd: {peer}: {e}");
                            }
                        });
                if let Err(e) = spawned {
                    log::warn!("nbd: cannot start a connection thread: {e}");
                }
            }
        })
        .map(|_| ())
        .map_err(NbdStartError::Thread)
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum NbdConnError {
    /// Socket error or the peer left.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol.
    #[error("protocol: {0}")]
    Protocol(#[from] WireError),
}

struct Conn {
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
}

impl Conn {
    fn reply_opt(&mut self, opt: u32, ty: u32, data: &[u8]) -> std::io::Result<()> {
        self.w
            .write_all(&option_reply(opt, ty, data.len() as u32))?;
        self.w.write_all(data)?;
        self.w.flush()
    }
}

/// One connection: handshake, then transmission.
fn serve(stream: TcpStream, exports: &Exports) -> Result<(), NbdConnError> {
    stream.set_nodelay(true)?;
    // A client gets HANDSHAKE_TIMEOUT per read until it picks an export.
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut c = Conn {
        r: BufReader::with_capacity(256 << 10, stream.try_clone()?),
        w: BufWriter::with_capacity(256 << 10, stream),
    };
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    c.w.write_all(&hello)?;
    c.w.flush()?;
    let mut cf = [0u8; 4];
    c.r.read_exact(&mut cf)?;
    let client_flags = u32::from_be_bytes(cf);
    if client_flags & CLIENT_FIXED_NEWSTYLE as u32 == 0 {
        return Err(WireError::NotFixedNewstyle.into());
    }
    let no_zeroes = client_flags & CLIENT_NO_ZEROES as u32 != 0;
    let mut structured = false;
    // Option haggling.
    let (medium, name) = loop {
        let mut h = [0u8; 16];
        c.r.read_exact(&mut h)?;
        let (opt, len) = parse_option_header(&h)?;
        if len as usize > MAX_OPTION {
            // Skip what we can bound, then refuse.
            return Err(WireError::OptionTooLarge(len).into());
        }
        let mut data = vec![0u8; len as usize];
        c.r.read_exact(&mut data)?;
        match opt {
            OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data).into_owned();
                let Some(m) = exports.get(&name) else {
                    // The protocol has no error reply here: close.
                    return Ok(());
                };
                let mut out = Vec::with_capacity(10 + 124);
                out.extend_from_slice(&m.size().to_be_bytes());
                out.extend_from_slice(&transmission_flags(&m).to_be_bytes());
                if !no_zeroes {
                    out.extend_from_slice(&[0u8; 124]);
                }
                c.w.write_all(&out)?;
                c.w.flush()?;
                break (m, name);
            }
            OPT_ABORT => {
                let _ = c.reply_opt(opt, REP_ACK, &[]);
                return Ok(());
            }
            OPT_LIST => {
                if !data.is_empty() {
                    c.reply_opt(opt, REP_ERR_INVALID, b"LIST takes no data")?;
                    continue;
                }
                for n in exports.names() {
                    let mut d = Vec::with_capacity(4 + n.len());
                    d.extend_from_slice(&(n.len() as u32).to_be_bytes());
                    d.extend_from_slice(n.as_bytes());
                    c.w.write_all(&option_reply(opt, REP_SERVER, d.len() as u32))?;
                    c.w.write_all(&d)?;
                }
                c.reply_opt(opt, REP_ACK, &[])?;
            }
            OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    c.reply_opt(opt, REP_ERR_INVALID, b"no data expected")?;
                } else {
                    structured = true;
                    c.reply_opt(opt, REP_ACK, &[])?;
                }
            }
            OPT_INFO | OPT_GO => {
                let req = match parse_info_request(&data) {
                    Ok(r) => r,
                    Err(e) => {
                        c.reply_opt(opt, REP_ERR_INVALID, e.to_string().as_bytes())?;
                        continue;
                    }
                };
                let Some(m) = exports.get(&req.name) else {
                    let msg = format!("no export {:?}: insert a medium first", req.name);
                    c.reply_opt(opt, REP_ERR_UNKNOWN, msg.as_bytes())?;
                    continue;
                };
                c.reply_opt(
                    opt,
                    REP_INFO,
                    &info_export(m.size(), transmission_flags(&m)),
                )?;
                if req.infos.contains(&INFO_NAME) {
                    c.reply_opt(opt, REP_INFO, &info_name(&req.name))?;
                }
                c.reply_opt(
                    opt,
                    REP_INFO,
                    &info_block_size(MIN_BLOCK, PREFERRED_BLOCK, MAX_PAYLOAD as u32),
                )?;
                c.reply_opt(opt, REP_ACK, &[])?;
                if opt == OPT_GO {
                    break (m, req.name);
                }
            }
            _ => {
                c.reply_opt(opt, REP_ERR_UNSUP, b"option not supported")?;
            }
        }
    };
    medium.counters.connections.fetch_add(1, Ordering::Relaxed);
    log::debug!("nbd: export {name} opened");
    c.r.get_ref().set_read_timeout(Some(IDLE_TIMEOUT))?;
    transmission(&mut c, &medium, structured)
}

fn transmission_flags(m: &Medium) -> u16 {
    let mut f = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_CAN_MULTI_CONN;
    if m.read_only() {
        f |= TFLAG_READ_ONLY;
    }
    f
}

fn errno_of(e: &MediaError) -> u32 {
    match e {
        MediaError::ReadOnly => EPERM,
        MediaError::OutOfRange { .. } => EINVAL,
        _ => EIO,
    }
}

fn transmission(c: &mut Conn, m: &Medium, structured: bool) -> Result<(), NbdConnError> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let mut h = [0u8; REQUEST_LEN];
        c.r.read_exact(&mut h)?;
        let req = parse_request(&h)?;
        if req.kind == CMD_WRITE && req.length as usize > MAX_PAYLOAD {
            return Err(WireError::PayloadTooLarge(req.length).into());
        }
        if m.ejected() {
            if req.kind == CMD_WRITE {
                buf.resize(req.length as usize, 0);
                c.r.read_exact(&mut buf)?;
            }
            reply_err(
                c,
                structured,
                req.handle,
                ESHUTDOWN,
                "the medium was ejected",
            )?;
            return Ok(());
        }
        match req.kind {
            CMD_DISC => return Ok(()),
            CMD_READ => {
                if req.length as usize > MAX_PAYLOAD {
                    reply_err(
                        c,
                        structured,
                        req.handle,
                        EINVAL,
                        "read larger than the maximum block",
                    )?;
                    continue;
                }
                let (head, hlen) = read_reply_head(structured, req.handle, req.offset, req.length);
                let head = &head[..hlen];
                match m.file_for_read(req.offset, u64::from(req.length)) {
                    Ok(Some(file)) => {
                        // A local read-only image: header, then the bytes
                        // with sendfile(2) from the page cache; no copy
                        // through user space.
                        c.w.flush()?;
                        send_file_range(
                            c.w.get_ref(),
                            head,
                            file,
                            req.offset,
                            req.length as usize,
                        )?;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        reply_err(c, structured, req.handle, errno_of(&e), &e.to_string())?;
                        continue;
                    }
                }
                buf.resize(req.length as usize, 0);
                match m.read_at(&mut buf, req.offset) {
                    Ok(()) => {
                        // Header and data in one writev straight from the
                        // read buffer: one segment train, no copy through
                        // the BufWriter.
                        c.w.flush()?;
                        let mut bufs = [IoSlice::new(head), IoSlice::new(&buf)];
                        crate::socket::write_all_vectored(c.w.get_mut(), &mut bufs)?;
                    }
                    Err(e) => reply_err(c, structured, req.handle, errno_of(&e), &e.to_string())?,
                }
            }
            CMD_WRITE => {
                buf.resize(req.length as usize, 0);
                c.r.read_exact(&mut buf)?;
                let r = m.write_at(&buf, req.offset).and_then(|()| {
                    if req.flags & CMD_FLAG_FUA != 0 {
                        m.flush()
                    } else {
                        Ok(())
                    }
                });
                match r {
                    Ok(()) => reply_ok(c, structured, req.handle)?,
                    Err(MediaError::OutOfRange { .. }) => {
                        reply_err(c, structured, req.handle, ENOSPC, "write past the end")?
                    }
                    Err(e) => reply_err(c, structured, req.handle, errno_of(&e), &e.to_string())?,
                }
            }
            CMD_FLUSH => match m.flush() {
                Ok(()) => reply_ok(c, structured, req.handle)?,
                Err(e) => reply_err(c, structured, req.handle, EIO, &e.to_string())?,
            },
            _ => reply_err(c, structured, req.handle, EINVAL, "command not supported")?,
        }
    }
}

/// The reply header of a successful READ of `len` bytes, in a fixed buffer
/// (no allocation per request) with its length: a simple reply, or one
/// structured OFFSET_DATA chunk (header and offset) with the DONE flag.
fn read_reply_head(structured: bool, handle: u64, offset: u64, len: u32) -> ([u8; 28], usize) {
    let mut head = [0u8; 28];
    if structured {
        head[..20].copy_from_slice(&structured_header(
            REPLY_FLAG_DONE,
            REPLY_TYPE_OFFSET_DATA,
            handle,
            8 + len,
        ));
        head[20..28].copy_from_slice(&offset.to_be_bytes());
        (head, 28)
    } else {
        head[..16].copy_from_slice(&simple_reply(0, handle));
        (head, 16)
    }
}

/// Send `head`, then `len` bytes of `file` from `offset`, with `sendfile(2)`.
/// The header goes with MSG_MORE so that it leaves in the data's first
/// segment. A file that ends early (shrunk behind the medium's back) is an
/// error that ends the connection: the header has promised `len` bytes.
fn send_file_range(
    sock: &TcpStream,
    head: &[u8],
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let (s, f) = (sock.as_raw_fd(), file.as_raw_fd());
    let more = if len > 0 { libc::MSG_MORE } else { 0 };
    let mut sent = 0;
    while sent < head.len() {
        let rest = &head[sent..];
        // SAFETY: `rest` is a live, initialised slice for the call's
        // duration; `s` is the connection's open socket.
        let n = unsafe {
            libc::send(
                s,
                rest.as_ptr().cast(),
                rest.len(),
                more | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += n as usize;
    }
    let mut off = libc::off_t::try_from(offset)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut left = len;
    while left > 0 {
        // SAFETY: `off` is a live off_t the kernel updates; both descriptors
        // are open for the call's duration (borrowed from their owners).
        let n = unsafe { libc::sendfile(s, f, &mut off, left) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the image file ended before the medium's size",
            ));
        }
        left -= n as usize;
    }
    Ok(())
}

fn reply_ok(c: &mut Conn, structured: bool, handle: u64) -> std::io::Result<()> {
    if structured {
        c.w.write_all(&structured_header(
            REPLY_FLAG_DONE,
            REPLY_TYPE_NONE,
            handle,
            0,
        ))?;
    } else {
        c.w.write_all(&simple_reply(0, handle))?;
    }
    c.w.flush()
}

fn reply_err(
    c: &mut Conn,
    structured: bool,
    handle: u64,
    errno: u32,
    msg: &str,
) -> std::io::Result<()> {
    if structured {
        let msg = &msg.as_bytes()[..msg.len().min(4096)];
        c.w.write_all(&structured_header(
            REPLY_FLAG_DONE,
            REPLY_TYPE_ERROR,
            handle,
            6 + msg.len() as u32,
        ))?;
        c.w.write_all(&errno.to_be_bytes())?;
        c.w.write_all(&(msg.len() as u16).to_be_bytes())?;
        c.w.write_all(msg)?;
    } else {
        c.w.write_all(&simple_reply(errno, handle))?;
    }
    c.w.flush()
}

/// Bind and start the server; `None` when the default port is taken.
pub fn start(
    listen: Option<&str>,
    exports: Arc<Exports>,
) -> Result<Option<std::net::SocketAddr>, NbdStartError> {
    let addr = listen.unwrap_or(DEFAULT_LISTEN);
    let l = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) if listen.is_none() => {
            log::warn!("default NBD address {addr} unavailable ({e}); set [nbd] listen to export virtual media");
            return Ok(None);
        }
        Err(source) => {
            return Err(NbdStartError::Bind {
                addr: addr.into(),
                source,
            })
        }
    };
    let local = l.local_addr().ok();
    spawn(l, exports)?;
    if let Some(a) = local {
        log::info!("NBD server on {a}");
    }
    Ok(local)
}
