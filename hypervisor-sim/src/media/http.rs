//! A streamed `http(s)://` image: HTTP/1.1 range requests over kept-alive
//! connections, blocks kept in a bounded LRU cache.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use super::{Backend, MediaError, OpenOptions};

/// Bytes per cached block (and per range request).
pub const BLOCK: u64 = 1 << 20;
/// Most blocks kept: bounds the cache to 32 MiB per medium.
pub const CACHE_BLOCKS: usize = 32;
/// Largest response head we read.
pub const MAX_HEAD: usize = 16 << 10;
/// Kept-alive connections per image.
const POOL: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

struct Conn(BufReader<Box<dyn Stream>>);

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

#[derive(Debug, Default)]
struct Cache {
    blocks: HashMap<u64, Arc<Vec<u8>>>,
    order: VecDeque<u64>,
}

/// Where an image lives.
#[derive(Debug, Clone)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Option<Target> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']')?;
        (h.to_string(), p.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None if tls => 443,
        None => 80,
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    Some(Target {
        tls,
        host,
        port,
        path: path.to_string(),
    })
}

/// An image behind an HTTP(S) URL.
pub struct HttpImage {
    url: String,
    target: Target,
    tls: Option<Arc<rustls::ClientConfig>>,
    auth: Option<String>,
    size: u64,
    pool: Mutex<Vec<Conn>>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for HttpImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpImage")
            .field("url", &self.url)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl HttpImage {
    /// Probe `url` with a one-byte range request: the server must answer
    /// 206 with the total size in Content-Range.
    pub fn open(url: &str, o: &OpenOptions) -> Result<HttpImage, MediaError> {
        let target = parse_url(url).ok_or_else(|| MediaError::BadUrl(url.to_string()))?;
        let tls = if target.tls {
            Some(client_config(o).map_err(|msg| MediaError::Remote {
                url: url.to_string(),
                msg,
            })?)
        } else {
            None
        };
        let auth = o.credentials.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let mut img = HttpImage {
            url: url.to_string(),
            target,
            tls,
            auth,
            size: 0,
            pool: Mutex::new(Vec::new()),
            cache: Mutex::new(Cache::default()),
        };
        let (total, _) = img.range(0, 1)?;
        img.size = total;
        Ok(img)
    }

    fn remote(&self, msg: impl Into<String>) -> MediaError {
        MediaError::Remote {
            url: self.url.clone(),
            msg: msg.into(),
        }
    }

    fn connect(&self) -> Result<Conn, MediaError> {
        let t = &self.target;
        let addrs: Vec<_> = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| self.remote(format!("cannot resolve {}: {e}", t.host)))?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            self.remote(format!(
                "cannot connect: {}",
                last.map_or("no address".into(), |e| e.to_string())
            ))
        })?;
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
        let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
        let stream: Box<dyn Stream> = match &self.tls {
            None => Box::new(tcp),
            Some(cfg) => {
                let name = ServerName::try_from(t.host.clone())
                    .map_err(|_| self.remote("invalid server name"))?;
                let conn = rustls::ClientConnection::new(cfg.clone(), name)
                    .map_err(|e| self.remote(format!("TLS: {e}")))?;
                let mut s = rustls::StreamOwned::new(conn, tcp);
                // Handshake now, so certificate errors name themselves.
                while s.conn.is_handshaking() {
                    s.conn
                        .complete_io(&mut s.sock)
                        .map_err(|e| self.remote(format!("TLS handshake: {e}")))?;
                }
                Box::new(s)
            }
        };
        Ok(Conn(BufReader::with_capacity(64 << 10, stream)))
    }

    /// GET bytes `[start, start+len)`: the image's total size and the bytes.
    fn range(&self, start: u64, len: u64) -> Result<(u64, Vec<u8>), MediaError> {
        let pooled = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        match self.exchange(&mut conn, start, len) {
            Ok((total, body, keep)) => {
                if keep {
                    let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                    if pool.len() < POOL {
                        pool.push(conn);
                    }
                }
                Ok((total, body))
            }
            // A kept-alive connection the server closed meanwhile: once more
            // on a fresh one.
            Err(_) if reused => {
                let mut conn = self.connect()?;
                let (total, body, _) = self.exchange(&mut conn, start, len)?;
                Ok((total, body))
            }
            Err(e) => Err(e),
        }
    }

    fn exchange(
        &self,
        conn: &mut Conn,
        start: u64,
        len: u64,
    ) -> Result<(u64, Vec<u8>, bool), MediaError> {
        let t = &self.target;
        let host = if t.host.contains(':') {
            format!("[{}]", t.host)
        } else {
            t.host.clone()
        };
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nRange: bytes={start}-{}\r\nUser-Agent: hvsim-virtual-media\r\nAccept-Encoding: identity\r\n",
            t.path,
            t.port,
            start + len - 1
        );
        if let Some(a) = &self.auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        let io = |e: std::io::Error| self.remote(e.to_string());
        let w = conn.0.get_mut();
        w.write_all(req.as_bytes()).map_err(io)?;
        w.flush().map_err(io)?;
        let mut head = Vec::with_capacity(1024);
        loop {
            let n = conn
                .0
                .by_ref()
                .take((MAX_HEAD - head.len().min(MAX_HEAD)) as u64 + 1)
                .read_until(b'\n', &mut head)
                .map_err(io)?;
            if n == 0 {
                return Err(self.remote("connection closed before the response"));
            }
            if head.len() > MAX_HEAD {
                return Err(self.remote("response header too large"));
            }
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                break;
            }
        }
        let mut hbuf = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hbuf);
        match resp.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(self.remote("malformed response")),
        }
        let status = resp.code.unwrap_or(0);
        let get = |n: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(n))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        let keep = !get("Connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
            && resp.version == Some(1);
        match status {
            206 => {}
            200 => return Err(self.remote("the server does not support range requests")),
            401 | 403 => return Err(self.remote(format!("access denied (HTTP {status})"))),
            404 => return Err(self.remote("not found (HTTP 404)")),
            416 => return Err(self.remote("range not satisfiable (HTTP 416)")),
            s => return Err(self.remote(format!("HTTP {s}"))),
        }
        if get("Transfer-Encoding").is_some() {
            return Err(self.remote("chunked range responses are not supported"));
        }
        let clen: u64 = get("Content-Length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.remote("range response without Content-Length"))?;
        // Content-Range: bytes START-END/TOTAL
        let cr = get("Content-Range").ok_or_else(|| self.remote("no Content-Range"))?;
        let parsed = cr
            .strip_prefix("bytes ")
            .and_then(|r| r.split_once('/'))
            .and_then(|(r, total)| {
                let (a, b) = r.split_once('-')?;
                Some((
                    a.trim().parse::<u64>().ok()?,
                    b.trim().parse::<u64>().ok()?,
                    total.trim().parse::<u64>().ok()?,
                ))
            });
        let Some((a, b, total)) = parsed else {
            return Err(self.remote(format!("bad Content-Range {cr:?}")));
        };
        let want_end = (start + len).min(total.max(1)) - 1;
        if a != start || b != want_end || clen != b - a + 1 || b >= total {
            return Err(self.remote(format!(
                "asked for bytes {start}-{} and got {cr:?}",
                start + len - 1
            )));
        }
        let mut body = vec![0u8; clen as usize];
        conn.0.read_exact(&mut body).map_err(io)?;
        Ok((total, body, keep))
    }

    fn block(&self, index: u64) -> Result<Arc<Vec<u8>>, MediaError> {
        if let Some(b) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blocks
            .get(&index)
        {
            return Ok(b.clone());
        }
        let start = index * BLOCK;
        let len = BLOCK.min(self.size - start);
        let (total, data) = self.range(start, len)?;
        if total != self.size {
            return Err(self.remote(format!(
                "the image changed size from {} to {total}",
                self.size
            )));
        }
        let data = Arc::new(data);
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.blocks.insert(index, data.clone()).is_none() {
            c.order.push_back(index);
        }
        while c.order.len() > CACHE_BLOCKS {
            if let Some(old) = c.order.pop_front() {
                c.blocks.remove(&old);
            }
        }
        Ok(data)
    }
}

