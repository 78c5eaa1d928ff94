//! WS-Management against CIM-XML on the same hvsim, same run: an optimized
//! Enumerate of CIM_IPProtocolEndpoint (wsman:MaxElements 200, so all 200
//! endpoints of 100 VMs come in the EnumerateResponse) against
//! EnumerateInstances of the same class over CIM-XML, both over HTTPS
//! (TLS 1.2, the default) on keep-alive connections with Basic
//! authentication, from several client threads. Prints requests/s and
//! latency percentiles as a Markdown table.
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::transport::unix::UnixBackdoor;
use protocol::guest::GuestChannel;
use protocol::nicinfo::{self, GuestNicV3, IpEntry, NicInfoV3};
use protocol::proto;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

const VMS: usize = 100;
const CONNECTIONS: usize = 4;

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("bench path")
        .with_file_name(name)
}

const CIM_BODY: &str = r#"<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="EnumerateInstances"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="CIM_IPProtocolEndpoint"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;

const WSMAN_BODY: &str = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:wsen="http://schemas.xmlsoap.org/ws/2004/09/enumeration"><s:Header><wsa:Action s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate</wsa:Action><wsa:To s:mustUnderstand="true">https://127.0.0.1/wsman</wsa:To><wsman:ResourceURI s:mustUnderstand="true">http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_IPProtocolEndpoint</wsman:ResourceURI><wsa:MessageID s:mustUnderstand="true">uuid:6f2a1e0c-0000-4000-8000-000000000001</wsa:MessageID><wsa:ReplyTo><wsa:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:Address></wsa:ReplyTo><wsman:OperationTimeout>PT60S</wsman:OperationTimeout></s:Header><s:Body><wsen:Enumerate><wsman:OptimizeEnumeration/><wsman:MaxElements>200</wsman:MaxElements></wsen:Enumerate></s:Body></s:Envelope>"#;

fn cim_request() -> Vec<u8> {
    format!(
        "POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YmVuY2g6YmVuY2g=\r\nContent-Type: application/xml; charset=\"utf-8\"\r\nCIMOperation: MethodCall\r\nCIMMethod: EnumerateInstances\r\nCIMObject: root%2Fcimv2\r\nContent-Length: {}\r\n\r\n{CIM_BODY}",
        CIM_BODY.len()
    )
    .into_bytes()
}

fn wsman_request() -> Vec<u8> {
    format!(
        "POST /wsman HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YmVuY2g6YmVuY2g=\r\nContent-Type: application/soap+xml;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{WSMAN_BODY}",
        WSMAN_BODY.len()
    )
    .into_bytes()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Send one request, read one response; returns the body.
fn call(r: &mut BufReader<Tls>, req: &[u8]) -> Vec<u8> {
    r.get_mut().write_all(req).expect("send");
    r.get_mut().flush().expect("flush");
    let mut len = 0usize;
    let mut line = String::new();
    let mut first = true;
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
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            len = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("body");
    body
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
    bytes: usize,
}

fn connect(port: u16, tls: &Arc<rustls::ClientConfig>) -> BufReader<Tls> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let c = rustls::ClientConnection::new(tls.clone(), name).expect("tls");
    BufReader::with_capacity(256 << 10, rustls::StreamOwned::new(c, s))
}

fn load(port: u16, req: &[u8], tls: &Arc<rustls::ClientConfig>, secs: f64) -> Run {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..CONNECTIONS)
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

struct Hvsim(Child, tempfile::TempDir);

impl Drop for Hvsim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port_in(log: &str, what: &str) -> Option<u16> {
    log.lines()
        .find(|l| l.contains(what))
        .and_then(|l| l.split("127.0.0.1:").nth(1))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
}

