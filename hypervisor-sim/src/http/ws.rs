//! WebSockets (RFC 6455) over a taken-over connection ([`super::conn`]).
//!
//! The handshake key (`Sec-WebSocket-Accept`) and the frame codec are
//! tungstenite's (`derive_accept_key`, `FrameSocket`, `FrameHeader`); this
//! module adds what a server with a reading and a writing thread needs:
//! [`upgrade`] checks the request and answers `101 Switching Protocols`,
//! then hands the taker a [`WsConn`] that splits into a [`WsReader`] (one
//! thread) and a cloneable [`WsWriter`] (any thread). The reader answers
//! pings with pongs and a close frame with a close frame through the
//! writer, so the taker only sees data messages.
//!
//! ```ignore
//! fn handle(&self, req: &Request) -> Response {
//!     ws::upgrade(req, None, WsConfig::default(), |conn| {
//!         let (mut rx, tx) = conn.split();
//!         while let Ok(m) = rx.recv() {
//!             if let ws::Message::Binary(b) = m { let _ = tx.send_binary(&b); }
//!         }
//!     })
//! }
//! ```
//!
//! Threat table: the client is untrusted. Frames must be masked (RFC 6455
//! 5.1) and use no reserved bits or opcodes; control frames are at most
//! 125 bytes and unfragmented; a message (all its fragments) is bounded by
//! [`WsConfig::max_message`] before its bytes are buffered; text must be
//! UTF-8. Any violation closes with 1002 (protocol) or 1009 (too big) and
//! [`WsReader::recv`] returns the error.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::{FrameHeader, FrameSocket};

use super::conn::{Conn, ConnReader, ConnWriter};
use super::{Request, Response};

/// Close codes (RFC 6455 7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away (server shutting down, page closed).
    pub const AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// Data the endpoint cannot accept (a text frame where binary is
    /// expected, or malformed content).
    pub const UNSUPPORTED: u16 = 1003;
    /// Invalid payload data (text that is not UTF-8).
    pub const INVALID: u16 = 1007;
    /// Policy violation.
    pub const POLICY: u16 = 1008;
    /// Message too big.
    pub const TOO_BIG: u16 = 1009;
    /// Internal error.
    pub const ERROR: u16 = 1011;
}

/// Bounds of a WebSocket.
#[derive(Debug, Clone, Copy)]
pub struct WsConfig {
    /// Largest message (sum of its fragments) accepted from the client.
    pub max_message: usize,
    /// Read timeout (`None`: wait forever); the reader's `recv` returns
    /// [`WsError::Io`] with `WouldBlock`/`TimedOut` when it expires, and may
    /// be called again.
    pub read_timeout: Option<Duration>,
    /// Write timeout for each send.
    pub write_timeout: Option<Duration>,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_message: 1 << 20,
            read_timeout: None,
            write_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// A data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message.
    Text(String),
}

