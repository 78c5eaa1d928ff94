//! vmware-toolbox-cmd and vmware-namespace-cmd (Debian's open-vm-tools
//! 12.2) under `hvsim exec` get what an ESXi host answers, and vm-toolbox
//! gives the same output and exit code for every subcommand: one table,
//! run once against each tool, each on its own simulator.
//!
//! Everything the tools write to /etc/vmware-tools (config, logging,
//! script, globalconf) goes to a copy: each run happens in a private mount
//! namespace (`unshare -m`) with the copy bind-mounted over
//! /etc/vmware-tools. Nothing shrinks a disk: the host answers as ESXi
//! does, shrinking disabled.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use e2e_tests::{bin, stderr, stdout, Sim};
use serde_json::Value;

/// An open-vm-tools program, or a panic that says how to install it.
fn ovt(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is missing: install Debian's open-vm-tools (apt-get install open-vm-tools)");
}

/// The VM both tools run against: a guest SDK with reservations and
/// limits, a connectable CD-ROM, one namespace, a host clock ten years
/// behind.
const CONFIG: &str = r#"
[[vm]]
name = "vm0"
memory_mb = 4096
device_connectable = true
devices = [
  { name = "ethernet0", connected = true, mac = "00:50:56:aa:bb:cc" },
  { name = "sata0:0" },
]
namespaces = ["com.example.toolbox"]
clock_offset_secs = -315360000
[vm.resources]
cpu_reservation_mhz = 1000
mem_reservation_mb = 512
mem_limit_mb = 4096
balloon_mb = 128
"#;

/// A private copy of /etc/vmware-tools.
fn etc_copy() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("hvsim-vt")
        .tempdir()
        .unwrap();
    if Path::new("/etc/vmware-tools").is_dir() {
        let o = Command::new("cp")
            .arg("-a")
            .arg("/etc/vmware-tools/.")
            .arg(d.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "cp: {}", stderr(&o));
    }
    d
}

/// What one run gave: exit code, stdout, stderr (the tool's path as TOOL).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    rc: i32,
    out: String,
    err: String,
}

/// Run `tool ARGS` under `hvsim exec` with `etc` over /etc/vmware-tools
/// in a private mount namespace.
fn run(sim: &Sim, tool: &Path, etc: &Path, args: &[&str]) -> Got {
    let o = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        // Never fall through to the machine's /etc: no mount, no run.
        .arg(r#"mount --bind "$1" /etc/vmware-tools || exit 99; shift; exec "$@""#)
        .arg("sh")
        .arg(etc)
        .arg(bin("hvsim"))
        .args(["exec", "--vm", "vm0", "--"])
        .arg(tool)
        .args(args)
        .env("HVSIM_CONTROL", &sim.control)
        .env_remove("VM_BACKDOOR")
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux)");
    let t = tool.to_string_lossy();
    let rc = o.status.code().unwrap_or(-1);
    assert_ne!(rc, 99, "cannot bind-mount the copy of /etc/vmware-tools");
    Got {
        rc,
        out: stdout(&o).replace(&*t, "TOOL"),
        err: stderr(&o).replace(&*t, "TOOL"),
    }
}

