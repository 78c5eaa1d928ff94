//! A small HTTP/1.1 server for the host services (CIM-XML now, Redfish later).
//!
//! One thread per connection, blocking I/O: simple, and on this machine fast
//! enough (see the README's CIM benchmark). What it does for every service:
//!
//! * keep-alive (HTTP/1.1 default, `Connection: close`, HTTP/1.0 opt-in) with
//!   an idle timeout;
//! * bounds: header block size, body size (413 before reading it), number of
//!   connections (503 beyond it);
//! * `Content-Length` and chunked bodies, `Expect: 100-continue`;
//! * Basic authentication through an [`Authenticator`] hook: a request that
//!   fails it gets 401 with `WWW-Authenticate` before the handler runs;
//! * TLS through rustls ([`tls`]) on the same code path;
//! * connection takeover ([`Request::take_over`], [`conn`]): after its
//!   response a handler may keep the connection as a full-duplex stream,
//!   for WebSockets ([`ws`]) and server-sent events ([`sse`]).
//!
//! Threat table: the peer is untrusted and may send anything. Header bytes
//! are bounded by [`HttpLimits::max_header`], body bytes by
//! [`HttpLimits::max_body`] (checked against the declared length first, and
//! while reading chunks), time by the read timeout, concurrency by
//! [`HttpLimits::max_connections`] (lowered to a 32nd of the open-file
//! limit when that is smaller, [`crate::budget`]) and, per client address,
//! a quarter of it, so one client cannot hold every connection (the others
//! get 503 with the reason). Accept errors such as EMFILE pause the accept
//! loop instead of spinning. A handler panic answers 500 and closes that
//! connection only.

pub mod conn;
pub mod sse;
pub mod tls;
pub mod ws;

use std::io::{BufRead, BufReader, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

/// A request as the handler sees it.
#[derive(Debug)]
pub struct Request {
    /// `GET`, `POST`, `M-POST`, ...
    pub method: String,
    /// The request target (path and query).
    pub target: String,
    /// Headers in arrival order (names as sent).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The peer.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The authenticated user, when an authenticator is configured.
    pub principal: Option<Principal>,
    /// Filled by [`Request::take_over`].
    pub takeover: TakeoverSlot,
}

/// What takes a connection over after the response (see
/// [`Request::take_over`]).
pub type TakeoverFn = Box<dyn FnOnce(conn::Conn) + Send + 'static>;

/// Where a handler leaves its [`TakeoverFn`]; empty by default.
#[derive(Default)]
pub struct TakeoverSlot(std::sync::Mutex<Option<TakeoverFn>>);

impl std::fmt::Debug for TakeoverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.lock().map(|g| g.is_some()).unwrap_or(false);
        f.debug_tuple("TakeoverSlot").field(&set).finish()
    }
}

impl TakeoverSlot {
    fn take(&self) -> Option<TakeoverFn> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Request {
    /// A header's value (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Take the connection over after this request's response.
    ///
    /// When the handler's response has status 101 or 2xx, the server writes
    /// it as is (status line, the handler's headers, blank line, body; no
    /// `Content-Length` or `Connection` added, so the body is open-ended)
    /// and then calls `f` on the connection's thread with the connection as
    /// a [`conn::Conn`]; the connection closes when `f` returns and the
    /// slot it holds in the listener's connection bound is freed. With any
    /// other status the takeover is dropped and the response written
    /// normally. [`ws::upgrade`] and [`sse::start`] use this.
    pub fn take_over(&self, f: impl FnOnce(conn::Conn) + Send + 'static) {
        *self.takeover.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(f));
    }
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Login name.
    pub name: String,
    /// Role as configured (`Administrator`, `Operator`, `ReadOnly`).
    pub role: String,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Length and Connection are added).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a status and a text body.
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// Add a header.
    pub fn with_header(mut self, k: &str, v: &str) -> Response {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// Answers requests.
pub trait Handler: Send + Sync + 'static {
    /// Handle one request.
    fn handle(&self, req: &Request) -> Response;

    /// Take back a response body once it is written, on the connection's
    /// thread (to reuse its buffer for the next response). Dropped by
    /// default.
    fn recycle(&self, body: Vec<u8>) {
        drop(body);
    }
}

/// Checks Basic credentials.
pub trait Authenticator: Send + Sync + 'static {
    /// The principal for these credentials, or `None` to refuse.
    fn authenticate(&self, user: &str, password: &str) -> Option<Principal>;
}

