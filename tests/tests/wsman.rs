//! WS-Management over the CIM provider against real clients: Dell's `wsl`
//! (Debian package `wsl`: bash, curl, xmllint), pypsrp's WSMan client
//! (PyPI, tests/py/wsman_client.py), curl for raw envelopes, openssl
//! s_client for the TLS settings; and `hvsim wbem get|set` applied live.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use agent::transport::unix::UnixBackdoor;
use e2e_tests::{python, stderr, stdout, workspace, Sim};
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

const DMTF: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";

/// A simulator with CIM and WS-Management on ephemeral ports.
fn wsman_sim(vms: &[&str]) -> Sim {
    let mut cfg = String::new();
    for v in vms {
        cfg.push_str(&format!("[[vm]]\nname = \"{v}\"\n"));
    }
    cfg.push_str("[cim]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n");
    cfg.push_str("[wsman]\nlisten = \"127.0.0.1:0\"\n");
    cfg.push_str(USERS);
    // The control socket answers once the listeners are up.
    Sim::with_config(&cfg)
}

/// The bound addresses from `hvsim wbem get --json`.
fn wbem(sim: &Sim) -> Value {
    let o = sim.hvsim(&["wbem", "get", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("wbem get json")
}

fn port(sim: &Sim, which: &str) -> Option<u16> {
    wbem(sim)["addresses"][which]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
}

fn ca(sim: &Sim) -> PathBuf {
    sim.dir.path().join("state/cim/server.crt")
}

fn vm_uuid(sim: &Sim, vm: &str) -> String {
    sim.show(vm)["uuid"].as_str().expect("uuid").to_string()
}

fn report_nics(sim: &Sim, vm: &str, ips: &[(&str, u32)]) {
    let info = NicInfoV3 {
        nics: vec![GuestNicV3 {
            mac: "00:50:56:aa:bb:02".into(),
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

/// Run `wsl ARGS` against the simulator's WS-Management port, in a
/// private HOME and output directory (wsl writes its config and files).
fn wsl(sim: &Sim, dir: &Path, user: &str, pw: &str, args: &[&str]) -> Output {
    let port = port(sim, "wsman").expect("wsman listening");
    std::fs::create_dir_all(dir).unwrap();
    // wsl trusts `<endpoint>.crt` in its working directory.
    let endpoint = format!("127.0.0.1:{port}");
    std::fs::copy(ca(sim), dir.join(format!("{endpoint}.crt"))).unwrap();
    Command::new("wsl")
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("WSENDPOINT", &endpoint)
        .env("WSUSER", user)
        .env("WSPASS", pw)
        .env("OUTLEVEL", "1")
        .env("KEEPHISTORY", "0")
        .output()
        .expect("wsl (Debian package wsl, with uuid-runtime) must be installed")
}

fn pypsrp(sim: &Sim, scenario: &str, user: &str, pw: &str, args: &[&str]) -> Value {
    let port = port(sim, "wsman").expect("wsman listening").to_string();
    let out = Command::new(python())
        .arg(workspace().join("tests/py/wsman_client.py"))
        .args([scenario, "127.0.0.1", &port, user, pw])
        .arg(ca(sim))
        .args(args)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pypsrp {scenario} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("json from the pypsrp scenario")
}

#[test]
fn wsl_identifies_gets_enumerates_and_follows_associations() {
    let sim = wsman_sim(&["web", "db"]);
    report_nics(&sim, "web", &[("198.51.100.7", 24), ("2001:db8::7", 64)]);
    let uuid = vm_uuid(&sim, "web");
    let dir = sim.dir.path().join("wsl");

    let o = wsl(&sim, &dir, "admin", "s3cret", &["id", "check"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert!(
        text.contains("<wsmid:ProductVendor>VMware Inc.</wsmid:ProductVendor>"),
        "{text}"
    );
    assert!(text.contains("VMware ESXi 8.0.3 build-24022510"), "{text}");

    // Get of the VM's CIM_ComputerSystem by its key selectors.
    let name = format!("Name={uuid}");
    let o = wsl(
        &sim,
        &dir,
        "admin",
        "s3cret",
        &[
            "get",
            "CIM_ComputerSystem",
            "CreationClassName=CIM_ComputerSystem",
            &name,
        ],
    );
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("<p:ElementName>web</p:ElementName>"),
        "{text}"
    );

    // Optimized Enumerate with one item per message, then Pulls until the
    // end: every address the guest reported.
    let o = wsl(
        &sim,
        &dir,
        "admin",
        "s3cret",
        &["enum", "CIM_IPProtocolEndpoint", "-opti", "1"],
    );
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains("<p:IPv4Address>198.51.100.7</p:IPv4Address>"),
        "{text}"
    );
    assert!(
        text.contains("<p:IPv6Address>2001:db8::7</p:IPv6Address>"),
        "{text}"
    );
    assert_eq!(text.matches("<wsen:PullResponse>").count(), 1, "{text}");

    // The association filter from the VM: wsl's -references sends
    // wsmb:AssociatedInstances (the objects at the other ends).
    let o = wsl(
        &sim,
        &dir,
        "admin",
        "s3cret",
        &[
            "enum",
            "CIM_ComputerSystem",
            "-references",
            "CreationClassName=CIM_ComputerSystem",
            &name,
            "-mode",
            "epr",
        ],
    );
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    let endpoints = text
        .matches("CIM_IPProtocolEndpoint</wsman:ResourceURI>")
        .count();
    assert_eq!(endpoints, 2, "{text}");
    assert!(text.contains("198.51.100.7"), "{text}");
    assert!(
        !text.contains("<p:ElementName>db</p:ElementName>"),
        "{text}"
    );

    // A WQL filter.
    let o = wsl(
        &sim,
        &dir,
        "admin",
        "s3cret",
        &[
            "enum",
            "CIM_IPProtocolEndpoint",
            "-dialect",
            "http://schemas.microsoft.com/wbem/wsman/1/WQL",
            "-filter",
            "select * from CIM_IPProtocolEndpoint where PrefixLength = 24",
        ],
    );
    let text = stdout(&o);
    assert!(
        text.contains("198.51.100.7") && !text.contains("2001:db8::7"),
        "{text}"
    );

    // wsl's default dialect is CQL; and its selector filter.
    let o = wsl(
        &sim,
        &dir,
        "admin",
        "s3cret",
        &[
            "enum",
            "CIM_IPProtocolEndpoint",
            "-filter",
            "SELECT * FROM CIM_IPProtocolEndpoint WHERE PrefixLength = 64",
        ],
    );
    let text = stdout(&o);
    assert!(
        text.contains("2001:db8::7") && !text.contains("198.51.100.7"),
        "{text}"
    );
    let o = wsl(
        &sim,
        &dir,
        "admin",
        "s3cret",
        &[
            "enum",
            "CIM_ComputerSystem",
            "-dialect",
            "http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter",
            "-filter",
            &name,
        ],
    );
    let text = stdout(&o);
    assert_eq!(text.matches("<p:CIM_ComputerSystem ").count(), 1, "{text}");
    assert!(
        text.contains("<p:ElementName>web</p:ElementName>"),
        "{text}"
    );

    // Faults: an unknown class, a missing key selector.
    let o = wsl(
        &sim,
        &dir,
        "admin",
        "s3cret",
        &["get", "CIM_NoSuchClass", "Name=x"],
    );
    assert!(
        stdout(&o).contains("wsa:DestinationUnreachable"),
        "{}",
        stdout(&o)
    );
    let o = wsl(
        &sim,
        &dir,
        "admin",
        "s3cret",
        &["get", "CIM_ComputerSystem", &name],
    );
    let text = stdout(&o);
    assert!(!o.status.success());
    assert!(text.contains("wsman:InvalidSelectors"), "{text}");
    assert!(text.contains("faultDetail/InsufficientSelectors"), "{text}");
}

#[test]
fn pypsrp_reads_the_inventory_and_invokes() {
    let sim = wsman_sim(&["web"]);
    report_nics(&sim, "web", &[("198.51.100.7", 24), ("2001:db8::7", 64)]);
    let uuid = vm_uuid(&sim, "web");
    let v = pypsrp(&sim, "inventory", "admin", "s3cret", &[&uuid]);
    assert_eq!(
        v["get_class"],
        format!("{{{DMTF}CIM_ComputerSystem}}CIM_ComputerSystem")
    );
    assert_eq!(v["get_name"], "web");
    assert_eq!(v["ips"], serde_json::json!(["198.51.100.7", "2001:db8::7"]));
    assert_eq!(v["pulls"], 1, "{v}");
    assert_eq!(
        v["epr_uris"],
        serde_json::json!([format!("{DMTF}CIM_IPProtocolEndpoint")])
    );
    assert_eq!(
        v["assoc"],
        serde_json::json!(["198.51.100.7", "2001:db8::7"])
    );
    assert_eq!(v["wql"], serde_json::json!(["2001:db8::7"]));
    assert_eq!(v["wql_props"], serde_json::json!(["ElementName"]));
    assert_eq!(v["pull_released"], "wsen:InvalidEnumerationContext");
    assert_eq!(v["unknown_class"], "wsa:DestinationUnreachable");
    assert_eq!(v["missing_key"], "wsman:InvalidSelectors");
    assert_eq!(v["no_instance"], "wsa:DestinationUnreachable");
    assert_eq!(v["delete"], "wsa:ActionNotSupported");

    let v = pypsrp(&sim, "envelope_limit", "admin", "s3cret", &[]);
    assert_eq!(v["below_minimum"], "wsman:EncodingLimit");
    let n = v["first_batch"].as_u64().unwrap();
    assert!((1..100).contains(&n), "{v}");

    let v = pypsrp(&sim, "wrong_password", "admin", "wrong", &[]);
    assert_eq!(v["auth"], "refused");

    // Invoke RequestStateChange: a ReadOnly user may not, an
    // administrator powers the VM off.
    let v = pypsrp(&sim, "invoke", "viewer", "look", &[&uuid]);
    assert_eq!(v["fault"], "wsman:AccessDenied");
    assert_eq!(sim.show("web")["power"], "on");
    let v = pypsrp(&sim, "invoke", "admin", "s3cret", &[&uuid]);
    assert_eq!(v["return"], "0", "{v}");
    assert_eq!(
        v["output"],
        format!("{{{DMTF}CIM_ComputerSystem}}RequestStateChange_OUTPUT")
    );
    assert_eq!(sim.show("web")["power"], "off");
}

/// POST a raw envelope with curl; the HTTP status and the body.
fn curl(sim: &Sim, user: &str, body: &str) -> (u16, String) {
    let port = port(sim, "wsman").expect("wsman listening");
    let o = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(ca(sim))
        .args([
            "-u",
            user,
            "-H",
            "Content-Type: application/soap+xml;charset=UTF-8",
            "--data-binary",
            body,
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("https://127.0.0.1:{port}/wsman"))
        .output()
        .expect("curl");
    let text = stdout(&o);
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

fn request(action: &str, uri: &str, extra_headers: &str, body: &str) -> String {
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:wsen="http://schemas.xmlsoap.org/ws/2004/09/enumeration"><s:Header><wsa:Action s:mustUnderstand="true">{action}</wsa:Action><wsa:To>https://h/wsman</wsa:To><wsman:ResourceURI s:mustUnderstand="true">{uri}</wsman:ResourceURI><wsa:MessageID>uuid:0a1b</wsa:MessageID><wsa:ReplyTo><wsa:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:Address></wsa:ReplyTo>{extra_headers}</s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

#[test]
fn raw_faults_timeouts_and_bad_input() {
    let sim = wsman_sim(&["web"]);
    let cs = format!("{DMTF}CIM_ComputerSystem");
    let enumerate = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate";
    // A zero OperationTimeout cannot be met: wsman:TimedOut.
    let (code, body) = curl(
        &sim,
        "admin:s3cret",
        &request(
            enumerate,
            &cs,
            "<wsman:OperationTimeout>PT0S</wsman:OperationTimeout>",
            "<wsen:Enumerate/>",
        ),
    );
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("<s:Value>wsman:TimedOut</s:Value>"), "{body}");
    assert!(
        body.contains("<wsa:RelatesTo>uuid:0a1b</wsa:RelatesTo>"),
        "{body}"
    );
    // Non-optimized Enumerate gives a context; Pull with a bogus one fails.
    let (code, body) = curl(
        &sim,
        "admin:s3cret",
        &request(enumerate, &cs, "", "<wsen:Enumerate/>"),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<wsen:EnumerationContext>"), "{body}");
    let (code, body) = curl(
        &sim,
        "admin:s3cret",
        &request(
            "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull",
            &cs,
            "",
            "<wsen:Pull><wsen:EnumerationContext>nope</wsen:EnumerationContext></wsen:Pull>",
        ),
    );
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("wsen:InvalidEnumerationContext"), "{body}");
    // A context that idles past its wsen:Expires is gone.
    let (code, body) = curl(
        &sim,
        "admin:s3cret",
        &request(
            enumerate,
            &cs,
            "",
            "<wsen:Enumerate><wsen:Expires>PT0.2S</wsen:Expires></wsen:Enumerate>",
        ),
    );
    assert_eq!(code, 200, "{body}");
    let id = body
        .split("<wsen:EnumerationContext>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .expect("context id")
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let (code, body) = curl(
        &sim,
        "admin:s3cret",
        &request(
            "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull",
            &cs,
            "",
            &format!(
                "<wsen:Pull><wsen:EnumerationContext>{id}</wsen:EnumerationContext></wsen:Pull>"
            ),
        ),
    );
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("wsen:InvalidEnumerationContext"), "{body}");
    // An action the resource does not have.
    let (code, body) = curl(
        &sim,
        "admin:s3cret",
        &request(
            "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put",
            &cs,
            "",
            "",
        ),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("wsa:ActionNotSupported"), "{body}");
    // A mustUnderstand header this server does not know.
    let (code, body) = curl(
        &sim,
        "admin:s3cret",
        &request(
            enumerate,
            &cs,
            "<wsman:FragmentTransfer s:mustUnderstand=\"true\">x</wsman:FragmentTransfer>",
            "<wsen:Enumerate/>",
        ),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("<s:Value>s:MustUnderstand</s:Value>"),
        "{body}"
    );
    // DOCTYPE (entity expansion) and deep nesting are refused; the server
    // keeps serving.
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaa">]><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"/>"#;
    let (code, body) = curl(&sim, "admin:s3cret", bomb);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("wsman:SchemaValidationError"), "{body}");
    let deep = "<a>".repeat(200) + &"</a>".repeat(200);
    let (code, _) = curl(&sim, "admin:s3cret", &deep);
    assert_eq!(code, 400);
    // Wrong password: 401 before any XML is read.
    let (code, _) = curl(
        &sim,
        "admin:wrong",
        &request(enumerate, &cs, "", "<wsen:Enumerate/>"),
    );
    assert_eq!(code, 401);
    let (code, body) = curl(
        &sim,
        "admin:s3cret",
        &request(enumerate, &cs, "", "<wsen:Enumerate/>"),
    );
    assert_eq!(code, 200, "{body}");
    // Live data through the rendering cache: what the guest reports next
    // is in the next response.
    let eps = format!("{DMTF}CIM_IPProtocolEndpoint");
    let optimized = "<wsen:Enumerate><wsman:OptimizeEnumeration/><wsman:MaxElements>10</wsman:MaxElements></wsen:Enumerate>";
    report_nics(&sim, "web", &[("192.0.2.10", 24)]);
    let (_, body) = curl(
        &sim,
        "admin:s3cret",
        &request(enumerate, &eps, "", optimized),
    );
    assert!(
        body.contains("<p:IPv4Address>192.0.2.10</p:IPv4Address>"),
        "{body}"
    );
    report_nics(&sim, "web", &[("192.0.2.11", 24)]);
    let (_, body) = curl(
        &sim,
        "admin:s3cret",
        &request(enumerate, &eps, "", optimized),
    );
    assert!(
        body.contains("<p:IPv4Address>192.0.2.11</p:IPv4Address>"),
        "{body}"
    );
    assert!(!body.contains("192.0.2.10"), "{body}");
    assert!(body.contains("<wsman:EndOfSequence/>"), "{body}");
}

/// Whether `openssl s_client` completes a handshake with exactly `version`
/// (`-tls1_2` or `-tls1_3`).
fn handshake(port: u16, version: &str) -> bool {
    let o = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    o.status.success()
}

fn set(sim: &Sim, args: &[&str]) {
    let mut a = vec!["wbem", "set"];
    a.extend_from_slice(args);
    let o = sim.hvsim(&a);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn wbem_set_changes_tls_and_listeners_live() {
    let sim = wsman_sim(&["web"]);
    let o = sim.hvsim(&["wbem", "get"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in [
        "   Authorization Model: password",
        "   Enabled: true",
        "   Enabled System SSL Protocols: tlsv1.2",
        "   Loglevel: info",
        "   WSManagement Service: true",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    assert!(
        text.contains(&format!("   WSManagement PID: {}", sim.pid())),
        "{text}"
    );

    // Default: TLS 1.2 only, on CIM-XML HTTPS and WS-Management.
    let (ws, cim) = (port(&sim, "wsman").unwrap(), port(&sim, "https").unwrap());
    assert!(handshake(ws, "-tls1_2") && handshake(cim, "-tls1_2"));
    assert!(!handshake(ws, "-tls1_3"));

    set(
        &sim,
        &[
            "--ssl-protocols",
            "tlsv1.3",
            "--keepalive-timeout",
            "30",
            "--keepalive-max-requests",
            "5",
        ],
    );
    let (ws, cim) = (port(&sim, "wsman").unwrap(), port(&sim, "https").unwrap());
    assert!(!handshake(ws, "-tls1_2") && !handshake(cim, "-tls1_2"));
    assert!(handshake(ws, "-tls1_3") && handshake(cim, "-tls1_3"));
    let v = wbem(&sim);
    assert_eq!(v["Enabled System SSL Protocols"], "tlsv1.3");
    assert_eq!(v["Enabled Running SSL Protocols"], "tlsv1.3");
    assert_eq!(v["KeepAlive Timeout"], 30);
    assert_eq!(v["KeepAlive Max Requests"], 5);
    // Kept in the state directory.
    let kept = std::fs::read_to_string(sim.dir.path().join("state/wbem.json")).unwrap();
    assert!(kept.contains("tlsv1.3"), "{kept}");

    // The CIM-XML ports move.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (p, hp) = (free(), free());
    set(
        &sim,
        &["--port", &p.to_string(), "--http-port", &hp.to_string()],
    );
    let v = wbem(&sim);
    assert_eq!(v["Port"], p, "{v}");
    assert_eq!(v["HTTP Port"], hp, "{v}");
    assert!(handshake(p, "-tls1_3"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", hp)).is_ok());

    // WS-Management off: its port closes, CIM-XML stays.
    let ws = port(&sim, "wsman").unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", ws)).is_ok());
    set(&sim, &["--wsman", "false"]);
    assert!(std::net::TcpStream::connect(("127.0.0.1", ws)).is_err());
    assert_eq!(port(&sim, "wsman"), None);
    let v = wbem(&sim);
    assert_eq!(v["WSManagement PID"], 0);
    assert!(port(&sim, "https").is_some());

    // The whole service off: every listener closes.
    let (http, https) = (port(&sim, "http").unwrap(), port(&sim, "https").unwrap());
    set(&sim, &["--enable", "false"]);
    for p in [http, https] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_err(),
            "{p}"
        );
    }
    let v = wbem(&sim);
    assert_eq!(v["Enabled"], false);
    assert_eq!(v["CIMObject Manager PID"], 0);

    set(&sim, &["--enable", "true", "--wsman", "true"]);
    let ws = port(&sim, "wsman").unwrap();
    assert!(handshake(ws, "-tls1_3"));

    // The log level filters the WS-Management lines (RUST_LOG is debug).
    let cs = format!("{DMTF}CIM_ComputerSystem");
    set(&sim, &["--log-level", "debug"]);
    curl(
        &sim,
        "admin:s3cret",
        &request("urn:marker-one", &cs, "", ""),
    );
    sim.eventually("the debug line", || sim.log().contains("urn:marker-one"));
    set(&sim, &["--log-level", "warning"]);
    assert_eq!(wbem(&sim)["Loglevel"], "warning");
    curl(
        &sim,
        "admin:s3cret",
        &request("urn:marker-two", &cs, "", ""),
    );
    curl(
        &sim,
        "admin:wrong",
        &request("urn:marker-three", &cs, "", ""),
    );
    // The refused login is a warning: it is logged, the debug line is not.
    sim.eventually("the warning", || {
        sim.log()
            .contains("authentication failed for user \"admin\"")
    });
    assert!(!sim.log().contains("urn:marker-two"));

    // Bad values are refused and change nothing.
    let o = sim.hvsim(&["wbem", "set", "--ssl-protocols", "tlsv1.1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("tlsv1.1"), "{}", stderr(&o));
    let o = sim.hvsim(&["wbem", "set", "--auth-model", "certificate"]);
    assert!(!o.status.success());
    assert_eq!(port(&sim, "wsman"), Some(ws));
}

#[test]
fn wbem_settings_survive_a_restart() {
    let mut sim = wsman_sim(&["web"]);
    set(
        &sim,
        &["--ssl-protocols", "tlsv1.2,tlsv1.3", "--wsman", "false"],
    );
    sim.kill9_and_restart();
    let v = wbem(&sim);
    assert_eq!(v["Enabled System SSL Protocols"], "tlsv1.2,tlsv1.3");
    assert_eq!(v["WSManagement Service"], false);
    assert_eq!(port(&sim, "wsman"), None);
    let cim = port(&sim, "https").unwrap();
    assert!(handshake(cim, "-tls1_2") && handshake(cim, "-tls1_3"));
}