impl Backend for HttpImage {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), MediaError> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let b = self.block(pos / BLOCK)?;
            let within = (pos % BLOCK) as usize;
            let n = (b.len() - within).min(buf.len() - done);
            if n == 0 {
                return Err(self.remote("short block"));
            }
            buf[done..done + n].copy_from_slice(&b[within..within + n]);
            done += n;
        }
        Ok(())
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

/// System trust anchors plus `ca_file`, or no verification at all.
fn client_config(o: &OpenOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if !o.verify {
        return Ok(Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    let mut pinned = Vec::new();
    for bundle in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if let Ok(it) = CertificateDer::pem_file_iter(bundle) {
            roots.add_parsable_certificates(it.flatten());
            break;
        }
    }
    if let Some(ca) = &o.ca_file {
        let certs: Vec<_> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("{}: {e}", ca.display()))?
            .flatten()
            .collect();
        pinned.extend(certs.iter().map(|c| c.to_vec()));
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!("{}: no usable CA certificate", ca.display()));
        }
    }
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    Ok(Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                webpki,
                pinned,
                provider,
            }))
            .with_no_client_auth(),
    ))
}

/// Web PKI verification, plus: a server presenting exactly a certificate
/// from `media_ca` is trusted (a pinned self-signed certificate, such as
/// hvsim's own generated ones, which are marked as CAs so OpenSSL clients
/// can pin them, and which webpki therefore refuses as end entities).
#[derive(Debug)]
struct Pinned {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<Vec<u8>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_slice() == end_entity.as_ref())
        {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// VerifyCertificate = false: accept any server certificate, but still check
/// the handshake signatures (the connection is encrypted, not authenticated).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("https://example.com/a/b.iso").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("example.com", 443, "/a/b.iso")
        );
        let t = parse_url("http://[::1]:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8080, "/")
        );
        assert!(parse_url("https://u:p@host/x").is_none());
        assert!(parse_url("https://host:99999/x").is_none());
        assert!(parse_url("https://host/a b").is_none());
        assert!(parse_url("ftp://host/").is_none());
    }
}
