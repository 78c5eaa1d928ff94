//! WS-Management against CIM-XML on the same hvsim, same run: an optimized
//! Enumerate of CIM_IPProtocolEndpoint (wsman:MaxElements 200, so all 200
//! endpoints of 100 VMs come in the EnumerateResponse) against
//! EnumerateInstances of the same class over CIM-XML, both over HTTPS
//! (TLS 1.2, the default) on keep-alive connections with Basic
//! authentication, from several client threads. Prints requests/s and
//! latency percentiles as a Markdown table.
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::transport::unix::UnixBackdoor;
use e2e_tests::httpbench::{call, client_config, connect, load, port_in};
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

struct Hvsim(Child, tempfile::TempDir);

impl Drop for Hvsim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 1.0 } else { 5.0 };
    let (h, cim_port, ws_port) = start_hvsim();
    let tls = client_config(&h.1.path().join("state/cim/server.crt"));
    // Both answer all 200 endpoints in one response.
    let body =
        String::from_utf8(call(&mut connect(ws_port, &tls), &wsman_request())).expect("utf-8");
    assert_eq!(body.matches("<p:CIM_IPProtocolEndpoint ").count(), VMS * 2);
    assert!(body.contains("<wsman:EndOfSequence/>"));
    let body =
        String::from_utf8(call(&mut connect(cim_port, &tls), &cim_request())).expect("utf-8");
    assert_eq!(body.matches("<VALUE.NAMEDINSTANCE>").count(), VMS * 2);
    let ws = load(ws_port, &wsman_request(), &tls, secs, CONNECTIONS);
    let cim = load(cim_port, &cim_request(), &tls, secs, CONNECTIONS);
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
