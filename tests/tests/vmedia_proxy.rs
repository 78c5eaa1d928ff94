//! Proxy-mode virtual media against real clients: `scripts/hvsim-nbd-proxy.py`
//! (Python `websockets`) serves a file over a slot's WebSocket, nbdinfo and
//! nbdcopy read it back through hvsim's NBD server; curl for the refused
//! upgrades; small Python peers (also `websockets`) that break the NBD
//! protocol on purpose.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{python, stderr, workspace, Sim};
use serde_json::Value;

use e2e_tests::free_port;

struct Rf {
    sim: Sim,
    base: String,
    nbd: u16,
    media: PathBuf,
}

fn start() -> Rf {
    let (rp, np) = (free_port(), free_port());
    let dir = tempfile::Builder::new()
        .prefix("hvsim-vmp")
        .tempdir()
        .expect("tempdir");
    let media = dir.path().join("media");
    std::fs::create_dir(&media).expect("media dir");
    let cfg = format!(
        "[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n[redfish]\nlisten = \"127.0.0.1:{rp}\"\nmedia_dir = \"{}\"\nproxy_slots = 2\n[nbd]\nlisten = \"127.0.0.1:{np}\"\n\
         [[user]]\nname = \"admin\"\npassword = \"s3cret\"\nrole = \"Administrator\"\n\
         [[user]]\nname = \"op\"\npassword = \"oppw\"\nrole = \"Operator\"\n\
         [[user]]\nname = \"viewer\"\npassword = \"look\"\nrole = \"ReadOnly\"\n",
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

impl Rf {
    fn cert(&self) -> PathBuf {
        self.sim.dir.path().join("state/tls/redfish.crt")
    }

    fn slot(&self, vm: &str, n: u8) -> Value {
        let (s, _, b) = curl(&[
            "-u",
            "admin:s3cret",
            &format!(
                "{}/redfish/v1/Managers/{vm}-bmc/VirtualMedia/Slot_{n}",
                self.base
            ),
        ]);
        assert_eq!(s, 200, "{b}");
        json(&b)
    }

    fn wait_inserted(&self, vm: &str, n: u8, want: bool, child: Option<&mut Child>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut child = child;
        loop {
            if self.slot(vm, n)["Inserted"] == want {
                return;
            }
            if let Some(c) = child.as_deref_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "the proxy client exited ({st}) before {vm} Slot_{n} was inserted:\n{}",
                        self.sim.log()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{vm} Slot_{n} never became Inserted={want}:\n{}",
                self.sim.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn uri(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{export}", self.nbd)
    }

    /// `hvsim-nbd-proxy.py` serving `file` as `user:pw` with `extra` options.
    fn proxy(&self, file: &Path, user: &str, pw: &str, extra: &[&str]) -> Child {
        Command::new(python())
            .arg(workspace().join("scripts/hvsim-nbd-proxy.py"))
            .args(["--url", &self.base, "--user", user, "--password", pw])
            .arg("--cacert")
            .arg(self.cert())
            .args(extra)
            .arg(file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run scripts/hvsim-nbd-proxy.py")
    }
}

use e2e_tests::curl_i as curl;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Random bytes (xorshift; no holes, nothing compressible).
fn random_file(path: &Path, size: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size as u64;
    let mut v = Vec::with_capacity(size);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    std::fs::write(path, v).expect("write image");
}

use e2e_tests::sha256_file as sha256;

fn nbdcopy(uri: &str, out: &Path) -> Output {
    Command::new("nbdcopy")
        .arg(uri)
        .arg(out)
        .output()
        .expect("nbdcopy (apt-get install libnbd-bin)")
}

fn wait_exit(mut c: Child, what: &str) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = c.kill();
            let o = c.wait_with_output().expect("output");
            panic!(
                "{what} did not exit:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_with_output().expect("output")
}

/// A WebSocket upgrade with curl: the status and body of a refusal.
fn upgrade(rf: &Rf, path: &str, extra: &[&str]) -> (u16, String) {
    let url = format!("{}{path}", rf.base);
    let mut a = vec![
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Sec-WebSocket-Version: 13",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "--max-time",
        "5",
    ];
    a.extend_from_slice(extra);
    a.push(&url);
    let (s, _, b) = curl(&a);
    (s, b)
}

#[test]
fn a_file_served_over_the_websocket_reads_back_byte_exact() {
    let rf = start();
    let dir = rf.sim.dir.path();
    // Empty proxy slot, as bmcweb shows it.
    let members = json(
        &curl(&[
            "-u",
            "admin:s3cret",
            &format!("{}/redfish/v1/Managers/vm0-bmc/VirtualMedia", rf.base),
        ])
        .2,
    );
    let ids: Vec<&str> = members["Members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["@odata.id"].as_str())
        .collect();
    assert!(
        ids.iter().any(|m| m.ends_with("/Slot_0")) && ids.iter().any(|m| m.ends_with("/Slot_1")),
        "{ids:?}"
    );
    let s0 = rf.slot("vm0", 0);
    assert_eq!(s0["Inserted"], false);
    assert_eq!(s0["ConnectedVia"], "NotConnected");
    assert_eq!(s0["TransferProtocolType"], "OEM");
    assert_eq!(s0["TransferMethod"], "Stream");
    assert_eq!(s0["Oem"]["OpenBMC"]["WebSocketEndpoint"], "/nbd/vm0/0");
    assert_eq!(
        s0["Oem"]["OpenBMC"]["@odata.type"],
        "#OpenBMCVirtualMedia.v1_0_0.VirtualMedia"
    );
    let actions: Vec<&String> = s0["Actions"].as_object().expect("actions").keys().collect();
    assert_eq!(actions, ["#VirtualMedia.EjectMedia"]);

    // A legacy medium on vm1, read in parallel with the proxy one.
    let legacy = rf.media.join("legacy.iso");
    random_file(&legacy, 16 << 20);
    let (s, _, b) = curl(&[
        "-u",
        "admin:s3cret",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"Image":"file://{}"}}"#, legacy.display()),
        &format!(
            "{}/redfish/v1/Managers/vm1-bmc/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
            rf.base
        ),
    ]);
    assert_eq!(s, 200, "{b}");

    // 64 MiB served by the Python client as the Operator.
    let img = dir.join("image.raw");
    random_file(&img, 64 << 20);
    let mut p = rf.proxy(&img, "op", "oppw", &["--vm", "vm0", "--slot", "0"]);
    rf.wait_inserted("vm0", 0, true, Some(&mut p));
    let s0 = rf.slot("vm0", 0);
    assert_eq!(s0["ConnectedVia"], "Applet");
    assert_eq!(s0["UserName"], "op");
    assert_eq!(s0["Oem"]["Hvsim"]["NbdExport"], "vm0/Slot_0");
    assert_eq!(s0["Oem"]["Hvsim"]["SizeBytes"], 64u64 << 20);
    assert_eq!(s0["Oem"]["Hvsim"]["ReadOnly"], true);
    let info = Command::new("nbdinfo")
        .args(["--json", &rf.uri("vm0/Slot_0")])
        .output()
        .expect("nbdinfo");
    assert!(info.status.success(), "{}", stderr(&info));
    let info = json(&String::from_utf8_lossy(&info.stdout));
    assert_eq!(info["exports"][0]["export-size"], 64u64 << 20);
    assert_eq!(info["exports"][0]["is_read_only"], true);

    let legacy_out = dir.join("legacy.out");
    let luri = rf.uri("vm1/Cd");
    let lo = legacy_out.clone();
    let parallel = std::thread::spawn(move || nbdcopy(&luri, &lo));
    let out = dir.join("image.out");
    let o = nbdcopy(&rf.uri("vm0/Slot_0"), &out);
    assert!(
        o.status.success(),
        "nbdcopy: {}\n{}",
        stderr(&o),
        rf.sim.log()
    );
    assert_eq!(sha256(&out), sha256(&img));
    let lo = parallel.join().expect("legacy copy");
    assert!(lo.status.success(), "{}", stderr(&lo));
    assert_eq!(sha256(&legacy_out), sha256(&legacy));
    let s0 = rf.slot("vm0", 0);
    assert!(
        s0["Oem"]["Hvsim"]["BytesRead"].as_u64() >= Some(64 << 20),
        "{s0}"
    );

    // EjectMedia closes the socket: the client ends, the export goes.
    let (s, _, b) = curl(&[
        "-u",
        "op:oppw",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{}",
        &format!(
            "{}/redfish/v1/Managers/vm0-bmc/VirtualMedia/Slot_0/Actions/VirtualMedia.EjectMedia",
            rf.base
        ),
    ]);
    assert_eq!(s, 200, "{b}");
    let s0 = rf.slot("vm0", 0);
    assert_eq!(
        (&s0["Inserted"], &s0["ConnectedVia"]),
        (&Value::Bool(false), &Value::from("NotConnected"))
    );
    assert!(s0["Oem"].get("Hvsim").is_none(), "{s0}");
    let o = wait_exit(p, "the proxy client after EjectMedia");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the BMC disconnected"),
        "{}",
        stderr(&o)
    );
    let o = nbdcopy(&rf.uri("vm0/Slot_0"), &dir.join("gone.out"));
    assert!(!o.status.success());

    // A browser-style client (session cookie, XSRF token as subprotocol)
    // on the freed slot; ending the client ejects.
    let mut p = rf.proxy(
        &img,
        "op",
        "oppw",
        &["--vm", "vm0", "--slot", "0", "--auth", "cookie"],
    );
    rf.wait_inserted("vm0", 0, true, Some(&mut p));
    let o = Command::new("nbdcopy")
        .args([&rf.uri("vm0/Slot_0"), "null:"])
        .output()
        .expect("nbdcopy");
    assert!(o.status.success(), "{}", stderr(&o));
    // SIGTERM: the client closes its socket.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(p.id() as i32, libc::SIGTERM) };
    let _ = wait_exit(p, "the proxy client after SIGTERM");
    rf.wait_inserted("vm0", 0, false, None);
    // Legacy media were never touched.
    assert_eq!(
        json(
            &curl(&[
                "-u",
                "admin:s3cret",
                &format!("{}/redfish/v1/Managers/vm1-bmc/VirtualMedia/Cd", rf.base)
            ])
            .2
        )["Inserted"],
        true
    );
}

#[test]
fn refused_upgrades_and_a_busy_slot() {
    let rf = start();
    let dir = rf.sim.dir.path();
    // No credentials.
    let (s, b) = upgrade(&rf, "/nbd/vm0/0", &[]);
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("NoValidSession"), "{b}");
    // ReadOnly may not serve media.
    let (s, b) = upgrade(&rf, "/nbd/vm0/0", &["-u", "viewer:look"]);
    assert_eq!(s, 403, "{b}");
    assert!(b.contains("InsufficientPrivilege"), "{b}");
    // Unknown slots and VMs.
    for p in ["/nbd/vm0/2", "/nbd/vm9/0", "/nbd/vm0/x", "/nbd/vm0"] {
        let (s, b) = upgrade(&rf, p, &["-u", "op:oppw"]);
        assert_eq!(s, 404, "{p}: {b}");
    }
    // A cookie session needs its XSRF token as the subprotocol.
    let (s, h, b) = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Requested-With: XMLHttpRequest",
        "-d",
        r#"{"UserName":"op","Password":"oppw"}"#,
        &format!("{}/redfish/v1/SessionService/Sessions", rf.base),
    ]);
    assert_eq!(s, 201, "{b}");
    let cookies: Vec<String> = h
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.split(';').next().unwrap_or("").to_string())
        .collect();
    let jar = format!("Cookie: {}", cookies.join("; "));
    for extra in [
        vec![],
        vec![
            "-H",
            "Sec-WebSocket-Protocol: 00112233445566778899aabbccddeeff",
        ],
    ] {
        let mut a = vec!["-H", jar.as_str()];
        a.extend(extra.iter().copied());
        let (s, b) = upgrade(&rf, "/nbd/vm0/0", &a);
        assert_eq!(s, 401, "{extra:?}: {b}");
        assert!(b.contains("subprotocol"), "{b}");
    }
    // InsertMedia is not an action of a proxy slot; PATCH changes nothing.
    let (s, _, b) = curl(&[
        "-u",
        "op:oppw",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"Image":"https://example.com/x.iso"}"#,
        &format!(
            "{}/redfish/v1/Managers/vm0-bmc/VirtualMedia/Slot_0/Actions/VirtualMedia.InsertMedia",
            rf.base
        ),
    ]);
    assert_eq!(s, 404, "{b}");
    assert!(b.contains("ActionNotSupported"), "{b}");
    // One socket per slot.
    let img = dir.join("small.raw");
    random_file(&img, 1 << 20);
    let mut p = rf.proxy(
        &img,
        "op",
        "oppw",
        &["--vm", "vm0", "--slot", "1", "--auth", "session"],
    );
    rf.wait_inserted("vm0", 1, true, Some(&mut p));
    let (s, b) = upgrade(&rf, "/nbd/vm0/1", &["-u", "op:oppw"]);
    assert_eq!(s, 409, "{b}");
    assert!(b.contains("slot is in use"), "{b}");
    let second = rf.proxy(&img, "admin", "s3cret", &["--vm", "vm0", "--slot", "1"]);
    let o = wait_exit(second, "the second client");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("409"), "{}", stderr(&o));
    // The first one still serves.
    let o = nbdcopy(&rf.uri("vm0/Slot_1"), &dir.join("small.out"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha256(&dir.join("small.out")), sha256(&img));
    let _ = p.kill();
    let _ = p.wait();
    rf.wait_inserted("vm0", 1, false, None);
}

