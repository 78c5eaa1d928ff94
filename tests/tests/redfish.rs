//! Redfish and virtual media against real clients: curl (raw HTTPS), sushy
//! and DMTF's Redfish-Service-Validator (Python, `HVSIM_PY`), nbdinfo,
//! nbdcopy and qemu-img reading the exported images over NBD, with images
//! from a file directory and from an HTTPS server the test starts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::Sim;
use e2e_tests::{python, workspace};
use hvsim::http::{self, Handler, HttpConfig, HttpLimits, Request, Response};
use serde_json::Value;

use e2e_tests::free_port;

struct Rf {
    sim: Sim,
    base: String,
    nbd: u16,
    /// vm0's IPMI (RMCP+) port.
    ipmi: u16,
    media: PathBuf,
}

fn start(extra: &str) -> Rf {
    let (rp, np, ip) = (free_port(), free_port(), free_port());
    let dir = tempfile::Builder::new()
        .prefix("hvsim-rf")
        .tempdir()
        .expect("tempdir");
    let media = dir.path().join("media");
    std::fs::create_dir(&media).expect("media dir");
    let cfg = format!(
        "[[vm]]\nname = \"vm0\"\nipmi = {{ listen = \"127.0.0.1:{ip}\" }}\n[[vm]]\nname = \"vm1\"\n[redfish]\nlisten = \"127.0.0.1:{rp}\"\nmedia_dir = \"{}\"\n{extra}\n[nbd]\nlisten = \"127.0.0.1:{np}\"\n[[user]]\nname = \"admin\"\npassword = \"s3cret\"\nrole = \"Administrator\"\n[[user]]\nname = \"viewer\"\npassword = \"look\"\nrole = \"ReadOnly\"\n",
        media.display()
    );
    let sim = Sim::with_config_in(dir, &cfg);
    sim.eventually("the Redfish listener", || {
        sim.log().contains("Redfish over HTTPS on")
    });
    Rf {
        sim,
        base: format!("https://127.0.0.1:{rp}"),
        nbd: np,
        ipmi: ip,
        media,
    }
}

use e2e_tests::curl_i as curl;

fn hdr<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn admin(
    rf: &Rf,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let url = format!("{}{path}", rf.base);
    let mut a = vec!["-u", "admin:s3cret", "-X", method, url.as_str()];
    if let Some(b) = body {
        a.extend(["-H", "Content-Type: application/json", "-d", b]);
    }
    curl(&a)
}

/// curl as `user:pw`.
fn as_user(
    rf: &Rf,
    user: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let url = format!("{}{path}", rf.base);
    let mut a = vec!["-u", user, "-X", method, url.as_str()];
    if let Some(b) = body {
        a.extend(["-H", "Content-Type: application/json", "-d", b]);
    }
    curl(&a)
}

/// The first `@Message.ExtendedInfo` MessageId of an error body.
fn message_id(body: &str) -> String {
    json(body)["error"]["@Message.ExtendedInfo"][0]["MessageId"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// `ipmitool -I lanplus ... mc info` against vm0's BMC.
fn ipmi_mc_info(rf: &Rf, user: &str, pw: &str, level: &str) -> Output {
    Command::new("ipmitool")
        .args(["-I", "lanplus", "-H", "127.0.0.1", "-p"])
        .arg(rf.ipmi.to_string())
        .args(["-U", user, "-P", pw, "-L", level, "-N", "1", "-R", "2"])
        .args(["mc", "info"])
        .stdin(Stdio::null())
        .output()
        .expect("run ipmitool (apt-get install ipmitool)")
}

/// Every `Set-Cookie` of a response, as (name, value, attributes).
fn set_cookies(h: &[(String, String)]) -> Vec<(String, String, String)> {
    h.iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| {
            let (kv, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, v) = kv.split_once('=').expect("name=value");
            (k.to_string(), v.to_string(), attrs.trim().to_string())
        })
        .collect()
}

#[test]
fn cookie_sessions_need_the_xsrf_token() {
    let rf = start("");
    let sessions = format!("{}/redfish/v1/SessionService/Sessions", rf.base);
    // A browser-style login: cookies, no token header.
    let (s, h, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Requested-With: XMLHttpRequest",
        "-d",
        r#"{"UserName":"admin","Password":"s3cret"}"#,
        &sessions,
    ]);
    assert_eq!(s, 201, "{body}");
    assert_eq!(json(&body)["UserName"], "admin");
    assert!(hdr(&h, "x-auth-token").is_none(), "{h:?}");
    let cookies = set_cookies(&h);
    let xsrf = cookies
        .iter()
        .find(|c| c.0 == "XSRF-TOKEN")
        .expect("XSRF-TOKEN");
    let sess = cookies.iter().find(|c| c.0 == "SESSION").expect("SESSION");
    assert_eq!(xsrf.2, "Path=/; SameSite=Strict; Secure");
    assert_eq!(sess.2, "Path=/; SameSite=Strict; Secure; HttpOnly");
    assert!(xsrf.1.len() >= 32 && sess.1.len() >= 32 && xsrf.1 != sess.1);
    let loc = hdr(&h, "location").expect("location").to_string();
    let jar = format!("Cookie: XSRF-TOKEN={}; SESSION={}", xsrf.1, sess.1);
    // Reads need only the cookie.
    let (s, _, body) = curl(&["-H", &jar, &format!("{}/redfish/v1/Systems/vm0", rf.base)]);
    assert_eq!(s, 200, "{body}");
    // Changes need X-XSRF-TOKEN too: missing and wrong are refused, without
    // a Basic challenge (the browser would show its own dialog).
    let patch = format!("{}/redfish/v1/Systems/vm0", rf.base);
    let boot = r#"{"Boot":{"BootSourceOverrideTarget":"Pxe"}}"#;
    for extra in [
        "X-Other: 1",
        "X-XSRF-TOKEN: 0123456789abcdef0123456789abcdef",
    ] {
        let (s, h, body) = curl(&[
            "-H",
            &jar,
            "-H",
            extra,
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/json",
            "-d",
            boot,
            &patch,
        ]);
        assert_eq!(s, 401, "{extra}: {body}");
        assert_eq!(message_id(&body), "Base.1.11.0.NoValidSession");
        assert!(body.contains("X-XSRF-TOKEN"), "{body}");
        assert!(hdr(&h, "www-authenticate").is_none(), "{h:?}");
    }
    let good = format!("X-XSRF-TOKEN: {}", xsrf.1);
    let (s, _, body) = curl(&[
        "-H",
        &jar,
        "-H",
        &good,
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/json",
        "-d",
        boot,
        &patch,
    ]);
    assert_eq!(s, 200, "{body}");
    assert_eq!(json(&body)["Boot"]["BootSourceOverrideTarget"], "Pxe");
    // A cookie naming a token session is not a cookie session.
    let (_, h, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"UserName":"viewer","Password":"look"}"#,
        &sessions,
    ]);
    let tok = hdr(&h, "x-auth-token").expect("token");
    assert!(set_cookies(&h).is_empty());
    let (s, _, _) = curl(&[
        "-H",
        &format!("Cookie: SESSION={tok}"),
        &format!("{}/redfish/v1/Systems/vm0", rf.base),
    ]);
    assert_eq!(s, 401);
    // Logging out needs the token too, and expires both cookies.
    let (s, _, _) = curl(&["-H", &jar, "-X", "DELETE", &format!("{}{loc}", rf.base)]);
    assert_eq!(s, 401);
    let (s, h, _) = curl(&[
        "-H",
        &jar,
        "-H",
        &good,
        "-X",
        "DELETE",
        &format!("{}{loc}", rf.base),
    ]);
    assert_eq!(s, 204);
    let gone = set_cookies(&h);
    assert_eq!(gone.len(), 2, "{h:?}");
    assert!(
        gone.iter()
            .all(|c| c.1.is_empty() && c.2.contains("Max-Age=0")),
        "{gone:?}"
    );
    let (s, _, _) = curl(&["-H", &jar, &format!("{}/redfish/v1/Systems/vm0", rf.base)]);
    assert_eq!(s, 401);
}