/// Bounds and behaviour of a listener.
#[derive(Clone)]
pub struct HttpConfig {
    /// Limits.
    pub limits: HttpLimits,
    /// Basic authentication; `None` lets every request through.
    pub auth: Option<Arc<dyn Authenticator>>,
    /// The realm in `WWW-Authenticate`.
    pub realm: String,
    /// Refuse (403) peers that are not on a loopback address, like sfcb's
    /// `httpLocalOnly`.
    pub local_only: bool,
    /// Name for log lines ("cim http", ...).
    pub name: String,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("limits", &self.limits)
            .field("auth", &self.auth.is_some())
            .field("realm", &self.realm)
            .field("local_only", &self.local_only)
            .field("name", &self.name)
            .finish()
    }
}

/// Size, time and concurrency bounds.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request body.
    pub max_body: usize,
    /// Largest request line plus headers.
    pub max_header: usize,
    /// Most headers.
    pub max_headers: usize,
    /// Idle time before a keep-alive connection is closed.
    pub idle_timeout: Duration,
    /// Most concurrent connections (the descriptor budget may lower it).
    pub max_connections: usize,
    /// Most requests on one keep-alive connection before it is closed
    /// (0: no limit), like sfcb's `keepaliveMaxRequest`.
    pub max_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body: 1 << 20,
            max_header: 16 << 10,
            max_headers: 64,
            idle_timeout: Duration::from_secs(60),
            max_connections: 256,
            max_requests: 0,
        }
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The peer went away or timed out.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// Malformed request.
    #[error("bad request: {0}")]
    Bad(&'static str),
    /// Headers too large.
    #[error("request header block too large")]
    HeaderTooLarge,
    /// Body too large.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// An unsupported transfer coding.
    #[error("unsupported transfer encoding")]
    TransferEncoding,
}

/// Serve `listener` on a background thread, forever.
pub fn spawn(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    cfg: HttpConfig,
    handler: Arc<dyn Handler>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    accept_loop(listener, tls, cfg, handler, Arc::new(Control::default()))
}

/// What a [`Listener`] shares with its threads.
#[derive(Debug, Default)]
struct Control {
    stopping: std::sync::atomic::AtomicBool,
    /// The open connections (a second handle on each socket), to shut
    /// them down on stop.
    conns: std::sync::Mutex<std::collections::HashMap<u64, TcpStream>>,
    next: std::sync::atomic::AtomicU64,
}

