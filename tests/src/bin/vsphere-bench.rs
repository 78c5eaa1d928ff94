//! The vSphere API against the bare limit, same run: RetrievePropertiesEx of
//! the guest info of 100 VMs (name, power state, guest IP and host name,
//! NICs) through a container view, as inventory scripts and Ansible's
//! dynamic inventory ask it, against a bare HTTPS server that answers the
//! very same response bytes without parsing anything (same certificate,
//! same TLS, same client). Both over keep-alive connections from several
//! client threads. vcsim would be the natural peer, but it is a Go program
//! that none of this project's registries ship. Prints a Markdown table.
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use e2e_tests::httpbench::{call, call_with_headers, client_config, connect, load, start_hvsim};

const VMS: usize = 100;
const CONNECTIONS: usize = 4;

fn soap(cookie: Option<&str>, body: &str) -> Vec<u8> {
    let env = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    );
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /sdk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: urn:vim25/8.0.3.0\r\n{cookie}Content-Length: {}\r\n\r\n{env}",
        env.len()
    )
    .into_bytes()
}

/// Serve `body` as the answer to every request, on keep-alive TLS
/// connections: the floor for answering a request of this size.
fn bare_server(body: Vec<u8>, tls: Arc<rustls::ServerConfig>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut resp = head.into_bytes();
    resp.extend_from_slice(&body);
    let resp = Arc::new(resp);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (tls, resp) = (tls.clone(), resp.clone());
            std::thread::spawn(move || {
                let _ = s.set_nodelay(true);
                let Ok(conn) = rustls::ServerConnection::new(tls) else {
                    return;
                };
                let mut r = BufReader::new(rustls::StreamOwned::new(conn, s));
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match r.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.strip_prefix("Content-Length: ") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut req = vec![0u8; len];
                    if r.read_exact(&mut req).is_err() {
                        return;
                    }
                    if r.get_mut().write_all(&resp).is_err() || r.get_mut().flush().is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn text_between<'a>(s: &'a str, open: &str, close: &str) -> &'a str {
    let a = s.find(open).expect("element") + open.len();
    let b = s[a..].find(close).expect("end") + a;
    &s[a..b]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = if quick { 1.0 } else { 5.0 };
    let (h, ports) = start_hvsim(
        "[vsphere]\nlisten = \"127.0.0.1:0\"\n[cim]\nenabled = false\n[redfish]\nenabled = false\n[wsman]\nenabled = false\n[[user]]\nname = \"bench\"\npassword = \"bench\"\nrole = \"Administrator\"\n",
        VMS,
        &["vSphere API"],
    );
    let port = ports[0];
    let state = h.dir.path().join("state");
    let tls = client_config(&state.join("tls/vsphere.crt"));
    let mut c = connect(port, &tls);
    let (headers, _) = call_with_headers(
        &mut c,
        &soap(None, "<Login xmlns=\"urn:vim25\"><_this type=\"SessionManager\">ha-sessionmgr</_this><userName>bench</userName><password>bench</password></Login>"),
    );
    let cookie = headers
        .iter()
        .find_map(|h| h.strip_prefix("Set-Cookie: "))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let view = String::from_utf8(call(
        &mut c,
        &soap(Some(&cookie), "<CreateContainerView xmlns=\"urn:vim25\"><_this type=\"ViewManager\">ViewManager</_this><container type=\"Folder\">ha-folder-root</container><type>VirtualMachine</type><recursive>true</recursive></CreateContainerView>"),
    ))
    .expect("utf-8");
    let view =
        text_between(&view, "<returnval type=\"ContainerView\">", "</returnval>").to_string();
    let retrieve = soap(
        Some(&cookie),
        &format!(
            "<RetrievePropertiesEx xmlns=\"urn:vim25\"><_this type=\"PropertyCollector\">ha-property-collector</_this><specSet><propSet><type>VirtualMachine</type><all>false</all><pathSet>name</pathSet><pathSet>runtime.powerState</pathSet><pathSet>guest.ipAddress</pathSet><pathSet>guest.hostName</pathSet><pathSet>guest.net</pathSet></propSet><objectSet><obj type=\"ContainerView\">{view}</obj><skip>true</skip><selectSet xsi:type=\"TraversalSpec\"><name>traverseView</name><type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet></specSet><options><maxObjects>{VMS}</maxObjects></options></RetrievePropertiesEx>"
        ),
    );
    let body = call(&mut c, &retrieve);
    let text = String::from_utf8(body.clone()).expect("utf-8");
    assert_eq!(
        text.matches("<objects xsi:type=\"ObjectContent\">").count(),
        VMS
    );
    assert!(text.matches("vm0").count() >= VMS);
    let server = hvsim::http::tls::server_config(&hvsim::http::tls::CertPaths {
        cert: state.join("tls/vsphere.crt"),
        key: state.join("tls/vsphere.key"),
    })
    .expect("server TLS");
    let bare = bare_server(body, server);
    let ours = load(port, &retrieve, &tls, secs, CONNECTIONS);
    let floor = load(bare, &retrieve, &tls, secs, CONNECTIONS);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "vSphere API: RetrievePropertiesEx of {VMS} VMs' guest info through a container view ({} KiB answer), HTTPS, {CONNECTIONS} keep-alive connections, {secs} s each, against a bare HTTPS server answering the same bytes:",
        ours.bytes / 1024
    );
    println!();
    println!("| server | requests/s | p50 | p99 |");
    println!("|---|---|---|---|");
    println!(
        "| hvsim vSphere API | {:.0} | {:.2} ms | {:.2} ms |",
        ours.rps,
        ms(ours.p50),
        ms(ours.p99)
    );
    println!(
        "| bare HTTPS, same bytes | {:.0} | {:.2} ms | {:.2} ms |",
        floor.rps,
        ms(floor.p50),
        ms(floor.p99)
    );
    println!();
    println!(
        "hvsim/bare: {:.0}% of the requests/s, {:.1}x the p99.",
        100.0 * ours.rps / floor.rps,
        ms(ours.p99) / ms(floor.p99)
    );
}
