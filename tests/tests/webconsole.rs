//! hvsim's web console in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven by Selenium from tests/py/webconsole.py), with
//! a real vm-agent reporting from a network namespace the test creates, the
//! results checked through Redfish (curl), IPMI (ipmitool) and NBD
//! (nbdcopy). One hvsim and one browser session for all scenarios; each page
//! is saved as a screenshot under `target/screenshots/` for a person to look
//! at.

use e2e_tests::ConsoleGuest;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{bin, python, stderr, stop_child, workspace, Netns, Sim};
use serde_json::{json, Value};

use e2e_tests::free_port;

struct Host {
    sim: Sim,
    base: String,
    nbd: u16,
    ipmi: u16,
    media: PathBuf,
}

fn start_host() -> Host {
    let (rp, np, ip) = (free_port(), free_port(), free_port());
    let dir = Sim::tempdir();
    let media = dir.path().join("media");
    std::fs::create_dir(&media).expect("media dir");
    let cfg = format!(
        "[[vm]]\nname = \"vm0\"\nipmi = {{ listen = \"127.0.0.1:{ip}\" }}\n[[vm]]\nname = \"vm1\"\n\
         [redfish]\nlisten = \"127.0.0.1:{rp}\"\nmedia_dir = \"{m}\"\n[nbd]\nlisten = \"127.0.0.1:{np}\"\n\
         [cim]\nenabled = false\n[vsphere]\nlisten = \"\"\n\
         [[user]]\nname = \"admin\"\npassword = \"s3cret\"\nrole = \"Administrator\"\n\
         [[user]]\nname = \"viewer\"\npassword = \"look\"\nrole = \"ReadOnly\"\n",
        m = media.display()
    );
    let sim = Sim::with_config_in(dir, &cfg);
    sim.eventually("the Redfish listener", || {
        sim.log().contains("Redfish over HTTPS on")
    });
    Host {
        sim,
        base: format!("https://127.0.0.1:{rp}"),
        nbd: np,
        ipmi: ip,
        media,
    }
}

impl Host {
    /// Copy NBD export `export` with nbdcopy; the copy's SHA-256 and how
    /// long the copy took.
    fn nbd_sha256(&self, export: &str) -> (String, Duration) {
        let out = self
            .sim
            .dir
            .path()
            .join(format!("{}.copy", export.replace('/', "-")));
        let t = Instant::now();
        let o = Command::new("nbdcopy")
            .arg(format!("nbd://127.0.0.1:{}/{export}", self.nbd))
            .arg(&out)
            .output()
            .expect("nbdcopy (apt-get install libnbd-bin)");
        let took = t.elapsed();
        assert!(
            o.status.success(),
            "nbdcopy {export}: {}\n{}",
            stderr(&o),
            self.sim.log()
        );
        (sha256(&out), took)
    }