impl Control {
    fn conns(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, TcpStream>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A listener served on background threads until [`Listener::stop`] (or
/// drop): then its socket is closed, so the port is free again, and its
/// open connections are shut down. For services that are switched on and
/// off, or reconfigured, while hvsim runs.
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    name: String,
    /// A second handle on the listening socket, to wake the accept loop.
    socket: Option<TcpListener>,
    control: Arc<Control>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Serve `listener` (see [`spawn`]) until stopped.
    pub fn start(
        listener: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        cfg: HttpConfig,
        handler: Arc<dyn Handler>,
    ) -> std::io::Result<Listener> {
        let addr = listener.local_addr()?;
        let socket = listener.try_clone()?;
        let control = Arc::new(Control::default());
        let name = cfg.name.clone();
        let thread = accept_loop(listener, tls, cfg, handler, control.clone())?;
        Ok(Listener {
            addr,
            name,
            socket: Some(socket),
            control,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Close the listening socket and every open connection; returns once
    /// the port is released.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        use std::os::fd::AsRawFd as _;
        let Some(socket) = self.socket.take() else {
            return;
        };
        self.control.stopping.store(true, Ordering::SeqCst);
        // SAFETY: shutdown(2) on a listening socket we hold open; it wakes
        // the thread blocked in accept(2) on the same socket (Linux
        // answers EINVAL there), which then sees `stopping`.
        unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        drop(socket);
        for (_, c) in self.control.conns().drain() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        log::info!("{}: stopped listening on {}", self.name, self.addr);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    cfg: HttpConfig,
    handler: Arc<dyn Handler>,
    control: Arc<Control>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // One descriptor a connection, from the budget's network share.
    let cap = crate::budget::global().listener_cap(cfg.limits.max_connections, 1);
    let slots = crate::budget::Slots::new(&cfg.name, cap, crate::budget::Slots::per_peer_for(cap));
    std::thread::Builder::new()
        .name(format!("{}-accept", cfg.name))
        .spawn(move || {
            let mut backoff = crate::budget::AcceptBackoff::new(&cfg.name);
            loop {
                let accepted = listener.accept();
                // Listener::stop shuts the socket down: accept fails, and
                // the loop ends here rather than backing off.
                if control.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        backoff.failed(&e);
                        continue;
                    }
                };
                backoff.accepted();
                let slot = match slots.take(Some(peer.ip())) {
                    Ok(s) => s,
                    Err(why) => {
                        let mut s = stream;
                        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                        let _ = write_response(
                            &mut s,
                            &Response::text(503, &format!("too many connections: {why}\n"))
                                .with_header("Retry-After", "1"),
                            false,
                            false,
                        );
                        continue;
                    }
                };
                let id = control.next.fetch_add(1, Ordering::Relaxed);
                if let Ok(second) = stream.try_clone() {
                    control.conns().insert(id, second);
                }
                let (c, handler, tls, ctl) =
                    (cfg.clone(), handler.clone(), tls.clone(), control.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-conn", cfg.name))
                    .spawn(move || {
                        let _slot = slot;
                        connection(stream, peer, tls, &c, &*handler);
                        ctl.conns().remove(&id);
                    });
                if let Err(e) = spawned {
                    control.conns().remove(&id);
                    log::warn!("{}: cannot start a connection thread: {e}", cfg.name);
                }
            }
        })
}

fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    cfg: &HttpConfig,
    handler: &dyn Handler,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(cfg.limits.idle_timeout));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    log::debug!("{}: connection from {peer}", cfg.name);
    match tls {
        None => serve_stream(stream, peer, false, cfg, handler),
        Some(tc) => match rustls::ServerConnection::new(tc) {
            Ok(conn) => serve_stream(
                rustls::StreamOwned::new(conn, stream),
                peer,
                true,
                cfg,
                handler,
            ),
            Err(e) => log::warn!("{}: TLS setup for {peer}: {e}", cfg.name),
        },
    }
}

/// A stream the server can hand over as a [`conn::Conn`].
trait IntoConn: Read + Write {
    fn into_conn(self, peer: SocketAddr, leftover: Vec<u8>) -> conn::Conn;
}

impl IntoConn for TcpStream {
    fn into_conn(self, peer: SocketAddr, leftover: Vec<u8>) -> conn::Conn {
        conn::Conn::plain(self, peer, leftover)
    }
}

impl IntoConn for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn into_conn(self, peer: SocketAddr, leftover: Vec<u8>) -> conn::Conn {
        conn::Conn::tls(self.conn, self.sock, peer, leftover)
    }
}

fn serve_stream<S: IntoConn>(
    stream: S,
    peer: SocketAddr,
    tls: bool,
    cfg: &HttpConfig,
    handler: &dyn Handler,
) {
    let mut r = BufReader::with_capacity(16 << 10, stream);
    let mut served = 0usize;
    loop {
        let (mut req, mut keep) = match read_request(&mut r, peer, tls, &cfg.limits) {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => {
                log::debug!("{}: {peer}: {e}", cfg.name);
                let resp = match e {
                    HttpError::Io(_) => return,
                    HttpError::Bad(m) => Response::text(400, &format!("{m}\n")),
                    HttpError::HeaderTooLarge => Response::text(431, "header too large\n"),
                    HttpError::BodyTooLarge(n) => {
                        Response::text(413, &format!("request body larger than {n} bytes\n"))
                    }
                    HttpError::TransferEncoding => {
                        Response::text(501, "unsupported transfer encoding\n")
                    }
                };
                let _ = write_response(r.get_mut(), &resp, false, false);
                return;
            }
        };
        let head = req.method == "HEAD";
        served += 1;
        if cfg.limits.max_requests != 0 && served >= cfg.limits.max_requests {
            keep = false;
        }
        let resp = if cfg.local_only && !peer.ip().is_loopback() {
            Response::text(403, "this listener accepts local clients only\n")
        } else {
            match check_auth(cfg, &req) {
                Err(resp) => resp,
                Ok(p) => {
                    req.principal = p;
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        handler.handle(&req)
                    })) {
                        Ok(r) => r,
                        Err(_) => {
                            log::error!("{}: handler panicked on a request from {peer}", cfg.name);
                            let _ = write_response(
                                r.get_mut(),
                                &Response::text(500, "internal error\n"),
                                false,
                                false,
                            );
                            return;
                        }
                    }
                }
            }
        };
        if let Some(f) = req.takeover.take() {
            if resp.status == 101 || (200..300).contains(&resp.status) {
                if write_head_verbatim(r.get_mut(), &resp).is_err() {
                    return;
                }
                let leftover = r.buffer().to_vec();
                let conn = r.into_inner().into_conn(peer, leftover);
                log::debug!("{}: {peer}: connection taken over", cfg.name);
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))).is_err() {
                    log::error!("{}: a connection takeover from {peer} panicked", cfg.name);
                }
                return;
            }
        }
        let written = write_response(r.get_mut(), &resp, keep, head);
        handler.recycle(resp.body);
        if written.is_err() || !keep {
            return;
        }
    }
}

