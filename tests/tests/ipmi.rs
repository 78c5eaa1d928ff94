//! The per-VM BMC driven by the real ipmitool (`-I lanplus` with the default
//! suite, `-C 3` and `-C 17`, and `-I lan`), plus what ipmitool cannot do
//! (replays, held sessions, garbage) through the in-tree RMCP+ client.

use e2e_tests::ConsoleGuest;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use agent::transport::unix::UnixBackdoor;
use e2e_tests::{stderr, stdout, Sim};
use hvsim::ipmi::client::{Client, ClientError};
use hvsim::ipmi::rmcp;
use protocol::guest::GuestChannel;
use protocol::proto;

const USERS: &str = r#"
[[user]]
name = "admin"
password = "password"
role = "Administrator"
[[user]]
name = "oper"
password = "operpass"
role = "Operator"
[[user]]
name = "viewer"
password = "viewpass"
role = "ReadOnly"
"#;

/// A free UDP port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("udp bind")
        .port()
}

struct Bmc {
    sim: Sim,
    port: u16,
}

impl Bmc {
    fn start() -> Bmc {
        let port = free_port();
        let sim = Sim::with_config(&format!(
            "[[vm]]\nname = \"vm0\"\nuuid = \"564d1234-5678-4abc-8ef0-123456789abc\"\nipmi = {{ listen = \"127.0.0.1:{port}\" }}\n{USERS}"
        ));
        Bmc { sim, port }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// ipmitool with an interface, user, password and arguments.
    fn tool(&self, intf: &[&str], user: &str, pw: &str, args: &[&str]) -> Output {
        let port = self.port.to_string();
        Command::new("ipmitool")
            .args(intf)
            .args(["-H", "127.0.0.1", "-p", &port, "-U", user, "-P", pw])
            // Refusals by silence (as the spec wants) should not take ipmitool's
            // default retries.
            .args(["-N", "1", "-R", "2"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ipmitool (apt-get install ipmitool)")
    }

    /// ipmitool -I lanplus as admin; asserts success and returns stdout.
    fn plus(&self, args: &[&str]) -> String {
        let o = self.tool(&["-I", "lanplus"], "admin", "password", args);
        assert!(
            o.status.success(),
            "ipmitool {args:?}: {}{}\nhvsim log:\n{}",
            stdout(&o),
            stderr(&o),
            self.sim.log()
        );
        stdout(&o)
    }
}

#[test]
fn lanplus_every_suite_and_lan_open_sessions() {
    let b = Bmc::start();
    for intf in [
        &["-I", "lanplus"][..],
        &["-I", "lanplus", "-C", "3"],
        &["-I", "lanplus", "-C", "17"],
        &["-I", "lan"],
        &["-I", "lan", "-A", "MD5"],
        &["-I", "lan", "-A", "PASSWORD"],
    ] {
        let o = b.tool(intf, "admin", "password", &["chassis", "status"]);
        assert!(o.status.success(), "{intf:?}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("System Power         : on"),
            "{intf:?}: {}",
            stdout(&o)
        );
        let o = b.tool(intf, "admin", "password", &["mc", "info"]);
        assert!(
            stdout(&o).contains("IPMI Version              : 2.0"),
            "{}",
            stdout(&o)
        );
        assert!(
            stdout(&o).contains("Manufacturer ID           : 6876"),
            "{}",
            stdout(&o)
        );
    }
    // Sessions were closed by every ipmitool run.
    assert!(b.sim.log().matches("RMCP+ session").count() >= 3);
}

#[test]
fn refusals_wrong_password_unknown_user_suite_zero_auth_none_privilege() {
    let b = Bmc::start();
    let plus = ["-I", "lanplus"];
    for (intf, user, pw) in [
        (&plus[..], "admin", "wrong"),
        (&plus[..], "nobody", "password"),
        (&["-I", "lan"][..], "admin", "wrong"),
        (&["-I", "lan"][..], "nobody", "password"),
        (&["-I", "lanplus", "-C", "0"][..], "admin", "password"),
        (&["-I", "lan", "-A", "NONE"][..], "admin", "password"),
    ] {
        let o = b.tool(intf, user, pw, &["chassis", "power", "off"]);
        assert!(
            !o.status.success(),
            "{intf:?} {user}/{pw} got in: {}",
            stdout(&o)
        );
    }
    let o = b.tool(
        &["-I", "lanplus", "-C", "0"],
        "admin",
        "password",
        &["chassis", "status"],
    );
    assert!(
        stderr(&o).contains("no matching cipher suite"),
        "{}",
        stderr(&o)
    );
    // A read-only user may look but not touch; an operator asking for
    // Administrator is refused at RAKP, and may power at Operator level.
    let o = b.tool(
        &["-I", "lanplus", "-L", "USER"],
        "viewer",
        "viewpass",
        &["chassis", "power", "off"],
    );
    assert!(
        stderr(&o).contains("Insufficient privilege"),
        "{}",
        stderr(&o)
    );
    let o = b.tool(
        &["-I", "lanplus"],
        "oper",
        "operpass",
        &["chassis", "status"],
    );
    assert!(!o.status.success());
    let o = b.tool(
        &["-I", "lanplus", "-L", "OPERATOR"],
        "oper",
        "operpass",
        &["user", "set", "password", "2", "x"],
    );
    assert!(!o.status.success(), "operator changed a password");
    assert_eq!(
        b.sim.show("vm0")["power"],
        "on",
        "nothing above may power off"
    );
    // Still serving.
    assert!(b.plus(&["chassis", "power", "status"]).contains("is on"));
}

#[test]
fn chassis_power_bootdev_identify_restart_cause() {
    let b = Bmc::start();
    assert!(b.plus(&["chassis", "power", "off"]).contains("Down/Off"));
    assert_eq!(b.sim.show("vm0")["power"], "off");
    assert!(b
        .plus(&["chassis", "power", "status"])
        .contains("Chassis Power is off"));
    // Cycle and reset need the VM on.
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["chassis", "power", "cycle"],
    );
    assert!(
        stderr(&o).contains("not supported in present state"),
        "{}",
        stderr(&o)
    );
    assert!(b.plus(&["chassis", "power", "on"]).contains("Up/On"));
    assert_eq!(b.sim.show("vm0")["power"], "on");
    assert!(b
        .plus(&["chassis", "restart_cause"])
        .contains("chassis power control command"));
    b.plus(&["chassis", "power", "cycle"]);
    b.plus(&["chassis", "power", "reset"]);
    assert_eq!(b.sim.show("vm0")["power"], "on");
    // Soft off without a guest agent: a clear refusal, the VM stays on.
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["chassis", "power", "soft"],
    );
    assert!(
        stderr(&o).contains("not supported in present state"),
        "{}",
        stderr(&o)
    );
    assert_eq!(b.sim.show("vm0")["power"], "on");

    b.plus(&["chassis", "bootdev", "pxe", "options=persistent,efiboot"]);
    let boot = &b.sim.show("vm0")["boot"];
    assert_eq!(boot["target"], "pxe");
    assert_eq!(boot["persistent"], true);
    assert_eq!(boot["uefi"], true);
    let out = b.plus(&["chassis", "bootparam", "get", "5"]);
    assert!(
        out.contains("Force PXE") && out.contains("all future boots"),
        "{out}"
    );
    b.plus(&["chassis", "bootdev", "cdrom"]);
    let boot = &b.sim.show("vm0")["boot"];
    assert_eq!(
        (boot["target"].as_str(), boot["persistent"].as_bool()),
        (Some("cd"), Some(false))
    );
    b.plus(&["chassis", "bootdev", "disk"]);
    assert_eq!(b.sim.show("vm0")["boot"]["target"], "hdd");
    b.plus(&["chassis", "bootdev", "bios"]);
    assert_eq!(b.sim.show("vm0")["boot"]["target"], "biossetup");

    assert!(b
        .plus(&["chassis", "identify", "force"])
        .contains("indefinite"));
    assert!(b.plus(&["chassis", "identify", "5"]).contains("5 seconds"));
    assert!(b.plus(&["chassis", "identify", "0"]).contains("off"));
}

#[test]
fn mc_guid_selftest_reset_fru_lan_channel_session_sol() {
    let b = Bmc::start();
    let uuid = "564d1234-5678-4abc-8ef0-123456789abc";
    assert!(b.plus(&["mc", "guid"]).contains(uuid));
    assert!(b.plus(&["mc", "selftest"]).contains("passed"));
    assert!(b.plus(&["mc", "reset", "warm"]).contains("warm reset"));
    assert!(b.plus(&["mc", "reset", "cold"]).contains("cold reset"));
    let fru = b.plus(&["fru", "print"]);
    assert!(fru.contains("Product Name          : vm0"), "{fru}");
    assert!(
        fru.contains(&format!("Product Serial        : {uuid}")),
        "{fru}"
    );
    assert!(
        fru.contains(&format!("Chassis Serial        : {uuid}")),
        "{fru}"
    );
    let lan = b.plus(&["lan", "print"]);
    for want in [
        "IP Address Source       : Static Address",
        "IP Address              : 127.0.0.1",
        "Subnet Mask             : 255.0.0.0",
        "MAC Address             : 02:00:",
        "Default Gateway IP      : 0.0.0.0",
        "RMCP+ Cipher Suites     : 3,17",
        "Cipher Suite Priv Max   : aa",
    ] {
        assert!(lan.contains(want), "{want} in\n{lan}");
    }
    let ch = b.plus(&["channel", "info"]);
    assert!(
        ch.contains("802.3 LAN") && ch.contains("multi-session"),
        "{ch}"
    );
    let acc = b.plus(&["channel", "getaccess", "1", "2"]);
    assert!(
        acc.contains("User Name            : admin") && acc.contains("ADMINISTRATOR"),
        "{acc}"
    );
    let s = b.plus(&["session", "info", "active"]);
    assert!(s.contains("IPMIv2/RMCP+") && s.contains("127.0.0.1"), "{s}");
    let s = b.tool(
        &["-I", "lan"],
        "admin",
        "password",
        &["session", "info", "active"],
    );
    assert!(stdout(&s).contains("IPMIv1.5"), "{}", stdout(&s));
    let sol = b.plus(&["sol", "info"]);
    assert!(
        sol.contains("Enabled                         : false"),
        "{sol}"
    );
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["sol", "activate"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("SOL payload disabled"),
        "{}",
        stderr(&o)
    );
    assert!(b.sim.log().contains("no console attached"));
}

#[test]
fn sdr_and_sensors_follow_power() {
    let b = Bmc::start();
    let sdr = b.plus(&["sdr", "list"]);
    for want in [
        "CPU Temp         | 45 degrees C",
        "Fan1             | 4200 RPM",
        "12V              | 12 Volts",
        "OS Boot",
        "OS Critical Stop",
    ] {
        assert!(sdr.contains(want), "{want} in\n{sdr}");
    }
    let el = b.plus(&["sdr", "elist"]);
    assert!(el.contains("S0/G0: working"), "{el}");
    let t = b.plus(&["sdr", "type", "Temperature"]);
    assert!(t.contains("CPU Temp") && !t.contains("Fan1"), "{t}");
    let list = b.plus(&["sensor", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("12V") && l.contains("13.200")),
        "{list}"
    );
    let g = b.plus(&["sensor", "get", "CPU Temp"]);
    assert!(g.contains("Upper Critical        : 95.000"), "{g}");
    b.plus(&["chassis", "power", "off"]);
    let sdr = b.plus(&["sdr", "list"]);
    assert!(sdr.contains("CPU Temp         | no reading"), "{sdr}");
    assert!(sdr.contains("System Temp      | 24 degrees C"), "{sdr}");
}

#[test]
fn sel_records_power_events_and_persists_users_and_sel() {
    let mut b = Bmc::start();
    b.plus(&["chassis", "power", "off"]);
    b.plus(&["chassis", "power", "on"]);
    b.sim.eventually("SEL has power events", || {
        let l = b.plus(&["sel", "list"]);
        l.contains("S5: entered by override") && l.contains("S0/G0: working")
    });
    let info = b.plus(&["sel", "info"]);
    assert!(info.contains("Entries          : 2"), "{info}");
    let events = b.sim.dir.path().join("events.txt");
    std::fs::write(
        &events,
        "0x04 0x02 0x04 0x01 0x57 0xff 0xff # 12V upper critical\n",
    )
    .unwrap();
    b.plus(&["sel", "add", events.to_str().unwrap()]);
    assert!(b
        .plus(&["sel", "elist"])
        .contains("Upper Non-critical going high"));
    b.plus(&["sel", "time", "set", "01/02/25 03:04:05"]);
    assert!(b.plus(&["sel", "time", "get"]).starts_with("01/02/25 03:0"));
    b.plus(&["user", "set", "password", "4", "n3wpass"]);
    let o = b.tool(
        &["-I", "lanplus", "-L", "USER"],
        "viewer",
        "n3wpass",
        &["chassis", "status"],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    b.sim.kill9_and_restart();
    let l = b.plus(&["sel", "list"]);
    assert_eq!(l.lines().count(), 3, "{l}");
    assert!(b.plus(&["sel", "time", "get"]).starts_with("01/02/25"));
    let o = b.tool(
        &["-I", "lanplus", "-L", "USER"],
        "viewer",
        "n3wpass",
        &["chassis", "status"],
    );
    assert!(o.status.success(), "new password lost: {}", stderr(&o));
    let o = b.tool(
        &["-I", "lanplus", "-L", "USER"],
        "viewer",
        "viewpass",
        &["chassis", "status"],
    );
    assert!(!o.status.success(), "old password still works");
    let users = b.plus(&["user", "list"]);
    assert!(
        users
            .lines()
            .any(|l| l.starts_with("2   admin") && l.contains("ADMINISTRATOR")),
        "{users}"
    );
    assert!(b
        .plus(&["user", "summary"])
        .contains("Enabled User Count  : 3"));

    b.plus(&["sel", "clear"]);
    assert!(b.plus(&["sel", "info"]).contains("Entries          : 0"));
}

/// `chassis power soft` reaches the guest agent as TCLO OS_Halt; the VM
/// goes off when the agent reports the halt, and the SEL has the OS boot and
/// graceful shutdown.
#[test]
fn soft_off_goes_through_the_agent() {
    let b = Bmc::start();
    let sock = b.sim.socket("vm0");
    let agent = std::thread::spawn(move || {
        let mut tclo =
            GuestChannel::open(UnixBackdoor::connect(&sock).unwrap(), proto::TCLO).unwrap();
        let mut rpci =
            GuestChannel::open(UnixBackdoor::connect(&sock).unwrap(), proto::RPCI).unwrap();
        let mut reply: Vec<u8> = Vec::new();
        for _ in 0..2000 {
            let cmd = match tclo.call(&reply) {
                Ok(c) => c.to_vec(),
                Err(_) => return true,
            };
            reply = Vec::new();
            if cmd == b"OS_Halt" {
                tclo.call(b"OK ").ok();
                rpci.call(b"tools.os.statechange.status 1 1\0").ok();
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        false
    });
    b.sim.eventually("tools running", || {
        b.sim.show("vm0")["tools"]["status"] == "running"
    });
    b.plus(&["chassis", "power", "soft"]);
    b.sim.eventually("graceful shutdown done", || {
        b.sim.show("vm0")["power"] == "off"
    });
    assert!(agent.join().unwrap());
    let mut l = String::new();
    for _ in 0..50 {
        l = b.plus(&["sel", "elist"]);
        if l.contains("OS Boot")
            && l.contains("OS graceful shutdown")
            && l.contains("S5/G2: soft-off")
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("SEL lacks the guest's boot and graceful shutdown:\n{l}");
}

#[test]
fn replays_out_of_window_garbage_and_session_exhaustion_are_refused() {
    let b = Bmc::start();
    let addr = b.addr();
    let mut c = Client::connect(addr, "admin", b"password", 17, 4).unwrap();
    let (cc, data) = c.request(0x00, 0x01, &[]).unwrap();
    assert_eq!((cc, data[0] & 1), (0, 1), "chassis status: on");
    // A replayed packet (same sequence number) is dropped.
    c.send_raw(&c.last_sent.clone()).unwrap();
    assert!(
        c.recv_response(Duration::from_millis(300))
            .unwrap()
            .is_none(),
        "replay answered"
    );
    // A sequence number far ahead of the window is dropped.
    c.seq += 100;
    let p = c.packet(0x00, 0x01, &[]);
    c.send_raw(&p).unwrap();
    assert!(
        c.recv_response(Duration::from_millis(300))
            .unwrap()
            .is_none(),
        "out of window"
    );
    c.seq -= 101;
    // A tampered packet fails its integrity check.
    let mut p = c.packet(0x00, 0x01, &[]);
    let n = p.len();
    p[n - 20] ^= 1;
    c.send_raw(&p).unwrap();
    assert!(
        c.recv_response(Duration::from_millis(300))
            .unwrap()
            .is_none(),
        "tampered"
    );

    // Garbage of every kind: no answer, no crash.
    let g = UdpSocket::bind("127.0.0.1:0").unwrap();
    for junk in [
        vec![],
        vec![6],
        b"thump\0\0\0\0\0".to_vec(),
        vec![6, 0, 0xff, 7, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff],
        vec![6, 0, 0xff, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff],
        vec![6, 0, 0xff, 7, 2, 1, 0, 0, 0, 1, 0, 0, 0],
        vec![6; 4000],
    ] {
        g.send_to(&junk, addr).unwrap();
    }
    // Presence ping still answered; the established session is unaffected.
    g.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    g.send_to(&rmcp::ping(9), addr).unwrap();
    let mut buf = [0u8; 64];
    let n = g.recv(&mut buf).unwrap();
    assert_eq!(&buf[8..10], &[rmcp::ASF_PONG, 9], "{:?}", &buf[..n]);
    assert_eq!(c.request(0x00, 0x01, &[]).unwrap().0, 0);

    // Session exhaustion: one client address holds at most half the
    // table (8), so it cannot lock others out; 16 sessions fit in all, the
    // 17th is refused with "insufficient resources", and existing
    // sessions keep working.
    let mut held = vec![c];
    for _ in 1..8 {
        held.push(Client::connect(addr, "admin", b"password", 3, 4).unwrap());
    }
    match Client::connect(addr, "admin", b"password", 17, 4) {
        Err(ClientError::Refused(0x01)) => {}
        other => panic!("9th session from one address: {other:?}"),
    }
    let other: std::net::IpAddr = [127, 0, 0, 2].into();
    for _ in 8..16 {
        held.push(Client::connect_from(other, addr, "admin", b"password", 3, 4).unwrap());
    }
    match Client::connect_from([127, 0, 0, 3].into(), addr, "admin", b"password", 17, 4) {
        Err(ClientError::Refused(0x01)) => {}
        other => panic!("17th session: {other:?}"),
    }
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["chassis", "status"],
    );
    assert!(!o.status.success());
    for c in held.iter_mut() {
        assert_eq!(c.request(0x06, 0x01, &[]).unwrap().0, 0);
    }
    // ipmitool comes from 127.0.0.1: room once one of its sessions closes.
    held.remove(0).close().unwrap();
    assert!(b.plus(&["chassis", "status"]).contains("System Power"));
    // A wrong password is refused at RAKP without using up a slot.
    for _ in 0..3 {
        assert!(Client::connect(addr, "admin", b"nope", 17, 4).is_err());
    }
    assert!(b.plus(&["chassis", "status"]).contains("System Power"));
}

/// Cipher suite 0 and auth type none are opt-ins per VM (`ipmi` table), for
/// labs that need them; the defaults refuse them (see above).
#[test]
fn insecure_modes_only_when_configured() {
    let port = free_port();
    let sim = Sim::with_config(&format!(
        "[[vm]]\nname = \"vm0\"\nipmi = {{ listen = \"127.0.0.1:{port}\", allow_cipher_suite_0 = true, allow_auth_none = true, max_sessions = 4, session_timeout = 30 }}\n{USERS}"
    ));
    let b = Bmc { sim, port };
    let o = b.tool(
        &["-I", "lanplus", "-C", "0"],
        "admin",
        "password",
        &["chassis", "power", "status"],
    );
    assert!(
        o.status.success(),
        "{}{}\n{}",
        stdout(&o),
        stderr(&o),
        b.sim.log()
    );
    assert!(stdout(&o).contains("is on"));
    let o = b.tool(
        &["-I", "lan", "-A", "NONE"],
        "admin",
        "password",
        &["chassis", "power", "status"],
    );
    assert!(
        o.status.success(),
        "{}{}\n{}",
        stdout(&o),
        stderr(&o),
        b.sim.log()
    );
}

/// Drives `ipmitool sol activate` on a pty (it wants a terminal). Prints
/// `PID n`; waits for the text in argv[4] and prints `SEEN` (or `MISSING`
/// and the output, then exits); types argv[5] and Enter, waits for argv[6]
/// and prints `ECHO`; then waits for a line on stdin, leaves with `~.` and
/// prints `EXIT status` and the whole output.
const SOL_DRIVER: &str = r#"
import os, pty, select, sys, time
port, user, pw, want, typed, echo = sys.argv[1:7]
pid, fd = pty.fork()
if pid == 0:
    os.execvp("ipmitool", ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", port,
                           "-U", user, "-P", pw, "sol", "activate"])
print("PID", pid, flush=True)
out = b""
def wait_for(pat, t=15):
    global out
    end = time.time() + t
    while pat not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return pat in out
def finish(word):
    print(word, repr(out), flush=True)
    sys.exit(1)
if not wait_for(want.encode()):
    finish("MISSING")
print("SEEN", flush=True)
os.write(fd, typed.encode() + b"\r")
if not wait_for(echo.encode()):
    finish("NOECHO")
print("ECHO", flush=True)
sys.stdin.readline()
os.write(fd, b"\r~.")
wait_for(b"terminated ipmitool", 10)
_, st = os.waitpid(pid, 0)
print("EXIT", st, repr(out), flush=True)
"#;

/// A running SOL driver (see [`SOL_DRIVER`]).
struct SolDriver {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    ipmitool: i32,
}

impl SolDriver {
    fn start(port: u16, want: &str, typed: &str, echo: &str) -> SolDriver {
        use std::io::BufRead;
        let mut child = Command::new(e2e_tests::python())
            .args(["-c", SOL_DRIVER, &port.to_string(), "admin", "password"])
            .args([want, typed, echo])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run python");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let ipmitool = first.strip_prefix("PID ").unwrap().parse().unwrap();
        SolDriver {
            child,
            lines,
            ipmitool,
        }
    }

    fn expect(&mut self, word: &str, log: &dyn Fn() -> String) {
        let l = self.lines.next().map(|l| l.unwrap()).unwrap_or_default();
        assert!(
            l.starts_with(word),
            "SOL driver: {l:?}, not {word}\n{}",
            log()
        );
    }

    /// Leave with `~.`; returns ipmitool's wait status and its output.
    fn leave(mut self) -> String {
        use std::io::Write;
        self.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"leave\n")
            .unwrap();
        let l = self.lines.next().map(|l| l.unwrap()).unwrap_or_default();
        self.child.wait().unwrap();
        l
    }
}

/// The echo program on the console: a banner, then each line read comes
/// back with a marker.
const ECHO_GUEST: &str =
    "echo guest-console-ready; while read l; do echo \"guest-got:$l\"; done; echo guest-bye";

#[test]
fn sol_carries_the_console_of_hvsim_exec() {
    let b = Bmc::start();
    let log = || b.sim.log();
    let enabled = |b: &Bmc| {
        b.plus(&["sol", "info"])
            .contains("Enabled                         : true")
    };
    assert!(!enabled(&b), "SOL enabled without a console");
    let mut guest = ConsoleGuest::start(&b.sim, ECHO_GUEST);
    b.sim.eventually("console attached", || enabled(&b));
    let info = b.plus(&["sol", "info"]);
    assert!(
        info.contains(&format!("Payload Port                    : {}", b.port)),
        "{info}"
    );
    // A second program cannot take the VM's console.
    let mut second = ConsoleGuest::start(&b.sim, "echo second");
    let st = second.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(second.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        !st.success() && err.contains("already has a console"),
        "{err}"
    );

    // The program's output (sent before SOL was active: from the ring),
    // typed text reaching it, and its answer coming back.
    let mut sol = SolDriver::start(
        b.port,
        "guest-console-ready",
        "hello sol",
        "guest-got:hello sol",
    );
    sol.expect("SEEN", &log);
    sol.expect("ECHO", &log);
    // One activation per VM.
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["sol", "activate"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("SOL payload already active on another session"),
        "{}",
        stderr(&o)
    );
    let st = b.plus(&["raw", "0x06", "0x4a", "0x01"]);
    assert_eq!(
        st.split_whitespace().collect::<Vec<_>>(),
        ["01", "01", "00"],
        "{st}"
    );
    let end = sol.leave();
    assert!(
        end.starts_with("EXIT 0") && end.contains("terminated ipmitool"),
        "{end}"
    );
    // ipmitool deactivated it on leaving; the payload is free again.
    let st = b.plus(&["raw", "0x06", "0x4a", "0x01"]);
    assert_eq!(
        st.split_whitespace().collect::<Vec<_>>(),
        ["01", "00", "00"],
        "{st}"
    );
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["sol", "deactivate"],
    );
    assert!(
        stderr(&o).contains("SOL payload already de-activated"),
        "{}",
        stderr(&o)
    );

    // `sol deactivate` from another session ends an activation.
    let mut sol = SolDriver::start(b.port, "guest-got:hello sol", "again", "guest-got:again");
    sol.expect("SEEN", &log);
    sol.expect("ECHO", &log);
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["sol", "deactivate"],
    );
    assert!(o.status.success(), "{}{}", stderr(&o), log());
    assert!(log().contains("SOL deactivated by session"));
    sol.leave();

