//! Redfish and virtual media against real clients: curl (raw HTTPS), sushy
//! and DMTF's Redfish-Service-Validator (Python, `HVSIM_PY`), nbdinfo,
//! nbdcopy and qemu-img reading the exported images over NBD, with images
//! from a file directory and from an HTTPS server the test starts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use e2e_tests::Sim;
use e2e_tests::{python, workspace};
use hvsim::http::{self, Handler, HttpConfig, HttpLimits, Request, Response};
use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

struct Rf {
    sim: Sim,
    base: String,
    nbd: u16,
    media: PathBuf,
}

fn start(extra: &str) -> Rf {
    let (rp, np) = (free_port(), free_port());
    let dir = tempfile::Builder::new()
        .prefix("hvsim-rf")
        .tempdir()
        .expect("tempdir");
    let media = dir.path().join("media");
    std::fs::create_dir(&media).expect("media dir");
    let cfg = format!(
        "[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n[redfish]\nlisten = \"127.0.0.1:{rp}\"\nmedia_dir = \"{}\"\n{extra}\n[nbd]\nlisten = \"127.0.0.1:{np}\"\n[[user]]\nname = \"admin\"\npassword = \"s3cret\"\nrole = \"Administrator\"\n[[user]]\nname = \"viewer\"\npassword = \"look\"\nrole = \"ReadOnly\"\n",
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
        media,
    }
}

/// curl -i: status, headers (lower-cased names), body.
fn curl(args: &[&str]) -> (u16, Vec<(String, String)>, String) {
    let out = Command::new("curl")
        .args(["-sk", "-i", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

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

/// A range-capable HTTPS image server on 127.0.0.1 (hvsim's own HTTP layer
/// with a generated certificate).
#[derive(Debug)]
struct ImageServer(Vec<u8>);

impl Handler for ImageServer {
    fn handle(&self, req: &Request) -> Response {
        let len = self.0.len();
        let Some(r) = req.header("Range").and_then(|r| r.strip_prefix("bytes=")) else {
            return Response {
                status: 200,
                headers: vec![],
                body: self.0.clone(),
            };
        };
        let (a, b) = r.split_once('-').unwrap_or(("0", ""));
        let a: usize = a.parse().unwrap_or(0);
        let b: usize = b.parse().unwrap_or(len - 1).min(len - 1);
        Response {
            status: 206,
            headers: vec![("Content-Range".into(), format!("bytes {a}-{b}/{len}"))],
            body: self.0[a..=b].to_vec(),
        }
    }
}

fn image_server(dir: &Path, data: Vec<u8>) -> (String, PathBuf) {
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
    http::spawn(l, Some(tls), cfg, Arc::new(ImageServer(data))).expect("spawn");
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
    let schemas = workspace().join("../shared/redfish-schemas/csdl");
    assert!(
        schemas.exists(),
        "offline schemas missing at {}",
        schemas.display()
    );
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
    assert!(nums.len() == 4 && nums[0] > 300, "summary {row:?}:\n{text}");
    assert_eq!(nums[2], 0, "validator failures:\n{text}");
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