    /// A Redfish GET as admin.
    fn redfish(&self, path: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "20", "-u", "admin:s3cret"])
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// `ipmitool` against vm0's BMC as admin.
    fn ipmitool(&self, args: &[&str]) -> String {
        let out = Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1", "-p"])
            .arg(self.ipmi.to_string())
            .args(["-U", "admin", "-P", "s3cret", "-N", "1", "-R", "3"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ipmitool");
        assert!(out.status.success(), "ipmitool {args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

use e2e_tests::sha256_file as sha256;

/// Random bytes (from the kernel) in a new file.
fn random_file(p: &std::path::Path, mib: usize) {
    let o = Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "status=none", "iflag=fullblock"])
        .arg(format!("count={mib}"))
        .arg(format!("of={}", p.display()))
        .output()
        .expect("dd");
    assert!(o.status.success(), "dd: {}", stderr(&o));
}

/// vm-agent for vm0 inside `ns` with hostname `host`: the clock is never
/// touched (timesync off, CAP_SYS_TIME dropped), power commands are stubs.
struct Agent(Option<Child>);

impl Agent {
    fn start(sim: &Sim, ns: &Netns, host: &str) -> Agent {
        let dir = sim.dir.path();
        let os = dir.join("os-release");
        std::fs::write(
            &os,
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
        )
        .unwrap();
        let cfg = dir.join("agent.toml");
        std::fs::write(
            &cfg,
            format!(
                "[agent]\nreconnect_ms = 100\n[timesync]\nenabled = false\n\
                 [powerops]\nhalt_command = \"echo halt >> {d}/power.log\"\n\
                 reboot_command = \"echo reboot >> {d}/power.log\"\nscripts_dir = \"{d}/scripts\"\n\
                 [vmbackup]\nenable_sync_driver = false\nscripts_dir = \"{d}/backup.d\"\n\
                 [guestinfo]\nos_release = \"{o}\"\nreport_disks = false\ndebounce_ms = 100\n",
                d = dir.display(),
                o = os.display()
            ),
        )
        .unwrap();
        let child = Command::new("setpriv")
            .args(["--bounding-set=-sys_time", "--inh-caps=-sys_time", "--"])
            .args([
                "ip", "netns", "exec", &ns.name, "unshare", "--uts", "--", "sh", "-c",
            ])
            .arg(format!("hostname {host} && exec \"$0\" \"$@\""))
            .arg(bin("vm-agent"))
            .args(["--backdoor", &sim.backdoor("vm0"), "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("agent.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("agent.err")).unwrap())
            .spawn()
            .expect("start vm-agent");
        Agent(Some(child))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop_child(c, Duration::from_secs(5));
        }
    }
}

fn guest_netns() -> Netns {
    let ns = Netns::new("webui");
    ns.ip(&[
        "link",
        "add",
        "eth1",
        "address",
        "00:50:56:aa:18:01",
        "type",
        "veth",
        "peer",
        "name",
        "veth-peer",
    ]);
    ns.ip(&["addr", "add", "198.51.100.21/24", "dev", "eth1"]);
    ns.ip(&["link", "set", "eth1", "up"]);
    ns.ip(&["link", "set", "veth-peer", "up"]);
    ns
}

/// The echo program on the console: a banner, then each line read comes
/// back with a marker.
const ECHO_GUEST: &str =
    "echo guest-console-ready; while read l; do echo \"guest-got:$l\"; done; echo guest-bye";

/// `ipmitool sol activate` on a pty (it wants a terminal): prints `UP` once
/// the session is operational (or `FAILED` and the output), then holds it
/// until a line arrives on stdin and leaves with `~.`.
const SOL_HOLDER: &str = r#"
import os, pty, select, sys, time
port = sys.argv[1]
pid, fd = pty.fork()
if pid == 0:
    os.execvp("ipmitool", ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", port,
                           "-U", "admin", "-P", "s3cret", "sol", "activate"])
out = b""
end = time.time() + 15
while b"SOL Session operational" not in out and time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            out += os.read(fd, 4096)
        except OSError:
            break
if b"SOL Session operational" not in out:
    print("FAILED", repr(out), flush=True)
    sys.exit(1)
print("UP", flush=True)
sys.stdin.readline()
os.write(fd, b"\r~.")
time.sleep(1)
os.kill(pid, 9)
"#;

/// The browser, driven over tests/py/webconsole.py's line protocol.
struct Browser {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    log: PathBuf,
}

fn screenshots() -> PathBuf {
    workspace().join("target/screenshots")
}