    // ^D over SOL ends the program's input: its last words still arrive
    // although the console detaches right after them.
    let mut sol = SolDriver::start(b.port, "guest-got:again", "\u{4}", "guest-bye");
    sol.expect("SEEN", &log);
    sol.expect("ECHO", &log);
    sol.leave();
    assert!(guest.0.wait().unwrap().success());
    // The console is gone: SOL says why it cannot start.
    b.sim.eventually("console detached", || !enabled(&b));
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["sol", "activate"],
    );
    assert!(
        stderr(&o).contains("SOL payload disabled"),
        "{}",
        stderr(&o)
    );
    assert!(log().contains("console detached"));
    assert!(log().contains("no console attached (start the guest with `hvsim exec --console`)"));
}

/// A console that vanishes without deactivating (ipmitool killed) holds the
/// payload only until its session times out.
#[test]
fn sol_is_freed_when_its_session_times_out() {
    let port = free_port();
    let sim = Sim::with_config(&format!(
        "[[vm]]\nname = \"vm0\"\nipmi = {{ listen = \"127.0.0.1:{port}\", session_timeout = 2 }}\n{USERS}"
    ));
    let b = Bmc { sim, port };
    let log = || b.sim.log();
    // SOL parameters can be set (ipmitool guards them with set in progress).
    b.plus(&["sol", "set", "character-send-threshold", "50"]);
    b.plus(&["sol", "set", "retry-count", "3"]);
    let info = b.plus(&["sol", "info"]);
    assert!(
        info.contains("Character Send Threshold        : 50")
            && info.contains("Retry Count                     : 3")
            && info.contains("Set in progress                 : set-complete"),
        "{info}"
    );
    let _guest = ConsoleGuest::start(&b.sim, ECHO_GUEST);
    b.sim.eventually("console attached", || {
        b.plus(&["sol", "info"])
            .contains("Enabled                         : true")
    });
    let mut sol = SolDriver::start(b.port, "guest-console-ready", "x", "guest-got:x");
    sol.expect("SEEN", &log);
    sol.expect("ECHO", &log);
    // SAFETY: SIGKILL to the ipmitool our driver started.
    unsafe { libc::kill(sol.ipmitool, libc::SIGKILL) };
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["sol", "activate"],
    );
    assert!(stderr(&o).contains("already active"), "{}", stderr(&o));
    b.sim.eventually("SOL freed by the session timeout", || {
        log().contains("SOL deactivated: session")
    });
    let mut sol2 = SolDriver::start(b.port, "guest-got:x", "y", "guest-got:y");
    sol2.expect("SEEN", &log);
    sol2.expect("ECHO", &log);
    assert!(sol2.leave().starts_with("EXIT 0"));
    let _ = sol.child.kill();
    let _ = sol.child.wait();
}

