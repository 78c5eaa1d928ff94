//! Load benchmark of the CIM-XML provider: EnumerateInstances of
//! CIM_IPProtocolEndpoint over 100 VMs (each reporting one NIC with one IPv4
//! and one IPv6 address, so 200 instances per response), on keep-alive
//! connections with Basic authentication, from several client threads.
//!
//! Measured side by side with a bare limit in the same run: a minimal HTTP
//! server in this process that reads each request and writes a canned
//! response of the same size, over the same number of connections.
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::transport::unix::UnixBackdoor;
use protocol::guest::GuestChannel;
use protocol::nicinfo::{self, GuestNicV3, IpEntry, NicInfoV3};
use protocol::proto;

const VMS: usize = 100;
const CONNECTIONS: usize = 4;

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("bench path")
        .with_file_name(name)
}

const BODY: &str = r#"<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="EnumerateInstances"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="CIM_IPProtocolEndpoint"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;

fn request() -> Vec<u8> {
    format!(
        "POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YmVuY2g6YmVuY2g=\r\nContent-Type: application/xml; charset=\"utf-8\"\r\nCIMOperation: MethodCall\r\nCIMMethod: EnumerateInstances\r\nCIMObject: root%2Fcimv2\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// Send one request, read one response; returns the body length.
fn call(r: &mut BufReader<TcpStream>, req: &[u8]) -> usize {
    r.get_mut().write_all(req).expect("send");
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
    len
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
    bytes: usize,
}

fn load(port: u16, secs: f64) -> Run {
    let req = request();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let req = req.clone();
            std::thread::spawn(move || {
                let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_nodelay(true).expect("nodelay");
                let mut r = BufReader::with_capacity(256 << 10, s);
                let bytes = call(&mut r, &req); // warm-up
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

/// The bare limit: read a request, answer `size` bytes of body.
fn bare_server(size: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let resp = {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: keep-alive\r\nContent-Type: application/xml; charset=\"utf-8\"\r\nCIMOperation: MethodResponse\r\n\r\n"
        )
        .into_bytes();
        r.extend(vec![b'x'; size]);
        r
    };
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let resp = resp.clone();
            std::thread::spawn(move || {
                let _ = c.set_nodelay(true);
                let mut r = BufReader::new(c);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.strip_prefix("Content-Length: ") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() || r.get_mut().write_all(&resp).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

struct Hvsim(Child, tempfile::TempDir);

impl Drop for Hvsim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_hvsim() -> (Hvsim, u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = format!(
        "control_socket = \"{}\"\n[cim]\nhttp = \"127.0.0.1:0\"\nhttps = \"\"\n[[user]]\nname = \"bench\"\npassword = \"bench\"\n",
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
    let port = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(p) = text
            .lines()
            .find(|l| l.contains("CIM-XML over HTTP on"))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "hvsim did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    for i in 0..VMS {
        let info = NicInfoV3 {
            nics: vec![GuestNicV3 {
                mac: format!("00:50:56:00:{:02x}:{:02x}", i / 256, i % 256),
                ips: vec![
                    IpEntry {
                        addr: format!("10.1.{}.{}", i / 250, i % 250 + 1)
                            .parse::<std::net::IpAddr>()
                            .expect("ip")
                            .into(),
                        prefix: 16,
                        origin: Some(nicinfo::origin::DHCP),
                        status: Some(nicinfo::status::PREFERRED),
                    },
                    IpEntry {
                        addr: format!("fd00::{:x}", i + 1)
                            .parse::<std::net::IpAddr>()
                            .expect("ip")
                            .into(),
                        prefix: 64,
                        origin: Some(nicinfo::origin::LINKLAYER),
                        status: Some(nicinfo::status::PREFERRED),
                    },
                ],
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
    (h, port)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 1.0 } else { 5.0 };
    let (_h, port) = start_hvsim();
    let cim = load(port, secs);
    let bare = load(bare_server(cim.bytes), secs);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "CIM-XML: EnumerateInstances of CIM_IPProtocolEndpoint over {VMS} VMs ({} instances, {} KiB response), {CONNECTIONS} keep-alive connections, Basic auth, {secs} s each:",
        VMS * 2,
        cim.bytes / 1024
    );
    println!();
    println!("| measure | hvsim | bare HTTP, same response size | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| requests/s | {:.0} | {:.0} | {:.0}% | ≥ 5000 |",
        cim.rps,
        bare.rps,
        100.0 * cim.rps / bare.rps
    );
    println!(
        "| p50 latency | {:.2} ms | {:.2} ms | | |",
        ms(cim.p50),
        ms(bare.p50)
    );
    println!(
        "| p99 latency | {:.2} ms | {:.2} ms | | < 5 ms |",
        ms(cim.p99),
        ms(bare.p99)
    );
}
