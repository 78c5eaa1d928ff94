//! Connection takeover: after a handler's response, the connection is
//! handed to the handler as a full-duplex byte stream ([`Conn`]), for
//! WebSocket upgrades ([`super::ws`]) and long-lived `text/event-stream`
//! responses ([`super::sse`]).
//!
//! A [`Conn`] splits into a [`ConnReader`] and a [`ConnWriter`] that may be
//! used from two threads at once, over plain TCP and over TLS alike.
//!
//! TLS design (rustls has one state object for both directions): the
//! `rustls::ServerConnection` sits behind a mutex that is held only for
//! in-memory work (decrypting what was read, encrypting what is to be
//! sent), never across a blocking socket call. The reader reads raw bytes
//! from its clone of the socket without any lock, then takes the lock to
//! feed them to `read_tls`/`process_new_packets` and copy out plaintext.
//! The writer takes a second, send-order mutex, encrypts under the state
//! lock into a buffer, drops the state lock and writes the records to the
//! socket. Records thus leave in the order they were sealed, a writer
//! blocked on a full send buffer never stops the reader from draining
//! the peer (no deadlock when both sides send at once), and TLS messages
//! the reader must answer (a TLS 1.3 key update) go through the same
//! send-order path. Lock order is always send, then state.
//!
//! Timeouts are the socket's (`SO_RCVTIMEO`/`SO_SNDTIMEO`, shared by the
//! halves): the taker sets them with [`Conn::set_read_timeout`] and
//! [`Conn::set_write_timeout`] (the HTTP layer leaves the listener's idle
//! timeout for reads and 30 s for writes in place). A read that times out
//! returns `WouldBlock`/`TimedOut` and loses nothing: bytes read from the
//! socket but not yet decrypted stay buffered for the next call.
//! [`Conn::shutdown`] (or [`ConnWriter::shutdown`]) sends TLS close_notify
//! and shuts the socket down both ways, which wakes a blocked reader.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Raw bytes read from the socket at once (one TLS record and a bit).
const RAW_CHUNK: usize = 18 << 10;

/// A connection taken over from the HTTP layer.
#[derive(Debug)]
pub struct Conn {
    shared: Arc<Shared>,
    /// Request bytes the HTTP layer had read past the request (plaintext):
    /// the first bytes of the new protocol.
    leftover: Vec<u8>,
}

struct Shared {
    sock: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsShared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("peer", &self.peer)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

struct TlsShared {
    state: Mutex<rustls::ServerConnection>,
    /// Held while sealed records are written, so they leave in order.
    send: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Shared {
    /// Seal whatever rustls has queued and write it out, in order.
    fn flush_tls(&self, t: &TlsShared) -> io::Result<()> {
        let _order = lock(&t.send);
        let out = {
            let mut c = lock(&t.state);
            let mut out = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut out)?;
            }
            out
        };
        (&self.sock).write_all(&out)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last half is gone: end TLS cleanly so the client sees a
        // close_notify rather than a truncation.
        if let Some(t) = &self.tls {
            lock(&t.state).send_close_notify();
            let _ = self.flush_tls(t);
        }
    }
}

impl Conn {
    /// A plain TCP connection; `leftover` are bytes already read from it.
    pub fn plain(sock: TcpStream, peer: SocketAddr, leftover: Vec<u8>) -> Conn {
        Conn {
            shared: Arc::new(Shared {
                sock,
                peer,
                tls: None,
            }),
            leftover,
        }
    }

    /// A TLS connection (handshake done); `leftover` is plaintext already
    /// taken out of it.
    pub fn tls(
        tls: rustls::ServerConnection,
        sock: TcpStream,
        peer: SocketAddr,
        leftover: Vec<u8>,
    ) -> Conn {
        Conn {
            shared: Arc::new(Shared {
                sock,
                peer,
                tls: Some(TlsShared {
                    state: Mutex::new(tls),
                    send: Mutex::new(()),
                }),
            }),
            leftover,
        }
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Bound every read (`None`: wait forever). Shared by both halves.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.shared.sock.set_read_timeout(t)
    }

