//! Conformance with Debian's open-vm-tools (12.2), the real VMware guest
//! tools, run unmodified under `hvsim exec`: what they expect of a VMware
//! host is what hvsim must do. `.ci/run` installs the package.
//!
//! vmtoolsd runs with only its guestInfo plugin (a private plugin directory,
//! an empty common-plugin directory, a private tools.conf), inside a network
//! namespace this test creates, so it can neither step the clock (no timeSync),
//! run power scripts (no powerOps) nor see the machine's own interfaces; and
//! no power-state TCLO command is ever sent to it.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{bin, stderr, stdout, Sim};
use serde_json::Value;

/// An open-vm-tools program, or a panic that says how to install it.
fn ovt(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is missing: install Debian's open-vm-tools (apt-get install open-vm-tools); .ci/run does");
}

fn run(sim: &Sim, program: &std::path::Path, msg: &str) -> Output {
    sim.exec("vm0", program)
        .arg(msg)
        .stdin(Stdio::null())
        .output()
        .expect("run hvsim exec")
}

#[test]
fn vmware_rpctool_reads_the_ovf_environment() {
    let dir = tempfile::Builder::new()
        .prefix("hvsim-t")
        .tempdir()
        .unwrap();
    let mut ovf = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\">\n");
    for i in 0..2000 {
        ovf.push_str(&format!(
            "  <Property key=\"k{i}\" value=\"value of property {i}\"/>\n"
        ));
    }
    ovf.push_str("</Environment>\n");
    std::fs::write(dir.path().join("ovf-env.xml"), &ovf).unwrap();
    let sim = Sim::with_config_in(dir, "[[vm]]\nname = \"vm0\"\novf_env = \"ovf-env.xml\"\n");
    let theirs = run(&sim, &ovt("vmware-rpctool"), "info-get guestinfo.ovfEnv");
    assert_eq!(theirs.status.code(), Some(0), "{}", stderr(&theirs));
    assert_eq!(stdout(&theirs), format!("{ovf}\n"));
    let ours = run(&sim, &bin("vm-rpctool"), "info-get guestinfo.ovfEnv");
    assert_eq!(
        ours.stdout, theirs.stdout,
        "vm-rpctool prints the same bytes"
    );
    assert_eq!(ours.status.code(), Some(0));
}

#[test]
fn variables_cross_between_the_two_tools_and_failures_match() {
    let sim = Sim::start();
    let theirs = ovt("vmware-rpctool");
    let ours = bin("vm-rpctool");
    let o = run(
        &sim,
        &theirs,
        "info-set guestinfo.from-vmware set by vmware-rpctool",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&sim, &ours, "info-get guestinfo.from-vmware");
    assert_eq!(stdout(&o), "set by vmware-rpctool\n", "{}", stderr(&o));
    let o = run(
        &sim,
        &ours,
        "info-set guestinfo.from-ours set by vm-rpctool",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&sim, &theirs, "info-get guestinfo.from-ours");
    assert_eq!(stdout(&o), "set by vm-rpctool\n", "{}", stderr(&o));
    // The host stored exactly the value, without the NUL vmware-rpctool's
    // C strings might carry.
    assert_eq!(
        sim.show("vm0")["guestinfo"]["guestinfo.from-vmware"],
        "set by vmware-rpctool"
    );
    for msg in ["info-get guestinfo.never-set", "no-such-command x"] {
        let a = run(&sim, &theirs, msg);
        let b = run(&sim, &ours, msg);
        assert_eq!(a.status.code(), Some(1), "{msg}: {}", stderr(&a));
        assert_eq!(b.status.code(), a.status.code(), "{msg}");
        assert_eq!(stdout(&b), stdout(&a), "{msg}");
        assert_eq!(stderr(&b), stderr(&a), "{msg}");
    }
}

/// A network namespace with one veth end carrying documentation addresses;
/// deleted (with the pair) on drop.
struct Netns {
    name: String,
}

fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (install iproute2)");
    assert!(o.status.success(), "ip {}: {}", args.join(" "), stderr(&o));
}