fn check_auth(cfg: &HttpConfig, req: &Request) -> Result<Option<Principal>, Response> {
    let Some(auth) = &cfg.auth else {
        return Ok(None);
    };
    let challenge = || {
        Response::text(401, "authentication required\n").with_header(
            "WWW-Authenticate",
            &format!("Basic realm=\"{}\", charset=\"UTF-8\"", cfg.realm),
        )
    };
    let Some(h) = req.header("Authorization") else {
        return Err(challenge());
    };
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(challenge());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, pass)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
        return Err(challenge());
    };
    match auth.authenticate(user, pass) {
        Some(p) => Ok(Some(p)),
        None => {
            log::warn!(
                "{}: authentication failed for user {user:?} from {}",
                cfg.name,
                req.peer
            );
            Err(challenge())
        }
    }
}

/// Read one request; `Ok(None)` when the peer closed between requests.
/// The flag says whether the connection stays open after the response.
pub fn read_request<S: Read + Write>(
    r: &mut BufReader<S>,
    peer: SocketAddr,
    tls: bool,
    limits: &HttpLimits,
) -> Result<Option<(Request, bool)>, HttpError> {
    let mut head = Vec::with_capacity(1024);
    // Read up to the blank line, never more than max_header bytes.
    loop {
        let before = head.len();
        let n = r
            .by_ref()
            .take((limits.max_header + 1 - head.len().min(limits.max_header)) as u64)
            .read_until(b'\n', &mut head)?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(HttpError::Bad("connection closed inside the header"));
        }
        if head.len() > limits.max_header {
            return Err(HttpError::HeaderTooLarge);
        }
        // Tolerate blank lines before a request line (RFC 9112 2.2).
        if before == 0 && (head == b"\r\n" || head == b"\n") {
            head.clear();
            continue;
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
    }
    let mut hbuf = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut parsed = httparse::Request::new(&mut hbuf);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HttpError::Bad("incomplete header")),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeaderTooLarge),
        Err(_) => return Err(HttpError::Bad("malformed request header")),
    }
    let method = parsed.method.unwrap_or("").to_string();
    let target = parsed.path.unwrap_or("").to_string();
    let version = parsed.version.unwrap_or(1);
    let mut headers = Vec::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let v = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::Bad("header value is not UTF-8"))?;
        headers.push((h.name.to_string(), v.trim().to_string()));
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let conn_hdr = get("Connection").unwrap_or("").to_ascii_lowercase();
    let keep = if version == 0 {
        conn_hdr.contains("keep-alive")
    } else {
        !conn_hdr.contains("close")
    };
    let chunked = match get("Transfer-Encoding") {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(_) => return Err(HttpError::TransferEncoding),
    };
    let length = match get("Content-Length") {
        Some(_) if chunked => return Err(HttpError::Bad("both Content-Length and chunked")),
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| HttpError::Bad("invalid Content-Length"))?,
        ),
        None => None,
    };
    if let Some(n) = length {
        if n > limits.max_body as u64 {
            return Err(HttpError::BodyTooLarge(limits.max_body));
        }
    }
    let expects = get("Expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let mut req = Request {
        method,
        target,
        headers: Vec::new(),
        body: Vec::new(),
        peer,
        tls,
        principal: None,
        takeover: TakeoverSlot::default(),
    };
    req.headers = headers;
    if expects && (length.is_some_and(|n| n > 0) || chunked) {
        // The client waits for this before sending the body (curl does so
        // for larger bodies); the size was checked above.
        let w = r.get_mut();
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    read_body(r, &mut req, length, chunked, limits)?;
    Ok(Some((req, keep)))
}

fn read_body<R: BufRead>(
    r: &mut R,
    req: &mut Request,
    length: Option<u64>,
    chunked: bool,
    limits: &HttpLimits,
) -> Result<(), HttpError> {
    if let Some(n) = length {
        req.body = vec![0; n as usize];
        r.read_exact(&mut req.body)?;
    } else if chunked {
        loop {
            let mut line = Vec::new();
            r.by_ref().take(256).read_until(b'\n', &mut line)?;
            let s = std::str::from_utf8(&line)
                .map_err(|_| HttpError::Bad("bad chunk size"))?
                .trim();
            let size = s.split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| HttpError::Bad("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    let mut t = Vec::new();
                    r.by_ref().take(4096).read_until(b'\n', &mut t)?;
                    if t == b"\r\n" || t == b"\n" || t.is_empty() {
                        break;
                    }
                }
                break;
            }
            if req.body.len() + size > limits.max_body {
                return Err(HttpError::BodyTooLarge(limits.max_body));
            }
            let at = req.body.len();
            req.body.resize(at + size, 0);
            r.read_exact(&mut req.body[at..])?;
            let mut crlf = Vec::new();
            r.by_ref().take(2).read_until(b'\n', &mut crlf)?;
        }
    }
    Ok(())
}

