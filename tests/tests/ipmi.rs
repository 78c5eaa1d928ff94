//! The per-VM BMC driven by the real ipmitool (`-I lanplus` with the default
//! suite, `-C 3` and `-C 17`, and `-I lan`), plus what ipmitool cannot do
//! (replays, held sessions, garbage) through the in-tree RMCP+ client.

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

    // Session exhaustion: 16 sessions fit, the 17th is refused with
    // "insufficient resources", and existing sessions keep working.
    let mut held = vec![c];
    for _ in 1..16 {
        held.push(Client::connect(addr, "admin", b"password", 3, 4).unwrap());
    }
    match Client::connect(addr, "admin", b"password", 17, 4) {
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
    held.pop().unwrap().close().unwrap();
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
