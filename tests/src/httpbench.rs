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

/// An `hvsim serve` started for a benchmark; killed on drop.
#[derive(Debug)]
pub struct BenchHvsim {
    child: std::process::Child,
    /// Its scratch directory (config, state, log).
    pub dir: tempfile::TempDir,
}

impl Drop for BenchHvsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hvsim serve` (the bench binary's sibling) with `vms` VMs `vm000`...,
/// `config` appended; each VM's guest reports one NIC with an IPv4 and an
/// IPv6 address and the host name `vmNNN.example.test`. Returns it and the
/// ports of the log lines containing each of `listeners`.
pub fn start_hvsim(config: &str, vms: usize, listeners: &[&str]) -> (BenchHvsim, Vec<u16>) {
    use agent::transport::unix::UnixBackdoor;
    use protocol::guest::GuestChannel;
    use protocol::nicinfo::{self, GuestNicV3, IpEntry, NicInfoV3};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = format!(
        "control_socket = \"{}\"\n{config}",
        dir.path().join("control.sock").display()
    );
    for i in 0..vms {
        cfg.push_str(&format!("[[vm]]\nname = \"vm{i:03}\"\n"));
    }
    let conf = dir.path().join("hvsim.toml");
    std::fs::write(&conf, cfg).expect("config");
    let log = dir.path().join("hvsim.log");
    let exe = std::env::current_exe()
        .expect("bench path")
        .with_file_name("hvsim");
    let child = std::process::Command::new(exe)
        .args(["serve", "--config"])
        .arg(&conf)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start hvsim");
    let h = BenchHvsim { child, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    let ports = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found: Vec<u16> = listeners.iter().filter_map(|w| port_in(&text, w)).collect();
        if found.len() == listeners.len() {
            break found;
        }
        assert!(Instant::now() < deadline, "hvsim did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for i in 0..vms {
        let info = NicInfoV3 {
            nics: vec![GuestNicV3 {
                mac: format!("00:50:56:00:{:02x}:{:02x}", i / 256, i % 256),
                ips: [
                    (format!("10.1.{}.{}", i / 250, i % 250 + 1), 16),
                    (format!("fd00::{:x}", i + 1), 64),
                ]
                .into_iter()
                .map(|(a, prefix)| IpEntry {
                    addr: a.parse::<std::net::IpAddr>().expect("ip").into(),
                    prefix,
                    origin: Some(nicinfo::origin::DHCP),
                    status: Some(nicinfo::status::PREFERRED),
                })
                .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut nic = b"SetGuestInfo  10 ".to_vec();
        nic.extend_from_slice(&nicinfo::encode(&info));
        let sock = h
            .dir
            .path()
            .join(format!("state/vms/vm{i:03}/backdoor.sock"));
        let mut ch = GuestChannel::open(
            UnixBackdoor::connect(&sock).expect("backdoor"),
            protocol::proto::RPCI,
        )
        .expect("channel");
        assert_eq!(ch.call(&nic).expect("report"), b"1 ");
        let host = format!("SetGuestInfo  1 vm{i:03}.example.test");
        assert_eq!(ch.call(host.as_bytes()).expect("report"), b"1 ");
    }
    (h, ports)
}