/// What a step must give on ESXi.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Exit code and exact stdout.
    Out(i32, &'static str),
    /// Exit code and exact stderr (stdout empty).
    Err(i32, &'static str),
    /// Exit code only (output compared between the tools).
    Rc(i32),
    /// Exit code; output checked by the named custom check.
    Check(i32, &'static str),
}

const SHRINK_DISABLED: &str = "Shrink disk is disabled for this virtual machine.\n\n\
Shrinking is disabled for linked clones, parents of linked clones, \n\
pre-allocated disks, snapshots, or due to other factors. \n\
See the User's manual for more information.\n";

/// The table: subcommands in order (later steps see what earlier ones set).
fn table() -> Vec<(Vec<&'static str>, Want)> {
    use Want::*;
    let v = |a: &[&'static str]| a.to_vec();
    vec![
        (v(&["stat", "speed"]), Check(0, "speed")),
        (v(&["stat", "hosttime"]), Check(0, "hosttime")),
        (v(&["stat", "sessionid"]), Check(0, "sessionid")),
        (v(&["stat", "balloon"]), Out(0, "128 MB\n")),
        (v(&["stat", "swap"]), Out(0, "0 MB\n")),
        (v(&["stat", "memlimit"]), Out(0, "4096 MB\n")),
        (v(&["stat", "memres"]), Out(0, "512 MB\n")),
        (v(&["stat", "cpures"]), Out(0, "1000 MHz\n")),
        // Unlimited, as ESXi reports it.
        (v(&["stat", "cpulimit"]), Out(0, "4294967295 MHz\n")),
        (v(&["stat", "raw"]), Check(0, "raw-list")),
        (v(&["stat", "raw", "text", "resources"]), Check(0, "raw-resources")),
        (v(&["stat", "raw", "json", "session"]), Check(0, "raw-session")),
        (v(&["stat", "raw", "xml", "host"]), Check(0, "raw-xml")),
        (
            v(&["stat", "raw", "text", "vnet", "00:50:56:aa:bb:cc"]),
            Out(
                0,
                "num.tx = 0\nsize.tx = 0\nnum.rx = 0\nsize.rx = 0\nreservation = 0\nlimit = -1\n",
            ),
        ),
        (v(&["stat", "raw", "yaml", "resources"]), Check(0, "raw-yaml")),
        (
            v(&["stat", "raw", "text", "nope"]),
            Err(75, "Failed to get stat: This value is not available on this host\n"),
        ),
        (
            v(&["stat", "bogus"]),
            Err(64, "TOOL: Unknown subcommand 'bogus'\nTry 'TOOL help stat' for more information.\n"),
        ),
        (v(&["timesync", "status"]), Out(69, "Disabled\n")),
        (v(&["timesync", "enable"]), Out(0, "Enabled\n")),
        (v(&["timesync", "status"]), Out(0, "Enabled\n")),
        (v(&["-q", "timesync", "status"]), Out(0, "")),
        (v(&["timesync", "disable"]), Out(0, "Disabled\n")),
        (v(&["timesync", "status"]), Out(69, "Disabled\n")),
        (
            v(&["device", "list"]),
            Out(0, "ethernet0: Enabled\nsata0:0: Disabled\n"),
        ),
        (v(&["device", "status", "sata0:0"]), Out(69, "Disabled\n")),
        (v(&["device", "enable", "sata0:0"]), Out(0, "Enabled\n")),
        (v(&["device", "status", "sata0:0"]), Out(0, "Enabled\n")),
        (v(&["device", "disable", "sata0:0"]), Out(0, "Disabled\n")),
        (
            v(&["device", "status", "floppy0"]),
            Err(72, "Error fetching interface information: device not found.\n"),
        ),
        (
            v(&["device", "enable"]),
            Err(64, "TOOL: Missing device name\nTry 'TOOL help device' for more information.\n"),
        ),
        (v(&["disk", "list"]), Err(75, SHRINK_DISABLED)),
        (v(&["disk", "shrink", "/"]), Check(72, "shrink-refused")),
        (v(&["config", "get", "hvsimtest", "key"]), Out(0, "[hvsimtest] key UNSET\n")),
        (v(&["config", "set", "hvsimtest", "key", "a value"]), Out(0, "")),
        (
            v(&["config", "get", "hvsimtest", "key"]),
            Out(0, "[hvsimtest] key = a value\n"),
        ),
        (v(&["config", "remove", "hvsimtest", "key"]), Out(0, "")),
        (v(&["config", "get", "hvsimtest", "key"]), Out(0, "[hvsimtest] key UNSET\n")),
        (
            v(&["config", "get", "hvsimtest"]),
            Err(64, "TOOL: Missing config key\nTry 'TOOL help config' for more information.\n"),
        ),
        (v(&["logging", "level", "get", "hvsimtest"]), Out(0, "hvsimtest.level = message\n")),
        (v(&["logging", "level", "set", "hvsimtest", "debug"]), Out(0, "")),
        (v(&["logging", "level", "get", "hvsimtest"]), Out(0, "hvsimtest.level = debug\n")),
        (
            v(&["logging", "level", "set", "hvsimtest", "loud"]),
            Err(64, "TOOL: Unknown logging level 'loud'\nTry 'TOOL help logging' for more information.\n"),
        ),
        (
            v(&["script", "power", "default"]),
            Out(0, "/etc/vmware-tools/poweron-vm-default\n"),
        ),
        (v(&["script", "power", "disable"]), Out(0, "")),
        (
            v(&["script", "power", "current"]),
            Err(75, "No script for operation power.\n"),
        ),
        (v(&["script", "power", "enable"]), Out(0, "")),
        (
            v(&["script", "power", "current"]),
            Out(0, "/etc/vmware-tools/poweron-vm-default\n"),
        ),
        (
            v(&["script", "power", "set", "/nonexistent/hvsim"]),
            Err(72, "/nonexistent/hvsim doesn't exist.\n"),
        ),
        (
            v(&["script", "reboot", "current"]),
            Err(64, "TOOL: Unknown script type 'reboot'\nTry 'TOOL help script' for more information.\n"),
        ),
        (v(&["info", "update", "network"]), Rc(0)),
        (
            v(&["info", "get", "network"]),
            Err(64, "TOOL: Unknown subcommand 'get'\nTry 'TOOL help info' for more information.\n"),
        ),
        (v(&["globalconf", "status"]), Rc(0)),
        (v(&["globalconf", "enable"]), Rc(0)),
        (
            v(&["globalconf", "status"]),
            Out(0, "The status of globalconf module is 'Enabled'\n"),
        ),
        (v(&["globalconf", "disable"]), Out(0, "disable: Updating the Configuration.\n")),
        (
            v(&["globalconf", "refresh"]),
            Err(70, "'refresh' failed, since globalconf module is disabled.\n"),
        ),
        (
            v(&["bogus"]),
            Err(64, "TOOL: Unknown command 'bogus'\nTry 'TOOL help' for more information.\n"),
        ),
        (
            v(&[]),
            Err(64, "TOOL: Missing command\nTry 'TOOL help' for more information.\n"),
        ),
    ]
}

/// Run the whole table with `tool` on a simulator of its own.
fn run_table(tool: &Path) -> Vec<Got> {
    let sim = Sim::with_config(CONFIG);
    let etc = etc_copy();
    let mut got = Vec::new();
    for (args, want) in table() {
        let g = run(&sim, tool, etc.path(), &args);
        check(&sim, tool, &args, want, &g);
        got.push(g);
    }
    // What the guest changed is what the host shows.
    let v = sim.show("vm0");
    assert_eq!(v["options"]["synctime"], "0", "{v}");
    assert_eq!(v["devices"][1]["connected"], false, "{v}");
    assert!(
        !v["guest"]["nics"].as_array().unwrap().is_empty() || !has_nics(),
        "info update network reported no NIC: {v}"
    );
    got
}

/// Whether this machine has a NIC with a MAC address (what `info update
/// network` reports).
fn has_nics() -> bool {
    std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read_to_string(e.path().join("address"))
                .is_ok_and(|a| a.trim().len() == 17 && a.trim() != "00:00:00:00:00:00")
        })
}

fn check(sim: &Sim, tool: &Path, args: &[&str], want: Want, g: &Got) {
    let what = format!("{} {}: {g:?}", tool.display(), args.join(" "));
    match want {
        Want::Out(rc, out) => {
            assert_eq!((g.rc, g.out.as_str()), (rc, out), "{what}");
        }
        Want::Err(rc, err) => {
            assert_eq!(
                (g.rc, g.out.as_str(), g.err.as_str()),
                (rc, "", err),
                "{what}"
            );
        }
        Want::Rc(rc) => assert_eq!(g.rc, rc, "{what}"),
        Want::Check(rc, name) => {
            assert_eq!(g.rc, rc, "{what}");
            match name {
                "speed" => assert!(
                    g.out.ends_with(" MHz\n") && g.out[..g.out.len() - 5].parse::<u32>().is_ok(),
                    "{what}"
                ),
                "hosttime" => {
                    // "04 Dec 2016 19:30:00": the host's clock, ten years behind.
                    let year: i32 = g.out.split(' ').nth(2).unwrap_or("").parse().unwrap_or(0);
                    let now = 1970
                        + (std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_secs()
                            / 31_556_952) as i32;
                    assert!((now - 11..=now - 9).contains(&year), "{what}");
                    assert_eq!(g.out.len(), "04 Dec 2016 19:30:00\n".len(), "{what}");
                }
                "sessionid" => {
                    let v = sim.show("vm0");
                    assert_eq!(
                        g.out,
                        format!("{}\n", v["guest_sdk"]["session_id"].as_str().unwrap()),
                        "{what}"
                    );
                }
                "raw-list" => {
                    let mac = sim.show("vm0")["devices"][0]["mac"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    assert_eq!(
                        g.out,
                        format!("session\nhost\nresources\nvnet {mac}\n"),
                        "{what}"
                    );
                }
                "raw-resources" => {
                    assert!(g.out.contains("guest.mem.reserved = 524288\n"), "{what}");
                    assert!(g.out.contains("vm.cpu.limit = -1\n"), "{what}");
                }
                "raw-session" => {
                    let j: Value = serde_json::from_str(&g.out).expect("JSON");
                    let sid = sim.show("vm0")["guest_sdk"]["session_id"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let n: u64 = j["session"].as_str().unwrap().parse().unwrap();
                    assert_eq!(format!("0x{n:x}"), sid, "{what}");
                    assert!(j["metrics"]["uuid.bios"]["value"].is_string(), "{what}");
                }
                "raw-xml" => {
                    assert!(g.out.starts_with("<metrics session=\""), "{what}");
                    assert!(
                        g.out.contains(
                            "<metric name=\"cpu.processorMHz\" type=\"static\" units=\"MHz\">"
                        ),
                        "{what}"
                    );
                }
                "raw-yaml" => {
                    assert!(
                        g.out.contains("guest.mem.ballooned:\n    type: instant\n    units: KB\n    value: 131072\n"),
                        "{what}"
                    );
                }
                "shrink-refused" => {
                    assert_eq!(g.out, "", "{what}");
                    assert_eq!(
                        g.err,
                        format!("{SHRINK_DISABLED}Unable to find partition /\n"),
                        "{what}"
                    );
                }
                other => panic!("no check {other}"),
            }
        }
    }
}

/// Output that differs between two simulators by design: session ids,
/// uptimes, the host clock's seconds.
fn stable(args: &[&str], g: &Got) -> Got {
    let mut g = g.clone();
    let volatile = matches!(
        args,
        ["stat", "hosttime"]
            | ["stat", "sessionid"]
            | ["stat", "raw", "json", "session"]
            | ["stat", "raw", "xml", "host"]
    );
    if volatile {
        g.out = String::new();
    }
    g
}

#[test]
fn vm_toolbox_answers_as_vmware_toolbox_cmd_on_the_same_host() {
    // Each on its own simulator, so both at once.
    let theirs = std::thread::spawn(|| run_table(&ovt("vmware-toolbox-cmd")));
    let ours = run_table(&bin("vm-toolbox"));
    let theirs = theirs.join().expect("vmware-toolbox-cmd table");
    for (((args, _), a), b) in table().iter().zip(&theirs).zip(&ours) {
        assert_eq!(
            stable(args, b),
            stable(args, a),
            "vm-toolbox {} differs from vmware-toolbox-cmd",
            args.join(" ")
        );
    }
}

#[test]
fn host_options_reach_both_tools_and_persist() {
    let mut sim = Sim::with_config(CONFIG);
    let etc = etc_copy();
    let o = sim.hvsim(&["vm", "set-option", "vm0", "synctime", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for tool in [ovt("vmware-toolbox-cmd"), bin("vm-toolbox")] {
        let g = run(&sim, &tool, etc.path(), &["timesync", "status"]);
        assert_eq!(
            (g.rc, g.out.as_str()),
            (0, "Enabled\n"),
            "{}",
            tool.display()
        );
    }
    sim.kill9_and_restart();
    assert_eq!(sim.show("vm0")["options"]["synctime"], "1");
    let o = sim.hvsim(&["vm", "set-option", "vm0", "bad key", "1"]);
    assert!(!o.status.success());
}

#[test]
fn guest_sdk_off_is_reported_as_on_a_host_without_it() {
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\n[vm.resources]\nguest_sdk = false\n");
    let etc = etc_copy();
    for tool in [ovt("vmware-toolbox-cmd"), bin("vm-toolbox")] {
        let g = run(&sim, &tool, etc.path(), &["stat", "balloon"]);
        assert_eq!(
            (g.rc, g.out.as_str(), g.err.as_str()),
            (
                75,
                "",
                "UpdateInfo failed: VMware Guest API is not enabled on the host\n"
            ),
            "{}",
            tool.display()
        );
    }
}

#[test]
fn vm_toolbox_config_dir_follows_the_environment() {
    let sim = Sim::start();
    let dir = tempfile::Builder::new()
        .prefix("hvsim-vt")
        .tempdir()
        .unwrap();
    std::fs::write(
        dir.path().join("tools.conf"),
        "# kept\n[logging]\nlog = true\n",
    )
    .unwrap();
    let o = Command::new(bin("vm-toolbox"))
        .args(["config", "set", "guestinfo", "poll-interval", "60"])
        .env("VM_BACKDOOR", sim.backdoor("vm0"))
        .env("VM_TOOLBOX_CONF_DIR", dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tools.conf")).unwrap(),
        // As GKeyFile writes it (vmware-toolbox-cmd gives the same bytes).
        "# kept\n\n[logging]\nlog=true\n\n[guestinfo]\npoll-interval=60\n"
    );
    // Outside a VM, as vmware-toolbox-cmd.
    let o = Command::new(bin("vm-toolbox"))
        .args(["stat", "speed"])
        .env("VM_BACKDOOR", "unix:/nonexistent/hvsim.sock")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).ends_with("must be run inside a virtual machine.\n"),
        "{}",
        stderr(&o)
    );
}

/// `vmware-namespace-cmd ARGS` as root under `hvsim exec` (its RPCI goes
/// over vsock from a privileged port), optionally as `nobody`.
fn nscmd(sim: &Sim, args: &[&str], nobody: bool) -> Got {
    let tool = ovt("vmware-namespace-cmd");
    let mut c = if nobody {
        let mut c = sim.exec("vm0", Path::new("/usr/bin/setpriv"));
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(&tool);
        c
    } else {
        sim.exec("vm0", &tool)
    };
    let o = c.args(args).stdin(Stdio::null()).output().unwrap();
    Got {
        rc: o.status.code().unwrap_or(-1),
        out: stdout(&o),
        err: stderr(&o),
    }
}

#[test]
fn namespace_db_answers_vmware_namespace_cmd_as_esxi() {
    let mut sim = Sim::with_config(CONFIG);
    let ns = "com.example.toolbox";
    let g = nscmd(&sim, &["set-key", ns, "-k", "ready", "-v", "TRUE"], false);
    assert_eq!((g.rc, g.out.as_str()), (0, ""), "{g:?}");
    let g = nscmd(&sim, &["get-value", ns, "-k", "ready"], false);
    assert_eq!((g.rc, g.out.as_str()), (0, "TRUE"), "{g:?}");
    // Compare-and-set: a stale old value changes nothing.
    let g = nscmd(
        &sim,
        &["set-key", ns, "-k", "ready", "-v", "X", "-o", "FALSE"],
        false,
    );
    assert_eq!(
        (g.rc, g.err.as_str()),
        (1, "failure: Old value does not match\n"),
        "{g:?}"
    );
    let g = nscmd(
        &sim,
        &["set-key", ns, "-k", "ready", "-v", "FALSE", "-o", "TRUE"],
        false,
    );
    assert_eq!(g.rc, 0, "{g:?}");
    // A value from a file, as `-f` reads it.
    let file = sim.dir.path().join("value.txt");
    std::fs::write(&file, "line one\nline two\n").unwrap();
    let g = nscmd(
        &sim,
        &["set-key", ns, "-k", "text", "-f", file.to_str().unwrap()],
        false,
    );
    assert_eq!(g.rc, 0, "{g:?}");
    let g = nscmd(&sim, &["get-value", ns, "-k", "text"], false);
    assert_eq!((g.rc, g.out.as_str()), (0, "line one\nline two\n"), "{g:?}");
    let g = nscmd(
        &sim,
        &["get-value", "com.example.none", "-k", "ready"],
        false,
    );
    assert_eq!(
        (g.rc, g.err.as_str()),
        (1, "failure: Namespace not found\n"),
        "{g:?}"
    );
    // Not root: no privileged source port, so no namespace DB.
    let g = nscmd(&sim, &["get-value", ns, "-k", "ready"], true);
    assert_eq!(
        (g.rc, g.err.as_str()),
        (1, "failure: Permission denied\n"),
        "{g:?}"
    );
    // The unprivileged backdoor channel is refused the same way.
    let o = sim.rpctool("vm0", &[&format!("namespace-priv-get-values {ns}")]);
    assert_eq!(stderr(&o), "Permission denied\n");
    assert_eq!(sim.show("vm0")["namespaces"][ns]["ready"], "FALSE");
    // Persisted with the VM's state.
    sim.kill9_and_restart();
    let g = nscmd(&sim, &["get-value", ns, "-k", "ready"], false);
    assert_eq!((g.rc, g.out.as_str()), (0, "FALSE"), "{g:?}");
    let g = nscmd(&sim, &["delete-key", ns, "-k", "ready"], false);
    assert_eq!(g.rc, 0, "{g:?}");
    let g = nscmd(&sim, &["delete-key", ns, "-k", "text"], false);
    assert_eq!(g.rc, 0, "{g:?}");
    // The host side writes too (serviceDiscovery's consumer writes `signal`).
    let o = sim.hvsim(&[
        "vm",
        "namespace-set",
        "vm0",
        ns,
        "signal",
        "300000,1700000000000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = nscmd(&sim, &["get-value", ns, "-k", "signal"], false);
    assert_eq!((g.rc, g.out.as_str()), (0, "300000,1700000000000"), "{g:?}");
    let o = sim.hvsim(&["vm", "namespace-set", "vm0", ns, "signal"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sim.hvsim(&["vm", "namespace-set", "vm0", "com.example.none", "k", "v"]);
    assert!(stderr(&o).contains("has no namespace"), "{}", stderr(&o));
    assert_eq!(sim.show("vm0")["namespaces"][ns], serde_json::json!({}));
}

/// A tools channel gets the VM's options after the handshake, as a VMX
/// sends them, and a change made with `hvsim vm set-option` while the
/// tools run (a minimal TCLO poller plays them).
#[test]
fn options_reach_a_running_guest_agent_as_set_option() {
    use agent::transport::unix::UnixBackdoor;
    use protocol::guest::GuestChannel;
    use std::sync::atomic::{AtomicBool, Ordering};
    let sim = Sim::with_config(
        "[[vm]]\nname = \"vm0\"\noptions = { \"time.synchronize.tools.startup\" = \"0\" }\n",
    );
    let sock = sim.socket("vm0");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let guest = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let bd = UnixBackdoor::connect(&sock).unwrap();
            let mut ch = GuestChannel::open(bd, protocol::proto::TCLO).unwrap();
            let mut reply: Vec<u8> = Vec::new();
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let cmd = ch.call(&reply).unwrap().to_vec();
                reply = if cmd.is_empty() {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    Vec::new()
                } else {
                    seen.push(String::from_utf8_lossy(&cmd).into_owned());
                    b"OK ".to_vec()
                };
            }
            seen
        })
    };
    sim.eventually("tools running", || {
        sim.show("vm0")["tools"]["status"] == "running"
    });
    let o = sim.hvsim(&["vm", "set-option", "vm0", "synctime", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sim.hvsim(&["vm", "tclo", "vm0", "ping", "--timeout", "10"]);
    assert_eq!(stdout(&o), "OK \n", "{}", stderr(&o));
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        guest.join().unwrap(),
        [
            "reset",
            "Capabilities_Register",
            "Set_Option time.synchronize.tools.startup 0",
            "Set_Option synctime 1",
            "ping"
        ]
    );
}