/// Why a WebSocket stopped or refused something.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The peer closed (code 1006 when the connection ended without a
    /// close frame), or we did.
    #[error("websocket closed ({code}{})", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Closed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// The socket failed or timed out.
    #[error("websocket i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer broke RFC 6455 (we sent close 1002/1007).
    #[error("websocket protocol error: {0}")]
    Protocol(String),
    /// A message beyond [`WsConfig::max_message`] (we sent close 1009).
    #[error("websocket message of {size} bytes exceeds the limit of {max}")]
    TooBig {
        /// Its size (or the size reached so far).
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl WsError {
    /// A timeout of the read or write deadline (the socket is intact).
    pub fn is_timeout(&self) -> bool {
        matches!(self, WsError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// Whether `req` asks for a WebSocket (`Upgrade: websocket`).
pub fn is_upgrade(req: &Request) -> bool {
    req.header("Upgrade").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    })
}

/// The subprotocols the client offered (`Sec-WebSocket-Protocol`, in order).
pub fn offered_protocols(req: &Request) -> Vec<String> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Sec-WebSocket-Protocol"))
        .flat_map(|(_, v)| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Check that `req` is a valid WebSocket opening handshake; the
/// `Sec-WebSocket-Accept` value on success, the refusal (400, or 426 for
/// another protocol version) otherwise.
pub fn check(req: &Request) -> Result<String, Response> {
    use base64::Engine as _;
    if req.method != "GET" {
        return Err(
            Response::text(405, "a WebSocket opening handshake is a GET\n")
                .with_header("Allow", "GET"),
        );
    }
    if !is_upgrade(req) {
        return Err(Response::text(
            426,
            "this resource is a WebSocket: send Upgrade: websocket\n",
        )
        .with_header("Upgrade", "websocket")
        .with_header("Connection", "Upgrade"));
    }
    let conn_upgrade = req.header("Connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    if !conn_upgrade {
        return Err(Response::text(
            400,
            "WebSocket handshake without Connection: Upgrade\n",
        ));
    }
    if req.header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(
            Response::text(426, "only WebSocket version 13 (RFC 6455) is supported\n")
                .with_header("Sec-WebSocket-Version", "13"),
        );
    }
    let key = req.header("Sec-WebSocket-Key").unwrap_or("").trim();
    let ok = base64::engine::general_purpose::STANDARD
        .decode(key)
        .is_ok_and(|k| k.len() == 16);
    if !ok {
        return Err(Response::text(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64\n",
        ));
    }
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// Answer a WebSocket opening handshake: `101 Switching Protocols` (with
/// `subprotocol` echoed in `Sec-WebSocket-Protocol` when given; pass one
/// only if the client offered it, browsers fail the socket otherwise), after
/// which `f` runs with the socket on the connection's thread. An invalid
/// handshake gets its refusal from [`check`] and `f` never runs.
pub fn upgrade(
    req: &Request,
    subprotocol: Option<&str>,
    cfg: WsConfig,
    f: impl FnOnce(WsConn) + Send + 'static,
) -> Response {
    let accept = match check(req) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut resp = Response {
        status: 101,
        headers: vec![
            ("Upgrade".into(), "websocket".into()),
            ("Connection".into(), "Upgrade".into()),
            ("Sec-WebSocket-Accept".into(), accept),
        ],
        body: Vec::new(),
    };
    if let Some(p) = subprotocol {
        resp.headers
            .push(("Sec-WebSocket-Protocol".into(), p.to_string()));
    }
    req.take_over(move |conn| {
        let _ = conn.set_read_timeout(cfg.read_timeout);
        let _ = conn.set_write_timeout(cfg.write_timeout);
        f(WsConn::new(conn, cfg));
    });
    resp
}

/// An open WebSocket, server side.
#[derive(Debug)]
pub struct WsConn {
    reader: WsReader,
    writer: WsWriter,
}

impl WsConn {
    /// A WebSocket over a taken-over connection whose handshake is done.
    pub fn new(conn: Conn, cfg: WsConfig) -> WsConn {
        let peer = conn.peer();
        let (r, w) = conn.split();
        let writer = WsWriter {
            inner: Arc::new(Mutex::new(WriterState {
                w,
                close_sent: false,
            })),
            peer,
        };
        WsConn {
            reader: WsReader {
                frames: FrameSocket::new(r),
                writer: writer.clone(),
                max: cfg.max_message,
                partial: None,
            },
            writer,
        }
    }

    /// The reading half and the writing half.
    pub fn split(self) -> (WsReader, WsWriter) {
        (self.reader, self.writer)
    }

    /// The writing half (a clone).
    pub fn writer(&self) -> WsWriter {
        self.writer.clone()
    }

    /// See [`WsReader::recv`].
    pub fn recv(&mut self) -> Result<Message, WsError> {
        self.reader.recv()
    }

    /// See [`WsWriter::send_binary`].
    pub fn send_binary(&self, data: &[u8]) -> Result<(), WsError> {
        self.writer.send_binary(data)
    }

    /// See [`WsWriter::send_text`].
    pub fn send_text(&self, text: &str) -> Result<(), WsError> {
        self.writer.send_text(text)
    }

    /// See [`WsWriter::close`].
    pub fn close(&self, code: u16, reason: &str) -> Result<(), WsError> {
        self.writer.close(code, reason)
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.writer.peer
    }
}

/// The reading half of a [`WsConn`].
#[derive(Debug)]
pub struct WsReader {
    frames: FrameSocket<ConnReader>,
    writer: WsWriter,
    max: usize,
    /// A fragmented message being assembled: (is text, bytes so far).
    partial: Option<(bool, Vec<u8>)>,
}

impl WsReader {
    /// The next data message. Pings are answered, pongs skipped; a close
    /// frame is answered and returned as [`WsError::Closed`]; after any
    /// error other than a timeout the socket is finished.
    pub fn recv(&mut self) -> Result<Message, WsError> {
        loop {
            let frame = match self.frames.read(Some(self.max)) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    return Err(WsError::Closed {
                        code: 1006,
                        reason: "connection ended without a close frame".into(),
                    })
                }
                Err(tungstenite::Error::Io(e)) => {
                    if matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                    ) {
                        return Err(WsError::Closed {
                            code: 1006,
                            reason: e.to_string(),
                        });
                    }
                    return Err(WsError::Io(e));
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    return Err(self.fail(
                        close_code::TOO_BIG,
                        WsError::TooBig {
                            size: match e {
                                tungstenite::error::CapacityError::MessageTooLong {
                                    size, ..
                                } => size,
                                _ => self.max + 1,
                            },
                            max: self.max,
                        },
                    ))
                }
                Err(e) => {
                    return Err(self.fail(close_code::PROTOCOL, WsError::Protocol(e.to_string())))
                }
            };
            let h = frame.header().clone();
            if h.rsv1 || h.rsv2 || h.rsv3 {
                return Err(self.protocol("reserved bits set (no extension was negotiated)"));
            }
            let Some(mask) = h.mask else {
                return Err(self.protocol("unmasked frame from the client"));
            };
            let mut payload = frame.into_payload().to_vec();
            unmask(&mut payload, mask);
            match h.opcode {
                OpCode::Control(c) => {
                    if !h.is_final || payload.len() > 125 {
                        return Err(self.protocol("fragmented or oversized control frame"));
                    }
                    match c {
                        Control::Ping => self
                            .writer
                            .send_frame(OpCode::Control(Control::Pong), &payload)?,
                        Control::Pong => {}
                        Control::Close => return Err(self.closed_by_peer(&payload)),
                        Control::Reserved(x) => {
                            return Err(self.protocol(&format!("reserved control opcode {x}")))
                        }
                    }
                }
                OpCode::Data(d) => {
                    let (text, mut buf) = match (d, self.partial.take()) {
                        (Data::Continue, Some(p)) => p,
                        (Data::Continue, None) => {
                            return Err(self.protocol("continuation frame without a message"))
                        }
                        (Data::Text | Data::Binary, Some(_)) => {
                            return Err(self.protocol("new message inside a fragmented one"))
                        }
                        (Data::Text, None) => (true, Vec::new()),
                        (Data::Binary, None) => (false, Vec::new()),
                        (Data::Reserved(x), _) => {
                            return Err(self.protocol(&format!("reserved data opcode {x}")))
                        }
                    };
                    if buf.len() + payload.len() > self.max {
                        let size = buf.len() + payload.len();
                        return Err(self.fail(
                            close_code::TOO_BIG,
                            WsError::TooBig {
                                size,
                                max: self.max,
                            },
                        ));
                    }
                    if buf.is_empty() {
                        buf = payload;
                    } else {
                        buf.extend_from_slice(&payload);
                    }
                    if !h.is_final {
                        self.partial = Some((text, buf));
                        continue;
                    }
                    if !text {
                        return Ok(Message::Binary(buf));
                    }
                    return match String::from_utf8(buf) {
                        Ok(s) => Ok(Message::Text(s)),
                        Err(_) => Err(self.fail(
                            close_code::INVALID,
                            WsError::Protocol("text message is not UTF-8".into()),
                        )),
                    };
                }
            }
        }
    }

    /// Bound reads (see [`WsConfig::read_timeout`]).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.frames.get_ref().set_read_timeout(t)
    }

    /// The writing half that belongs to this reader.
    pub fn writer(&self) -> WsWriter {
        self.writer.clone()
    }

    fn protocol(&self, what: &str) -> WsError {
        self.fail(close_code::PROTOCOL, WsError::Protocol(what.into()))
    }

    fn fail(&self, code: u16, e: WsError) -> WsError {
        let reason = e.to_string();
        let reason = truncate_reason(&reason);
        let _ = self.writer.close(code, reason);
        self.writer.shutdown();
        e
    }

    fn closed_by_peer(&self, payload: &[u8]) -> WsError {
        let (code, reason) = if payload.len() >= 2 {
            (
                u16::from_be_bytes([payload[0], payload[1]]),
                String::from_utf8_lossy(&payload[2..]).into_owned(),
            )
        } else {
            (1005, String::new())
        };
        // Echo the close (RFC 6455 5.5.1), then end the TCP connection: the
        // server closes first.
        let echo = if payload.len() >= 2 {
            code
        } else {
            close_code::NORMAL
        };
        let _ = self.writer.close(echo, "");
        self.writer.shutdown();
        WsError::Closed { code, reason }
    }
}