    /// Bound every write (`None`: wait forever). Shared by both halves.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.shared.sock.set_write_timeout(t)
    }

    /// Send TLS close_notify (if TLS) and shut the socket down both ways;
    /// a reader blocked on it returns.
    pub fn shutdown(&self) {
        shutdown(&self.shared);
    }

    /// The two halves, for a reading and a writing thread.
    pub fn split(self) -> (ConnReader, ConnWriter) {
        (
            ConnReader {
                shared: self.shared.clone(),
                leftover: self.leftover,
                at: 0,
                raw: Vec::new(),
                raw_at: 0,
            },
            ConnWriter {
                shared: self.shared,
            },
        )
    }
}

fn shutdown(s: &Shared) {
    if let Some(t) = &s.tls {
        lock(&t.state).send_close_notify();
        let _ = s.flush_tls(t);
    }
    let _ = s.sock.shutdown(Shutdown::Both);
}

/// The reading half of a [`Conn`].
#[derive(Debug)]
pub struct ConnReader {
    shared: Arc<Shared>,
    leftover: Vec<u8>,
    at: usize,
    /// TLS bytes read from the socket that rustls has not taken yet (its
    /// plaintext buffer was full).
    raw: Vec<u8>,
    raw_at: usize,
}

impl ConnReader {
    /// See [`Conn::set_read_timeout`].
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.shared.sock.set_read_timeout(t)
    }

    /// See [`Conn::shutdown`].
    pub fn shutdown(&self) {
        shutdown(&self.shared);
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    fn read_tls(&mut self, t: &TlsShared, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let wants_write = {
                let mut c = lock(&t.state);
                // Feed what is pending first.
                while self.raw_at < self.raw.len() {
                    let mut rest = &self.raw[self.raw_at..];
                    match c.read_tls(&mut rest) {
                        Ok(n) => self.raw_at += n,
                        // The plaintext buffer is full: hand that out first.
                        Err(_) => break,
                    }
                    c.process_new_packets().map_err(tls_err)?;
                }
                match c.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                c.wants_write()
            };
            if wants_write {
                self.shared.flush_tls(t)?;
            }
            // Nothing decrypted yet: read from the socket, lock-free.
            self.raw.resize(RAW_CHUNK, 0);
            self.raw_at = 0;
            let n = match (&self.shared.sock).read(&mut self.raw) {
                Ok(n) => n,
                Err(e) => {
                    self.raw.clear();
                    return Err(e);
                }
            };
            self.raw.truncate(n);
            if n == 0 {
                // EOF: let rustls say whether it was clean (close_notify
                // seen: Ok(0)) or a truncation (UnexpectedEof).
                let mut c = lock(&t.state);
                let _ = c.read_tls(&mut &[][..]);
                c.process_new_packets().map_err(tls_err)?;
                return match c.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    }
                    Err(e) => Err(e),
                };
            }
        }
    }
}

impl Read for ConnReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.at < self.leftover.len() {
            let n = buf.len().min(self.leftover.len() - self.at);
            buf[..n].copy_from_slice(&self.leftover[self.at..self.at + n]);
            self.at += n;
            if self.at == self.leftover.len() {
                self.leftover = Vec::new();
                self.at = 0;
            }
            return Ok(n);
        }
        let shared = self.shared.clone();
        match &shared.tls {
            None => (&shared.sock).read(buf),
            Some(t) => self.read_tls(t, buf),
        }
    }
}

/// The writing half of a [`Conn`]. Cheap to clone; clones share the
/// connection (writes from several threads are each written whole only if
/// the caller serialises them, as [`super::ws::WsWriter`] does).
#[derive(Debug, Clone)]
pub struct ConnWriter {
    shared: Arc<Shared>,
}

impl ConnWriter {
    /// See [`Conn::set_write_timeout`].
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.shared.sock.set_write_timeout(t)
    }

    /// See [`Conn::shutdown`].
    pub fn shutdown(&self) {
        shutdown(&self.shared);
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }
}

impl Write for ConnWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.shared.tls {
            None => (&self.shared.sock).write(buf),
            Some(t) => {
                let _order = lock(&t.send);
                let (n, out) = {
                    let mut c = lock(&t.state);
                    let n = c.writer().write(buf)?;
                    let mut out = Vec::with_capacity(n + 64);
                    while c.wants_write() {
                        c.write_tls(&mut out)?;
                    }
                    (n, out)
                };
                (&self.shared.sock).write_all(&out)?;
                Ok(n)
            }
        }
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.shared.tls {
            None => Ok(()),
            Some(t) => self.shared.flush_tls(t),
        }
    }
}