impl Browser {
    fn start(base: &str, log: PathBuf) -> Browser {
        let mut child = Command::new(python())
            .arg(workspace().join("tests/py/webconsole.py"))
            .arg(base)
            .arg(screenshots())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("browser log"))
            .spawn()
            .expect("run tests/py/webconsole.py (scripts/test-deps.sh installs selenium)");
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        Browser {
            child,
            input,
            output,
            log,
        }
    }

    /// Run a command; its result, or the error it failed with.
    fn try_cmd(&mut self, c: Value) -> Result<Value, String> {
        let mut line = serde_json::to_vec(&c).unwrap();
        line.push(b'\n');
        self.input
            .write_all(&line)
            .expect("write to the browser driver");
        let mut answer = String::new();
        self.output.read_line(&mut answer).expect("browser driver");
        if answer.is_empty() {
            return Err(format!(
                "the browser driver exited:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            ));
        }
        let v: Value = serde_json::from_str(&answer).expect("driver JSON");
        if v["ok"] == true {
            Ok(v["result"].clone())
        } else {
            Err(format!("{} (screenshot {})", v["error"], v["screenshot"]))
        }
    }

    fn cmd(&mut self, c: Value) -> Value {
        let what = c.to_string();
        self.try_cmd(c).unwrap_or_else(|e| {
            let logs = self.try_cmd(json!({"op": "logs"})).unwrap_or_default();
            panic!("browser: {what}: {e}\npage console: {logs}")
        })
    }

    fn open(&mut self, path: &str) {
        self.cmd(json!({"op": "open", "path": path}));
    }

    fn wait_text(&mut self, css: &str, contains: &str) -> String {
        self.cmd(json!({"op": "wait_text", "css": css, "contains": contains}))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn click(&mut self, css: &str) {
        self.cmd(json!({"op": "click", "css": css}));
    }

    fn shot(&mut self, name: &str) {
        self.cmd(json!({"op": "screenshot", "name": name}));
    }

    fn login(&mut self, user: &str, password: &str) {
        self.open("/#/login");
        self.wait_text("#main", "Log in");
        self.cmd(json!({"op": "login", "user": user, "password": password}));
    }

    fn js(&mut self, script: &str) -> Value {
        self.cmd(json!({"op": "js", "script": script}))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.input.write_all(b"{\"op\":\"quit\"}\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until a Redfish resource satisfies `cond`.
fn redfish_until(h: &Host, path: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = h.redfish(path);
        if cond(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_web_console_in_headless_chromium() {
    let h = start_host();
    let ns = guest_netns();
    let _agent = Agent::start(&h.sim, &ns, "webui-01");
    std::fs::create_dir_all(screenshots()).unwrap();
    let mut b = Browser::start(&h.base, h.sim.dir.path().join("browser.log"));

    // No session: the login page, and the API refuses.
    b.open("/#/vms");
    b.wait_text("#main", "Log in");
    let r = b.cmd(json!({"op": "fetch", "path": "/api/vms"}));
    assert_eq!(r["status"], 401, "{r}");
    b.shot("01-login");

    // Log in; vm0 with the address its agent reports.
    b.login("admin", "s3cret");
    b.wait_text("#vm-table tr[data-vm=vm0] .addresses", "198.51.100.21");
    b.wait_text("#vm-table tr[data-vm=vm0] .hostname", "webui-01");
    b.shot("02-vm-list");

    // The VM page: what the guest reports; a new address appears without
    // a reload (the marker set in the page survives).
    b.open("/#/vm/vm0");
    b.wait_text("#hostname", "webui-01");
    b.wait_text("#tools", "running (");
    b.wait_text("#os", "Debian");
    b.wait_text("#nics", "198.51.100.21");
    b.js("window.__noReload = 42; done(true);");
    ns.ip(&["addr", "add", "203.0.113.9/28", "dev", "eth1"]);
    b.wait_text("#nics", "203.0.113.9");
    let out = h
        .sim
        .rpctool("vm0", &["info-set guestinfo.webui.note from-the-guest"]);
    assert!(out.status.success(), "{}", stderr(&out));
    b.wait_text("#guestinfo", "from-the-guest");
    assert_eq!(b.js("done(window.__noReload);"), 42, "the page reloaded");
    // ... carried by the event stream, not by polling.
    let mode = b.cmd(json!({"op": "attr", "css": "body", "name": "data-live"}));
    assert_eq!(mode, "events", "the page fell back to polling");
    let fetched =
        b.js("done(performance.getEntriesByType('resource').map(e => e.name).join(' '));");
    let fetched = fetched.as_str().unwrap_or("");
    assert!(
        !fetched.contains("/api/vms/vm0"),
        "the page polled: {fetched}"
    );
    b.shot("03-vm");

    // Graceful shutdown goes through the guest agent (its halt command is
    // a stub here); the VM is off when the agent reports it done.
    b.click("#btn-graceful");
    b.wait_text("#power", "Off");
    b.wait_text("#sel", "OS stop: graceful shutdown");
    b.click("#btn-on");
    b.wait_text("#power", "On");

    // Power off and on from the page: the VM every service sees.
    b.click("#btn-off");
    b.wait_text("#power", "Off");
    redfish_until(&h, "/redfish/v1/Systems/vm0", "powered off", |v| {
        v["PowerState"] == "Off"
    });
    assert!(h.ipmitool(&["chassis", "power", "status"]).contains("off"));
    b.click("#btn-on");
    b.wait_text("#power", "On");
    redfish_until(&h, "/redfish/v1/Systems/vm0", "powered on", |v| {
        v["PowerState"] == "On"
    });
    // The SEL the page shows has both.
    b.wait_text("#sel", "S5 entered by override");
    b.wait_text("#sel", "S0/G0 working");

    // Boot override from the page, read back over Redfish and IPMI.
    b.cmd(json!({"op": "select", "css": "#boot-target", "value": "Pxe"}));
    b.cmd(json!({"op": "select", "css": "#boot-enabled", "value": "Continuous"}));
    b.click("#boot-apply");
    b.wait_text("#boot-current", "pxe (continuous)");
    let sys = h.redfish("/redfish/v1/Systems/vm0");
    assert_eq!(sys["Boot"]["BootSourceOverrideTarget"], "Pxe", "{sys}");
    assert_eq!(
        sys["Boot"]["BootSourceOverrideEnabled"], "Continuous",
        "{sys}"
    );
    let bp = h.ipmitool(&["chassis", "bootparam", "get", "5"]);
    assert!(bp.contains("Force PXE"), "{bp}");
    b.shot("04-vm-actions");

    // Accounts: add one, see it, delete it.
    b.open("/#/accounts");
    b.wait_text("#accounts", "viewer");
    b.cmd(json!({"op": "type", "css": "#new-user", "text": "webtemp"}));
    b.cmd(json!({"op": "type", "css": "#new-pass", "text": "pw-temp-1"}));
    b.cmd(json!({"op": "select", "css": "#new-role", "value": "Operator"}));
    b.click("#add-user");
    b.wait_text("#accounts", "webtemp");
    b.shot("05-accounts");
    let accts = h.redfish("/redfish/v1/AccountService/Accounts");
    assert_eq!(accts["Members@odata.count"], 3, "{accts}");
    b.cmd(json!({"op": "type", "css": "#pw-webtemp", "text": "pw-temp-2"}));
    b.click("#setpw-webtemp");
    b.wait_text("#notice", "Change password of webtemp: done");
    let o = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            "webtemp:pw-temp-2",
        ])
        .arg(format!("{}/redfish/v1/Systems/vm0", h.base))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "200",
        "the new password"
    );
    b.click("#delete-webtemp");
    b.cmd(json!({"op": "wait_text", "css": "#accounts", "contains": "webtemp", "absent": true}));

    // Legacy virtual media from the page: a URL the BMC opens, exported
    // over NBD, ejected.
    let img = h.media.join("image-64m.img");
    random_file(&img, 64);
    b.open("/#/media/vm0");
    b.wait_text("[data-slot=Cd]", "legacy");
    b.cmd(json!({"op": "type", "css": "#url-Cd", "text": format!("file://{}", img.display())}));
    b.click("#insert-Cd");
    b.wait_text("#slot-state-Cd", "inserted");
    let (sum, legacy_took) = h.nbd_sha256("vm0/Cd");
    assert_eq!(sum, sha256(&img));
    b.shot("06a-media-legacy");
    b.click("#eject-Cd");
    b.wait_text("#slot-state-Cd", "empty");
    assert_eq!(
        h.redfish("/redfish/v1/Managers/vm0-bmc/VirtualMedia/Cd")["Inserted"],
        false
    );

    // Proxy mode: the page serves a local 64 MiB file over the slot's
    // WebSocket as an NBD server; hvsim exports it; nbdcopy reads it back
    // byte for byte. The page is a second tab, closed to eject.
    let local = img.clone();
    b.cmd(json!({"op": "new_window", "path": "/#/media/vm0"}));
    b.wait_text("[data-slot=Slot_0]", "proxy");
    b.cmd(json!({"op": "file", "css": "#file-Slot_0", "path": local.display().to_string()}));
    b.click("#serve-Slot_0");
    b.wait_text("#proxy-state-Slot_0", "serving");
    let slot = "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Slot_0";
    let v = redfish_until(&h, slot, "the proxy medium inserted", |v| {
        v["Inserted"] == true
    });
    assert_eq!(v["ConnectedVia"], "Applet", "{v}");
    assert_eq!(v["TransferProtocolType"], "OEM", "{v}");
    let (sum, proxy_took) = h.nbd_sha256("vm0/Slot_0");
    assert_eq!(sum, sha256(&local));
    // For a person: the browser as image server next to hvsim reading the
    // same file itself (not asserted: shared machines are noisy).
    let mbs = |d: Duration| 64.0 * 1.048_576 / d.as_secs_f64();
    eprintln!(
        "| 64 MiB over NBD (nbdcopy) | MB/s |\n|---|---|\n| legacy (hvsim reads the file) | {:.1} |\n| proxy (Chromium serves it over a WebSocket) | {:.1} ({:.0}% of legacy) |",
        mbs(legacy_took),
        mbs(proxy_took),
        100.0 * legacy_took.as_secs_f64() / proxy_took.as_secs_f64()
    );
    b.wait_text("#slot-state-Slot_0", "inserted");
    b.shot("06b-media-proxy");
    // One socket per slot: a second one is refused.
    let xsrf = b
        .cmd(json!({"op": "xsrf"}))
        .as_str()
        .unwrap_or("")
        .to_string();
    let r = b.cmd(json!({"op": "ws_probe", "path": "/nbd/vm0/0", "protocols": [xsrf]}));
    assert_eq!(r["opened"], false, "{r}");
    // Closing the tab ejects: the slot is empty and the export gone.
    b.cmd(json!({"op": "close_window"}));
    redfish_until(&h, slot, "ejected when the page closed", |v| {
        v["Inserted"] == false
    });
    let o = Command::new("nbdinfo")
        .arg(format!("nbd://127.0.0.1:{}/vm0/Slot_0", h.nbd))
        .output()
        .expect("nbdinfo");
    assert!(!o.status.success(), "the export outlived the page");
    // Served again from this tab, the Eject button ejects too.
    b.open("/#/media/vm0");
    b.wait_text("[data-slot=Slot_0]", "proxy");
    b.cmd(json!({"op": "file", "css": "#file-Slot_0", "path": local.display().to_string()}));
    b.click("#serve-Slot_0");
    b.wait_text("#proxy-state-Slot_0", "serving");
    redfish_until(&h, slot, "inserted again", |v| v["Inserted"] == true);
    b.click("#eject-Slot_0");
    redfish_until(&h, slot, "ejected by the button", |v| {
        v["Inserted"] == false
    });
    b.wait_text("#slot-state-Slot_0", "empty");
    // A file that vanishes while served: reads fail with an I/O error the
    // page shows, and the other VM's media are unaffected.
    let doomed = h.sim.dir.path().join("doomed.img");
    random_file(&doomed, 1);
    b.cmd(json!({"op": "file", "css": "#file-Slot_1", "path": doomed.display().to_string()}));
    b.click("#serve-Slot_1");
    b.wait_text("#proxy-state-Slot_1", "serving");
    std::fs::remove_file(&doomed).unwrap();
    let o = Command::new("nbdcopy")
        .arg(format!("nbd://127.0.0.1:{}/vm0/Slot_1", h.nbd))
        .arg(h.sim.dir.path().join("doomed.copy"))
        .output()
        .expect("nbdcopy");
    assert!(!o.status.success(), "a vanished file was read");
    b.wait_text("#error", "reading the file failed");
    b.shot("07-media-vanished");
    b.click("#eject-Slot_1");
    redfish_until(
        &h,
        "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Slot_1",
        "ejected",
        |v| v["Inserted"] == false,
    );
    assert_eq!(
        h.redfish("/redfish/v1/Managers/vm1-bmc/VirtualMedia/Slot_1")["ConnectedVia"],
        "NotConnected"
    );

    // The session is a cookie pair: the session token out of the page's
    // reach, the XSRF token readable.
    let cookies = b.cmd(json!({"op": "cookies"}));
    assert_eq!(cookies["SESSION"]["httpOnly"], true, "{cookies}");
    assert_eq!(cookies["XSRF-TOKEN"]["httpOnly"], false, "{cookies}");
    let xsrf = b.cmd(json!({"op": "xsrf"}));
    let xsrf = xsrf.as_str().expect("an XSRF token").to_string();
    // The console API only reads.
    let r = b.cmd(json!({"op": "fetch", "method": "POST", "path": "/api/vms",
                         "headers": {"X-XSRF-TOKEN": xsrf.clone()}}));
    assert_eq!(r["status"], 405, "{r}");
    // A request with the cookie but not the token is refused.
    let r = b.cmd(
        json!({"op": "fetch", "method": "PATCH", "path": "/redfish/v1/Systems/vm0",
                         "headers": {"Content-Type": "application/json"},
                         "body": "{\"Boot\":{\"BootSourceOverrideTarget\":\"Hdd\"}}"}),
    );
    assert_eq!(r["status"], 401, "{r}");

    // The serial console: the program's output, the echo of typed keys and
    // the program's answer.
    let _guest = ConsoleGuest::start(&h.sim, ECHO_GUEST);
    h.sim.eventually("the console attached", || {
        h.sim.log().contains("vm0: console attached")
    });
    b.open("/#/sol/vm0");
    b.wait_text("#sol-status", "connected");
    b.wait_text("#term", "guest-console-ready");
    b.cmd(json!({"op": "type", "css": "#term", "text": "hello-web\n"}));
    b.wait_text("#term", "hello-web\nguest-got:hello-web");
    b.shot("08-sol");
    // One session per VM: a second socket from the page, and IPMI, are
    // refused while this one is open.
    let second = b.cmd(
        json!({"op": "ws_probe", "path": "/console/vm0", "protocols": [xsrf], "wait_close": true}),
    );
    assert!(
        second["reason"]
            .as_str()
            .unwrap_or("")
            .contains("in use by the web console"),
        "{second}"
    );
    let out = Command::new("ipmitool")
        .args([
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            &h.ipmi.to_string(),
        ])
        .args([
            "-U", "admin", "-P", "s3cret", "-N", "1", "-R", "3", "sol", "activate",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ipmitool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        !out.status.success(),
        "IPMI SOL activated beside the page's: {said}"
    );
    assert!(h.sim.log().contains(
        "sol activate refused: the serial console of VM \"vm0\" is in use by the web console"
    ));
    // Wrong or missing XSRF subprotocol: the upgrade is refused.
    for path in ["/console/vm0", "/nbd/vm0/1"] {
        for protocols in [json!(["not-the-token"]), json!([])] {
            let r = b.cmd(json!({"op": "ws_probe", "path": path, "protocols": protocols}));
            assert_eq!(r["opened"], false, "{path}: {r}");
        }
    }
    assert_eq!(
        h.redfish("/redfish/v1/Managers/vm0-bmc/VirtualMedia/Slot_1")["Inserted"],
        false
    );
    // Leaving the page ends the session; then IPMI holds the console and
    // the page is refused, saying by whom.
    b.open("/#/vm/vm0");
    h.sim.eventually("the web console session ended", || {
        h.sim.log().contains("serial console of the web console")
    });
    let mut holder = Command::new(python())
        .args(["-c", SOL_HOLDER, &h.ipmi.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    let mut up = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut up)
        .unwrap();
    assert!(up.starts_with("UP"), "IPMI SOL: {up}\n{}", h.sim.log());
    b.open("/#/sol/vm0");
    let err = b.wait_text("#error", "in use by IPMI session");
    assert!(err.contains("one Serial-over-LAN session per VM"), "{err}");
    b.shot("09-sol-refused");
    let _ = holder.stdin.as_mut().unwrap().write_all(b"leave\n");
    let _ = holder.wait();

    // A ReadOnly user sees the VM but its buttons are disabled; forcing
    // one shows the server's refusal and the power stays.
    b.click("#logout");
    b.wait_text("#main", "Log in");
    let r = b.cmd(json!({"op": "fetch", "path": "/api/session"}));
    assert_eq!(r["status"], 401, "the session outlived the logout: {r}");
    b.login("viewer", "look");
    b.open("/#/vm/vm0");
    b.wait_text("#power", "On");
    let dis = b.cmd(json!({"op": "attr", "css": "#btn-off", "name": "disabled"}));
    assert_eq!(dis, "true", "a ReadOnly user's power button is enabled");
    b.cmd(json!({"op": "click", "css": "#btn-off", "force": true}));
    let err = b.wait_text("#error", "Power off failed");
    assert!(err.to_lowercase().contains("privilege"), "{err}");
    b.shot("10-readonly-refused");
    assert_eq!(h.redfish("/redfish/v1/Systems/vm0")["PowerState"], "On");

    // Ending the session elsewhere (an administrator deletes it) sends the
    // open page back to the login page.
    let sessions = h.redfish("/redfish/v1/SessionService/Sessions");
    for m in sessions["Members"].as_array().unwrap() {
        let uri = m["@odata.id"].as_str().unwrap();
        let o = Command::new("curl")
            .args(["-sk", "-u", "admin:s3cret", "-X", "DELETE"])
            .arg(format!("{}{uri}", h.base))
            .output()
            .expect("curl");
        assert!(o.status.success());
    }
    b.wait_text("#error", "session has ended");
    b.wait_text("#main", "Log in");
}