/// Reason phrases for the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Write a response (with Content-Length and Connection).
pub fn write_response<W: Write>(
    w: &mut W,
    resp: &Response,
    keep: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256);
    write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len(),
        if keep { "keep-alive" } else { "close" }
    )?;
    for (k, v) in &resp.headers {
        write!(out, "{k}: {v}\r\n")?;
    }
    out.extend_from_slice(b"\r\n");
    // Head and body in one gathering write (writev on a socket), so the
    // body is not copied and a small response is one segment.
    let body: &[u8] = if head_only { &[] } else { &resp.body };
    write_all_parts(w, [&out, body])?;
    w.flush()
}

/// Write a takeover's response: status line, the handler's headers and
/// body, nothing added.
fn write_head_verbatim<W: Write>(w: &mut W, resp: &Response) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(256);
    write!(out, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status))?;
    for (k, v) in &resp.headers {
        write!(out, "{k}: {v}\r\n")?;
    }
    out.extend_from_slice(b"\r\n");
    write_all_parts(w, [&out, &resp.body])?;
    w.flush()
}

/// Write two buffers completely, with as few (vectored) writes as the
/// writer accepts.
fn write_all_parts<W: Write>(w: &mut W, mut parts: [&[u8]; 2]) -> std::io::Result<()> {
    while !parts[0].is_empty() || !parts[1].is_empty() {
        let iov = [IoSlice::new(parts[0]), IoSlice::new(parts[1])];
        let mut n = match w.write_vectored(&iov) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for p in &mut parts {
            let k = n.min(p.len());
            *p = &p[k..];
            n -= k;
        }
    }
    Ok(())
}

/// Bind a TCP listener.
pub fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most 7 bytes per write, like a full socket buffer.
    struct Trickle(Vec<u8>, usize);

    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.1 += 1;
            let n = b.len().min(7);
            self.0.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            self.1 += 1;
            let mut left = 7;
            for b in bufs {
                let n = b.len().min(left);
                self.0.extend_from_slice(&b[..n]);
                left -= n;
            }
            Ok(7 - left)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_vectored_writes_complete() {
        let body: Vec<u8> = (0..100u8).collect();
        let resp = Response {
            status: 200,
            headers: vec![("X".into(), "y".into())],
            body: body.clone(),
        };
        let mut w = Trickle(Vec::new(), 0);
        write_response(&mut w, &resp, true, false).unwrap();
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: keep-alive\r\nX: y\r\n\r\n";
        assert_eq!(&w.0[..head.len()], head);
        assert_eq!(&w.0[head.len()..], &body[..]);
        assert_eq!(w.1, (head.len() + body.len()).div_ceil(7));
        let mut w = Trickle(Vec::new(), 0);
        write_response(&mut w, &resp, true, true).unwrap();
        assert_eq!(&w.0[..], head);
    }

    #[derive(Debug)]
    struct Echo;

    impl Handler for Echo {
        fn handle(&self, req: &Request) -> Response {
            Response::text(200, &req.target)
        }
    }

    #[test]
    fn keepalive_request_limit_and_stop() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let cfg = HttpConfig {
            limits: HttpLimits {
                max_requests: 2,
                ..HttpLimits::default()
            },
            auth: None,
            realm: "t".into(),
            local_only: false,
            name: "t".into(),
        };
        let listener = Listener::start(l, None, cfg, Arc::new(Echo)).unwrap();
        let addr = listener.local_addr();
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Three requests in one go: two answers, the second saying close.
        c.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut all = String::new();
        c.read_to_string(&mut all).unwrap();
        assert_eq!(all.matches("HTTP/1.1 200").count(), 2, "{all}");
        assert!(all.contains("Connection: close"), "{all}");
        assert!(!all.contains("/3"), "{all}");
        // An idle keep-alive connection is shut down with the listener,
        // and the port is free again.
        let mut idle = TcpStream::connect(addr).unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        idle.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 256];
        assert!(idle.read(&mut buf).unwrap() > 0);
        listener.stop();
        // Closed by the server (EOF or reset), not left waiting.
        let mut rest = Vec::new();
        let r = idle.read_to_end(&mut rest);
        assert!(
            !matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "{r:?}"
        );
        assert!(TcpStream::connect(addr).is_err());
        TcpListener::bind(addr).unwrap();
    }
}
