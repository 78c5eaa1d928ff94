//! vm-agent end to end: a real `hvsim serve`, a real `vm-agent` (over the
//! socket transport, or under `hvsim exec` with HVSIM_E2E_FRONTEND=trap), and
//! network and UTS namespaces the tests create, so nothing here touches the
//! machine: power commands are stub scripts, the clock is never set,
//! addresses come from documentation ranges inside a private namespace.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use e2e_tests::{bin, frontend, stderr, stdout, stop_child, Frontend, Netns, Sim};
use serde_json::Value;

/// A running vm-agent; SIGTERM on drop.
struct Agent {
    child: Option<Child>,
    log: PathBuf,
    config: PathBuf,
}

impl Agent {
    /// Start vm-agent against `vm0` with `extra` config (appended to a base
    /// that disables the clock and stubs power commands), in `ns` (and a
    /// fresh UTS namespace with hostname `host`) when given.
    fn start(sim: &Sim, extra: &str, ns: Option<(&Netns, &str)>) -> Agent {
        Agent::start_with_env(sim, extra, ns, &[])
    }

    fn start_with_env(
        sim: &Sim,
        extra: &str,
        ns: Option<(&Netns, &str)>,
        env: &[(&str, &str)],
    ) -> Agent {
        Agent::spawn(
            sim,
            extra,
            ns,
            env,
            "[timesync]\nenabled = false\n",
            frontend(),
        )
    }

    /// Start vm-agent with this `[timesync]` section (which must name a
    /// `set_clock_command` stub when enabled). It runs without CAP_SYS_TIME
    /// as well, so even a bug could not step the machine's clock.
    fn start_timesync(sim: &Sim, timesync: &str) -> Agent {
        assert!(
            !timesync.contains("enabled = true") || timesync.contains("set_clock_command"),
            "an enabled timesync needs a clock stub"
        );
        Agent::spawn(sim, "", None, &[], timesync, frontend())
    }