/// hvsim with 100 VMs, each reporting one IPv4 and one IPv6 address;
/// returns it and the CIM-XML HTTPS and WS-Management ports.
fn start_hvsim() -> (Hvsim, u16, u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = format!(
        "control_socket = \"{}\"\n[cim]\nhttp = \"\"\nhttps = \"127.0.0.1:0\"\n[wsman]\nlisten = \"127.0.0.1:0\"\n[[user]]\nname = \"bench\"\npassword = \"bench\"\n",
        dir.path().join("control.sock").display()
    );
    for i in 0..VMS {
        cfg.push_str(&format!("[[vm]]\nname = \"vm{i:03}\"\n"));
    }
    let conf = dir.path().join("hvsim.toml");
    std::fs::write(&conf, cfg).expect("config");
    let log = dir.path().join("hvsim.log");
    let child = Command::new(sibling("hvsim"))
        .args(["serve", "--config"])
        .arg(&conf)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start hvsim");
    let h = Hvsim(child, dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (cim, ws) = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let (Some(c), Some(w)) = (
            port_in(&text, "CIM-XML over HTTPS on"),
            port_in(&text, "WS-Management over HTTPS on"),
        ) {
            break (c, w);
        }
        assert!(Instant::now() < deadline, "hvsim did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for i in 0..VMS {
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
        let mut msg = b"SetGuestInfo  10 ".to_vec();
        msg.extend_from_slice(&nicinfo::encode(&info));
        let sock = h.1.path().join(format!("state/vms/vm{i:03}/backdoor.sock"));
        let mut ch =
            GuestChannel::open(UnixBackdoor::connect(&sock).expect("backdoor"), proto::RPCI)
                .expect("channel");
        assert_eq!(ch.call(&msg).expect("report"), b"1 ");
    }
    (h, cim, ws)
}

/// Accepts exactly hvsim's generated certificate (it is self-signed and
/// marked as a CA, which WebPKI refuses as a server certificate).
#[derive(Debug)]
struct Pinned(CertificateDer<'static>, rustls::crypto::CryptoProvider);

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

/// A client that trusts hvsim's generated certificate.
fn client_config(state: &Path) -> Arc<rustls::ClientConfig> {
    let cert = CertificateDer::from_pem_file(state.join("cim/server.crt")).expect("certificate");
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 1.0 } else { 5.0 };
    let (h, cim_port, ws_port) = start_hvsim();
    let tls = client_config(&h.1.path().join("state"));
    // Both answer all 200 endpoints in one response.
    let body =
        String::from_utf8(call(&mut connect(ws_port, &tls), &wsman_request())).expect("utf-8");
    assert_eq!(body.matches("<p:CIM_IPProtocolEndpoint ").count(), VMS * 2);
    assert!(body.contains("<wsman:EndOfSequence/>"));
    let body =
        String::from_utf8(call(&mut connect(cim_port, &tls), &cim_request())).expect("utf-8");
    assert_eq!(body.matches("<VALUE.NAMEDINSTANCE>").count(), VMS * 2);
    let ws = load(ws_port, &wsman_request(), &tls, secs);
    let cim = load(cim_port, &cim_request(), &tls, secs);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "WS-Management vs CIM-XML: all {} CIM_IPProtocolEndpoint instances of {VMS} VMs per request, HTTPS (TLS 1.2), {CONNECTIONS} keep-alive connections, Basic auth, {secs} s each:",
        VMS * 2
    );
    println!();
    println!("| protocol | request | response | requests/s | p50 | p99 |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| WS-Management | optimized Enumerate, MaxElements 200 | {} KiB | {:.0} | {:.2} ms | {:.2} ms |",
        ws.bytes / 1024,
        ws.rps,
        ms(ws.p50),
        ms(ws.p99)
    );
    println!(
        "| CIM-XML | EnumerateInstances | {} KiB | {:.0} | {:.2} ms | {:.2} ms |",
        cim.bytes / 1024,
        cim.rps,
        ms(cim.p50),
        ms(cim.p99)
    );
    println!();
    println!(
        "WS-Management/CIM-XML: {:.0}% of the requests/s, {:.1}x the p99.",
        100.0 * ws.rps / cim.rps,
        ms(ws.p99) / ms(cim.p99)
    );
}