#[test]
fn service_root_auth_sessions_and_errors() {
    let rf = start("");
    // Unauthenticated documents.
    for p in [
        "/redfish",
        "/redfish/v1/",
        "/redfish/v1/odata",
        "/redfish/v1/$metadata",
    ] {
        let (s, h, _) = curl(&[&format!("{}{p}", rf.base)]);
        assert_eq!(s, 200, "{p}");
        assert_eq!(hdr(&h, "odata-version"), Some("4.0"), "{p}");
    }
    let (_, _, root) = curl(&[&format!("{}/redfish/v1/", rf.base)]);
    let root = json(&root);
    assert_eq!(
        root["Links"]["Sessions"]["@odata.id"],
        "/redfish/v1/SessionService/Sessions"
    );
    assert!(root["UUID"].as_str().is_some_and(|u| u.len() == 36));
    // Everything else needs credentials.
    let (s, h, body) = curl(&[&format!("{}/redfish/v1/Systems", rf.base)]);
    assert_eq!(s, 401);
    assert!(hdr(&h, "www-authenticate").is_some());
    assert_eq!(
        json(&body)["error"]["@Message.ExtendedInfo"][0]["MessageId"],
        "Base.1.11.0.NoValidSession"
    );
    // A session: token and Location; DELETE logs out.
    let (s, h, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"UserName":"viewer","Password":"look"}"#,
        &format!("{}/redfish/v1/SessionService/Sessions", rf.base),
    ]);
    assert_eq!(s, 201);
    let token = hdr(&h, "x-auth-token").expect("token").to_string();
    let loc = hdr(&h, "location").expect("location").to_string();
    let th = format!("X-Auth-Token: {token}");
    let (s, h, body) = curl(&["-H", &th, &format!("{}/redfish/v1/Systems/vm0", rf.base)]);
    assert_eq!(s, 200);
    assert!(hdr(&h, "etag").is_some());
    assert_eq!(json(&body)["PowerState"], "On");
    // ReadOnly may not power.
    let (s, _, body) = curl(&[
        "-H",
        &th,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"ResetType":"ForceOff"}"#,
        &format!(
            "{}/redfish/v1/Systems/vm0/Actions/ComputerSystem.Reset",
            rf.base
        ),
    ]);
    assert_eq!(s, 403, "{body}");
    let (s, _, _) = curl(&["-H", &th, "-X", "DELETE", &format!("{}{loc}", rf.base)]);
    assert_eq!(s, 204);
    let (s, _, _) = curl(&["-H", &th, &format!("{}/redfish/v1/Systems/vm0", rf.base)]);
    assert_eq!(s, 401);
    let (s, _, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"UserName":"viewer","Password":"wrong"}"#,
        &format!("{}/redfish/v1/SessionService/Sessions", rf.base),
    ]);
    assert_eq!(s, 401);

    // Bad input gets Base registry errors.
    let reset = "/redfish/v1/Systems/vm0/Actions/ComputerSystem.Reset";
    for (body, status, id) in [
        ("{nope", 400, "MalformedJSON"),
        (
            r#"{"ResetType":"Explode"}"#,
            400,
            "ActionParameterValueNotInList",
        ),
        (r#"{"ResetType":5}"#, 400, "ActionParameterValueTypeError"),
        (r#"{}"#, 400, "ActionParameterMissing"),
        (
            r#"{"ResetType":"On","Extra":1}"#,
            400,
            "ActionParameterUnknown",
        ),
    ] {
        let (s, _, b) = admin(&rf, "POST", reset, Some(body));
        assert_eq!(s, status, "{body}: {b}");
        assert_eq!(
            json(&b)["error"]["@Message.ExtendedInfo"][0]["MessageId"],
            format!("Base.1.11.0.{id}")
        );
    }
    let (s, _, b) = admin(
        &rf,
        "POST",
        "/redfish/v1/Systems/vm0/Actions/ComputerSystem.Explode",
        Some("{}"),
    );
    assert_eq!(s, 404, "{b}");
    let (s, _, b) = admin(
        &rf,
        "PATCH",
        "/redfish/v1/Systems/vm0",
        Some(r#"{"PowerState":"Off"}"#),
    );
    assert_eq!(
        (s, json(&b)["error"]["code"].as_str()),
        (400, Some("Base.1.11.0.PropertyNotWritable"))
    );
    let (s, _, b) = admin(
        &rf,
        "PATCH",
        "/redfish/v1/Systems/vm0",
        Some(r#"{"Bogus":1}"#),
    );
    assert_eq!(
        (s, json(&b)["error"]["code"].as_str()),
        (400, Some("Base.1.11.0.PropertyUnknown"))
    );
    let (s, _, _) = admin(&rf, "GET", "/redfish/v1/Systems/nope", None);
    assert_eq!(s, 404);
    let (s, h, _) = admin(&rf, "DELETE", "/redfish/v1/Systems/vm0", None);
    assert_eq!(s, 405);
    assert!(hdr(&h, "allow").is_some_and(|a| a.contains("PATCH")));

    // Power and boot override, seen by `hvsim vm show`.
    let (s, _, b) = admin(&rf, "POST", reset, Some(r#"{"ResetType":"ForceOff"}"#));
    assert_eq!(s, 200, "{b}");
    assert_eq!(rf.sim.show("vm0")["power"], "off");
    let (s, _, b) = admin(
        &rf,
        "POST",
        reset,
        Some(r#"{"ResetType":"GracefulShutdown"}"#),
    );
    assert_eq!(s, 409, "{b}");
    let (s, h, _) = admin(&rf, "GET", "/redfish/v1/Systems/vm0", None);
    assert_eq!(s, 200);
    let etag = hdr(&h, "etag").expect("etag").to_string();
    let (s, _, b) = curl(&[
        "-u",
        "admin:s3cret",
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/json",
        "-H",
        "If-Match: W/\"0000\"",
        "-d",
        r#"{"Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Once"}}"#,
        &format!("{}/redfish/v1/Systems/vm0", rf.base),
    ]);
    assert_eq!(s, 412, "{b}");
    let (s, _, b) = curl(&[
        "-u",
        "admin:s3cret",
        "-X",
        "PATCH",
        "-H",
        "Content-Type: application/json",
        "-H",
        &format!("If-Match: {etag}"),
        "-d",
        r#"{"Boot":{"BootSourceOverrideTarget":"Cd","BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI"}}"#,
        &format!("{}/redfish/v1/Systems/vm0", rf.base),
    ]);
    assert_eq!(s, 200, "{b}");
    let show = rf.sim.show("vm0");
    assert_eq!(show["boot"]["target"], "cd");
    assert_eq!(show["boot"]["uefi"], true);
    let (s, _, b) = admin(&rf, "POST", reset, Some(r#"{"ResetType":"On"}"#));
    assert_eq!(s, 200, "{b}");
    assert_eq!(rf.sim.show("vm0")["power"], "on");

    // Accounts are the shared users; a password change over Redfish works
    // for the next Basic login.
    let (s, _, b) = admin(&rf, "GET", "/redfish/v1/AccountService/Accounts/3", None);
    assert_eq!((s, json(&b)["RoleId"].as_str()), (200, Some("ReadOnly")));
    let (s, _, b) = admin(
        &rf,
        "PATCH",
        "/redfish/v1/AccountService/Accounts/3",
        Some(r#"{"Password":"n3w"}"#),
    );
    assert_eq!(s, 200, "{b}");
    let (s, _, _) = curl(&[
        "-u",
        "viewer:n3w",
        &format!("{}/redfish/v1/Chassis/vm0/Thermal", rf.base),
    ]);
    assert_eq!(s, 200);
}

/// How a test image server answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Serve {
    /// Range requests, as image servers do.
    Ranges,
    /// The whole image with 200 whatever was asked (no range support).
    Whole,
    /// 404 for everything.
    Missing,
}

/// An HTTPS image server on 127.0.0.1 (hvsim's own HTTP layer with a
/// generated certificate), answering every request after `delay`.
#[derive(Debug)]
struct ImageServer {
    data: Vec<u8>,
    delay: Duration,
    serve: Serve,
}

impl Handler for ImageServer {
    fn handle(&self, req: &Request) -> Response {
        std::thread::sleep(self.delay);
        let len = self.data.len();
        if self.serve == Serve::Missing {
            return Response::text(404, "no such image\n");
        }
        let range = req.header("Range").and_then(|r| r.strip_prefix("bytes="));
        let Some(r) = range.filter(|_| self.serve == Serve::Ranges) else {
            return Response {
                status: 200,
                headers: vec![],
                body: self.data.clone(),
            };
        };
        let (a, b) = r.split_once('-').unwrap_or(("0", ""));
        let a: usize = a.parse().unwrap_or(0);
        let b: usize = b.parse().unwrap_or(len - 1).min(len - 1);
        Response {
            status: 206,
            headers: vec![("Content-Range".into(), format!("bytes {a}-{b}/{len}"))],
            body: self.data[a..=b].to_vec(),
        }
    }
}

fn image_server(dir: &Path, data: Vec<u8>) -> (String, PathBuf) {
    slow_image_server(dir, data, Duration::ZERO, Serve::Ranges)
}

/// An image server answering after `delay`; servers started with the same
/// `dir` share its certificate.
fn slow_image_server(
    dir: &Path,
    data: Vec<u8>,
    delay: Duration,
    serve: Serve,
) -> (String, PathBuf) {
    let paths = http::tls::ensure_self_signed(dir, "images", &["127.0.0.1".into()]).expect("cert");
    let tls = http::tls::server_config(&paths).expect("tls");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let cfg = HttpConfig {
        limits: HttpLimits::default(),
        auth: None,
        realm: "img".into(),
        local_only: false,
        name: "images".into(),
    };
    let h = ImageServer { data, delay, serve };
    http::spawn(l, Some(tls), cfg, Arc::new(h)).expect("spawn");
    (format!("https://127.0.0.1:{port}/disk.iso"), paths.cert)
}

fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn read_nbd(rf: &Rf, export: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!("copy-{}.raw", export.replace('/', "-")));
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw"])
        .arg(format!("nbd://127.0.0.1:{}/{export}", rf.nbd))
        .arg(&out)
        .status()
        .expect("qemu-img");
    assert!(st.success());
    std::fs::read(&out).expect("read copy")
}

#[test]
fn virtual_media_over_nbd_from_file_and_https() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = pattern(5 << 20);
    let (url, ca) = image_server(tmp.path(), data.clone());
    let rf = start(&format!("media_ca = \"{}\"", ca.display()));
    let iso = rf.media.join("boot.iso");
    let iso_data = pattern(3 << 20).into_iter().rev().collect::<Vec<u8>>();
    std::fs::write(&iso, &iso_data).expect("iso");

    // file:// into the Cd of vm0.
    let cd = "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Cd";
    let body = format!(
        r#"{{"Image":"file://{}","TransferProtocolType":"OEM"}}"#,
        iso.display()
    );
    let (s, _, b) = admin(
        &rf,
        "POST",
        &format!("{cd}/Actions/VirtualMedia.InsertMedia"),
        Some(&body),
    );
    assert_eq!(s, 200, "{b}");
    let (_, _, b) = admin(&rf, "GET", cd, None);
    let v = json(&b);
    assert_eq!(v["Inserted"], true);
    assert_eq!(v["Oem"]["Hvsim"]["NbdExport"], "vm0/Cd");
    let info = Command::new("nbdinfo")
        .arg("--json")
        .arg(format!("nbd://127.0.0.1:{}/vm0/Cd", rf.nbd))
        .output()
        .expect("nbdinfo");
    let info: Value = serde_json::from_slice(&info.stdout).expect("nbdinfo json");
    assert_eq!(info["exports"][0]["export-size"], iso_data.len() as u64);
    assert_eq!(info["exports"][0]["is_read_only"], true);
    assert_eq!(read_nbd(&rf, "vm0/Cd", tmp.path()), iso_data);
    // A second insert into a full slot is refused; outside media_dir too.
    let (s, _, _) = admin(
        &rf,
        "POST",
        &format!("{cd}/Actions/VirtualMedia.InsertMedia"),
        Some(&body),
    );
    assert_eq!(s, 409);
    let (s, _, b) = admin(
        &rf,
        "POST",
        "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Usb/Actions/VirtualMedia.InsertMedia",
        Some(r#"{"Image":"file:///etc/passwd"}"#),
    );
    assert_eq!(s, 400, "{b}");

    // https:// into vm1, verified against the test's CA, streamed.
    let cd1 = "/redfish/v1/Managers/vm1-bmc/VirtualMedia/Cd";
    let body =
        format!(r#"{{"Image":"{url}","TransferMethod":"Stream","TransferProtocolType":"HTTPS"}}"#);
    let (s, _, b) = admin(
        &rf,
        "POST",
        &format!("{cd1}/Actions/VirtualMedia.InsertMedia"),
        Some(&body),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(read_nbd(&rf, "vm1/Cd", tmp.path()), data);
    let out = tmp.path().join("nbdcopy.raw");
    let st = Command::new("nbdcopy")
        .arg(format!("nbd://127.0.0.1:{}/vm1/Cd", rf.nbd))
        .arg(&out)
        .status()
        .expect("nbdcopy");
    assert!(st.success());
    assert_eq!(std::fs::read(&out).expect("copy"), data);
    let (_, _, b) = admin(&rf, "GET", cd1, None);
    assert!(json(&b)["Oem"]["Hvsim"]["BytesRead"].as_u64().unwrap_or(0) >= 2 * data.len() as u64);
    // Eject: the export is gone.
    let (s, _, b) = admin(
        &rf,
        "POST",
        &format!("{cd1}/Actions/VirtualMedia.EjectMedia"),
        Some("{}"),
    );
    assert_eq!(s, 200, "{b}");
    let st = Command::new("nbdinfo")
        .arg(format!("nbd://127.0.0.1:{}/vm1/Cd", rf.nbd))
        .output()
        .expect("nbdinfo");
    assert!(!st.status.success());

    // An image server we cannot verify: the insert (and its Task) fail and
    // nothing is inserted; with VerifyCertificate false it works.
    let (url2, _) = image_server(&tmp.path().join("other"), data.clone());
    let usb1 = "/redfish/v1/Managers/vm1-bmc/VirtualMedia/Usb";
    // The test CA file covers only the first server's certificate.
    let body2 = format!(r#"{{"Image":"{url2}"}}"#);
    let (s, _, b) = admin(
        &rf,
        "POST",
        &format!("{usb1}/Actions/VirtualMedia.InsertMedia"),
        Some(&body2),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("TLS") || b.contains("certificate"), "{b}");
    let (_, _, tasks) = admin(&rf, "GET", "/redfish/v1/TaskService/Tasks", None);
    let last = json(&tasks)["Members"]
        .as_array()
        .and_then(|m| m.last().cloned())
        .expect("task");
    let (_, _, t) = admin(&rf, "GET", last["@odata.id"].as_str().unwrap_or(""), None);
    assert_eq!(json(&t)["TaskState"], "Exception");
    let (_, _, b) = admin(&rf, "GET", usb1, None);
    assert_eq!(json(&b)["Inserted"], false);
    let (s, _, b) = admin(&rf, "PATCH", usb1, Some(r#"{"VerifyCertificate":false}"#));
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = admin(
        &rf,
        "POST",
        &format!("{usb1}/Actions/VirtualMedia.InsertMedia"),
        Some(&body2),
    );
    assert_eq!(s, 200, "{b}");
    // Unreachable.
    let dead = free_port();
    let (s, _, b) = admin(
        &rf,
        "POST",
        "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Usb/Actions/VirtualMedia.InsertMedia",
        Some(&format!(r#"{{"Image":"https://127.0.0.1:{dead}/x.iso"}}"#)),
    );
    assert_eq!(s, 400, "{b}");
}

#[test]
fn usb_media_is_writable_over_nbd() {
    let rf = start("");
    let img = rf.media.join("stick.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).expect("img");
    let usb = "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Usb";
    let body = format!(
        r#"{{"Image":"file://{}","WriteProtected":false}}"#,
        img.display()
    );
    let (s, _, b) = admin(
        &rf,
        "POST",
        &format!("{usb}/Actions/VirtualMedia.InsertMedia"),
        Some(&body),
    );
    assert_eq!(s, 200, "{b}");
    let src = rf.media.join("src.img");
    std::fs::write(&src, pattern(1 << 20)).expect("src");
    let st = Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&src)
        .arg(format!("nbd://127.0.0.1:{}/vm0/Usb", rf.nbd))
        .status()
        .expect("qemu-img");
    assert!(st.success());
    assert_eq!(std::fs::read(&img).expect("img"), pattern(1 << 20));
    // Cd media cannot be writable.
    let (s, _, _) = admin(
        &rf,
        "POST",
        "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
        Some(&format!(
            r#"{{"Image":"file://{}","WriteProtected":false}}"#,
            img.display()
        )),
    );
    assert_eq!(s, 400);
}

#[test]
fn sushy_powers_a_vm_and_inserts_media() {
    let rf = start("");
    let iso = rf.media.join("sushy.iso");
    std::fs::write(&iso, pattern(1 << 20)).expect("iso");
    let script = format!(
        r#"
import sushy, json
c = sushy.Sushy("{base}/redfish/v1", username="admin", password="s3cret", verify=False)
s = c.get_system("/redfish/v1/Systems/vm0")
s.reset_system(sushy.RESET_FORCE_OFF)
s.refresh()
off = s.power_state
s.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_CD, enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
s.refresh()
boot = s.boot.target
s.reset_system(sushy.RESET_ON)
s.refresh()
m = c.get_manager("/redfish/v1/Managers/vm0-bmc")
vm = m.virtual_media.get_member("/redfish/v1/Managers/vm0-bmc/VirtualMedia/Cd")
vm.insert_media("file://{iso}")
vm.refresh()
ins = vm.inserted
vm.eject_media()
vm.refresh()
print(json.dumps({{"off": str(off), "on": str(s.power_state), "boot": str(boot), "inserted": ins, "after": vm.inserted}}))
"#,
        base = rf.base,
        iso = iso.display()
    );
    let out = Command::new(python())
        .args(["-W", "ignore", "-c", &script])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        v["off"]
            .as_str()
            .is_some_and(|s| s.to_lowercase().contains("off")),
        "{v}"
    );
    assert!(
        v["on"]
            .as_str()
            .is_some_and(|s| s.to_lowercase().contains("on")),
        "{v}"
    );
    assert!(
        v["boot"]
            .as_str()
            .is_some_and(|s| s.to_lowercase().contains("cd")),
        "{v}"
    );
    assert_eq!(
        (v["inserted"].as_bool(), v["after"].as_bool()),
        (Some(true), Some(false)),
        "{v}"
    );
}

#[test]
fn dmtf_service_validator_passes() {
    let rf = start("");
    let iso = rf.media.join("v.iso");
    std::fs::write(&iso, pattern(1 << 16)).expect("iso");
    let (s, _, b) = admin(
        &rf,
        "POST",
        "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
        Some(&format!(r#"{{"Image":"file://{}"}}"#, iso.display())),
    );
    assert_eq!(s, 200, "{b}");
    // An account created over Redfish is validated too.
    let (s, _, b) = admin(
        &rf,
        "POST",
        "/redfish/v1/AccountService/Accounts",
        Some(r#"{"UserName":"op","Password":"pw","RoleId":"Operator"}"#),
    );
    assert_eq!(s, 201, "{b}");
    // A proxy-mode medium (scripts/hvsim-nbd-proxy.py serving a file over
    // Slot_0's WebSocket), so an inserted proxy slot is validated too.
    let mut proxy = Command::new(python())
        .arg(workspace().join("scripts/hvsim-nbd-proxy.py"))
        .args([
            "--url",
            &rf.base,
            "--user",
            "admin",
            "--password",
            "s3cret",
            "--quiet",
        ])
        .arg("--cacert")
        .arg(rf.sim.dir.path().join("state/tls/redfish.crt"))
        .arg(&iso)
        .spawn()
        .expect("scripts/hvsim-nbd-proxy.py");
    rf.sim.eventually("the proxy medium", || {
        let (_, _, b) = admin(
            &rf,
            "GET",
            "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Slot_0",
            None,
        );
        json(&b)["Inserted"] == true
    });
    // DMTF's schemas, offline, from the repository (tests/redfish-schemas,
    // with DMTF's licence): the validator adds the service's own (OEM)
    // schema documents to its schema directory.
    let vendored = workspace().join("tests/redfish-schemas/csdl");
    let schemas = rf.sim.dir.path().join("schemas");
    std::fs::create_dir(&schemas).expect("schema dir");
    for e in std::fs::read_dir(&vendored)
        .unwrap_or_else(|e| panic!("vendored schemas at {}: {e}", vendored.display()))
    {
        let e = e.expect("entry");
        std::fs::copy(e.path(), schemas.join(e.file_name())).expect("copy schema");
    }
    let (_, _, md) = curl(&[&format!("{}/redfish/v1/$metadata", rf.base)]);
    // Every DMTF document $metadata references is vendored.
    for uri in md
        .split("Uri=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
    {
        if let Some(file) = uri.strip_prefix("http://redfish.dmtf.org/schemas/v1/") {
            assert!(
                vendored.join(file).exists(),
                "$metadata references {file}: add it to tests/redfish-schemas/csdl \
                 from DMTF's DSP8010 bundle"
            );
        }
    }
    // The documents $metadata references on the service itself, fetched the
    // way the validator's schema download does (it runs with --skipschema
    // here, so nothing reaches dmtf.org); readable without credentials.
    let local: Vec<&str> = md
        .split("Uri=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .filter(|u| u.starts_with('/'))
        .collect();
    assert_eq!(local.len(), 3, "the OEM schemas: {md}");
    for uri in local {
        let (s, h, x) = curl(&[&format!("{}{uri}", rf.base)]);
        assert_eq!(s, 200, "{uri}");
        assert_eq!(hdr(&h, "content-type"), Some("application/xml"));
        assert!(x.contains("BaseType=\"Resource.OemObject\""), "{x}");
        let file = uri.rsplit('/').next().expect("file name");
        std::fs::write(schemas.join(file), x).expect("write schema");
    }
    let validator = python().with_file_name("rf_service_validator");
    let logdir = rf.sim.dir.path().join("validator");
    let out = Command::new(&validator)
        .args([
            "-u",
            "admin",
            "-p",
            "s3cret",
            "-r",
            &rf.base,
            "--skipschema",
            "--schema_directory",
        ])
        .arg(&schemas)
        .arg("--logdir")
        .arg(&logdir)
        .output()
        .expect("rf_service_validator");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // The summary table: PASS | WARN | FAIL | NOT TESTED.
    let row = text
        .lines()
        .skip_while(|l| !l.contains("FAIL"))
        .nth(2)
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    let nums: Vec<u64> = row
        .split('|')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    eprintln!("validator PASS | WARN | FAIL | NOT TESTED: {nums:?}");
    assert!(nums.len() == 4 && nums[0] > 300, "summary {row:?}:\n{text}");
    assert_eq!(nums[2], 0, "validator failures:\n{text}");
    // Every Oem object and property is known from the OEM schemas: no
    // warnings (a missing @odata.type or an unknown type would be one).
    let report = std::fs::read_dir(&logdir)
        .expect("logdir")
        .flat_map(|d| std::fs::read_dir(d.expect("run").path()).expect("run dir"))
        .map(|f| f.expect("file").path())
        .find(|p| p.extension().is_some_and(|e| e == "html"))
        .expect("HTML report");
    let html = std::fs::read_to_string(&report).expect("report");
    let oem_rows: Vec<&str> = html
        .split("<tr>")
        .filter(|r| r.contains(">Oem/Hvsim"))
        .collect();
    assert!(
        oem_rows
            .iter()
            .any(|r| r.contains("Oem/Hvsim/@odata.type") && r.contains("res-pass")),
        "no Oem @odata.type validated"
    );
    assert!(
        oem_rows
            .iter()
            .any(|r| r.contains("Oem/Hvsim/NbdExport") && r.contains("res-pass")),
        "the OEM schema's properties were not validated"
    );
    for r in oem_rows {
        assert!(r.contains("res-pass"), "OEM property not passing: {r}");
    }
    let _ = proxy.kill();
    let _ = proxy.wait();
    // The proxy slots' OpenBMC extension (bmcweb's type name) validates too.
    let openbmc: Vec<&str> = html
        .split("<tr>")
        .filter(|r| r.contains(">Oem/OpenBMC"))
        .collect();
    assert!(
        openbmc
            .iter()
            .any(|r| r.contains("Oem/OpenBMC/WebSocketEndpoint") && r.contains("res-pass")),
        "the OpenBMC OEM property was not validated"
    );
    for r in openbmc {
        assert!(r.contains("res-pass"), "OEM property not passing: {r}");
    }
}

/// A medium nobody reads for `inactivity_timeout` seconds is ejected, as the
/// issue asks (1800 s by default; 2 s here), and its NBD export goes with it.
#[test]
fn idle_media_are_ejected_after_the_inactivity_timeout() {
    let rf = start("inactivity_timeout = 2");
    let iso = rf.media.join("idle.iso");
    std::fs::write(&iso, pattern(1 << 20)).expect("iso");
    let cd = "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Cd";
    let body = format!(r#"{{"Image":"file://{}"}}"#, iso.display());
    let (s, _, b) = admin(
        &rf,
        "POST",
        &format!("{cd}/Actions/VirtualMedia.InsertMedia"),
        Some(&body),
    );
    assert_eq!(s, 200, "{b}");
    let (_, _, b) = admin(&rf, "GET", cd, None);
    assert_eq!(json(&b)["Inserted"], true, "{b}");
    assert_eq!(
        json(&b)["Oem"]["Hvsim"]["InactivityTimeoutSeconds"],
        2,
        "{b}"
    );
    rf.sim.eventually("the idle medium ejected", || {
        let (_, _, b) = admin(&rf, "GET", cd, None);
        json(&b)["Inserted"] == false
    });
    let o = Command::new("nbdinfo")
        .arg(format!("nbd://127.0.0.1:{}/vm0/Cd", rf.nbd))
        .output()
        .expect("nbdinfo");
    assert!(!o.status.success(), "the export is gone after the eject");
}

/// AccountService: Administrators create, change and delete accounts; the
/// accounts are the BMC's IPMI users, so one created over Redfish logs in
/// with ipmitool and one deleted cannot, and its Redfish sessions end.
#[test]
fn accounts_are_managed_over_redfish_and_shared_with_ipmi() {
    let rf = start("");
    let accounts = "/redfish/v1/AccountService/Accounts";
    // The roles, with their privileges.
    let (s, _, b) = admin(&rf, "GET", "/redfish/v1/AccountService/Roles", None);
    assert_eq!(
        (s, json(&b)["Members@odata.count"].as_u64()),
        (200, Some(3))
    );
    let (_, _, b) = admin(
        &rf,
        "GET",
        "/redfish/v1/AccountService/Roles/Operator",
        None,
    );
    let privs = json(&b)["AssignedPrivileges"].clone();
    assert!(
        privs
            .as_array()
            .is_some_and(|p| p.contains(&"ConfigureComponents".into())
                && !p.contains(&"ConfigureUsers".into())),
        "{b}"
    );

    // Create: 201, Location and the new account; the IPMI user ID is its Id.
    let (s, h, b) = admin(
        &rf,
        "POST",
        accounts,
        Some(r#"{"UserName":"new","Password":"pw","RoleId":"Operator"}"#),
    );
    assert_eq!(s, 201, "{b}");
    let created = json(&b);
    assert_eq!(created["UserName"], "new");
    assert_eq!(created["RoleId"], "Operator");
    assert_eq!(created["Enabled"], true);
    assert_eq!(created["Id"], "4", "the lowest free IPMI user ID: {b}");
    assert_eq!(
        created["AccountTypes"],
        serde_json::json!(["Redfish", "IPMI"])
    );
    let loc = hdr(&h, "location").expect("Location").to_string();
    assert_eq!(loc, format!("{accounts}/4"));
    let (s, _, b) = admin(&rf, "GET", &loc, None);
    assert_eq!((s, json(&b)["UserName"].as_str()), (200, Some("new")));
    let (_, _, b) = admin(&rf, "GET", accounts, None);
    assert_eq!(json(&b)["Members@odata.count"], 3, "{b}");

    // The new account works over Redfish and over IPMI (RAKP with its
    // password, Operator privilege).
    let (s, _, _) = as_user(&rf, "new:pw", "GET", "/redfish/v1/Systems/vm0", None);
    assert_eq!(s, 200);
    let o = ipmi_mc_info(&rf, "new", "pw", "OPERATOR");
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Device ID"),
        "ipmitool as the Redfish-created user: {}{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        rf.sim.log()
    );
    // Not above its role.
    let o = ipmi_mc_info(&rf, "new", "pw", "ADMINISTRATOR");
    assert!(
        !o.status.success(),
        "an Operator got an Administrator session"
    );

    // Without ConfigureUsers: no creating, no touching others, only the own
    // Password (ConfigureSelf), and only the own account is listed.
    let (s, _, b) = as_user(
        &rf,
        "new:pw",
        "POST",
        accounts,
        Some(r#"{"UserName":"x","Password":"y","RoleId":"ReadOnly"}"#),
    );
    assert_eq!(
        (s, message_id(&b).as_str()),
        (403, "Base.1.11.0.InsufficientPrivilege")
    );
    let (s, _, _) = as_user(
        &rf,
        "new:pw",
        "PATCH",
        &format!("{accounts}/2"),
        Some(r#"{"Password":"mine"}"#),
    );
    assert_eq!(s, 403);
    let (s, _, _) = as_user(&rf, "new:pw", "GET", &format!("{accounts}/2"), None);
    assert_eq!(s, 403);
    let (s, _, _) = as_user(&rf, "new:pw", "DELETE", &format!("{accounts}/3"), None);
    assert_eq!(s, 403);
    let (s, _, b) = as_user(
        &rf,
        "new:pw",
        "PATCH",
        &loc,
        Some(r#"{"RoleId":"Administrator"}"#),
    );
    assert_eq!(s, 403, "{b}");
    let (s, _, b) = as_user(&rf, "new:pw", "GET", accounts, None);
    assert_eq!(s, 200);
    assert_eq!(
        json(&b)["Members"],
        serde_json::json!([{"@odata.id": loc.clone()}]),
        "{b}"
    );
    let (s, _, b) = as_user(&rf, "new:pw", "PATCH", &loc, Some(r#"{"Password":"pw2"}"#));
    assert_eq!(s, 200, "{b}");
    let (s, _, _) = as_user(&rf, "new:pw", "GET", "/redfish/v1/Systems", None);
    assert_eq!(s, 401, "the old password is gone");
    assert!(ipmi_mc_info(&rf, "new", "pw2", "OPERATOR").status.success());

    // Bad input: Base registry errors that say why.
    let long = "p".repeat(21);
    for (body, status, id) in [
        (
            r#"{"UserName":"new","Password":"x","RoleId":"ReadOnly"}"#.to_string(),
            409,
            "ResourceAlreadyExists",
        ),
        (
            r#"{"UserName":"z","Password":"x","RoleId":"Root"}"#.into(),
            400,
            "PropertyValueNotInList",
        ),
        (
            format!(r#"{{"UserName":"z","Password":"{long}","RoleId":"ReadOnly"}}"#),
            400,
            "StringValueTooLong",
        ),
        (
            r#"{"UserName":"a:b","Password":"x","RoleId":"ReadOnly"}"#.into(),
            400,
            "PropertyValueFormatError",
        ),
        (
            r#"{"UserName":"z","Password":"x"}"#.into(),
            400,
            "PropertyMissing",
        ),
        (
            r#"{"UserName":"z","Password":"x","RoleId":"ReadOnly","Shoe":1}"#.into(),
            400,
            "PropertyUnknown",
        ),
        (
            r#"{"UserName":"z","Password":"x","RoleId":"ReadOnly","Enabled":"yes"}"#.into(),
            400,
            "PropertyValueTypeError",
        ),
        (
            r#"{"UserName":"z","Password":"x","RoleId":"ReadOnly","AccountTypes":["Redfish"]}"#
                .into(),
            400,
            "PropertyNotWritable",
        ),
    ] {
        let (s, _, b) = admin(&rf, "POST", accounts, Some(&body));
        assert_eq!(
            (s, message_id(&b)),
            (status, format!("Base.1.11.0.{id}")),
            "{body}: {b}"
        );
        if id == "StringValueTooLong" {
            let msg = json(&b)["error"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string();
            assert!(msg.contains("20 bytes") && msg.contains("IPMI"), "{msg}");
            assert!(!b.contains(&long), "the password is not echoed: {b}");
        }
    }
    let (s, _, b) = admin(&rf, "PATCH", &loc, Some(r#"{"UserName":"viewer"}"#));
    assert_eq!(
        (s, message_id(&b).as_str()),
        (409, "Base.1.11.0.PropertyValueResourceConflict"),
        "{b}"
    );
    let (s, _, b) = admin(
        &rf,
        "PATCH",
        &loc,
        Some(&format!(r#"{{"Password":"{long}"}}"#)),
    );
    assert_eq!(
        (s, message_id(&b).as_str()),
        (400, "Base.1.11.0.StringValueTooLong")
    );
    // The last enabled Administrator stays.
    let (s, _, b) = admin(&rf, "DELETE", &format!("{accounts}/2"), None);
    assert_eq!(s, 409, "{b}");
    let (s, _, b) = admin(
        &rf,
        "PATCH",
        &format!("{accounts}/2"),
        Some(r#"{"RoleId":"ReadOnly"}"#),
    );
    assert_eq!(s, 409, "{b}");
    // Nothing was created by the refused requests.
    let (_, _, b) = admin(&rf, "GET", accounts, None);
    assert_eq!(json(&b)["Members@odata.count"], 3, "{b}");

    // The collection is as big as IPMI's user table (IDs 2-16).
    let mut fillers = Vec::new();
    let full = loop {
        let n = fillers.len();
        let (s, h, b) = admin(
            &rf,
            "POST",
            accounts,
            Some(&format!(
                r#"{{"UserName":"f{n}","Password":"x","RoleId":"ReadOnly","Enabled":false}}"#
            )),
        );
        if s != 201 {
            break (s, b);
        }
        fillers.push(hdr(&h, "location").expect("Location").to_string());
        assert!(fillers.len() <= 12, "more accounts than IPMI user IDs");
    };
    assert_eq!(fillers.len(), 12, "IDs 5-16 were free");
    assert_eq!(
        (full.0, message_id(&full.1).as_str()),
        (409, "Base.1.11.0.CreateLimitReachedForResource"),
        "{}",
        full.1
    );
    for f in &fillers {
        let (s, _, b) = admin(&rf, "DELETE", f, None);
        assert_eq!(s, 204, "{b}");
    }

    // PATCH by an Administrator: rename and re-role; the session of the
    // account follows, with its new role.
    let (s, h, b) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"UserName":"new","Password":"pw2"}"#,
        &format!("{}/redfish/v1/SessionService/Sessions", rf.base),
    ]);
    assert_eq!(s, 201, "{b}");
    let th = format!("X-Auth-Token: {}", hdr(&h, "x-auth-token").expect("token"));
    let (s, _, b) = admin(
        &rf,
        "PATCH",
        &loc,
        Some(r#"{"UserName":"newer","RoleId":"ReadOnly"}"#),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (json(&b)["UserName"].as_str(), json(&b)["RoleId"].as_str()),
        (Some("newer"), Some("ReadOnly"))
    );
    let reset = format!(
        "{}/redfish/v1/Systems/vm0/Actions/ComputerSystem.Reset",
        rf.base
    );
    let (s, _, _) = curl(&[
        "-H",
        &th,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"ResetType":"On"}"#,
        &reset,
    ]);
    assert_eq!(
        s, 403,
        "a ReadOnly account may not power, whatever its session began as"
    );
    let (s, _, _) = curl(&["-H", &th, &format!("{}/redfish/v1/Systems/vm0", rf.base)]);
    assert_eq!(s, 200, "a renamed account keeps its session");
    assert!(ipmi_mc_info(&rf, "newer", "pw2", "USER").status.success());
    assert!(!ipmi_mc_info(&rf, "new", "pw2", "USER").status.success());

    // DELETE: gone from Redfish (Basic and session) and from IPMI.
    let (s, _, b) = admin(&rf, "DELETE", &loc, None);
    assert_eq!(s, 204, "{b}");
    let (s, _, _) = admin(&rf, "GET", &loc, None);
    assert_eq!(s, 404);
    let (s, _, b) = curl(&["-H", &th, &format!("{}/redfish/v1/Systems/vm0", rf.base)]);
    // The DELETE ended the account's sessions with it.
    assert_eq!(
        (s, message_id(&b).as_str()),
        (401, "Base.1.11.0.NoValidSession"),
        "{b}"
    );
    let (_, _, b) = admin(&rf, "GET", "/redfish/v1/SessionService/Sessions", None);
    assert_eq!(json(&b)["Members@odata.count"], 0, "{b}");
    let (s, _, _) = as_user(&rf, "newer:pw2", "GET", "/redfish/v1/Systems", None);
    assert_eq!(s, 401);
    let o = ipmi_mc_info(&rf, "newer", "pw2", "USER");
    assert!(
        !o.status.success(),
        "a deleted account still logs in over IPMI"
    );
    // A new account reuses the ID, but not the old session.
    let (s, _, b) = admin(
        &rf,
        "POST",
        accounts,
        Some(r#"{"UserName":"again","Password":"pw","RoleId":"Administrator"}"#),
    );
    assert_eq!((s, json(&b)["Id"].as_str()), (201, Some("4")), "{b}");
    let (s, _, _) = curl(&["-H", &th, &format!("{}/redfish/v1/Systems/vm0", rf.base)]);
    assert_eq!(s, 401);
    // With a second Administrator, the first may go.
    let (s, _, b) = as_user(&rf, "again:pw", "DELETE", &format!("{accounts}/2"), None);
    assert_eq!(s, 204, "{b}");
    assert!(!ipmi_mc_info(&rf, "admin", "s3cret", "ADMINISTRATOR")
        .status
        .success());
}

/// Poll a Task until it leaves Running (60 s at most); every rendering on
/// the way is checked. Returns the final Task.
fn wait_task(rf: &Rf, uri: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, _, b) = admin(rf, "GET", uri, None);
        assert_eq!(s, 200, "{b}");
        let t = json(&b);
        assert_eq!(t["@odata.id"], uri);
        let pc = t["PercentComplete"].as_u64();
        match t["TaskState"].as_str() {
            Some("Running" | "New" | "Starting") => {
                assert!(pc.is_none_or(|p| p < 100), "{b}");
            }
            Some(_) => return t,
            None => panic!("no TaskState: {b}"),
        }
        assert!(Instant::now() < deadline, "task {uri} still running: {b}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An InsertMedia that takes longer than the service waits (2 s) answers
/// 202 with a Task; the Task completes, then the medium is inserted and
/// exported. A slow image server that then fails (404, no range support,
/// hanging up) ends the Task in Exception with the reason, nothing inserted.
#[test]
fn slow_inserts_run_as_tasks() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = pattern(300 << 10);
    let delay = Duration::from_secs(3);
    let (url, ca) = slow_image_server(tmp.path(), data.clone(), delay, Serve::Ranges);
    let rf = start(&format!("media_ca = \"{}\"", ca.display()));
    let cd = "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Cd";
    let insert = format!("{cd}/Actions/VirtualMedia.InsertMedia");

    let t0 = Instant::now();
    let (s, h, b) = admin(
        &rf,
        "POST",
        &insert,
        Some(&format!(r#"{{"Image":"{url}"}}"#)),
    );
    assert_eq!(s, 202, "{b}");
    assert!(t0.elapsed() < delay, "the 202 came before the image did");
    let task = hdr(&h, "location").expect("Location").to_string();
    assert!(task.starts_with("/redfish/v1/TaskService/Tasks/"), "{task}");
    let running = json(&b);
    assert_eq!(running["TaskState"], "Running", "{b}");
    assert_eq!(running["@odata.id"], task.as_str());
    // Not inserted while the task runs, and a second insert is refused.
    let (_, _, b) = admin(&rf, "GET", cd, None);
    assert_eq!(json(&b)["Inserted"], false, "{b}");
    let (s, _, _) = admin(
        &rf,
        "POST",
        &insert,
        Some(&format!(r#"{{"Image":"{url}"}}"#)),
    );
    assert_eq!(s, 409);
    let (_, _, b) = admin(&rf, "GET", "/redfish/v1/TaskService/Tasks", None);
    assert!(b.contains(&task), "{b}");

    let t = wait_task(&rf, &task);
    assert_eq!(t["TaskState"], "Completed", "{t}");
    assert_eq!(t["TaskStatus"], "OK", "{t}");
    assert!(
        t["PercentComplete"].as_u64().is_none_or(|p| p == 100),
        "{t}"
    );
    assert_eq!(t["Messages"][0]["MessageId"], "Base.1.11.0.Success", "{t}");
    assert!(t["EndTime"].as_str().is_some(), "{t}");
    let (_, _, b) = admin(&rf, "GET", cd, None);
    let v = json(&b);
    assert_eq!(v["Inserted"], true, "{b}");
    assert_eq!(v["Image"], url.as_str());
    let info = Command::new("nbdinfo")
        .arg("--json")
        .arg(format!("nbd://127.0.0.1:{}/vm0/Cd", rf.nbd))
        .output()
        .expect("nbdinfo");
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info: Value = serde_json::from_slice(&info.stdout).expect("nbdinfo json");
    assert_eq!(info["exports"][0]["export-size"], data.len() as u64);
    assert_eq!(read_nbd(&rf, "vm0/Cd", tmp.path()), data);

    // Slow failures: the Task says why; the slot stays empty.
    let (missing, _) = slow_image_server(tmp.path(), data.clone(), delay, Serve::Missing);
    let (whole, _) = slow_image_server(tmp.path(), data.clone(), delay, Serve::Whole);
    // A server that accepts and hangs up after the delay, before TLS.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hangup = format!(
        "https://127.0.0.1:{}/disk.iso",
        l.local_addr().expect("addr").port()
    );
    std::thread::spawn(move || {
        for c in l.incoming() {
            std::thread::sleep(delay);
            drop(c);
        }
    });
    let usb = "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Usb";
    for (image, why) in [(missing, "404"), (whole, "range requests"), (hangup, "TLS")] {
        let (s, h, b) = admin(
            &rf,
            "POST",
            &format!("{usb}/Actions/VirtualMedia.InsertMedia"),
            Some(&format!(r#"{{"Image":"{image}"}}"#)),
        );
        assert_eq!(s, 202, "{image}: {b}");
        let task = hdr(&h, "location").expect("Location").to_string();
        let t = wait_task(&rf, &task);
        assert_eq!(t["TaskState"], "Exception", "{image}: {t}");
        assert_eq!(t["TaskStatus"], "Critical", "{t}");
        let msg = t["Messages"][0]["Message"].as_str().unwrap_or("");
        eprintln!("task for {image}: {msg}");
        assert!(msg.contains(why) && msg.contains(&image), "{image}: {t}");
        let (_, _, b) = admin(&rf, "GET", usb, None);
        assert_eq!(json(&b)["Inserted"], false, "{image}: {b}");
        let o = Command::new("nbdinfo")
            .arg(format!("nbd://127.0.0.1:{}/vm0/Usb", rf.nbd))
            .output()
            .expect("nbdinfo");
        assert!(!o.status.success(), "{image}: nothing is exported");
    }
}
