//! The per-VM BMC driven by FreeIPMI's tools (what MAAS uses): bmc-info,
//! ipmipower over IPMI 1.5 and 2.0, ipmi-sensors, ipmi-sel, ipmi-fru,
//! ipmi-chassis, ipmi-config, ipmi-pef-config, ipmi-raw and ipmiconsole
//! (without workaround flags), plus ipmitool where FreeIPMI has no
//! out-of-band command (the watchdog: FreeIPMI's bmc-watchdog is in-band
//! only; `sol payload`).

use e2e_tests::ConsoleGuest;
use std::net::UdpSocket;
use std::process::{Command, Output, Stdio};

use e2e_tests::{stderr, stdout, Sim};

const USERS: &str = r#"
[[user]]
name = "admin"
password = "password"
role = "Administrator"
[[user]]
name = "oper"
password = "operpass"
role = "Operator"
"#;

/// A free UDP port on 127.0.0.1 below 32768: ipmiconsole 1.6.10 refuses
/// `host:port` with a larger port ("hostname invalid").
fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = 20000 + ((std::process::id() % 1000) as u16 * 11 + n * 101) % 12000;
    (0..12000u16)
        .map(|i| 20000 + (start - 20000 + i * 7) % 12000)
        .find(|&p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
        .expect("a free UDP port below 32768")
}

struct Bmc {
    sim: Sim,
    port: u16,
    /// FreeIPMI's SDR cache (kept out of $HOME).
    cache: tempfile::TempDir,
}

