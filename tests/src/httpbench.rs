//! What the HTTPS benchmarks share: a keep-alive TLS client that trusts
//! hvsim's generated certificate, a load loop with latency percentiles,
//! and reading a listener's port from hvsim's log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

/// A TLS stream to hvsim.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Send one request, read one response; returns the body.
pub fn call(r: &mut BufReader<Tls>, req: &[u8]) -> Vec<u8> {
    call_with_headers(r, req).1
}

/// Send one request, read one response; its header lines and body.
pub fn call_with_headers(r: &mut BufReader<Tls>, req: &[u8]) -> (Vec<String>, Vec<u8>) {
    r.get_mut().write_all(req).expect("send");
    r.get_mut().flush().expect("flush");
    let mut len = 0usize;
    let mut line = String::new();
    let mut first = true;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("read header");
        if first {
            assert!(
                line.starts_with("HTTP/1.1 200"),
                "unexpected status: {line}"
            );
            first = false;
        }
        if line == "\r\n" {
            break;
        }
        headers.push(line.trim_end().to_string());
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            len = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("body");
    (headers, body)
}

/// One load run.
#[derive(Debug)]
pub struct Run {
    /// Requests a second.
    pub rps: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Response body size.
    pub bytes: usize,
}

/// A keep-alive TLS connection to 127.0.0.1:`port`.
pub fn connect(port: u16, tls: &Arc<rustls::ClientConfig>) -> BufReader<Tls> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let c = rustls::ClientConnection::new(tls.clone(), name).expect("tls");
    BufReader::with_capacity(256 << 10, rustls::StreamOwned::new(c, s))
}

/// `conns` connections sending `req` for `secs` seconds.
pub fn load(
    port: u16,
    req: &[u8],
    tls: &Arc<rustls::ClientConfig>,
    secs: f64,
    conns: usize,
) -> Run {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let req = req.to_vec();
            let tls = tls.clone();
            std::thread::spawn(move || {
                let mut r = connect(port, &tls);
                let bytes = call(&mut r, &req).len(); // warm-up
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    call(&mut r, &req);
                    lat.push(t.elapsed());
                }
                (lat, bytes)
            })
        })
        .collect();
    let start = Instant::now();
    let mut all = Vec::new();
    let mut bytes = 0;
    for t in threads {
        let (l, b) = t.join().expect("client thread");
        all.extend(l);
        bytes = b;
    }
    let elapsed = start.elapsed().as_secs_f64().max(secs);
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Run {
        rps: all.len() as f64 / elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        bytes,
    }
}

/// The port of the first log line containing `what` (`... 127.0.0.1:PORT`).
pub fn port_in(log: &str, what: &str) -> Option<u16> {
    log.lines()
        .find(|l| l.contains(what))
        .and_then(|l| l.split("127.0.0.1:").nth(1))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
}

/// Accepts exactly hvsim's generated certificate (it is self-signed and
/// marked as a CA, which WebPKI refuses as a server certificate).
#[derive(Debug)]
pub struct Pinned(CertificateDer<'static>, rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end.as_ref() == self.0.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not hvsim's certificate".into()))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// A client that trusts exactly this certificate (PEM).
pub fn client_config(cert: &Path) -> Arc<rustls::ClientConfig> {
    let cert = CertificateDer::from_pem_file(cert).expect("certificate");
    let provider = rustls::crypto::ring::default_provider();
    let verifier = Arc::new(Pinned(cert, provider.clone()));
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}
