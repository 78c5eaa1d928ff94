//! Proxy-mode media: an NBD client ([`super::client`]) on a WebSocket whose
//! peer serves the image, presented to the rest of hvsim as a
//! [`crate::media::Backend`] ([`ProxyBackend`]) so the NBD server exports
//! it like any other medium.
//!
//! Threads: the connection's thread runs [`ProxyPump::run`], reading
//! replies and handing each to the request waiting for its handle; any
//! number of NBD server threads call [`ProxyBackend`]'s `read_at`, which
//! splits the range into READs of at most [`client::MAX_READ`] bytes, sends
//! them at once (several in flight) and waits for their replies. When the
//! socket ends, the peer breaks the protocol, or a read is not answered
//! within [`READ_TIMEOUT`], the backend is dead: waiting and later reads
//! fail (the NBD server answers EIO) and the pump returns the reason.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::client::{self, Export, ProxyError};
use super::wire::CMD_READ;
use crate::http::ws::{close_code, Message, WsError, WsReader, WsWriter};
use crate::media::{Backend, MediaError};

/// A read the peer has not answered in this long kills the medium.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The peer must finish the NBD handshake within this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The byte stream carried by a WebSocket's binary messages (NBD messages
/// may span messages, and a message may hold several).
#[derive(Debug)]
pub struct WsByteStream {
    rx: WsReader,
    buf: Vec<u8>,
    at: usize,
}

impl WsByteStream {
    /// The stream of `rx`'s binary messages.
    pub fn new(rx: WsReader) -> WsByteStream {
        WsByteStream {
            rx,
            buf: Vec::new(),
            at: 0,
        }
    }
}

fn ws_io(e: WsError) -> std::io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::Closed { .. } => std::io::Error::new(std::io::ErrorKind::UnexpectedEof, e),
        e => std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    }
}

impl Read for WsByteStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            match self.rx.recv().map_err(ws_io)? {
                Message::Binary(b) => {
                    self.buf = b;
                    self.at = 0;
                }
                Message::Text(_) => {
                    let _ = self
                        .rx
                        .writer()
                        .close(close_code::UNSUPPORTED, "NBD travels in binary messages");
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "a text message on the NBD socket (NBD travels in binary messages)",
                    ));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[derive(Debug)]
struct Pending {
    len: u32,
    result: Option<Result<Vec<u8>, u32>>,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    pending: HashMap<u64, Pending>,
    dead: Option<String>,
}

#[derive(Debug)]
struct Shared {
    writer: WsWriter,
    state: Mutex<State>,
    cond: Condvar,
    /// Where the peer is (for messages).
    peer: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mark dead (first reason wins) and wake every waiting read.
    fn kill(&self, why: &str) {
        let mut st = self.lock();
        if st.dead.is_none() {
            st.dead = Some(why.to_string());
        }
        drop(st);
        self.cond.notify_all();
    }
}

/// A medium whose bytes come from the peer of a WebSocket.
#[derive(Debug)]
pub struct ProxyBackend {
    export: Export,
    shared: Arc<Shared>,
}

/// Reads the peer's replies until the socket ends (see [`ProxyPump::run`]).
#[derive(Debug)]
pub struct ProxyPump {
    stream: WsByteStream,
    shared: Arc<Shared>,
}

/// Run the NBD handshake with the peer on `rx`/`tx` (within
/// [`HANDSHAKE_TIMEOUT`]); the backend to export and the pump to run.
pub fn start(rx: WsReader, tx: WsWriter) -> Result<(Arc<ProxyBackend>, ProxyPump), ProxyError> {
    rx.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut stream = WsByteStream::new(rx);
    let export = client::handshake(&mut stream, |b| tx.send_binary(b).map_err(ws_io))?;
    // Idle is fine from now on (nobody reading the medium); each read has
    // its own deadline.
    stream.rx.set_read_timeout(None)?;
    let shared = Arc::new(Shared {
        peer: tx.peer().to_string(),
        writer: tx,
        state: Mutex::new(State {
            next: 1,
            ..State::default()
        }),
        cond: Condvar::new(),
    });
    Ok((
        Arc::new(ProxyBackend {
            export,
            shared: shared.clone(),
        }),
        ProxyPump { stream, shared },
    ))
}

