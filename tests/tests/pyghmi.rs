//! The per-VM BMC driven by pyghmi (OpenStack Ironic's and VirtualBMC's
//! IPMI library) through `tests/py/pyghmi_client.py`: power, boot device,
//! sensors, FRU inventory, users and the SOL console. Each result is checked
//! against what hvsim shows or what ipmitool reads.

use std::net::UdpSocket;
use std::process::{Command, Output, Stdio};

use e2e_tests::{stderr, stdout, Sim};
use serde_json::Value;

const USERS: &str = r#"
[[user]]
name = "admin"
password = "password"
role = "Administrator"
"#;

struct Bmc {
    sim: Sim,
    port: u16,
}

impl Bmc {
    fn start() -> Bmc {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("udp bind")
            .port();
        let sim = Sim::with_config(&format!(
            "[[vm]]\nname = \"vm0\"\nuuid = \"564d1234-5678-4abc-8ef0-123456789abc\"\nipmi = {{ listen = \"127.0.0.1:{port}\" }}\n{USERS}"
        ));
        Bmc { sim, port }
    }

    /// pyghmi_client.py as `user` (asking for `priv`, or pyghmi's default).
    fn run_as(&self, user: &str, pw: &str, priv_level: Option<u8>, args: &[&str]) -> Output {
        let script = e2e_tests::workspace().join("tests/py/pyghmi_client.py");
        let mut c = Command::new(e2e_tests::python());
        c.arg(script)
            .args([&self.port.to_string(), user, pw])
            .args(args)
            .stdin(Stdio::null());
        if let Some(p) = priv_level {
            c.env("PYGHMI_PRIV", p.to_string());
        }
        c.output()
            .expect("run python (scripts/test-deps.sh installs pyghmi)")
    }