fn truncate_reason(s: &str) -> &str {
    // A close frame's payload is at most 125 bytes: 2 for the code.
    let mut end = s.len().min(123);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn unmask(buf: &mut [u8], mask: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[derive(Debug)]
struct WriterState {
    w: ConnWriter,
    close_sent: bool,
}

/// The writing half of a [`WsConn`]: cloneable, each send is one whole
/// frame even from several threads.
#[derive(Debug, Clone)]
pub struct WsWriter {
    inner: Arc<Mutex<WriterState>>,
    peer: SocketAddr,
}

impl WsWriter {
    /// Send a binary message (one frame).
    pub fn send_binary(&self, data: &[u8]) -> Result<(), WsError> {
        self.send_frame(OpCode::Data(Data::Binary), data)
    }

    /// Send a text message (one frame).
    pub fn send_text(&self, text: &str) -> Result<(), WsError> {
        self.send_frame(OpCode::Data(Data::Text), text.as_bytes())
    }

    /// Send a ping (at most 125 bytes of payload).
    pub fn ping(&self, data: &[u8]) -> Result<(), WsError> {
        self.send_frame(OpCode::Control(Control::Ping), &data[..data.len().min(125)])
    }

    /// Send a close frame (once; later calls do nothing). The reader then
    /// sees the peer's answering close as [`WsError::Closed`]; call
    /// [`WsWriter::shutdown`] to end the connection without waiting.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), WsError> {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(truncate_reason(reason).as_bytes());
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if st.close_sent {
            return Ok(());
        }
        st.close_sent = true;
        write_frame(&mut st.w, OpCode::Control(Control::Close), &payload)
    }

    /// End the connection now (TLS close_notify, TCP shutdown); the reader
    /// returns.
    pub fn shutdown(&self) {
        let st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        st.w.shutdown();
    }

    /// Whether a close frame has been sent.
    pub fn is_closed(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close_sent
    }

    /// Bound writes.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .w
            .set_write_timeout(t)
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn send_frame(&self, op: OpCode, data: &[u8]) -> Result<(), WsError> {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if st.close_sent {
            return Err(WsError::Closed {
                code: close_code::NORMAL,
                reason: "close already sent".into(),
            });
        }
        write_frame(&mut st.w, op, data)
    }
}

fn write_frame(w: &mut ConnWriter, op: OpCode, data: &[u8]) -> Result<(), WsError> {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode: op,
        // Server frames are not masked (RFC 6455 5.1).
        mask: None,
    };
    let mut out = Vec::with_capacity(
        14 + if data.len() <= 16 << 10 {
            data.len()
        } else {
            0
        },
    );
    header
        .format(data.len() as u64, &mut out)
        .map_err(|e| WsError::Protocol(e.to_string()))?;
    if data.len() <= 16 << 10 {
        // Small frames in one write (one TLS record, one segment).
        out.extend_from_slice(data);
        w.write_all(&out)?;
    } else {
        w.write_all(&out)?;
        w.write_all(data)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{sse, Handler, HttpConfig, HttpLimits, Listener};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// Sends `BURST` binary messages of `SIZE` bytes while its reader
    /// thread takes the client's messages in; then reports what it got.
    #[derive(Debug)]
    struct Duplex;

    const SIZE: usize = 64 << 10;
    const BURST: usize = 192;

    fn pattern(i: usize) -> Vec<u8> {
        (0..SIZE).map(|k| (k * 7 + i) as u8).collect()
    }

    impl Handler for Duplex {
        fn handle(&self, req: &Request) -> Response {
            match req.target.as_str() {
                "/ws" => {
                    let proto = offered_protocols(req).first().cloned();
                    upgrade(req, proto.as_deref(), WsConfig::default(), |conn| {
                        let (mut rx, tx) = conn.split();
                        let sender = {
                            let tx = tx.clone();
                            std::thread::spawn(move || {
                                for i in 0..BURST {
                                    tx.send_binary(&pattern(i)).unwrap();
                                }
                            })
                        };
                        let mut got = 0usize;
                        let mut ok = true;
                        for i in 0..BURST {
                            match rx.recv() {
                                Ok(Message::Binary(b)) => {
                                    ok &= b == pattern(i + 1);
                                    got += b.len();
                                }
                                other => panic!("{other:?}"),
                            }
                        }
                        sender.join().unwrap();
                        tx.send_text(&format!("got {got} ok {ok}")).unwrap();
                        // The client closes; recv answers and reports it.
                        match rx.recv() {
                            Err(WsError::Closed { code, .. }) => assert_eq!(code, 1000),
                            other => panic!("{other:?}"),
                        }
                    })
                }
                "/events" => sse::start(req, |mut s| {
                    s.send(Some("power"), "{\"vm\":\"vm0\"}").unwrap();
                    s.keep_alive().unwrap();
                    s.send_with_id(None, "7", "two\nlines").unwrap();
                }),
                _ => Response::text(404, "no\n"),
            }
        }
    }

    fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> Listener {
        let cfg = HttpConfig {
            limits: HttpLimits::default(),
            auth: None,
            realm: "t".into(),
            local_only: false,
            name: "t".into(),
        };
        Listener::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            tls,
            cfg,
            Arc::new(Duplex),
        )
        .unwrap()
    }

    /// Accepts the one certificate the test generated (webpki refuses a
    /// self-signed CA certificate as a server's, so the test pins it).
    #[derive(Debug)]
    struct Pinned(
        rustls::pki_types::CertificateDer<'static>,
        Arc<rustls::crypto::CryptoProvider>,
    );

    impl rustls::client::danger::ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            if end_entity.as_ref() == self.0.as_ref() {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General("not the pinned certificate".into()))
            }
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.1.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &rustls::pki_types::CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.1.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.1.signature_verification_algorithms.supported_schemes()
        }
    }

    fn tls_pair(dir: &std::path::Path) -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let p = crate::http::tls::ensure_self_signed(dir, "t", &["localhost".into()]).unwrap();
        let server = crate::http::tls::server_config(&p).unwrap();
        use rustls::pki_types::pem::PemObject as _;
        let cert = rustls::pki_types::CertificateDer::from_pem_file(&p.cert).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned(cert, provider)))
            .with_no_client_auth();
        (server, Arc::new(client))
    }

    fn duplex_client<S: Read + Write>(s: S) {
        let mut req =
            tungstenite::client::IntoClientRequest::into_client_request("ws://localhost/ws")
                .unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "tok123".parse().unwrap());
        let (mut ws, resp) = tungstenite::client(req, s).unwrap();
        assert_eq!(resp.status(), 101);
        assert_eq!(
            resp.headers()["Sec-WebSocket-Protocol"].to_str().unwrap(),
            "tok123"
        );
        // Write everything before reading anything while the server does
        // the same: only a full-duplex server finishes.
        for i in 0..BURST {
            ws.send(tungstenite::Message::binary(pattern(i + 1)))
                .unwrap();
        }
        for i in 0..BURST {
            match ws.read().unwrap() {
                tungstenite::Message::Binary(b) => assert!(b[..] == pattern(i)[..], "message {i}"),
                m => panic!("{m:?}"),
            }
        }
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => {
                assert_eq!(t.as_str(), format!("got {} ok true", SIZE * BURST))
            }
            m => panic!("{m:?}"),
        }
        ws.close(None).unwrap();
        loop {
            match ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn sse_client<S: Read + Write>(mut s: S) {
        s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let all = String::from_utf8(all).unwrap();
        assert!(all.starts_with("HTTP/1.1 200 OK\r\n"), "{all}");
        assert!(all.contains("Content-Type: text/event-stream\r\n"), "{all}");
        assert!(!all.contains("Content-Length"), "{all}");
        let body = all.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            body,
            "event: power\ndata: {\"vm\":\"vm0\"}\n\n: keep-alive\n\nid: 7\ndata: two\ndata: lines\n\n"
        );
    }

    fn connect(l: &Listener) -> TcpStream {
        let s = TcpStream::connect(l.local_addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    #[test]
    fn websocket_full_duplex_over_tcp() {
        let l = serve(None);
        duplex_client(connect(&l));
    }

    #[test]
    fn websocket_full_duplex_over_tls() {
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = tls_pair(dir.path());
        let l = serve(Some(server));
        let c = rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
        duplex_client(rustls::StreamOwned::new(c, connect(&l)));
    }

    #[test]
    fn event_stream_over_tcp_and_tls() {
        let l = serve(None);
        sse_client(connect(&l));
        let dir = tempfile::tempdir().unwrap();
        let (server, client) = tls_pair(dir.path());
        let l = serve(Some(server));
        let c = rustls::ClientConnection::new(client, "localhost".try_into().unwrap()).unwrap();
        sse_client(rustls::StreamOwned::new(c, connect(&l)));
    }

    #[test]
    fn refusals() {
        let l = serve(None);
        let ask = |extra: &str| {
            let mut s = connect(&l);
            write!(s, "GET /ws HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        assert!(ask("").starts_with("HTTP/1.1 426"));
        let r = ask("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        assert!(
            r.starts_with("HTTP/1.1 426") && r.contains("Sec-WebSocket-Version: 13"),
            "{r}"
        );
        let r = ask("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n");
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        // RFC 6455 1.3's example key and answer.
        let r = ask("Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
        assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{r}");
        assert!(
            r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{r}"
        );
        assert!(!r.contains("Content-Length"), "{r}");
    }

    #[test]
    fn unmasked_and_oversized_frames_are_refused() {
        #[derive(Debug)]
        struct Small(std::sync::mpsc::Sender<String>);
        impl Handler for Small {
            fn handle(&self, req: &Request) -> Response {
                let tx = self.0.clone();
                let cfg = WsConfig {
                    max_message: 1000,
                    ..WsConfig::default()
                };
                upgrade(req, None, cfg, move |mut c| {
                    let _ = tx.send(format!("{:?}", c.recv()));
                })
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let l = Listener::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            None,
            HttpConfig {
                limits: HttpLimits::default(),
                auth: None,
                realm: "t".into(),
                local_only: false,
                name: "t".into(),
            },
            Arc::new(Small(tx)),
        )
        .unwrap();
        let open = |frame: &[u8]| {
            let mut s = connect(&l);
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
            s.write_all(frame).unwrap();
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all);
            all
        };
        // Unmasked binary frame "hi".
        let got = open(&[0x82, 0x02, b'h', b'i']);
        assert!(rx.recv().unwrap().contains("unmasked"));
        // The server's close frame: 0x88, then code 1002.
        let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(&got[at..at + 1], &[0x88]);
        assert_eq!(&got[at + 2..at + 4], &1002u16.to_be_bytes());
        // A masked frame announcing 2000 bytes.
        let got = open(&[0x82, 0xfe, 0x07, 0xd0, 1, 2, 3, 4]);
        assert!(rx.recv().unwrap().contains("TooBig"));
        let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(&got[at + 2..at + 4], &1009u16.to_be_bytes());
    }
}