impl Bmc {
    fn start() -> Bmc {
        let port = free_port();
        let sim = Sim::with_config(&format!(
            "[[vm]]\nname = \"vm0\"\nuuid = \"564d1234-5678-4abc-8ef0-123456789abc\"\nipmi = {{ listen = \"127.0.0.1:{port}\" }}\n{USERS}"
        ));
        let cache = Sim::tempdir();
        Bmc { sim, port, cache }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A FreeIPMI tool as `user`, with `args`.
    fn tool_as(&self, tool: &str, user: &str, pw: &str, args: &[&str]) -> Output {
        let mut c = Command::new(tool);
        c.args(["-h", &self.host(), "-u", user, "-p", pw]);
        if matches!(tool, "ipmi-sensors" | "ipmi-sel" | "ipmi-fru") {
            c.arg(format!(
                "--sdr-cache-directory={}",
                self.cache.path().display()
            ));
        }
        c.args(args)
            .env("HOME", self.cache.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {tool} (apt-get install freeipmi-tools): {e}"))
    }

    /// A FreeIPMI tool as admin; asserts success and returns stdout.
    fn fi(&self, tool: &str, args: &[&str]) -> String {
        let o = self.tool_as(tool, "admin", "password", args);
        assert!(
            o.status.success(),
            "{tool} {args:?}: {}{}\nhvsim log:\n{}",
            stdout(&o),
            stderr(&o),
            self.sim.log()
        );
        stdout(&o)
    }

    /// `ipmi-raw` as admin: the completion code and the data bytes.
    fn raw(&self, netfn: u8, cmd: u8, data: &[u8]) -> (u8, Vec<u8>) {
        let mut args = vec![
            "0x0".to_string(),
            format!("{netfn:#04x}"),
            format!("{cmd:#04x}"),
        ];
        args.extend(data.iter().map(|b| format!("{b:#04x}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.fi("ipmi-raw", &args);
        let bytes: Vec<u8> = out
            .trim()
            .strip_prefix("rcvd:")
            .unwrap_or_else(|| panic!("ipmi-raw: {out}"))
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        assert_eq!(bytes[0], cmd, "{out}");
        (bytes[1], bytes[2..].to_vec())
    }

    /// ipmitool -I lanplus as `user`.
    fn ipmitool_as(&self, user: &str, pw: &str, args: &[&str]) -> Output {
        Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", user, "-P", pw, "-N", "1", "-R", "2"])
            .args(if user == "oper" {
                &["-L", "OPERATOR"][..]
            } else {
                &[]
            })
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ipmitool (apt-get install ipmitool)")
    }

    fn ipmitool(&self, args: &[&str]) -> String {
        let o = self.ipmitool_as("admin", "password", args);
        assert!(
            o.status.success(),
            "ipmitool {args:?}: {}{}\nhvsim log:\n{}",
            stdout(&o),
            stderr(&o),
            self.sim.log()
        );
        stdout(&o)
    }

    fn power(&self) -> String {
        self.sim.show("vm0")["power"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

#[test]
fn bmc_info_sensors_sel_fru_and_chassis() {
    let b = Bmc::start();
    let info = b.fi("bmc-info", &[]);
    for want in [
        "IPMI Version          : 2.0",
        "Manufacturer ID       : VMware Inc. (6876)",
        "Chassis Device        : supported",
        // The device and system GUID are the VM's UUID.
        "System GUID : 564d1234-5678-4abc-8ef0-123456789abc",
        "Medium Type          : 802.3 LAN",
    ] {
        assert!(info.contains(want), "{want:?} not in\n{info}");
    }

    // The sensors are the SDR repository's, with the values ipmitool reads.
    let sensors = b.fi("ipmi-sensors", &[]);
    for name in ["CPU Temp", "Fan1", "ACPI State", "OS Boot", "Watchdog"] {
        assert!(sensors.contains(name), "{name} not in\n{sensors}");
    }
    let line = sensors.lines().find(|l| l.contains("Fan1")).unwrap();
    let fi_rpm: f64 = line.split('|').nth(3).unwrap().trim().parse().unwrap();
    let it = b.ipmitool(&["sensor", "reading", "Fan1"]);
    let it_rpm: f64 = it.split('|').nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(fi_rpm, it_rpm, "{line} / {it}");
    assert!(
        sensors
            .lines()
            .any(|l| l.contains("ACPI State") && l.contains("'S0/G0'")),
        "{sensors}"
    );

    // Power off through the chassis: ipmi-chassis sees it, ipmi-sel has it.
    b.fi("ipmi-chassis", &["--chassis-control=power-down"]);
    assert_eq!(b.power(), "off");
    let st = b.fi("ipmi-chassis", &["--get-chassis-status"]);
    assert!(
        st.contains("System Power                        : off"),
        "{st}"
    );
    b.fi("ipmi-chassis", &["--chassis-control=power-up"]);
    let st = b.fi("ipmi-chassis", &["--get-chassis-status"]);
    assert!(
        st.contains("System Power                        : on"),
        "{st}"
    );
    b.sim.eventually("power events in the SEL", || {
        let sel = b.fi("ipmi-sel", &[]);
        sel.contains("S5/G2 soft-off") || sel.contains("S4/S5 soft-off") || sel.contains("S5")
    });
    let sel = b.fi("ipmi-sel", &["--output-event-state"]);
    assert!(sel.contains("ACPI State"), "{sel}");

    let caps = b.fi("ipmi-chassis", &["--get-chassis-capabilities"]);
    for want in [
        "Intrusion sensor        : not provided",
        "FRU Info Device Address : 20h",
        "SEL Device Address      : 20h",
    ] {
        assert!(caps.contains(want), "{want:?} not in\n{caps}");
    }

    // Boot device the way MAAS sets it: ipmi-config's chassis category.
    b.fi(
        "ipmi-config",
        &[
            "--category=chassis",
            "--commit",
            "-e",
            "Chassis_Boot_Flags:Boot_Device=PXE",
            "-e",
            "Chassis_Boot_Flags:Boot_Flags_Persistent=Yes",
        ],
    );
    let boot = &b.sim.show("vm0")["boot"];
    assert_eq!(
        (boot["target"].as_str(), boot["persistent"].as_bool()),
        (Some("pxe"), Some(true))
    );
    let co = b.fi(
        "ipmi-config",
        &[
            "--category=chassis",
            "--checkout",
            "-S",
            "Chassis_Boot_Flags",
        ],
    );
    assert!(
        co.lines()
            .any(|l| l.contains("Boot_Device") && l.contains("PXE")),
        "{co}"
    );

    let fru = b.fi("ipmi-fru", &[]);
    assert!(fru.contains("FRU Product Name: vm0"), "{fru}");
    assert!(
        fru.contains("FRU Product Serial Number: 564d1234-5678-4abc-8ef0-123456789abc"),
        "{fru}"
    );
}

#[test]
fn ipmipower_on_off_cycle_stat_over_lan_and_lan_2_0() {
    let b = Bmc::start();
    for driver in ["LAN_2_0", "LAN"] {
        let p = |op: &str| b.fi("ipmipower", &["-D", driver, op]);
        assert!(p("--stat").contains(": on"), "{driver}");
        assert!(p("--off").contains(": ok"), "{driver}");
        assert_eq!(b.power(), "off", "{driver}");
        assert!(p("--stat").contains(": off"), "{driver}");
        assert!(p("--on").contains(": ok"), "{driver}");
        assert_eq!(b.power(), "on", "{driver}");
        // A cycle restarts the guest: the SEL records it.
        let before = b.fi("ipmi-sel", &[]).lines().count();
        assert!(p("--cycle").contains(": ok"), "{driver}");
        assert_eq!(b.power(), "on", "{driver}");
        b.sim.eventually("cycle in the SEL", || {
            b.fi("ipmi-sel", &[]).lines().count() > before
        });
        assert!(p("--reset").contains(": ok"), "{driver}");
        b.sim.eventually("reset in the SEL", || {
            b.fi("ipmi-sel", &[]).contains("Initiated by hard reset")
        });
    }
    // A wrong password is refused loudly.
    let o = b.tool_as("ipmipower", "admin", "nope", &["-D", "LAN_2_0", "--stat"]);
    let out = stdout(&o) + &stderr(&o);
    assert!(out.contains("password invalid"), "{out}");
}

/// Drives ipmiconsole in a pty: waits for the banner, types a line, waits
/// for its echo, leaves with `&.`.
const CONSOLE_DRIVER: &str = r#"
import os, pty, sys, time, select
host, user, pw, suite, want, typed, echo = sys.argv[1:8]
pid, fd = pty.fork()
if pid == 0:
    priv = ["-l", "OPERATOR"] if user == "oper" else []
    os.execvp("ipmiconsole", ["ipmiconsole", "-h", host, "-u", user, "-p", pw, "-I", suite] + priv)
out = b""
def wait_for(s, t=20):
    global out
    end = time.time() + t
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                d = os.read(fd, 4096)
            except OSError:
                return False
            if not d:
                return False
            out += d
            if s in out:
                return True
    return False
print("EST" if wait_for(b"[SOL established]") else "NOEST", flush=True)
print("SEEN" if not want or wait_for(want.encode()) else "NOSEEN", flush=True)
os.write(fd, typed.encode() + b"\r")
print("ECHO" if wait_for(echo.encode()) else "NOECHO", flush=True)
os.write(fd, b"&.")
wait_for(b"[closing the connection]", 10)
_, st = os.waitpid(pid, 0)
print("EXIT", st, repr(out), flush=True)
"#;

fn ipmiconsole(b: &Bmc, user: &str, pw: &str, suite: &str, want: &str, typed: &str) -> String {
    let o = Command::new(e2e_tests::python())
        .args(["-c", CONSOLE_DRIVER, &b.host(), user, pw, suite])
        .args([want, typed, &format!("guest-got:{typed}")])
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    stdout(&o)
}

#[test]
fn ipmiconsole_suites_3_and_17_without_workarounds_and_payload_access() {
    let b = Bmc::start();
    // Discovery FreeIPMI does before activating: payload support and
    // version, answered as a BMC carrying IPMI and SOL payloads.
    let (c, d) = b.raw(0x06, 0x4E, &[0x01]);
    assert_eq!((c, &d[..4]), (0, &[0x03, 0x00, 0x3F, 0x00][..]));
    assert_eq!(b.raw(0x06, 0x4F, &[0x01, 0x01]), (0, vec![0x10]));
    assert_eq!(b.raw(0x06, 0x4F, &[0x01, 0x05]).0, 0x80);

    let _guest = ConsoleGuest::start(
        &b.sim,
        "echo guest-console-ready; while read l; do echo \"guest-got:$l\"; done",
    );
    b.sim.eventually("console attached", || {
        b.ipmitool(&["sol", "info"])
            .contains("Enabled                         : true")
    });
    let out = ipmiconsole(
        &b,
        "admin",
        "password",
        "3",
        "guest-console-ready",
        "hello3",
    );
    assert!(
        out.contains("EST\nSEEN\nECHO\nEXIT 0"),
        "{out}\n{}",
        b.sim.log()
    );
    let out = ipmiconsole(&b, "admin", "password", "17", "", "hello17");
    assert!(
        out.contains("EST\nSEEN\nECHO\nEXIT 0"),
        "{out}\n{}",
        b.sim.log()
    );

    // Per-user SOL payload access: disabled for oper (user 3), its
    // activation is refused with "payload type disabled"; others unaffected.
    b.ipmitool(&["sol", "payload", "disable", "1", "3"]);
    let st = b.ipmitool(&["sol", "payload", "status", "1", "3"]);
    assert!(st.contains("disabled"), "{st}");
    let o = b.ipmitool_as("oper", "operpass", &["sol", "activate"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("SOL payload disabled"),
        "{}",
        stderr(&o)
    );
    assert!(b.sim.log().contains("has no SOL payload access"));
    let co = b.fi("ipmi-config", &["--checkout", "-S", "User3"]);
    assert!(
        co.lines()
            .any(|l| l.contains("SOL_Payload_Access") && l.contains("No")),
        "{co}"
    );
    let out = ipmiconsole(&b, "admin", "password", "3", "", "still-admin");
    assert!(out.contains("ECHO"), "{out}");
    // Enabled again through ipmi-config: oper's console works.
    b.fi(
        "ipmi-config",
        &["--commit", "-e", "User3:SOL_Payload_Access=Yes"],
    );
    assert!(b
        .ipmitool(&["sol", "payload", "status", "1", "3"])
        .contains("enabled"));
    let out = ipmiconsole(&b, "oper", "operpass", "17", "", "oper");
    assert!(out.contains("EST\nSEEN\nECHO\nEXIT 0"), "{out}");
}

#[test]
fn ipmi_config_checkout_and_channel_keys() {
    let b = Bmc::start();
    // The whole checkout, as MAAS runs it (no -S, no -v).
    let o = b.tool_as("ipmi-config", "admin", "password", &["--checkout"]);
    let out = stdout(&o);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let key = |section: &str, key: &str| -> Option<String> {
        let body = out.split(&format!("Section {section}\n")).nth(1)?;
        let body = body.split("EndSection").next()?;
        body.lines().map(str::trim).find_map(|l| {
            let l = l.strip_prefix("## ").unwrap_or(l);
            let rest = l.strip_prefix(key)?;
            rest.starts_with(' ').then(|| rest.trim().to_string())
        })
    };
    // What a MAAS user relies on: LAN addressing, the users, LAN channel
    // access, SOL.
    assert_eq!(key("User2", "Username").as_deref(), Some("admin"), "{out}");
    assert_eq!(key("User3", "Username").as_deref(), Some("oper"), "{out}");
    assert_eq!(key("User2", "Enable_User").as_deref(), Some("Yes"), "{out}");
    assert_eq!(
        key("User2", "Lan_Privilege_Limit").as_deref(),
        Some("Administrator"),
        "{out}"
    );
    for k in [
        "IP_Address_Source",
        "IP_Address",
        "MAC_Address",
        "Subnet_Mask",
        "Default_Gateway_IP_Address",
    ] {
        assert!(key("Lan_Conf", k).is_some(), "Lan_Conf:{k} in {out}");
    }
    assert_eq!(
        key("Lan_Channel", "Volatile_Access_Mode").as_deref(),
        Some("Always_Available"),
        "{out}"
    );
    assert_eq!(
        key("Lan_Channel", "Volatile_Channel_Privilege_Limit").as_deref(),
        Some("Administrator"),
        "{out}"
    );
    // SOL is enabled only while a console is attached to the VM.
    assert_eq!(
        key("SOL_Conf", "Enable_SOL").as_deref(),
        Some("No"),
        "{out}"
    );
    // No IPv6: IPv6 status (LAN parameter 55) is not supported, so
    // FreeIPMI offers no IPv6 address or router keys.
    assert_eq!(
        key("Lan6_Conf", "IPv6_IPv4_Addressing_Enables").as_deref(),
        Some("IPv6_Disabled"),
        "{out}"
    );
    assert!(!out.contains("IPv6_Static_Router"), "{out}");
    // FreeIPMI 1.6.10 exits 1 (non-fatal; 2 is fatal) when a key of the
    // authentication table names an auth type the BMC does not support
    // (LAN parameter 1) or a cipher suite ID 0-15 is not in the BMC's list
    // (parameter 23): it needs every auth type and all sixteen suites. The
    // keys left out are exactly those; everything else checks out.
    assert_eq!(o.status.code(), Some(1), "{out}");
    let section_keys = |section: &str| -> Vec<String> {
        let body = out.split(&format!("Section {section}\n")).nth(1).unwrap();
        let body = body.split("EndSection").next().unwrap();
        body.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let mut auth = Vec::new();
    for level in ["Callback", "User", "Operator", "Admin", "OEM"] {
        for t in ["MD5", "Straight_Password"] {
            auth.push(format!("{level}_Enable_Auth_Type_{t}"));
        }
    }
    assert_eq!(section_keys("Lan_Conf_Auth"), auth, "{out}");
    assert_eq!(
        section_keys("Rmcpplus_Conf_Privilege"),
        ["Maximum_Privilege_Cipher_Suite_Id_3"],
        "{out}"
    );
    let sections = b.fi("ipmi-config", &["--listsections"]);
    let mut args = vec!["--checkout"];
    for s in sections.lines().map(str::trim) {
        // The serial sections are not part of a default checkout (this
        // BMC has no serial channel: Get Channel Info finds none).
        if !matches!(
            s,
            "Lan_Conf_Auth" | "Rmcpplus_Conf_Privilege" | "Serial_Channel" | "Serial_Conf" | ""
        ) {
            args.extend(["-S", s]);
        }
    }
    let rest = b.fi("ipmi-config", &args);
    assert!(rest.contains("Section Lan6_Conf"), "{rest}");
    assert!(rest.contains("Section User16"), "{rest}");

    let co = stdout(&b.tool_as(
        "ipmi-config",
        "admin",
        "password",
        &["--checkout", "-S", "Lan_Conf", "-vv"],
    ));
    assert!(
        co.lines()
            .any(|l| l.contains("Primary_RMCP_Port") && l.contains(&b.port.to_string())),
        "{co}"
    );
    // Very verbose, FreeIPMI also tries what is not checked out by default:
    // the serial channel, the secondary (secure) RMCP port. Nothing else
    // fails.
    let o = b.tool_as("ipmi-config", "admin", "password", &["--checkout", "-vv"]);
    let out = stdout(&o);
    assert!(out.contains("Section SOL_Conf"), "{out}");
    let unable: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("Unable to checkout"))
        .collect();
    for l in &unable {
        assert!(
            l.contains("Serial_")
                || l.contains("Maximum_Privilege_Cipher_Suite_Id_")
                || l.contains("Secondary_RMCP_Port"),
            "unexpected: {l}\n{}",
            stderr(&o)
        );
    }
    assert!(!out.contains("Cipher_Suite_Id_3 :"), "{out}");
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    // A user made the way MAAS commissions a BMC: ipmi-config --commit.
    b.fi(
        "ipmi-config",
        &[
            "--commit",
            "-e",
            "User4:Username=maas",
            "-e",
            "User4:Password=maaspass1",
            "-e",
            "User4:Lan_Privilege_Limit=Administrator",
            "-e",
            "User4:Lan_Enable_IPMI_Msgs=Yes",
            "-e",
            "User4:Enable_User=Yes",
        ],
    );
    let o = b.tool_as(
        "ipmipower",
        "maas",
        "maaspass1",
        &["-D", "LAN_2_0", "--stat"],
    );
    assert!(stdout(&o).contains(": on"), "{}{}", stdout(&o), stderr(&o));
    let co = b.fi("ipmi-config", &["--checkout", "-S", "User4"]);
    assert!(
        co.lines()
            .any(|l| l.contains("Username") && l.contains("maas")),
        "{co}"
    );
    b.fi("ipmi-config", &["--commit", "-e", "User4:Enable_User=No"]);
    let o = b.tool_as(
        "ipmipower",
        "maas",
        "maaspass1",
        &["-D", "LAN_2_0", "--stat"],
    );
    assert!(
        !stdout(&o).contains(": on"),
        "disabled user logged in: {}",
        stdout(&o)
    );

    // K_G: set through ipmi-config, sessions need it, cleared again.
    let co = b.fi(
        "ipmi-config",
        &["--checkout", "-S", "Lan_Conf_Security_Keys"],
    );
    assert!(co.contains("K_G"), "{co}");
    b.fi(
        "ipmi-config",
        &[
            "--commit",
            "-e",
            "Lan_Conf_Security_Keys:K_G=0x6b67736563726574",
        ],
    );
    let v2 = ["-D", "LAN_2_0", "--get-device-id"];
    let o = b.tool_as("bmc-info", "admin", "password", &v2);
    assert!(!o.status.success(), "a session without K_G must fail");
    // IPMI 1.5 sessions do not use K_G.
    b.fi("bmc-info", &["-D", "LAN", "--get-device-id"]);
    let kg = ["-k", "0x6b67736563726574"];
    let o = b.tool_as("bmc-info", "admin", "password", &[&kg[..], &v2].concat());
    assert!(o.status.success(), "{}{}", stderr(&o), b.sim.log());
    let clear = [
        "-D",
        "LAN_2_0",
        "--commit",
        "-e",
        "Lan_Conf_Security_Keys:K_G=0x00",
    ];
    let o = b.tool_as(
        "ipmi-config",
        "admin",
        "password",
        &[&kg[..], &clear].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    b.fi("bmc-info", &v2);
}

#[test]
fn pef_checkout_filter_powers_the_vm_down() {
    let b = Bmc::start();
    let co = b.fi("ipmi-pef-config", &["--checkout"]);
    for s in [
        "Section PEF_Conf",
        "Section Event_Filter_16",
        "Section Alert_Policy_16",
        "Section Lan_Alert_Destination_0",
    ] {
        assert!(co.contains(s), "{s} not in checkout");
    }
    let info = b.fi("ipmi-pef-config", &["--info"]);
    assert!(
        info.contains("Power down action                      : supported"),
        "{info}"
    );
    assert!(
        info.contains("Number of Event Filter Table entries   : 16"),
        "{info}"
    );

    // Filter 1: power down on a physical security (0x05) event, offset 0
    // (general chassis intrusion), from anyone; PEF and its power-down
    // action enabled.
    b.fi(
        "ipmi-pef-config",
        &[
            "--commit",
            "-e",
            "Event_Filter_1:Enable_Filter=Yes",
            "-e",
            "Event_Filter_1:Event_Filter_Action_Power_Off=Yes",
            "-e",
            "Event_Filter_1:Generator_Id_Byte_1=0xFF",
            "-e",
            "Event_Filter_1:Generator_Id_Byte_2=0xFF",
            "-e",
            "Event_Filter_1:Sensor_Type=0x05",
            "-e",
            "Event_Filter_1:Sensor_Number=0xFF",
            "-e",
            "Event_Filter_1:Event_Trigger=0x6F",
            "-e",
            "Event_Filter_1:Event_Data1_Offset_Mask=0x0001",
            "-e",
            "PEF_Conf:Enable_PEF=Yes",
            "-e",
            "PEF_Conf:Enable_Power_Down_Action=Yes",
        ],
    );
    let co = b.fi("ipmi-pef-config", &["--checkout", "-S", "Event_Filter_1"]);
    assert!(
        co.lines()
            .any(|l| l.contains("Enable_Filter") && l.contains("Yes")),
        "{co}"
    );
    // Another offset (LAN leash lost, 4) does not match.
    b.ipmitool(&[
        "raw", "0x04", "0x02", "0x04", "0x05", "0x01", "0x6f", "0x04", "0xff", "0xff",
    ]);
    // An alert policy entry is stored as given.
    b.fi(
        "ipmi-pef-config",
        &[
            "--commit",
            "-e",
            "Alert_Policy_1:Policy_Enabled=Yes",
            "-e",
            "Alert_Policy_1:Policy_Number=3",
        ],
    );
    let ap = b.fi("ipmi-pef-config", &["--checkout", "-S", "Alert_Policy_1"]);
    assert!(
        ap.lines()
            .any(|l| l.contains("Policy_Number") && l.contains('3')),
        "{ap}"
    );
    assert_eq!(b.power(), "on", "a non-matching event acted");
    // Chassis intrusion (offset 0): logged, PEF powers the VM down.
    b.ipmitool(&[
        "raw", "0x04", "0x02", "0x04", "0x05", "0x01", "0x6f", "0x00", "0xff", "0xff",
    ]);
    b.sim.eventually("PEF power down", || b.power() == "off");
    assert!(b.sim.log().contains("PEF: SEL record"), "{}", b.sim.log());
    let sel = b.fi("ipmi-sel", &[]);
    assert!(sel.contains("General Chassis Intrusion"), "{sel}");
    // Last processed event ID: the BMC processed the newest record.
    let (c, d) = b.raw(0x04, 0x15, &[]);
    assert_eq!(c, 0);
    assert_eq!(&d[4..6], &d[8..10], "{d:02x?}");
}

#[test]
fn watchdog_actions_power_and_sel() {
    let b = Bmc::start();
    // Reset before any Set: "attempt to start un-initialised watchdog".
    assert_eq!(b.raw(0x06, 0x22, &[]).0, 0x80);
    // SMS/OS use, power down, no pre-timeout, clear the SMS/OS flag, 2.0 s.
    b.ipmitool(&[
        "raw", "0x06", "0x24", "0x04", "0x02", "0x00", "0x10", "20", "0x00",
    ]);
    let g = b.ipmitool(&["mc", "watchdog", "get"]);
    assert!(g.contains("Stopped"), "{g}");
    assert!(g.contains("Power Down"), "{g}");
    assert!(g.contains("Initial Countdown:      2.0 sec"), "{g}");
    b.ipmitool(&["mc", "watchdog", "reset"]);
    let g = b.ipmitool(&["mc", "watchdog", "get"]);
    assert!(g.contains("Started/Running"), "{g}");
    b.sim
        .eventually("watchdog power down", || b.power() == "off");
    let g = b.ipmitool(&["mc", "watchdog", "get"]);
    assert!(g.contains("Stopped") && g.contains("SMS/OS"), "{g}");
    assert!(g.contains("Timer Expiration Flags: (0x10)"), "{g}");
    let sel = b.fi("ipmi-sel", &[]);
    assert!(
        sel.lines()
            .any(|l| l.contains("Watchdog") && l.contains("Power Down")),
        "{sel}"
    );

    // Hard reset with an NMI pre-timeout 1 s before: the VM is on again
    // afterwards, the SEL has the timer interrupt and the hard reset.
    b.fi("ipmipower", &["--on"]);
    b.ipmitool(&[
        "raw", "0x06", "0x24", "0x04", "0x21", "0x01", "0x10", "30", "0x00",
    ]);
    b.ipmitool(&["mc", "watchdog", "reset"]);
    b.sim.eventually("watchdog hard reset", || {
        b.fi("ipmi-sel", &[])
            .lines()
            .any(|l| l.contains("Watchdog") && l.contains("Hard Reset"))
    });
    let sel = b.fi("ipmi-sel", &[]);
    assert!(
        sel.lines()
            .any(|l| l.contains("Watchdog") && l.contains("Timer interrupt")),
        "{sel}"
    );
    assert!(sel.contains("Initiated by hard reset"), "{sel}");
    assert_eq!(b.power(), "on");
    let cause = b.fi("ipmi-chassis", &["--get-system-restart-cause"]);
    assert!(cause.contains("Watchdog expiration"), "{cause}");
    // The pre-timeout set the message flag (Get Message Flags bit 3).
    let (c, d) = b.raw(0x06, 0x31, &[]);
    assert_eq!((c, d[0] & 0x08), (0, 0x08));
    // `mc watchdog off` stops a running timer before it acts.
    b.ipmitool(&[
        "raw", "0x06", "0x24", "0x04", "0x02", "0x00", "0x10", "0xff", "0x00",
    ]);
    b.ipmitool(&["mc", "watchdog", "reset"]);
    b.ipmitool(&["mc", "watchdog", "off"]);
    assert!(b.ipmitool(&["mc", "watchdog", "get"]).contains("Stopped"));
}

#[test]
fn malformed_watchdog_pef_and_payload_requests_are_refused() {
    let b = Bmc::start();
    let cases: &[(u8, u8, &[u8], u8)] = &[
        // Set Watchdog Timer: short, timer use 0, action 7, pre-timeout
        // longer than the countdown.
        (0x06, 0x24, &[0x04, 0x01], 0xC7),
        (0x06, 0x24, &[0x00, 0x01, 0, 0, 10, 0], 0xCC),
        (0x06, 0x24, &[0x04, 0x07, 0, 0, 10, 0], 0xCC),
        (0x06, 0x24, &[0x04, 0x11, 5, 0, 10, 0], 0xCC),
        // PEF parameters: read-only count, wrong length, filter 17,
        // unknown parameter, reserved action bits.
        (0x04, 0x12, &[0x05, 0x01], 0x82),
        (0x04, 0x12, &[0x06, 0x01, 0x80], 0xC7),
        (
            0x04,
            0x12,
            &[
                0x06, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            0xC9,
        ),
        (0x04, 0x12, &[0x63, 0x00], 0x80),
        (0x04, 0x12, &[0x02, 0xC0], 0xCC),
        (0x04, 0x13, &[0x06, 0x00, 0x00], 0xC9),
        (0x04, 0x13, &[0x06], 0xC7),
        // User payload access: other payload types, user 0, short.
        (0x06, 0x4C, &[0x01, 0x03, 0x04, 0, 0, 0], 0xCC),
        (0x06, 0x4C, &[0x01, 0x00, 0x02, 0, 0, 0], 0xCC),
        (0x06, 0x4D, &[0x01], 0xC7),
        // Channel keys: key 2, short K_G.
        (0x06, 0x56, &[0x01, 0x00, 0x02], 0xCC),
        (0x06, 0x56, &[0x01, 0x01, 0x01, 0xAA], 0xC7),
        // Platform event with a bad event message revision.
        (0x04, 0x02, &[0x07, 0x05, 0x01, 0x6F, 0x00], 0xCC),
        // Write FRU (write-protected), Add SDR (fixed sensors).
        (0x0A, 0x12, &[0x00, 0x00, 0x00, 0x41], 0x80),
        (0x0A, 0x24, &[0x00; 8], 0xD5),
    ];
    for &(nf, cmd, data, want) in cases {
        let (c, _) = b.raw(nf, cmd, data);
        assert_eq!(c, want, "netfn {nf:#04x} cmd {cmd:#04x} {data:02x?}");
    }
    // An Operator may not change PEF; the BMC keeps serving.
    let o = b.tool_as(
        "ipmi-pef-config",
        "oper",
        "operpass",
        &["--commit", "-e", "PEF_Conf:Enable_PEF=Yes"],
    );
    assert!(!o.status.success());
    b.fi("bmc-info", &["--get-device-id"]);
}