impl ProxyPump {
    /// Read replies until the socket ends or the peer errs; the reason.
    /// The backend is dead afterwards.
    pub fn run(mut self) -> String {
        let why = loop {
            let sh = &self.shared;
            let r = client::read_reply(&mut self.stream, |h| {
                sh.lock()
                    .pending
                    .get(&h)
                    .filter(|p| p.result.is_none())
                    .map(|p| p.len)
            });
            match r {
                Ok(rep) => {
                    let mut st = sh.lock();
                    if let Some(p) = st.pending.get_mut(&rep.handle) {
                        p.result = Some(if rep.errno == 0 {
                            Ok(rep.data)
                        } else {
                            Err(rep.errno)
                        });
                    }
                    drop(st);
                    sh.cond.notify_all();
                }
                Err(ProxyError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    break format!("the peer closed the socket ({e})");
                }
                Err(e) => {
                    // A broken stream: say why, then hang up.
                    let reason = e.to_string();
                    let _ = sh.writer.close(close_code::PROTOCOL, &reason);
                    sh.writer.shutdown();
                    break reason;
                }
            }
        };
        // A dead backend's reason, when it died first (timeout, eject).
        let first = {
            let st = self.shared.lock();
            st.dead.clone()
        };
        self.shared.kill(&why);
        first.unwrap_or(why)
    }
}

impl ProxyBackend {
    /// The export the peer announced.
    pub fn export(&self) -> Export {
        self.export
    }

    /// Where the peer is.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// Whether the backend is dead, and why.
    pub fn dead(&self) -> Option<String> {
        self.shared.lock().dead.clone()
    }

    /// End the session: send NBD_CMD_DISC and a WebSocket close with
    /// `reason`, then hang up (the pump returns).
    pub fn disconnect(&self, reason: &str) {
        self.shared.kill(reason);
        let w = &self.shared.writer;
        let _ = w.send_binary(&client::disconnect());
        let _ = w.close(close_code::NORMAL, reason);
        w.shutdown();
    }

    fn fail(&self, msg: String) -> MediaError {
        MediaError::Remote {
            url: format!("proxy peer {}", self.shared.peer),
            msg,
        }
    }
}

impl Backend for ProxyBackend {
    fn size(&self) -> u64 {
        self.export.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), MediaError> {
        if buf.is_empty() {
            return Ok(());
        }
        // The range was checked against the size by Medium; READs of at
        // most MAX_READ bytes, all sent at once.
        let chunks = buf.len().div_ceil(client::MAX_READ as usize);
        let mut handles = Vec::with_capacity(chunks);
        let mut reqs = Vec::with_capacity(chunks * 28);
        {
            let mut st = self.shared.lock();
            if let Some(why) = &st.dead {
                return Err(self.fail(why.clone()));
            }
            for (i, c) in buf.chunks(client::MAX_READ as usize).enumerate() {
                let h = st.next;
                st.next = st.next.wrapping_add(1);
                let off = offset + (i * client::MAX_READ as usize) as u64;
                st.pending.insert(
                    h,
                    Pending {
                        len: c.len() as u32,
                        result: None,
                    },
                );
                reqs.extend_from_slice(&client::request(CMD_READ, h, off, c.len() as u32));
                handles.push(h);
            }
        }
        let forget = |st: &mut State| {
            for h in &handles {
                st.pending.remove(h);
            }
        };
        if let Err(e) = self.shared.writer.send_binary(&reqs) {
            let why = format!("cannot send to the peer: {e}");
            self.shared.kill(&why);
            forget(&mut self.shared.lock());
            return Err(self.fail(why));
        }
        let deadline = Instant::now() + READ_TIMEOUT;
        let mut st = self.shared.lock();
        loop {
            if handles
                .iter()
                .all(|h| st.pending.get(h).is_some_and(|p| p.result.is_some()))
            {
                break;
            }
            if let Some(why) = st.dead.clone() {
                forget(&mut st);
                return Err(self.fail(why));
            }
            let now = Instant::now();
            if now >= deadline {
                forget(&mut st);
                drop(st);
                let why = format!(
                    "the peer did not answer a read within {} s",
                    READ_TIMEOUT.as_secs()
                );
                self.disconnect(&why);
                return Err(self.fail(why));
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let mut err = None;
        for (h, c) in handles
            .iter()
            .zip(buf.chunks_mut(client::MAX_READ as usize))
        {
            match st.pending.remove(h).and_then(|p| p.result) {
                Some(Ok(d)) if d.len() == c.len() => c.copy_from_slice(&d),
                Some(Err(errno)) => {
                    err.get_or_insert(format!("the peer answered a read with NBD error {errno}"));
                }
                _ => {
                    err.get_or_insert("short reply from the peer".to_string());
                }
            }
        }
        match err {
            None => Ok(()),
            Some(e) => Err(self.fail(e)),
        }
    }

    fn write_at(&self, _: &[u8], _: u64) -> Result<(), MediaError> {
        Err(MediaError::ReadOnly)
    }

    fn flush(&self) -> Result<(), MediaError> {
        Ok(())
    }

    fn writable(&self) -> bool {
        false
    }
}