/// A Python peer that speaks NBD (server side) over the slot's WebSocket
/// and breaks the protocol as `mode` says; prints how hvsim closed.
const EVIL_PEER: &str = r#"
import ssl, struct, sys, os
from websockets.sync.client import connect
url, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ws = connect(url, additional_headers={"Authorization": "Basic b3A6b3Bwdw=="}, ssl=ctx, compression=None)
buf = bytearray()
def read(n):
    global buf
    while len(buf) < n:
        buf += ws.recv()
    out = bytes(buf[:n]); del buf[:n]; return out
try:
    if mode == "badmagic":
        ws.send(b"NBDMAGIX" + struct.pack(">QH", 0x49484156454F5054, 3))
    else:
        ws.send(struct.pack(">QQH", 0x4E42444D41474943, 0x49484156454F5054, 3))
        read(4)
        magic, opt, ln = struct.unpack(">QII", read(16)); read(ln)
        if mode == "oversize":
            ws.send(struct.pack(">QIII", 0x0003E889045565A9, opt, 3, 1 << 30))
        else:
            ws.send(struct.pack(">QIII", 0x0003E889045565A9, opt, 0x80000001, 0))
            read(16)
            ws.send(struct.pack(">QH", size, 3))
            print("inserted", flush=True)
            served = 0
            while True:
                m, fl, kind, handle, off, ln = struct.unpack(">IHHQQI", read(28))
                if mode == "handle":
                    ws.send(struct.pack(">IIQ", 0x67446698, 0, handle ^ 0x5555) + bytes(ln))
                elif mode == "die":
                    ws.send(struct.pack(">IIQ", 0x67446698, 0, handle) + bytes(ln))
                    served += ln
                    if served >= 1 << 20:
                        print("dying", flush=True)
                        os._exit(3)
    while True:
        ws.recv()