    /// pyghmi_client.py as admin; asserts success, returns its JSON.
    fn py(&self, args: &[&str]) -> Value {
        let o = self.run_as("admin", "password", None, args);
        assert!(
            o.status.success(),
            "pyghmi {args:?}: {}{}\nhvsim log:\n{}",
            stdout(&o),
            stderr(&o),
            self.sim.log()
        );
        serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)))
    }

    fn ipmitool(&self, args: &[&str]) -> String {
        let o = Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .args(["-U", "admin", "-P", "password"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ipmitool");
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    }
}

#[test]
fn power_bootdev_sensors_inventory() {
    let b = Bmc::start();
    assert_eq!(b.py(&["power-state"])["powerstate"], "on");
    assert_eq!(b.py(&["power", "off"])["powerstate"], "off");
    assert_eq!(b.sim.show("vm0")["power"], "off");
    assert_eq!(b.py(&["power-state"])["powerstate"], "off");
    assert_eq!(b.py(&["power", "on"])["powerstate"], "on");
    assert_eq!(b.sim.show("vm0")["power"], "on");
    // The SEL as pyghmi decodes it has the power-off (ACPI S5 by
    // override) that hvsim logged.
    b.sim.eventually("power off in the SEL", || {
        b.py(&["sel"]).as_array().is_some_and(|l| {
            l.iter()
                .any(|e| e["component_type"] == "System ACPI Power State")
        })
    });
    // Reset keeps it on; the SEL (read by ipmitool) has the hard reset.
    b.py(&["power", "reset"]);
    assert_eq!(b.sim.show("vm0")["power"], "on");
    b.sim.eventually("reset in the SEL", || {
        b.ipmitool(&["sel", "list"])
            .contains("Initiated by hard reset")
    });

    b.py(&["bootdev-set", "network", "true"]);
    let boot = &b.sim.show("vm0")["boot"];
    assert_eq!(
        (boot["target"].as_str(), boot["persistent"].as_bool()),
        (Some("pxe"), Some(true))
    );
    let got = b.py(&["bootdev-get"]);
    assert_eq!(
        (got["bootdev"].as_str(), got["persistent"].as_bool()),
        (Some("network"), Some(true))
    );
    b.py(&["bootdev-set", "hd", "false"]);
    assert_eq!(b.sim.show("vm0")["boot"]["target"], "hdd");
    assert_eq!(b.py(&["bootdev-get"])["bootdev"], "hd");

    // Sensors: the same readings ipmitool gets.
    let sensors = b.py(&["sensors"]);
    let list = sensors.as_array().unwrap();
    let fan = list.iter().find(|s| s["name"] == "Fan1").expect("Fan1");
    let it = b.ipmitool(&["sensor", "reading", "Fan1"]);
    let it_rpm: f64 = it.split('|').nth(1).unwrap().trim().parse().unwrap();
    assert_eq!(fan["value"].as_f64(), Some(it_rpm), "{fan} / {it}");
    assert_eq!(fan["units"], "RPM");
    for name in ["CPU Temp", "12V", "ACPI State", "Watchdog"] {
        assert!(list.iter().any(|s| s["name"] == name), "{name}: {sensors}");
    }

    // FRU inventory: the VM's name and UUID.
    let inv = b.py(&["inventory"]);
    let sys = &inv["System"];
    assert_eq!(sys["Product name"], "vm0", "{inv}");
    assert_eq!(sys["Serial Number"], "564d1234-5678-4abc-8ef0-123456789abc");
    // The GUID is the VM's UUID sent least significant byte first (spec
    // 20.8; ipmitool and FreeIPMI print the VM's UUID); pyghmi decodes the
    // wire bytes SMBIOS-style (first three fields little-endian), so it
    // prints them in that order.
    let hex = "564d123456784abc8ef0123456789abc";
    let mut wire: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    wire.reverse();
    let h = |r: &[u8]| r.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let rev = |r: &[u8]| h(&r.iter().rev().copied().collect::<Vec<_>>());
    let pyghmi_view = format!(
        "{}-{}-{}-{}-{}",
        rev(&wire[0..4]),
        rev(&wire[4..6]),
        rev(&wire[6..8]),
        h(&wire[8..10]),
        h(&wire[10..16])
    );
    assert_eq!(
        sys["UUID"].as_str().map(str::to_lowercase),
        Some(pyghmi_view),
        "{inv}"
    );
}

#[test]
fn users_create_password_delete() {
    let b = Bmc::start();
    let users = b.py(&["users"]);
    assert_eq!(users["2"]["name"], "admin", "{users}");
    assert_eq!(users["2"]["privilege"], "administrator");

    b.py(&["user-create", "5", "newbie", "firstpass", "operator"]);
    let users = b.py(&["users"]);
    assert_eq!(users["5"]["name"], "newbie", "{users}");
    assert_eq!(users["5"]["privilege"], "operator");
    // hvsim's user store has it, and ipmitool lists it.
    assert!(b.ipmitool(&["user", "list", "1"]).contains("newbie"));
    // The new user logs in at Operator (not above).
    let o = b.run_as("newbie", "firstpass", Some(3), &["power-state"]);
    assert!(o.status.success(), "{}{}", stderr(&o), b.sim.log());
    let o = b.run_as("newbie", "firstpass", Some(4), &["power-state"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Unauthorized role"), "{}", stderr(&o));

    b.py(&["user-password", "5", "secondpass"]);
    let o = b.run_as("newbie", "firstpass", Some(3), &["power-state"]);
    assert!(!o.status.success(), "old password still works");
    let o = b.run_as("newbie", "secondpass", Some(3), &["power-state"]);
    assert!(o.status.success(), "{}", stderr(&o));

    b.py(&["user-delete", "5"]);
    assert!(b.py(&["users"]).get("5").is_none());
    let o = b.run_as("newbie", "secondpass", Some(3), &["power-state"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Unauthorized name"), "{}", stderr(&o));
}

#[test]
fn sol_console_sends_and_receives() {
    let b = Bmc::start();
    let mut guest = Command::new(e2e_tests::bin("hvsim"))
        .args(["exec", "--console", "--vm", "vm0", "--", "sh", "-c"])
        .arg("echo guest-console-ready; while read l; do echo \"guest-got:$l\"; done")
        .env("HVSIM_CONTROL", &b.sim.control)
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hvsim exec --console");
    b.sim.eventually("console attached", || {
        b.ipmitool(&["sol", "info"])
            .contains("Enabled                         : true")
    });
    let r = b.py(&[
        "sol",
        "guest-console-ready",
        "hello pyghmi",
        "guest-got:hello pyghmi",
    ]);
    assert_eq!(
        (r["seen"].as_bool(), r["echoed"].as_bool()),
        (Some(true), Some(true)),
        "{r}\n{}",
        b.sim.log()
    );
    assert!(
        b.sim.log().contains("SOL deactivated by session"),
        "console.close() deactivates"
    );
    // A second console session works after the first closed.
    let r = b.py(&["sol", "", "again", "guest-got:again"]);
    assert_eq!(r["echoed"].as_bool(), Some(true), "{r}");
    let _ = guest.kill();
    let _ = guest.wait();
}
