//! The embedded CIM provider against real clients: pywbem (tests/py), sblim
//! wbemcli, and a raw HTTP client for bad input.
//!
//! pywbem runs in the Python named by `HVSIM_PY` (default
//! `target/venv/bin/python`, which `.ci/run` creates).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use agent::transport::unix::UnixBackdoor;
use e2e_tests::{python, workspace};
use e2e_tests::{stderr, stdout, Sim};
use protocol::guest::GuestChannel;
use protocol::nicinfo::{self, GuestNicV3, IpEntry, NicInfoV3};
use protocol::proto;
use serde_json::Value;

const USERS: &str = r#"
[[user]]
name = "admin"
password = "s3cret"
role = "Administrator"
[[user]]
name = "viewer"
password = "look"
role = "ReadOnly"
"#;

/// A simulator with CIM on ephemeral ports; returns it and the ports.
fn cim_sim(vms: &[&str], extra: &str) -> (Sim, u16, u16) {
    let mut cfg = String::new();
    for v in vms {
        cfg.push_str(&format!("[[vm]]\nname = \"{v}\"\n"));
    }
    cim_sim_with(cfg, extra)
}

/// [`cim_sim`] with the `[[vm]]` tables given as TOML.
fn cim_sim_with(mut cfg: String, extra: &str) -> (Sim, u16, u16) {
    cfg.push_str("[cim]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n");
    cfg.push_str(extra);
    cfg.push_str(USERS);
    let sim = Sim::with_config(&cfg);
    // The control socket answers before the CIM listeners are up.
    sim.eventually("the CIM listeners", || {
        sim.log().contains("CIM-XML over HTTPS on")
    });
    let port = |what: &str| {
        let log = sim.log();
        let line = log
            .lines()
            .find(|l| l.contains(&format!("CIM-XML over {what} on")))
            .unwrap_or_else(|| panic!("no {what} listener in the log:\n{log}"));
        line.split("127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .expect("port")
    };
    let (h, s) = (port("HTTP"), port("HTTPS"));
    (sim, h, s)
}

fn pywbem(scenario: &str, url: &str, user: &str, pw: &str, args: &[&str]) -> Value {
    let out = Command::new(python())
        .arg(workspace().join("tests/py/cim_client.py"))
        .args([scenario, url, user, pw])
        .args(args)
        // requests lets these override the ca_certs pywbem passes.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pywbem {scenario} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("json from the pywbem scenario")
}

fn report_nics(sim: &Sim, vm: &str, ips: &[(&str, u32)]) {
    let info = NicInfoV3 {
        nics: vec![GuestNicV3 {
            mac: "00:50:56:aa:bb:01".into(),
            ips: ips
                .iter()
                .map(|(a, p)| IpEntry {
                    addr: a.parse::<std::net::IpAddr>().unwrap().into(),
                    prefix: *p,
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
    let mut ch =
        GuestChannel::open(UnixBackdoor::connect(sim.socket(vm)).unwrap(), proto::RPCI).unwrap();
    assert_eq!(ch.call(&msg).unwrap(), b"1 ");
}

#[test]
fn pywbem_sees_vms_nics_ips_hostname_and_profiles() {
    let (sim, http, _) = cim_sim(&["web", "db"], "");
    for m in [
        "SetGuestInfo  1 web-01",
        "SetGuestInfo  6 debian12-64",
        "SetGuestInfo  5 Debian GNU/Linux 12 (bookworm)",
        "tools.set.version 12416",
    ] {
        let o = sim.rpctool("web", &[m]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    report_nics(&sim, "web", &[("198.51.100.7", 24), ("2001:db8::7", 64)]);
    let url = format!("http://127.0.0.1:{http}");
    let v = pywbem("inventory", &url, "admin", "s3cret", &["web"]);
    let host = v["systems"].as_array().unwrap();
    assert_eq!(host.len(), 3, "{v}");
    assert!(host.contains(&"web".into()) && host.contains(&"db".into()));
    assert_eq!(
        v["ips"],
        serde_json::json!([["198.51.100.7", 24], ["2001:db8::7", 64]])
    );
    assert_eq!(v["hostname"], serde_json::json!(["web-01"]));
    assert_eq!(v["macs"], serde_json::json!(["005056AABB01"]));
    assert_eq!(
        v["port_ips"],
        serde_json::json!(["198.51.100.7", "2001:db8::7"])
    );
    assert_eq!(
        v["os"],
        serde_json::json!([["Debian GNU/Linux 12 (bookworm)", 36]])
    );
    assert_eq!(v["running_os"], 1);
    assert_eq!(v["tools"], serde_json::json!([["not-running", "12416"]]));
    assert_eq!(
        v["pull_ips"],
        serde_json::json!(["198.51.100.7", "2001:db8::7"])
    );
    assert!(v["pull_paths"].as_u64().unwrap() > 10, "{v}");
    assert_eq!(
        v["pull_assoc"],
        serde_json::json!([
            "CIM_DNSProtocolEndpoint",
            "CIM_IPProtocolEndpoint",
            "CIM_IPProtocolEndpoint"
        ])
    );
    assert!(v["pull_refs"].as_u64().unwrap() >= 8, "{v}");
    assert_eq!(v["query"], serde_json::json!(["web"]));
    assert_eq!(v["bad_context"], "CIM_ERR_INVALID_ENUMERATION_CONTEXT");
    assert_eq!(v["fql"], "CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED");
    assert_eq!(v["class"]["superclass"], "CIM_ProtocolEndpoint");
    assert_eq!(
        v["class"]["key_names"],
        serde_json::json!([
            "CreationClassName",
            "Name",
            "SystemCreationClassName",
            "SystemName"
        ])
    );
    assert_eq!(v["class"]["name_origin"], "CIM_ServiceAccessPoint");
    assert_eq!(
        v["class"]["methods"],
        serde_json::json!(["RequestStateChange"])
    );
    assert_eq!(
        v["subclasses"],
        serde_json::json!(["CIM_DNSProtocolEndpoint", "CIM_IPProtocolEndpoint"])
    );
    assert_eq!(v["interop"], "root/interop");
    assert_eq!(
        v["namespaces"],
        serde_json::json!(["root/cimv2", "root/interop"])
    );
    assert_eq!(v["brand"], "hvsim");
    assert_eq!(
        v["profiles"],
        serde_json::json!([
            "IP Interface 1.0.0",
            "Profile Registration 1.0.0",
            "Virtual System 1.0.0"
        ])
    );
    assert_eq!(v["vs_central"].as_array().unwrap().len(), 2);
    assert_eq!(v["ip_central"], 2);

    // Live data: the agent reports a new address; the next response has it.
    report_nics(&sim, "web", &[("203.0.113.9", 25)]);
    let v = pywbem("inventory", &url, "admin", "s3cret", &["web"]);
    assert_eq!(v["ips"], serde_json::json!([["203.0.113.9", 25]]));
}

#[test]
fn wbemcli_enumerates_and_reads_instances() {
    let (sim, http, https) = cim_sim(&["vm0"], "");
    sim.rpctool("vm0", &["SetGuestInfo  1 guest-zero"]);
    report_nics(&sim, "vm0", &[("192.0.2.10", 24)]);
    let base = format!("http://admin:s3cret@127.0.0.1:{http}/root/cimv2");
    let run = |args: &[&str]| {
        let o = Command::new("wbemcli")
            .args(args)
            .output()
            .expect("wbemcli (Debian package sblim-wbemcli) must be installed");
        (o.status.success(), stdout(&o) + &stderr(&o))
    };
    let (ok, out) = run(&["ein", &format!("{base}:CIM_ComputerSystem")]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let (ok, out) = run(&["ei", "-nl", &format!("{base}:CIM_IPProtocolEndpoint")]);
    assert!(ok, "{out}");
    assert!(out.contains("-IPv4Address=\"192.0.2.10\""), "{out}");
    assert!(out.contains("-SubnetMask=\"255.255.255.0\""), "{out}");
    let (ok, out) = run(&["ei", "-nl", &format!("{base}:CIM_DNSProtocolEndpoint")]);
    assert!(ok && out.contains("-Hostname=\"guest-zero\""), "{out}");
    let uuid = sim.show("vm0")["uuid"].as_str().unwrap().to_string();
    let vm = format!(
        "{base}:CIM_ComputerSystem.CreationClassName=\"CIM_ComputerSystem\",Name=\"{uuid}\""
    );
    let (ok, out) = run(&["gi", &vm]);
    assert!(ok && out.contains("ElementName=\"vm0\""), "{out}");
    let (ok, out) = run(&["ain", "-ac", "CIM_HostedAccessPoint", &vm]);
    assert!(ok, "{out}");
    assert!(
        out.contains("CIM_IPProtocolEndpoint") && out.contains("CIM_DNSProtocolEndpoint"),
        "{out}"
    );
    let (ok, out) = run(&["gc", &format!("{base}:CIM_EthernetPort")]);
    assert!(ok && out.contains("PermanentAddress"), "{out}");
    let (ok, out) = run(&["ecn", &format!("{base}:CIM_LogicalPort")]);
    assert!(ok && out.contains("CIM_NetworkPort"), "{out}");
    // HTTPS with the generated certificate, and a wrong password.
    let (ok, out) = run(&[
        "-noverify",
        "ein",
        &format!("https://admin:s3cret@127.0.0.1:{https}/root/interop:CIM_RegisteredProfile"),
    ]);
    assert!(ok && out.contains("Virtual System"), "{out}");
    let (_, out) = run(&[
        "ein",
        &format!("http://admin:nope@127.0.0.1:{http}/root/cimv2:CIM_ComputerSystem"),
    ]);
    assert!(out.contains("Invalid username/password"), "{out}");
}

#[test]
fn request_state_change_reaches_the_vm() {
    let (sim, http, _) = cim_sim(&["vm0"], "");
    let url = format!("http://127.0.0.1:{http}");
    let v = pywbem("power", &url, "admin", "s3cret", &["vm0", "3"]);
    assert_eq!(v, serde_json::json!({"rc": 0, "enabled": 3}));
    assert_eq!(sim.show("vm0")["power"], "off");
    // Off again is an invalid transition for a reset.
    let v = pywbem("power", &url, "admin", "s3cret", &["vm0", "11"]);
    assert_eq!(v["rc"], 4097);
    let v = pywbem("power", &url, "admin", "s3cret", &["vm0", "2"]);
    assert_eq!(v, serde_json::json!({"rc": 0, "enabled": 2}));
    assert_eq!(sim.show("vm0")["power"], "on");
    let v = pywbem("readonly", &url, "viewer", "look", &["vm0"]);
    assert_eq!(v["error"], "CIM_ERR_ACCESS_DENIED");
    assert_eq!(sim.show("vm0")["power"], "on");
    let v = pywbem("errors", &url, "admin", "s3cret", &["vm0"]);
    assert_eq!(
        v,
        serde_json::json!({
            "no_instance": "CIM_ERR_NOT_FOUND",
            "no_class": "CIM_ERR_INVALID_CLASS",
            "no_class_get": "CIM_ERR_NOT_FOUND",
            "no_namespace": "CIM_ERR_INVALID_NAMESPACE",
            "bad_query": "CIM_ERR_INVALID_QUERY",
            "cql": "CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED",
            "no_method": "CIM_ERR_METHOD_NOT_FOUND",
            "modify": "CIM_ERR_NOT_SUPPORTED",
            "graceful_without_agent": "CIM_ERR_FAILED",
        })
    );
}

#[test]
fn https_uses_the_generated_certificate_and_refuses_bad_passwords() {
    let (sim, _, https) = cim_sim(&["vm0"], "");
    let cert = sim.dir.path().join("state/cim/server.crt");
    assert!(cert.exists());
    let v = pywbem(
        "https",
        &format!("https://localhost:{https}"),
        "admin",
        "s3cret",
        &[cert.to_str().unwrap()],
    );
    assert_eq!(v["wrong_password"], "AuthError");
    assert_eq!(v["systems"].as_array().unwrap().len(), 2);
}

#[test]
fn indications_reach_a_pywbem_listener() {
    let (_sim, http, _) = cim_sim(&["vm0"], "");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{http}");
    let v = pywbem(
        "indication",
        &url,
        "admin",
        "s3cret",
        &["vm0", &port.to_string()],
    );
    assert_eq!(
        v,
        serde_json::json!({
            "subscriptions": 1,
            "filter_in_use": "CIM_ERR_FAILED",
            "class": "CIM_InstModification",
            "source_class": "CIM_ComputerSystem",
            "source_name": "vm0",
            "enabled_now": 3,
            "enabled_before": 2,
            "filters_left": 0,
        })
    );
}

/// A pywbem WBEMListener subscribed (three filters, one destination) to
/// modifications, creations and deletions of CIM_IPProtocolEndpoint. It
/// prints `ready` once subscribed; then, for each `wait N` line on stdin,
/// waits (up to 15 s) until it holds N indications and prints them all as
/// one JSON line; at end of input it removes the subscriptions.
const IP_LISTENER: &str = r#"
import json, sys, threading, time
import pywbem
url, user, pw, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = pywbem.WBEMConnection(url, (user, pw), default_namespace="root/cimv2")
got, lock = [], threading.Lock()
def cb(ind, host):
    src = ind["SourceInstance"]
    prev = ind.get("PreviousInstance")
    with lock:
        got.append({
            "class": ind.classname,
            "filter": ind["IndicationFilterName"],
            "source_class": src.classname,
            "name": src["Name"],
            "address": src.get("IPv4Address"),
            "prefix": int(src["PrefixLength"]),
            "previous_name": prev["Name"] if prev is not None else None,
            "previous_prefix": int(prev["PrefixLength"]) if prev is not None else None,
        })
lst = pywbem.WBEMListener("127.0.0.1", http_port=port)
lst.add_callback(cb)
lst.start()
ns = "root/interop"
made = []
try:
    dp = c.CreateInstance(pywbem.CIMInstance("CIM_ListenerDestinationCIMXML", {
        "Name": "ip-dest", "Destination": f"http://127.0.0.1:{port}",
        "PersistenceType": pywbem.Uint16(3)}), namespace=ns)
    for cls in ["CIM_InstModification", "CIM_InstCreation", "CIM_InstDeletion"]:
        fp = c.CreateInstance(pywbem.CIMInstance("CIM_IndicationFilter", {
            "Name": cls, "QueryLanguage": "WQL", "SourceNamespaces": ["root/cimv2"],
            "Query": f"SELECT * FROM {cls} WHERE SourceInstance ISA CIM_IPProtocolEndpoint",
        }), namespace=ns)
        sp = c.CreateInstance(pywbem.CIMInstance("CIM_IndicationSubscription",
                                                 {"Filter": fp, "Handler": dp}), namespace=ns)
        made = [sp, fp] + made
    made.append(dp)
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line.split()[1])
        deadline = time.time() + 15
        while time.time() < deadline:
            with lock:
                if len(got) >= n:
                    break
            time.sleep(0.05)
        with lock:
            print(json.dumps(got), flush=True)
finally:
    for p in made:
        c.DeleteInstance(p)
    lst.stop()
"#;

#[test]
fn guest_ip_changes_reach_a_pywbem_listener() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let (sim, http, _) = cim_sim(&["vm0"], "");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut py = Command::new(python())
        .args(["-c", IP_LISTENER])
        .args([&format!("http://127.0.0.1:{http}"), "admin", "s3cret"])
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python");
    let mut to_py = py.stdin.take().unwrap();
    let mut from_py = BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    from_py.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the listener did not subscribe");
    let mut wait = |n: usize| -> Vec<Value> {
        writeln!(to_py, "wait {n}").unwrap();
        let mut line = String::new();
        from_py.read_line(&mut line).unwrap();
        serde_json::from_str(&line).expect("json from the listener")
    };
    let mac = "00:50:56:aa:bb:01";
    let ep = |class: &str, addr: &str, prefix: u32, prev: Option<u32>| {
        serde_json::json!({
            "class": class,
            "filter": class,
            "source_class": "CIM_IPProtocolEndpoint",
            "name": format!("{mac}/{addr}"),
            "address": addr,
            "prefix": prefix,
            "previous_name": prev.map(|_| format!("{mac}/{addr}")),
            "previous_prefix": prev,
        })
    };

    // The guest reports its first address: a new endpoint.
    report_nics(&sim, "vm0", &[("192.0.2.10", 24)]);
    let mut want = vec![ep("CIM_InstCreation", "192.0.2.10", 24, None)];
    assert_eq!(wait(1), want);
    // It moves to another address: the old endpoint goes, a new one comes,
    // named by the new address and carrying it.
    report_nics(&sim, "vm0", &[("192.0.2.20", 24)]);
    want.push(ep("CIM_InstDeletion", "192.0.2.10", 24, None));
    want.push(ep("CIM_InstCreation", "192.0.2.20", 24, None));
    assert_eq!(wait(3), want);
    // Same address, new prefix: that endpoint is modified.
    report_nics(&sim, "vm0", &[("192.0.2.20", 25)]);
    want.push(ep("CIM_InstModification", "192.0.2.20", 25, Some(24)));
    assert_eq!(wait(4), want);
    // The same report again changes nothing; a second address appears.
    report_nics(&sim, "vm0", &[("192.0.2.20", 25)]);
    report_nics(&sim, "vm0", &[("192.0.2.20", 25), ("192.0.2.30", 24)]);
    want.push(ep("CIM_InstCreation", "192.0.2.30", 24, None));
    assert_eq!(wait(5), want);

    drop(to_py);
    let status = py.wait().unwrap();
    assert!(status.success(), "the listener script failed");
}

/// One raw HTTP exchange on an open connection: status, headers, body.
fn exchange(s: &mut TcpStream, req: &[u8]) -> (u16, String, String) {
    s.write_all(req).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        let n = s.read(&mut tmp).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                let status = head[9..12].parse().unwrap();
                return (status, head, body);
            }
        }
    }
    panic!("connection closed: {:?}", String::from_utf8_lossy(&buf));
}

fn post(body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /cimom HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic YWRtaW46czNjcmV0\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn enum_names(ns: &[&str], class: &str, method: &str) -> String {
    let nss: String = ns
        .iter()
        .map(|n| format!("<NAMESPACE NAME=\"{n}\"/>"))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="7" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="{method}"><LOCALNAMESPACEPATH>{nss}</LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="{class}"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#
    )
}

const OP: &str =
    "CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\nCIMObject: root%2Fcimv2\r\n";

#[test]
fn bad_input_gets_the_right_error_and_the_server_keeps_serving() {
    let (_sim, http, _) = cim_sim(&["vm0"], "max_request = 65536\n");
    let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let good = enum_names(
        &["root", "cimv2"],
        "CIM_ComputerSystem",
        "EnumerateInstanceNames",
    );

    // Lenient Content-Type: several spellings work, on one keep-alive connection.
    for ct in [
        "application/xml; charset=\"utf-8\"",
        "application/xml;charset=UTF-8",
        "text/xml",
        "APPLICATION/XML; Charset='utf-8'",
    ] {
        let (st, head, body) =
            exchange(&mut s, &post(&good, &format!("{OP}Content-Type: {ct}\r\n")));
        assert_eq!(st, 200, "{ct}: {head}");
        assert!(head.contains("CIMOperation: MethodResponse"), "{head}");
        assert_eq!(body.matches("<INSTANCENAME").count(), 2, "{body}");
    }
    let (st, _, _) = exchange(
        &mut s,
        &post(&good, &format!("{OP}Content-Type: application/json\r\n")),
    );
    assert_eq!(st, 415);

    let cases: Vec<(String, &str, u16, &str)> = vec![
        ("<CIM".into(), OP, 400, "request-not-well-formed"),
        (
            r#"<?xml version="1.0"?><!DOCTYPE CIM [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><CIM>&b;</CIM>"#.into(),
            OP,
            400,
            "request-not-well-formed",
        ),
        ("<a>".repeat(5000) + &"</a>".repeat(5000), OP, 400, "request-not-well-formed"),
        ("<CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"/></CIM>".into(), OP, 400, "request-not-valid"),
        ("<CIM CIMVERSION=\"2.0\" DTDVERSION=\"3.0\"/>".into(), OP, 501, "unsupported-dtd-version"),
        (good.clone(), "CIMOperation: MethodCall\r\nCIMMethod: GetClass\r\n", 400, "header-mismatch"),
        (good.clone(), "CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\nCIMObject: root%2Finterop\r\n", 400, "header-mismatch"),
        (good.clone(), "CIMOperation: Nonsense\r\n", 400, "unsupported-operation"),
        (good.clone(), "", 400, "unsupported-operation"),
    ];
    for (body, headers, want, cimerror) in &cases {
        let (st, head, _) = exchange(&mut s, &post(body, headers));
        assert_eq!(st, *want, "{head}");
        assert!(head.contains(&format!("CIMError: {cimerror}")), "{head}");
    }

    // CIM-level errors: HTTP 200 with an ERROR element.
    let (st, _, body) = exchange(
        &mut s,
        &post(
            &enum_names(
                &["root", "nope"],
                "CIM_ComputerSystem",
                "EnumerateInstanceNames",
            ),
            "CIMOperation: MethodCall\r\nCIMMethod: EnumerateInstanceNames\r\n",
        ),
    );
    assert_eq!(st, 200);
    assert!(body.contains("<ERROR CODE=\"3\""), "{body}");
    let (_, _, body) = exchange(
        &mut s,
        &post(
            &enum_names(&["root", "cimv2"], "CIM_ComputerSystem", "Frobnicate"),
            "CIMOperation: MethodCall\r\nCIMMethod: Frobnicate\r\n",
        ),
    );
    assert!(body.contains("<ERROR CODE=\"7\""), "{body}");

    // Not POST, wrong path.
    let (st, head, _) = exchange(
        &mut s,
        b"GET /cimom HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46czNjcmV0\r\n\r\n",
    );
    assert_eq!(st, 405);
    assert!(head.contains("Allow: POST, M-POST"), "{head}");
    let (st, _, _) = exchange(&mut s, b"POST /other HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46czNjcmV0\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(st, 404);

    // Chunked request bodies work.
    let mut chunked = format!("POST /cimom HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46czNjcmV0\r\n{OP}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
    for part in good.as_bytes().chunks(100) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (st, _, body) = exchange(&mut s, &chunked);
    assert_eq!(st, 200);
    assert_eq!(body.matches("<INSTANCENAME").count(), 2);

    // No credentials, wrong credentials: 401 with a challenge.
    let (st, head, _) = exchange(
        &mut s,
        format!(
            "POST /cimom HTTP/1.1\r\nHost: x\r\n{OP}Content-Length: {}\r\n\r\n{good}",
            good.len()
        )
        .as_bytes(),
    );
    assert_eq!(st, 401);
    assert!(head.contains("WWW-Authenticate: Basic realm="), "{head}");
    let (st, _, _) = exchange(&mut s, format!("POST /cimom HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46d3Jvbmc=\r\n{OP}Content-Length: {}\r\n\r\n{good}", good.len()).as_bytes());
    assert_eq!(st, 401);

    // Oversize body: 413 before it is read, and the connection closes.
    let (st, head, _) = exchange(&mut s, format!("POST /cimom HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YWRtaW46czNjcmV0\r\n{OP}Content-Length: 100000000\r\n\r\n").as_bytes());
    assert_eq!(st, 413, "{head}");

    // The server still answers on a new connection.
    let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (st, _, body) = exchange(&mut s, &post(&good, OP));
    assert_eq!(st, 200);
    assert_eq!(body.matches("<INSTANCENAME").count(), 2);
}

/// CIM logins go through the user store the BMCs share: a password set
/// with `ipmitool user set password` is the one CIM accepts from then on.
#[test]
fn password_set_over_ipmi_is_the_one_cim_accepts() {
    let ipmi = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let (sim, http, _) = cim_sim_with(
        format!("[[vm]]\nname = \"vm0\"\nipmi = {{ listen = \"127.0.0.1:{ipmi}\" }}\n"),
        "",
    );
    let good = enum_names(
        &["root", "cimv2"],
        "CIM_ComputerSystem",
        "EnumerateInstanceNames",
    );
    let as_user = |basic: &str| {
        let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "POST /cimom HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n{OP}Content-Length: {}\r\n\r\n{good}",
            good.len()
        );
        exchange(&mut s, req.as_bytes()).0
    };
    const VIEWER_OLD: &str = "dmlld2VyOmxvb2s="; // viewer:look
    const VIEWER_NEW: &str = "dmlld2VyOm4zd3Bhc3M="; // viewer:n3wpass
    assert_eq!(as_user(VIEWER_OLD), 200);
    assert_eq!(as_user(VIEWER_NEW), 401);
    // The config's users get IPMI IDs from 2 on: admin 2, viewer 3.
    let port = ipmi.to_string();
    let o = Command::new("ipmitool")
        .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &port])
        .args(["-U", "admin", "-P", "s3cret", "-N", "1", "-R", "3"])
        .args(["user", "set", "password", "3", "n3wpass"])
        .output()
        .expect("run ipmitool (apt-get install ipmitool)");
    assert!(
        o.status.success(),
        "ipmitool: {}{}\nhvsim log:\n{}",
        stdout(&o),
        stderr(&o),
        sim.log()
    );
    assert_eq!(as_user(VIEWER_NEW), 200);
    assert_eq!(as_user(VIEWER_OLD), 401);
    // The role is the store's: a ReadOnly user still cannot change state.
    let del = r#"<?xml version="1.0" encoding="utf-8"?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="9" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="DeleteInstance"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="interop"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="CIM_IndicationFilter"><KEYBINDING NAME="Name"><KEYVALUE VALUETYPE="string">x</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"#;
    let mut s = TcpStream::connect(("127.0.0.1", http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "POST /cimom HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {VIEWER_NEW}\r\nCIMOperation: MethodCall\r\nCIMMethod: DeleteInstance\r\nCIMObject: root%2Finterop\r\nContent-Length: {}\r\n\r\n{del}",
        del.len()
    );
    let (st, _, body) = exchange(&mut s, req.as_bytes());
    assert_eq!(st, 200);
    assert!(body.contains("CODE=\"2\""), "{body}");
}

/// pywbemcli (pywbemtools), the command line people script against CIMOMs:
/// list the VMs, read one VM's IP endpoints through its associations, and
/// change its power state with RequestStateChange.
#[test]
fn pywbemcli_lists_follows_associations_and_invokes_methods() {
    let (sim, http, _) = cim_sim(&["vm0", "vm1"], "");
    sim.rpctool("vm0", &["SetGuestInfo  1 cli-guest"]);
    report_nics(&sim, "vm0", &[("198.51.100.44", 24)]);
    let cli = python().with_file_name("pywbemcli");
    assert!(
        cli.exists(),
        "{} missing: pip install pywbemtools",
        cli.display()
    );
    let run = |args: &[&str]| {
        let o = Command::new(&cli)
            .args([
                "-s",
                &format!("http://127.0.0.1:{http}"),
                "-u",
                "admin",
                "-p",
                "s3cret",
            ])
            .args(["-d", "root/cimv2", "-o", "mof"])
            .args(args)
            .env(
                "PYWBEMCLI_CONNECTIONS_FILE",
                sim.dir.path().join("conns.yaml"),
            )
            .output()
            .expect("run pywbemcli");
        assert!(
            o.status.success(),
            "pywbemcli {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    };
    let out = run(&[
        "instance",
        "enumerate",
        "CIM_ComputerSystem",
        "--pl",
        "ElementName,EnabledState",
    ]);
    assert!(out.contains("vm0") && out.contains("vm1"), "{out}");
    let uuid = sim.show("vm0")["uuid"].as_str().unwrap().to_string();
    let names = run(&["instance", "enumerate", "CIM_ComputerSystem", "--no"]);
    assert!(names.contains(&uuid), "{names}");
    let vm0 =
        format!("CIM_ComputerSystem.CreationClassName=\"CIM_ComputerSystem\",Name=\"{uuid}\"");
    let eps = run(&[
        "instance",
        "associators",
        &vm0,
        "--rc",
        "CIM_IPProtocolEndpoint",
    ]);
    assert!(eps.contains("198.51.100.44"), "{eps}");
    let out = run(&[
        "instance",
        "invokemethod",
        &vm0,
        "RequestStateChange",
        "-p",
        "RequestedState=3",
    ]);
    assert!(out.replace(' ', "").contains("ReturnValue=0"), "{out}");
    sim.eventually("vm0 off", || sim.show("vm0")["power"] == "off");
}
