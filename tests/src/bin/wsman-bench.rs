//! WS-Management against CIM-XML on the same hvsim, same run: an optimized
//! Enumerate of CIM_IPProtocolEndpoint (wsman:MaxElements 200, so all 200
//! endpoints of 100 VMs come in the EnumerateResponse) against
//! EnumerateInstances of the same class over CIM-XML, both over HTTPS
//! (TLS 1.2, the default) on keep-alive connections with Basic
//! authentication, from several client threads. Prints requests/s and
//! latency percentiles as a Markdown table.
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.

use std::time::Duration;

use e2e_tests::httpbench::{call, client_config, connect, load, start_hvsim};

const VMS: usize = 100;
const CONNECTIONS: usize = 4;

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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 1.0 } else { 5.0 };
    let (h, ports) = start_hvsim(
        "[cim]\nhttp = \"\"\nhttps = \"127.0.0.1:0\"\n[wsman]\nlisten = \"127.0.0.1:0\"\n[[user]]\nname = \"bench\"\npassword = \"bench\"\n",
        VMS,
        &["CIM-XML over HTTPS on", "WS-Management over HTTPS on"],
    );
    let (cim_port, ws_port) = (ports[0], ports[1]);
    let tls = client_config(&h.dir.path().join("state/cim/server.crt"));
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