#[test]
fn lan_set_is_shown_enforced_and_persisted() {
    let mut b = Bmc::start();
    for args in [
        &["lan", "set", "1", "ipsrc", "static"][..],
        &["lan", "set", "1", "ipaddr", "10.1.2.3"],
        &["lan", "set", "1", "netmask", "255.255.0.0"],
        &["lan", "set", "1", "defgw", "ipaddr", "10.1.0.1"],
        &["lan", "set", "1", "defgw", "macaddr", "02:11:22:33:44:55"],
    ] {
        b.plus(args);
    }
    // The MAC is the BMC's own: read-only, as on real BMCs.
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &[
            "raw", "0x0c", "0x01", "0x01", "0x05", "2", "0", "0", "0", "0", "1",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("rsp=0x82"), "{}", stderr(&o));
    // Suite 3 (first entry) Administrator, suite 17 Operator at most.
    b.plus(&["lan", "set", "1", "cipher_privs", "aoXXXXXXXXXXXXX"]);
    let check = |b: &Bmc| {
        let o = b.tool(
            &["-I", "lanplus", "-C", "3"],
            "admin",
            "password",
            &["lan", "print"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let lan = stdout(&o);
        for want in [
            "Set in Progress         : Set Complete",
            "IP Address Source       : Static Address",
            "IP Address              : 10.1.2.3",
            "Subnet Mask             : 255.255.0.0",
            "Default Gateway IP      : 10.1.0.1",
            "Default Gateway MAC     : 02:11:22:33:44:55",
            "Cipher Suite Priv Max   : aoXXXXXXXXXXXXX",
        ] {
            assert!(lan.contains(want), "{want} in\n{lan}");
        }
    };
    check(&b);
    // Enforced: Administrator over suite 17 is refused, Operator is not.
    let o = b.tool(
        &["-I", "lanplus", "-C", "17"],
        "admin",
        "password",
        &["chassis", "status"],
    );
    assert!(!o.status.success(), "admin over suite 17 allowed");
    let o = b.tool(
        &["-I", "lanplus", "-C", "17", "-L", "OPERATOR"],
        "admin",
        "password",
        &["chassis", "status"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    b.sim.kill9_and_restart();
    check(&b);
    // Back to Administrator everywhere; the rest survived the restart too.
    let o = b.tool(
        &["-I", "lanplus", "-C", "3"],
        "admin",
        "password",
        &["lan", "set", "1", "cipher_privs", "aaXXXXXXXXXXXXX"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lan = b.plus(&["lan", "print"]);
    assert!(
        lan.contains("Cipher Suite Priv Max   : aaXXXXXXXXXXXXX"),
        "{lan}"
    );
    assert!(lan.contains("Default Gateway IP      : 10.1.0.1"), "{lan}");
    assert!(
        lan.contains("Subnet Mask             : 255.255.0.0"),
        "{lan}"
    );
}

#[test]
fn user_set_name_priv_enable_and_login() {
    let mut b = Bmc::start();
    let login = |b: &Bmc, user: &str, pw: &str, level: &str| {
        b.tool(
            &["-I", "lanplus", "-L", level],
            user,
            pw,
            &["chassis", "power", "status"],
        )
        .status
        .success()
    };
    b.plus(&["user", "set", "name", "6", "newbie"]);
    let row = |b: &Bmc, id: &str| {
        b.plus(&["user", "list"])
            .lines()
            .find(|l| l.starts_with(&format!("{id:<4}")))
            .unwrap_or_default()
            .to_string()
    };
    // A fresh slot: named, empty password, no access until enabled.
    let r = row(&b, "6");
    assert!(r.contains("newbie") && r.contains("NO ACCESS"), "{r}");
    assert!(!login(&b, "newbie", "", "USER"));
    b.plus(&["user", "set", "password", "6", "s3cret"]);
    b.plus(&["user", "priv", "6", "3", "1"]);
    b.plus(&["user", "enable", "6"]);
    let r = row(&b, "6");
    assert!(r.contains("newbie") && r.contains("OPERATOR"), "{r}");
    assert!(login(&b, "newbie", "s3cret", "OPERATOR"));
    assert!(!login(&b, "newbie", "s3cret", "ADMINISTRATOR"));
    let acc = b.plus(&["channel", "getaccess", "1", "6"]);
    assert!(acc.contains("OPERATOR"), "{acc}");
    // Rename an existing user: its password and role stay.
    b.plus(&["user", "set", "name", "4", "watcher"]);
    assert!(login(&b, "watcher", "viewpass", "USER"));
    assert!(!login(&b, "viewer", "viewpass", "USER"));
    // A taken name is refused.
    let o = b.tool(
        &["-I", "lanplus"],
        "admin",
        "password",
        &["user", "set", "name", "5", "admin"],
    );
    assert!(!o.status.success());
    // No Access disables the user.
    b.plus(&["user", "priv", "6", "15", "1"]);
    assert!(!login(&b, "newbie", "s3cret", "USER"));
    assert!(row(&b, "6").contains("NO ACCESS"));
    b.plus(&["user", "enable", "6"]);
    b.plus(&["user", "priv", "6", "4", "1"]);
    b.sim.kill9_and_restart();
    let r = row(&b, "6");
    assert!(r.contains("newbie") && r.contains("ADMINISTRATOR"), "{r}");
    assert!(login(&b, "newbie", "s3cret", "ADMINISTRATOR"));
    assert!(login(&b, "watcher", "viewpass", "USER"));
}
