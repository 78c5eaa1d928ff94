//! Server-sent events (`text/event-stream`, WHATWG HTML 9.2) over a
//! taken-over connection ([`super::conn`]).
//!
//! [`start`] answers `200` with the event-stream head (no
//! `Content-Length`: the body lasts as long as the connection) and hands
//! the taker an [`SseStream`] to write events to. The client never sends
//! anything after its request, so the only way to learn it has gone is a
//! failed write: send [`SseStream::keep_alive`] comments every few seconds
//! when there is nothing else to say (they also keep proxies from timing
//! the stream out), and stop at the first error.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use super::conn::{ConnReader, ConnWriter};
use super::{Request, Response};

/// Answer `req` with an event stream; `f` then runs on the connection's
/// thread with the stream (writes time out after 30 s by default).
pub fn start(req: &Request, f: impl FnOnce(SseStream) + Send + 'static) -> Response {
    req.take_over(move |conn| {
        let _ = conn.set_write_timeout(Some(Duration::from_secs(30)));
        let (r, w) = conn.split();
        f(SseStream { w, _r: r });
    });
    Response {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/event-stream".into()),
            ("Cache-Control".into(), "no-cache".into()),
            ("Connection".into(), "close".into()),
            ("X-Accel-Buffering".into(), "no".into()),
        ],
        body: Vec::new(),
    }
}

/// An open event stream.
#[derive(Debug)]
pub struct SseStream {
    w: ConnWriter,
    /// Kept so the socket stays open for reading too (unused).
    _r: ConnReader,
}

/// A field value on one line: CR and LF would end the field early.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Format one event: `event:` (when given), `id:` (when given), one
/// `data:` line per line of `data`, blank line.
pub fn format_event(event: Option<&str>, id: Option<&str>, data: &str) -> Vec<u8> {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(e) = event {
        out.push_str("event: ");
        out.push_str(&one_line(e));
        out.push('\n');
    }
    if let Some(i) = id {
        out.push_str("id: ");
        out.push_str(&one_line(i));
        out.push('\n');
    }
    // "\r\n", "\r" and "\n" all end a line for the client.
    let data = data.replace("\r\n", "\n").replace('\r', "\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out.into_bytes()
}

impl SseStream {
    /// Send one event (`event` names its type; `None` is a `message`).
    pub fn send(&mut self, event: Option<&str>, data: &str) -> io::Result<()> {
        self.write(&format_event(event, None, data))
    }

    /// Send one event with an `id:` (the client's `Last-Event-ID` on
    /// reconnect).
    pub fn send_with_id(&mut self, event: Option<&str>, id: &str, data: &str) -> io::Result<()> {
        self.write(&format_event(event, Some(id), data))
    }

    /// Tell the client how long to wait before reconnecting.
    pub fn retry(&mut self, after: Duration) -> io::Result<()> {
        self.write(format!("retry: {}\n\n", after.as_millis()).as_bytes())
    }

    /// A comment line: keeps the connection alive and detects a gone
    /// client (the write fails).
    pub fn keep_alive(&mut self) -> io::Result<()> {
        self.write(b": keep-alive\n\n")
    }

    /// Bound each write.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.w.set_write_timeout(t)
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.w.peer()
    }

    /// End the stream.
    pub fn close(self) {
        self.w.shutdown();
    }

    fn write(&mut self, b: &[u8]) -> io::Result<()> {
        self.w.write_all(b)?;
        self.w.flush()
    }
}