except Exception as e:
    print("closed:", getattr(e, "rcvd", None) and e.rcvd.code, getattr(e, "rcvd", None) and e.rcvd.reason, flush=True)
"#;

fn evil(rf: &Rf, mode: &str, size: u64) -> Child {
    let url = format!("wss://{}/nbd/vm0/0", rf.base.trim_start_matches("https://"));
    Command::new(python())
        .args(["-c", EVIL_PEER, &url, mode, &size.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python")
}

#[test]
fn malformed_peers_and_dying_peers_eject_only_their_slot() {
    let rf = start();
    let dir = rf.sim.dir.path();
    // A healthy proxy medium on vm1 all along.
    let img = dir.join("ok.raw");
    random_file(&img, 8 << 20);
    let mut ok = rf.proxy(&img, "op", "oppw", &["--vm", "vm1", "--slot", "0"]);
    rf.wait_inserted("vm1", 0, true, Some(&mut ok));

    // Broken handshakes: refused with the reason, the slot stays empty.
    for (mode, why) in [("badmagic", "greeting"), ("oversize", "exceeds the limit")] {
        let o = wait_exit(evil(&rf, mode, 0), mode);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            out.contains("closed: 1002") && out.contains(why),
            "{mode}: {out}\n{}",
            stderr(&o)
        );
        assert_eq!(rf.slot("vm0", 0)["Inserted"], false);
    }
    // A reply with a handle hvsim never sent: the read fails, the socket
    // is closed with the reason, the slot ejects.
    let mut p = evil(&rf, "handle", 4 << 20);
    rf.wait_inserted("vm0", 0, true, Some(&mut p));
    let o = nbdcopy(&rf.uri("vm0/Slot_0"), &dir.join("bad.out"));
    assert!(!o.status.success(), "nbdcopy read a broken peer");
    let o = wait_exit(p, "handle");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("closed: 1002") && out.contains("not an outstanding request"),
        "{out}"
    );
    rf.wait_inserted("vm0", 0, false, None);
    // A peer that dies in the middle of a copy: nbdcopy gets an error.
    let mut p = evil(&rf, "die", 32 << 20);
    rf.wait_inserted("vm0", 0, true, Some(&mut p));
    let o = nbdcopy(&rf.uri("vm0/Slot_0"), &dir.join("die.out"));
    assert!(!o.status.success(), "nbdcopy survived a dead peer");
    // EIO for the reads waiting on the peer; the connection may then end
    // (the export is gone) before nbdcopy's other requests are answered.
    let e = stderr(&o);
    assert!(e.contains("nbdcopy"), "{e}");
    let _ = wait_exit(p, "die");
    rf.wait_inserted("vm0", 0, false, None);
    // An image that shrinks under the client: it answers EIO and hangs up.
    let shrink = dir.join("shrink.raw");
    random_file(&shrink, 4 << 20);
    let mut p = rf.proxy(&shrink, "op", "oppw", &["--vm", "vm0", "--slot", "0"]);
    rf.wait_inserted("vm0", 0, true, Some(&mut p));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&shrink)
        .and_then(|f| f.set_len(1 << 20))
        .expect("truncate");
    let o = nbdcopy(&rf.uri("vm0/Slot_0"), &dir.join("shrink.out"));
    assert!(!o.status.success(), "nbdcopy read past a shrunk image");
    let _ = wait_exit(p, "the proxy client of a shrunk image");
    rf.wait_inserted("vm0", 0, false, None);

    // The healthy one still serves, byte-exact; hvsim logged why each ended.
    let o = nbdcopy(&rf.uri("vm1/Slot_0"), &dir.join("ok.out"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sha256(&dir.join("ok.out")), sha256(&img));
    let log = rf.sim.log();
    assert!(log.contains("NBD handshake failed"), "{log}");
    let _ = ok.kill();
    let _ = ok.wait();
}