impl Netns {
    fn new() -> Netns {
        // Tests run in parallel: one namespace each.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = std::process::id();
        let name = format!("hvsim-ovt-{id}-{k}");
        let (outer, inner) = (format!("hvo{id}x{k}"), format!("eth-hv{}x{k}", id % 1000));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        ip(&["link", "set", &inner, "netns", &ns.name]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            &inner,
        ]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            "2001:db8::2/64",
            "dev",
            &inner,
            "nodad",
        ]);
        ip(&["-n", &ns.name, "link", "set", &inner, "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip(&["link", "set", &outer, "up"]);
        ns
    }

    /// `ip -j addr` inside: (MAC, [(addr, prefix)]) of each non-loopback link.
    fn addrs(&self) -> Vec<(String, Vec<(String, u64)>)> {
        let o = Command::new("ip")
            .args(["-n", &self.name, "-j", "addr"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|l| l["link_type"] != "loopback")
            .map(|l| {
                let ips = l["addr_info"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        (
                            a["local"].as_str().unwrap().to_string(),
                            a["prefixlen"].as_u64().unwrap(),
                        )
                    })
                    .collect();
                (l["address"].as_str().unwrap().to_string(), ips)
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM reaches vmtoolsd through hvsim exec; it exits cleanly.
        if let Some(c) = self.0.take() {
            e2e_tests::stop_child(c, Duration::from_secs(10));
        }
    }
}

fn hostname() -> String {
    let mut b = [0u8; 256];
    // SAFETY: gethostname writes at most b.len() bytes into b.
    unsafe { libc::gethostname(b.as_mut_ptr().cast(), b.len()) };
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// MemTotal of this machine, KiB (vmtoolsd runs here, so it is the guest's).
fn meminfo_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal in /proc/meminfo")
}

#[test]
fn vmtoolsd_reports_the_guest_and_answers_tclo() {
    let vmtoolsd = ovt("vmtoolsd");
    let sim = Sim::start();
    let ns = Netns::new();
    let dir = sim.dir.path().join("vmtoolsd");
    let plugins = dir.join("plugins");
    let common = dir.join("common");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&common).unwrap();
    let guestinfo = ["/usr/lib/x86_64-linux-gnu/open-vm-tools/plugins/vmsvc/libguestInfo.so"];
    std::os::unix::fs::symlink(guestinfo[0], plugins.join("libguestInfo.so")).unwrap();
    let conf = dir.join("tools.conf");
    std::fs::write(
        &conf,
        format!(
            "[logging]\nlog = true\nvmsvc.level = debug\nvmsvc.handler = file\nvmsvc.data = {}\n\n[guestinfo]\npoll-interval = 2\nstats-interval = 1\n",
            dir.join("vmsvc.log").display()
        ),
    )
    .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(bin("hvsim"))
        .args(["exec", "--vm", "vm0", "--"])
        .arg(&vmtoolsd)
        .args(["-n", "vmsvc", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(&plugins)
        .arg("--common-path")
        .arg(&common)
        .env("HVSIM_CONTROL", &sim.control)
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vmtoolsd under hvsim exec");
    let _daemon = Daemon(Some(child));
    let log = || std::fs::read_to_string(dir.join("vmsvc.log")).unwrap_or_default();

    let want = ns.addrs();
    assert!(!want.is_empty(), "the namespace has its veth link");
    let deadline = Instant::now() + Duration::from_secs(40);
    let show = loop {
        let v = sim.show("vm0");
        let nics = v["guest"]["nics"].as_array().map_or(0, Vec::len);
        if v["tools"]["status"] == "running"
            && v["guest"]["hostname"].is_string()
            && nics > 0
            && v["tools"]["version"].is_string()
            && v["guest"]["os_name"].is_string()
            && v["guest"]["disks"].is_object()
            && v["guest"]["memory"]["stats"]["guest.page.inRate"]["value"].is_number()
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "vmtoolsd did not report in 40 s; hvsim shows {v:#}\nvmtoolsd log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(show["guest"]["hostname"], hostname());
    // hvsim greets the new TCLO channel with reset and Capabilities_Register
    // as a VMX does; vmtoolsd 12.2 then reports `tools.set.versiontype 12352 4`.
    assert_eq!(show["tools"]["version"], "12352", "{show:#}");
    assert_eq!(show["tools"]["version_string"], "12.2.0");
    assert_eq!(show["tools"]["version_type"], "4");
    // Detailed OS data (key 11) gives the OS names; no C terminators leak
    // into what the host shows.
    assert!(
        !show["guest"]["os_name"].as_str().unwrap().is_empty(),
        "{show:#}"
    );
    assert!(
        !show["guest"]["os_full_name"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{show:#}"
    );
    assert!(
        show["guest"]["os_detailed"]
            .as_str()
            .unwrap_or("")
            .contains("prettyName="),
        "{show:#}"
    );
    let text = show.to_string();
    assert!(!text.contains("\\u0000"), "a NUL leaked into {show:#}");
    // After reset vmtoolsd sends disk info as JSON.
    assert!(show["guest"]["disks"]["disks"].is_array(), "{show:#}");
    // vmtoolsd's memory statistics (SetGuestInfo 8, every stats-interval)
    // decode: its MemTotal is this machine's, its legacy header and units
    // are as open-vm-tools defines them, and nothing failed to decode.
    let mem = &show["guest"]["memory"];
    let total = meminfo_total();
    assert_eq!(mem["version"], 5, "{mem:#}");
    assert!(show["guest"]["memory_error"].is_null(), "{show:#}");
    assert_eq!(mem["stats"]["guest.mem.total"]["value"], total, "{mem:#}");
    assert_eq!(mem["stats"]["guest.mem.total"]["unit"], "KiB");
    assert_eq!(mem["stats"]["guest.page.size"]["unit"], "B");
    assert_eq!(mem["stats"]["guest.page.inRate"]["unit"], "pages/s");
    for name in [
        "guest.mem.free",
        "guest.mem.available",
        "guest.mem.physUsable",
    ] {
        assert!(
            mem["stats"][name]["value"].as_u64().is_some_and(|v| v > 0),
            "{name} in {mem:#}"
        );
    }
    assert!(
        mem["legacy_total_kib"].as_u64().is_some_and(|v| v > 0),
        "{mem:#}"
    );
    let nics = show["guest"]["nics"].as_array().unwrap();
    for (mac, ips) in &want {
        let nic = nics
            .iter()
            .find(|n| n["mac"].as_str().map(str::to_lowercase).as_deref() == Some(mac))
            .unwrap_or_else(|| panic!("NIC {mac} missing from {nics:#?}"));
        for (addr, prefix) in ips {
            assert!(
                nic["ips"].as_array().into_iter().flatten().any(|i| {
                    i["addr"].as_str() == Some(addr) && i["prefix"].as_u64() == Some(*prefix)
                }),
                "{addr}/{prefix} missing from {nic:#}"
            );
        }
    }

    // The host's TCLO commands reach vmtoolsd's loop.
    let o = sim.hvsim(&["vm", "tclo", "vm0", "ping"]);
    assert_eq!(stdout(&o), "OK \n", "{}", stderr(&o));
    // What a VMX sends when tools start: vmtoolsd answers with its version
    // and capabilities.
    let o = sim.hvsim(&["vm", "tclo", "vm0", "Capabilities_Register"]);
    assert!(stdout(&o).starts_with("OK"), "{}{}", stdout(&o), stderr(&o));
    // vmtoolsd 12 reports `tools.set.versiontype 12352 4` (12.2.0,
    // open-vm-tools) and sends `tools.set.version` only when that fails.
    let v = sim.show("vm0");
    let reported = v["tools"]["version"].is_string()
        || v["tools"]["version"].is_number()
        || v["tools"]["version_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("12352 "));
    assert!(
        reported,
        "no tools version after Capabilities_Register: {v:#}"
    );
    let o = sim.hvsim(&["vm", "tclo", "vm0", "no-such-tclo-command"]);
    assert!(stdout(&o).starts_with("ERROR"), "{}", stdout(&o));
}

/// vmtoolsd's RpcIn connects vsock CID 0 port 975 before it would poll the
/// backdoor, and its RPCI channels connect port 976 before they would use
/// it; under `hvsim exec` these reach the VM's TCLO and RPCI endpoints, so
/// the host pushes commands, the guest reports over vsock, and an idle
/// vmtoolsd makes no backdoor call: over the backdoor it polls TCLO ten
/// times a second and sends each report as five calls.
#[test]
fn vmtoolsd_takes_tclo_over_vsock_and_does_not_poll_at_idle() {
    let vmtoolsd = ovt("vmtoolsd");
    let sim = Sim::start();
    let ns = Netns::new();
    // The guestInfo plugin only: it reports every second or two.
    let dir = sim.dir.path().join("vmtoolsd");
    let (plugins, common) = (dir.join("plugins"), dir.join("common"));
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&common).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/x86_64-linux-gnu/open-vm-tools/plugins/vmsvc/libguestInfo.so",
        plugins.join("libguestInfo.so"),
    )
    .unwrap();
    let conf = dir.join("tools.conf");
    std::fs::write(
        &conf,
        format!(
            "[logging]\nlog = true\nvmsvc.level = debug\nvmsvc.handler = file\nvmsvc.data = {}\n\n[guestinfo]\npoll-interval = 2\nstats-interval = 1\n",
            dir.join("vmsvc.log").display()
        ),
    )
    .unwrap();
    let start = |vsock: &str| {
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(bin("hvsim"))
            .args(["exec", "--vm", "vm0", "--"])
            .arg(&vmtoolsd)
            .args(["-n", "vmsvc", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(&plugins)
            .arg("--common-path")
            .arg(&common)
            .env("HVSIM_CONTROL", &sim.control)
            .env("HVSIM_EXEC_VSOCK", vsock)
            .env_remove("VM_BACKDOOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vmtoolsd under hvsim exec")
    };
    let daemon = Daemon(Some(start("1")));
    let log = || std::fs::read_to_string(dir.join("vmsvc.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = sim.show("vm0");
        if v["tools"]["status"] == "running"
            && v["tools"]["tclo_transport"] == "vsock"
            && v["tools"]["version"] == "12352"
            && v["guest"]["os_name"].is_string()
            && v["guest"]["hostname"].is_string()
            && v["guest"]["memory"]["stats"]["guest.mem.total"]["value"].is_number()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "vmtoolsd did not report over vsock in 30 s; hvsim shows {v:#}\nvmtoolsd log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        log().contains("RpcIn: successfully created vsocket connection"),
        "{}",
        log()
    );
    assert!(
        log().contains("VSockChan: Successfully created priv vsocket"),
        "{}",
        log()
    );
    let o = sim.hvsim(&["vm", "tclo", "vm0", "ping"]);
    assert_eq!(stdout(&o), "OK \n", "{}", stderr(&o));
    let o = sim.hvsim(&["vm", "tclo", "vm0", "no-such-tclo-command"]);
    assert!(stdout(&o).starts_with("ERROR"), "{}", stdout(&o));
    // Everything so far, start-up included, took a handful of backdoor
    // calls (open-vm-tools' "am I in a VM" probes; 4 measured): every
    // report went over vsock.
    let v = sim.show("vm0");
    let startup = v["backdoor"]["calls"].as_u64().unwrap();
    let messages = v["vsock"]["rpci_messages"].as_u64().unwrap();
    eprintln!("vmtoolsd over vsock: {startup} backdoor calls and {messages} vsock RPCI messages to its first full report");
    assert!(
        startup <= 20,
        "{startup} backdoor calls at start-up\n{}",
        log()
    );
    assert!(messages >= 5, "{messages} RPCI messages over vsock");

    // Idle: heartbeats on the TCLO stream, reports on the RPCI stream, no
    // backdoor call.
    std::thread::sleep(Duration::from_secs(1));
    let calls = || sim.show("vm0")["backdoor"]["calls"].as_u64().unwrap();
    let rpci = || sim.show("vm0")["vsock"]["rpci_messages"].as_u64().unwrap();
    let (before, rpci_before) = (calls(), rpci());
    std::thread::sleep(Duration::from_secs(3));
    let (idle, reports) = (calls() - before, rpci() - rpci_before);
    eprintln!(
        "vmtoolsd over vsock: {idle} backdoor calls and {reports} vsock RPCI messages in 3 s idle"
    );
    assert!(
        idle <= 2,
        "{idle} backdoor calls in 3 s of idle over vsock\n{}",
        log()
    );
    // Memory statistics every second.
    assert!(reports >= 2, "{reports} RPCI messages in 3 s of idle");
    let v = sim.show("vm0");
    assert_eq!(v["tools"]["status"], "running", "heartbeats: {v:#}");
    assert_eq!(v["tools"]["version_type"], "4", "{v:#}");
    assert!(
        v["guest"]["memory"]["age_s"]
            .as_u64()
            .is_some_and(|a| a <= 2),
        "fresh statistics: {v:#}"
    );

    // Gone with its connection.
    drop(daemon);
    sim.eventually("tools not running after vmtoolsd exits", || {
        let v = sim.show("vm0");
        v["tools"]["status"] == "not-running" && v["tools"]["tclo_transport"].is_null()
    });

    // The same vmtoolsd without vsock (HVSIM_EXEC_VSOCK=0: its connects
    // fail, as on a host without it) polls and reports over the backdoor.
    let _daemon = Daemon(Some(start("0")));
    sim.eventually("vmtoolsd polling over the backdoor", || {
        let v = sim.show("vm0");
        v["tools"]["status"] == "running" && v["tools"]["tclo_transport"] == "backdoor"
    });
    let o = sim.hvsim(&["vm", "tclo", "vm0", "ping"]);
    assert_eq!(stdout(&o), "OK \n", "{}", stderr(&o));
    std::thread::sleep(Duration::from_secs(1));
    let (before, rpci_before) = (calls(), rpci());
    std::thread::sleep(Duration::from_secs(3));
    let polling = calls() - before;
    eprintln!("vmtoolsd over the backdoor: {polling} backdoor calls in 3 s idle");
    assert_eq!(rpci(), rpci_before, "no vsock without the emulation");
    assert!(
        polling >= 30,
        "{polling} backdoor calls in 3 s: is vmtoolsd polling?"
    );
}