    fn spawn(
        sim: &Sim,
        extra: &str,
        ns: Option<(&Netns, &str)>,
        env: &[(&str, &str)],
        timesync: &str,
        fe: Frontend,
    ) -> Agent {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = sim.dir.path();
        let config = dir.join(format!("agent{n}.toml"));
        let log = dir.join(format!("agent{n}.log"));
        let os_release = dir.join("os-release");
        if !os_release.exists() {
            std::fs::write(
                &os_release,
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                 VERSION_ID=\"12\"\nID=debian\n",
            )
            .unwrap();
        }
        let resolv = dir.join("resolv.conf");
        if !resolv.exists() {
            std::fs::write(
                &resolv,
                "nameserver 198.51.100.53\nnameserver 2001:db8::53\nsearch example.org\n",
            )
            .unwrap();
        }
        std::fs::write(
            &config,
            format!(
                "[agent]\nreconnect_ms = 100\n{timesync}\
                 [powerops]\nhalt_command = \"echo halt >> {d}/power.log\"\n\
                 reboot_command = \"echo reboot >> {d}/power.log\"\nscripts_dir = \"{d}/scripts\"\n\
                 [guestinfo]\nos_release = \"{o}\"\nresolv_conf = \"{r}\"\nreport_disks = false\n\
                 debounce_ms = 100\n{extra}",
                d = dir.display(),
                o = os_release.display(),
                r = resolv.display(),
            ),
        )
        .unwrap();
        // `extra` holds more [guestinfo] keys (that section comes last).
        let agent = bin("vm-agent");
        let mut argv: Vec<String> = Vec::new();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // Root: drop CAP_SYS_TIME for good (bounding and inheritable sets).
            argv.extend(
                [
                    "setpriv",
                    "--bounding-set=-sys_time",
                    "--inh-caps=-sys_time",
                    "--",
                ]
                .map(String::from),
            );
        }
        if let Some((ns, host)) = ns {
            argv.extend(
                [
                    "ip", "netns", "exec", &ns.name, "unshare", "--uts", "--", "sh", "-c",
                ]
                .map(String::from),
            );
            argv.push(format!("hostname {host} && exec \"$0\" \"$@\""));
        }
        let mut args: Vec<String> = Vec::new();
        match fe {
            Frontend::Socket => {
                args.push(agent.display().to_string());
                args.extend(["--backdoor".into(), sim.backdoor("vm0")]);
            }
            Frontend::Trap => {
                args.push(bin("hvsim").display().to_string());
                args.extend(["exec", "--vm", "vm0", "--"].map(String::from));
                args.push(agent.display().to_string());
            }
        }
        args.extend(["--config".into(), config.display().to_string()]);
        argv.extend(args);
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env("RUST_LOG", "debug")
            .env("HVSIM_CONTROL", &sim.control)
            .env_remove("VM_BACKDOOR")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start vm-agent");
        Agent {
            child: Some(child),
            log,
            config,
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM and wait; the exit status.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        stop_child(self.child.take()?, Duration::from_secs(10))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Poll `hvsim vm show vm0` until `cond` holds; the snapshot, or a panic
/// with the agent's log after `secs`.
fn wait_show(
    sim: &Sim,
    agent: &Agent,
    secs: u64,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = sim.show("vm0");
        if cond(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; hvsim shows {v:#}\nvm-agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tclo(sim: &Sim, cmd: &str) -> String {
    let o = sim.hvsim(&["vm", "tclo", "vm0", cmd]);
    format!("{}{}", stdout(&o), stderr(&o))
}

fn nic<'a>(v: &'a Value, mac: &str) -> Option<&'a Value> {
    v["guest"]["nics"]
        .as_array()?
        .iter()
        .find(|n| n["mac"] == mac)
}

fn has_ip(v: &Value, mac: &str, addr: &str, prefix: u64) -> bool {
    nic(v, mac).is_some_and(|n| {
        n["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["addr"] == addr && i["prefix"] == prefix)
    })
}

fn running(v: &Value) -> bool {
    v["tools"]["status"] == "running" && v["guest"]["hostname"].is_string()
}

#[test]
fn answers_the_host_and_reports_the_os() {
    let sim = Sim::start();
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut agent = Agent::start_with_env(
        &sim,
        "",
        None,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 from vm-agent");
    assert!(
        buf[..n].starts_with(b"READY=1"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // The first report is several messages; wait for its last (uptime).
    let v = wait_show(&sim, &agent, 10, "tools running with a full report", |v| {
        running(v) && v["guest"]["uptime_s"].as_u64().is_some()
    });
    assert_eq!(v["guest"]["os_name"], "debian12-64");
    assert_eq!(v["guest"]["os_full_name"], "Debian GNU/Linux 12 (bookworm)");
    assert!(v["guest"]["uptime_s"].as_u64().is_some(), "{v:#}");
    assert!(v["tools"]["unified_loop"].is_null() || v["tools"]["unified_loop"] == "toolbox");

    assert_eq!(tclo(&sim, "ping"), "OK \n");
    assert_eq!(tclo(&sim, "reset"), "OK ATR toolbox\n");
    assert_eq!(tclo(&sim, "Capabilities_Register"), "OK \n");
    let v = sim.show("vm0");
    // tools.set.versiontype "2147483647 4": hvsim splits version and type.
    assert_eq!(v["tools"]["version"], "2147483647");
    assert_eq!(v["tools"]["version_type"], "4");
    assert_eq!(v["tools"]["capabilities"]["statechange"], "");
    assert_eq!(v["tools"]["capabilities"]["softpowerop_retry"], "1");
    // Malformed and unknown commands get error replies; the agent lives on.
    assert_eq!(tclo(&sim, "no_such_command"), "ERROR Unknown Command\n");
    assert_eq!(tclo(&sim, "Set_Option"), "ERROR Unknown Command\n");
    assert_eq!(
        tclo(&sim, "Set_Option bogus 1"),
        "ERROR Unknown or invalid option\n"
    );
    assert_eq!(tclo(&sim, "\u{1}\u{2} junk"), "ERROR Unknown Command\n");
    // Time sync options are taken; with timesync disabled the clock is not
    // touched (the config has no way to, here: enabled = false).
    assert_eq!(tclo(&sim, "Set_Option synctime 1"), "OK \n");
    assert_eq!(tclo(&sim, "Set_Option broadcastIP 1"), "OK \n");
    let v = sim.show("vm0");
    assert!(v["guestinfo"]["guestinfo.ip"].is_string(), "{v:#}");
    assert_eq!(tclo(&sim, "ping"), "OK \n");

    // The watchdog keeps ticking.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = notify.recv(&mut buf).expect("WATCHDOG=1 from vm-agent");
        if &buf[..n] == b"WATCHDOG=1" {
            break;
        }
        assert!(Instant::now() < deadline);
    }

    // SIGHUP re-reads the config: another OS release file.
    let other = sim.dir.path().join("os-release-2");
    std::fs::write(
        &other,
        "ID=ubuntu\nVERSION_ID=\"24.04\"\nPRETTY_NAME=\"Ubuntu 24.04 LTS\"\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&agent.config).unwrap();
    let old = sim.dir.path().join("os-release").display().to_string();
    std::fs::write(
        &agent.config,
        text.replace(&old, &other.display().to_string()),
    )
    .unwrap();
    agent.signal(libc::SIGHUP);
    wait_show(&sim, &agent, 5, "the reloaded OS name", |v| {
        v["guest"]["os_name"] == "ubuntu-64" && v["guest"]["os_full_name"] == "Ubuntu 24.04 LTS"
    });

    // SIGTERM: a clean stop, announced to systemd.
    let st = agent.stop().expect("vm-agent stops on SIGTERM");
    assert!(st.success(), "{st}\n{}", agent.log());
    let mut stopping = false;
    notify
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok(n) = notify.recv(&mut buf) {
        stopping |= &buf[..n] == b"STOPPING=1";
    }
    assert!(stopping, "no STOPPING=1");
}

#[test]
fn reports_namespace_nics_and_follows_changes() {
    let sim = Sim::start();
    let ns = Netns::new("vmagent");
    // eth1: the guest's NIC; veth-peer and docker0 are excluded by default.
    ns.ip(&[
        "link",
        "add",
        "eth1",
        "address",
        "00:50:56:aa:00:01",
        "type",
        "veth",
        "peer",
        "name",
        "veth-peer",
        "address",
        "00:50:56:aa:00:02",
    ]);
    ns.ip(&[
        "link",
        "add",
        "docker0",
        "address",
        "02:42:00:00:00:01",
        "type",
        "bridge",
    ]);
    ns.ip(&[
        "link",
        "add",
        "eth2",
        "address",
        "00:50:56:aa:00:03",
        "type",
        "veth",
        "peer",
        "name",
        "veth-p2",
    ]);
    ns.ip(&["addr", "add", "198.51.100.10/24", "dev", "eth1"]);
    ns.ip(&["addr", "add", "2001:db8::10/64", "dev", "eth1", "nodad"]);
    ns.ip(&["addr", "add", "203.0.113.7/28", "dev", "eth2"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "docker0"]);
    for l in ["eth1", "veth-peer", "docker0", "eth2", "veth-p2"] {
        ns.ip(&["link", "set", l, "up"]);
    }
    ns.ip(&[
        "route",
        "add",
        "default",
        "via",
        "198.51.100.1",
        "dev",
        "eth1",
    ]);
    let agent = Agent::start(
        &sim,
        "primary_nics = [\"eth2\"]\n",
        Some((&ns, "agent-ns-1")),
    );

    let v = wait_show(&sim, &agent, 10, "the namespace's NICs", |v| {
        running(v) && has_ip(v, "00:50:56:aa:00:01", "2001:db8::10", 64)
    });
    assert_eq!(v["guest"]["hostname"], "agent-ns-1");
    let macs: Vec<&str> = v["guest"]["nics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["mac"].as_str().unwrap())
        .collect();
    // Primary first; veth* and docker* excluded; no loopback.
    assert_eq!(macs, ["00:50:56:aa:00:03", "00:50:56:aa:00:01"], "{v:#}");
    assert!(has_ip(&v, "00:50:56:aa:00:01", "198.51.100.10", 24));
    assert!(has_ip(&v, "00:50:56:aa:00:03", "203.0.113.7", 28));
    let eth1 = nic(&v, "00:50:56:aa:00:01").unwrap();
    let v4 = eth1["ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["addr"] == "198.51.100.10")
        .unwrap();
    assert_eq!(v4["origin"], "manual", "{eth1:#}");
    let routes = v["guest"]["routes"].as_array().unwrap();
    assert!(
        routes.iter().any(|r| r["dest"] == "0.0.0.0"
            && r["prefix"] == 0
            && r["gateway"] == "198.51.100.1"
            && r["nic"] == "00:50:56:aa:00:01"),
        "{routes:#?}"
    );
    assert_eq!(v["guest"]["dns"]["servers"][0], "198.51.100.53");
    assert_eq!(v["guest"]["dns"]["search"][0], "example.org");

    // An added address reaches the host at once (events, not the 30 s poll).
    let t = Instant::now();
    ns.ip(&["addr", "add", "198.51.100.11/25", "dev", "eth1"]);
    wait_show(&sim, &agent, 5, "the added address", |v| {
        has_ip(v, "00:50:56:aa:00:01", "198.51.100.11", 25)
    });
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    ns.ip(&["addr", "del", "198.51.100.10/24", "dev", "eth1"]);
    wait_show(&sim, &agent, 5, "the removed address gone", |v| {
        !has_ip(v, "00:50:56:aa:00:01", "198.51.100.10", 24)
            && has_ip(v, "00:50:56:aa:00:01", "198.51.100.11", 25)
    });
    // A new NIC, then its removal.
    ns.ip(&[
        "link",
        "add",
        "eth3",
        "address",
        "00:50:56:aa:00:04",
        "type",
        "veth",
        "peer",
        "name",
        "veth-p3",
    ]);
    wait_show(&sim, &agent, 5, "the new NIC", |v| {
        nic(v, "00:50:56:aa:00:04").is_some()
    });
    ns.ip(&["link", "del", "eth3"]);
    wait_show(&sim, &agent, 5, "the NIC gone", |v| {
        nic(v, "00:50:56:aa:00:04").is_none()
    });

    // A hostname change inside the agent's UTS namespace.
    let o = Command::new("nsenter")
        .args([
            "-t",
            &agent.pid().to_string(),
            "--uts",
            "hostname",
            "agent-ns-2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let t = Instant::now();
    wait_show(&sim, &agent, 5, "the new hostname", |v| {
        v["guest"]["hostname"] == "agent-ns-2"
    });
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

fn script(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[test]
fn power_operations_run_stubs_and_report() {
    let sim = Sim::start();
    let dir = sim.dir.path().to_owned();
    let power_log = dir.join("power.log");
    script(
        &dir.join("scripts"),
        "poweroff-vm-default",
        &format!("echo script >> {}\nsleep 0.5", power_log.display()),
    );
    script(
        &dir.join("scripts"),
        "resume-vm-default",
        &format!("echo resume-script >> {}", power_log.display()),
    );
    let agent = Agent::start(&sim, "", None);
    wait_show(&sim, &agent, 10, "tools running", running);

    assert_eq!(tclo(&sim, "OS_Resume"), "OK \n");
    wait_show(&sim, &agent, 5, "the resume status", |v| {
        v["tools"]["last_state_change"]["state"] == "resume"
            && v["tools"]["last_state_change"]["ok"] == true
    });
    assert_eq!(tclo(&sim, "OS_Reboot"), "OK \n");
    // One state change at a time.
    assert_eq!(
        tclo(&sim, "OS_Halt"),
        "ERROR State change already in progress\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&power_log).unwrap_or_default()
        != "resume-script\nscript\nreboot\n"
    {
        assert!(
            Instant::now() < deadline,
            "power log: {:?}\n{}",
            std::fs::read_to_string(&power_log),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = sim.show("vm0");
    assert_eq!(v["tools"]["last_state_change"]["state"], "reboot", "{v:#}");
    assert_eq!(v["tools"]["last_state_change"]["ok"], true);
}

#[test]
fn reconnects_after_the_host_restarts() {
    if frontend() == Frontend::Trap {
        // The `hvsim exec` tracer is a thread of `hvsim serve` (b4daf22):
        // killing serve kills the traced agent too, so there is nothing to
        // reconnect. The socket frontend covers the reconnect.
        eprintln!("skipped under the trap frontend: serve's death ends the traced agent");
        return;
    }
    let mut sim = Sim::start();
    let ns = Netns::new("vmagent");
    ns.ip(&[
        "link",
        "add",
        "eth1",
        "address",
        "00:50:56:bb:00:01",
        "type",
        "veth",
        "peer",
        "name",
        "veth-p1",
    ]);
    ns.ip(&["addr", "add", "198.51.100.20/24", "dev", "eth1"]);
    ns.ip(&["link", "set", "eth1", "up"]);
    let agent = Agent::start(&sim, "", Some((&ns, "agent-restart")));
    wait_show(&sim, &agent, 10, "the first report", |v| {
        running(v) && has_ip(v, "00:50:56:bb:00:01", "198.51.100.20", 24)
    });
    sim.kill9_and_restart();
    let t = Instant::now();
    let v = wait_show(&sim, &agent, 10, "the report after the restart", |v| {
        running(v) && has_ip(v, "00:50:56:bb:00:01", "198.51.100.20", 24)
    });
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "reconnected after {took:?}\n{}",
        agent.log()
    );
    assert_eq!(v["guest"]["hostname"], "agent-restart");
    assert_eq!(v["guest"]["os_name"], "debian12-64");
    assert_eq!(tclo(&sim, "ping"), "OK \n");
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "[guestinfo]\nexclude = []\n").unwrap();
    let o = Command::new(bin("vm-agent"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!("vm-agent: invalid config file {}", cfg.display())),
        "{e}"
    );
    assert!(e.contains("exclude"), "{e}");
    let o = Command::new(bin("vm-agent"))
        .args(["--backdoor", "tcp:1"])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("expected auto, port or unix:PATH"),
        "{}",
        stderr(&o)
    );
}

/// MemTotal of this machine, KiB (the agent runs here, so it is the guest's).
fn meminfo_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemTotal in /proc/meminfo")
}

fn mem_stat<'a>(v: &'a Value, name: &str) -> &'a Value {
    &v["guest"]["memory"]["stats"][name]
}

#[test]
fn reports_memory_statistics() {
    let sim = Sim::start();
    let agent = Agent::start(&sim, "stats_interval_secs = 1\n", None);
    // The first report goes with the first publish; rates need a second.
    let v = wait_show(&sim, &agent, 10, "memory statistics with rates", |v| {
        mem_stat(v, "guest.page.inRate")["value"].is_number()
    });
    let total = meminfo_total();
    assert_eq!(mem_stat(&v, "guest.mem.total")["value"], total, "{v:#}");
    assert_eq!(mem_stat(&v, "guest.mem.total")["unit"], "KiB");
    assert_eq!(v["guest"]["memory"]["version"], 5);
    // Physical usable memory: the zones' present pages (as vmtoolsd), at
    // least MemTotal, which leaves out what the kernel reserved.
    let usable = mem_stat(&v, "guest.mem.physUsable")["value"].as_u64();
    assert!(usable.is_some_and(|u| u >= total), "{v:#}");
    assert_eq!(v["guest"]["memory"]["legacy_total_kib"], usable.unwrap());
    assert!(v["guest"]["memory_error"].is_null(), "{v:#}");
    for name in [
        "guest.mem.free",
        "guest.mem.available",
        "guest.mem.buffers",
        "guest.mem.cached",
        "guest.mem.activeFileCache",
        "guest.mem.slabReclaim",
        "guest.mem.needed",
        "guest.swap.spaceRemaining",
    ] {
        let kib = mem_stat(&v, name)["value"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {v:#}"));
        assert!(kib <= total, "{name} = {kib} > MemTotal {total}");
        assert_eq!(mem_stat(&v, name)["unit"], "KiB", "{name}");
    }
    assert_eq!(mem_stat(&v, "guest.page.size")["unit"], "B");
    assert_eq!(mem_stat(&v, "guest.page.outRate")["unit"], "pages/s");
    assert_eq!(mem_stat(&v, "guest.hugePage.total")["unit"], "huge pages");
    // Reports keep coming on the interval.
    let age = |v: &Value| v["guest"]["memory"]["age_s"].as_u64().unwrap_or(99);
    std::thread::sleep(Duration::from_millis(2500));
    let v = sim.show("vm0");
    assert!(age(&v) <= 1, "{v:#}");
    // A malformed report is refused with its reason; hvsim keeps the last
    // good one, and the agent's next report clears the error.
    let o = sim.rpctool("vm0", &["SetGuestInfo  8 too short"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(stderr(&o).trim(), "Invalid memory statistics");
    let v = sim.show("vm0");
    assert!(
        v["guest"]["memory_error"]
            .as_str()
            .is_some_and(|e| e.contains("shorter than the 112-byte legacy header")),
        "{v:#}"
    );
    assert_eq!(mem_stat(&v, "guest.mem.total")["value"], total);
    wait_show(&sim, &agent, 5, "the error cleared", |v| {
        v["guest"]["memory_error"].is_null()
    });
    // The text view lists them with their units.
    let text = stdout(&sim.hvsim(&["vm", "show", "vm0"]));
    assert!(
        text.contains(&format!("guest.mem.total = {total} KiB")),
        "{text}"
    );
}

/// The lines a `set_clock_command` stub wrote: the times it was asked to set.
fn clock_log(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `Time_Synchronize` from the host: a one-shot sync through the clock stub
/// (never the real clock), replies as vmtoolsd's.
#[test]
fn time_synchronize_steps_the_clock_through_the_stub() {
    for (offset, enabled) in [(3600i64, true), (-3600, true), (3600, false)] {
        let sim = Sim::with_config(&format!(
            "[[vm]]\nname = \"vm0\"\nclock_offset_secs = {offset}\n"
        ));
        let log = sim.dir.path().join("clock.log");
        let agent = Agent::start_timesync(
            &sim,
            &format!(
                "[timesync]\nenabled = {enabled}\nset_clock_command = \"echo $1 >> {}\"\n",
                log.display()
            ),
        );
        wait_show(&sim, &agent, 10, "tools running", running);
        let what = format!("offset {offset}, enabled {enabled}");
        assert_eq!(
            tclo(&sim, "Time_Synchronize"),
            "ERROR Unable to tokenize TimeSync RPC data\n",
            "{what}"
        );
        assert_eq!(tclo(&sim, "Time_Synchronize 0"), "OK \n", "{what}");
        let steps = clock_log(&log);
        if !enabled {
            assert_eq!(tclo(&sim, "Time_Synchronize 1"), "OK \n");
            assert!(steps.is_empty() && clock_log(&log).is_empty(), "{what}");
            continue;
        }
        if offset > 0 {
            // Guest behind the host: stepped forward, whatever the argument.
            assert_eq!(steps.len(), 1, "{what}: {steps:?}\n{}", agent.log());
        } else {
            // Guest ahead: "0" does not step back; "1" does.
            assert!(steps.is_empty(), "{what}: {steps:?}");
            assert_eq!(tclo(&sim, "Time_Synchronize 1"), "OK \n");
        }
        let steps = clock_log(&log);
        assert_eq!(steps.len(), 1, "{what}: {steps:?}\n{}", agent.log());
        let want = epoch_now() + offset as f64;
        assert!(
            (steps[0] - want).abs() < 5.0,
            "{what}: set to {} instead of about {want}",
            steps[0]
        );
    }
}

fn backdoor_calls(sim: &Sim) -> u64 {
    sim.show("vm0")["backdoor"]["calls"].as_u64().unwrap_or(0)
}

/// Under `hvsim exec` the host offers TCLO over vsock: the agent takes its
/// commands there, pushed, and stops polling the backdoor for them.
#[test]
fn takes_host_commands_over_vsock_under_hvsim_exec() {
    let sim = Sim::start();
    // Its own namespace: other tests' links coming and going must not make
    // it publish.
    let ns = Netns::new("vmagent");
    let mut agent = Agent::spawn(
        &sim,
        "",
        Some((&ns, "agent-vsock")),
        &[],
        "[timesync]\nenabled = false\n",
        Frontend::Trap,
    );
    let v = wait_show(&sim, &agent, 15, "the agent over vsock", |v| {
        running(v) && v["tools"]["tclo_transport"] == "vsock"
    });
    assert_eq!(v["guest"]["os_name"], "debian12-64");
    assert!(agent.log().contains("host commands arrive over vsock"));
    assert!(agent.log().contains("guest messages go over vsock"));
    assert!(
        v["vsock"]["rpci_messages"].as_u64().unwrap_or(0) > 0,
        "{v:#}"
    );
    for _ in 0..5 {
        assert_eq!(tclo(&sim, "ping"), "OK \n");
    }
    assert!(tclo(&sim, "No_Such_Command").contains("Unknown Command"));
    // Idle: no TCLO polling (the backdoor poll would make 20 calls a second)
    // and the memory reports go over vsock too.
    std::thread::sleep(Duration::from_millis(500));
    let before = backdoor_calls(&sim);
    std::thread::sleep(Duration::from_secs(2));
    let idle = backdoor_calls(&sim) - before;
    assert!(
        idle <= 2,
        "{idle} backdoor calls in 2 s idle\n{}",
        agent.log()
    );
    // The heartbeat keeps the tools running; a stopped agent is not.
    std::thread::sleep(Duration::from_secs(2));
    assert!(running(&sim.show("vm0")));
    agent.stop();
    wait_show(&sim, &agent, 10, "tools not running", |v| {
        v["tools"]["status"] != "running"
    });
}

/// `agent.vsock = false`: the backdoor poll, as before.
#[test]
fn vsock_can_be_turned_off() {
    let sim = Sim::start();
    let ns = Netns::new("vmagent");
    let agent = Agent::spawn(
        &sim,
        "",
        Some((&ns, "agent-novsock")),
        &[],
        "vsock = false\n[timesync]\nenabled = false\n",
        Frontend::Trap,
    );
    wait_show(&sim, &agent, 15, "the agent polling the backdoor", |v| {
        running(v) && v["tools"]["tclo_transport"] == "backdoor"
    });
    assert_eq!(tclo(&sim, "ping"), "OK \n");
    assert!(!agent.log().contains("over vsock"));
}
