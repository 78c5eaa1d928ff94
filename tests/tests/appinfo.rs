//! appInfo: the guest's running applications in `guestinfo.appInfo` (JSON
//! version 1), from vm-agent and from Debian's vmtoolsd (its appInfo plugin
//! under `hvsim exec`), as `hvsim vm show --json` shows them parsed; the
//! host's `Set_Option enableAppInfo` and the agent's stop clear it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{bin, frontend, stderr, stdout, stop_child, Frontend, Sim};
use serde_json::Value;

struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop_child(c, Duration::from_secs(10));
        }
    }
}

/// vm-agent against vm0 with only appInfo of interest: no clock, no guest
/// information, harmless power commands.
fn agent(sim: &Sim, appinfo: &str) -> (Daemon, PathBuf) {
    let dir = sim.dir.path();
    let config = dir.join("agent.toml");
    let log = dir.join("agent.log");
    std::fs::write(
        &config,
        format!(
            "[agent]\nreconnect_ms = 100\n[timesync]\nenabled = false\n[guestinfo]\nenabled = false\n\
             [powerops]\nhalt_command = \"true\"\nreboot_command = \"true\"\n[appinfo]\n{appinfo}"
        ),
    )
    .unwrap();
    let mut c = match frontend() {
        Frontend::Socket => {
            let mut c = Command::new(bin("vm-agent"));
            c.args(["--backdoor", &sim.backdoor("vm0")]);
            c
        }
        Frontend::Trap => sim.exec("vm0", &bin("vm-agent")),
    };
    let logf = std::fs::File::create(&log).unwrap();
    let child = c
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "debug")
        .env("HVSIM_CONTROL", &sim.control)
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("start vm-agent");
    (Daemon(Some(child)), log)
}

/// Poll `vm show` until `cond` holds on its `appinfo`.
fn wait_appinfo(sim: &Sim, log: &Path, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = sim.show("vm0");
        if cond(&v["appinfo"]) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; hvsim shows {:#}\nlog:\n{}",
            v["appinfo"],
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn names(a: &Value) -> Vec<String> {
    a["applications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| x["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn tclo(sim: &Sim, cmd: &str) -> String {
    let o = sim.hvsim(&["vm", "tclo", "vm0", cmd]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

/// The layout vmtoolsd writes (the guest variable as the host stores it).
fn assert_vmtoolsd_layout(raw: &str) {
    assert!(
        raw.starts_with("{\n\"version\":\"1\", \n\"updateCounter\":\""),
        "{raw}"
    );
    assert!(raw.contains("\", \n\"publishTime\":\""), "{raw}");
    assert!(raw.contains("\", \n\"applications\":[\n{\"a\":\""), "{raw}");
    assert!(raw.ends_with("\"}]}"), "{raw}");
}

#[test]
fn vm_agent_reports_running_applications_and_the_host_switches_it() {
    let sim = Sim::start();
    let (mut daemon, log) = agent(&sim, "poll-interval = 1\n");
    let v = wait_appinfo(&sim, &log, "two reports", |a| {
        a["update_counter"].as_u64() >= Some(2)
    });
    let a = &v["appinfo"];
    assert_eq!(a["enabled"], true);
    let names = names(a);
    // The agent sees itself; duplicates are removed.
    assert!(names.iter().any(|n| n == "vm-agent"), "{names:?}");
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    assert_eq!(a["count"], names.len());
    assert!(a["publish_time"].as_str().unwrap().ends_with('Z'), "{a:#}");
    assert_vmtoolsd_layout(v["guestinfo"]["guestinfo.appInfo"].as_str().unwrap());

    // Switched off by the host: the key is cleared.
    assert!(tclo(&sim, "Set_Option enableAppInfo 0").starts_with("OK"));
    wait_appinfo(&sim, &log, "appInfo cleared", |a| a["enabled"] == false);
    // And on again: reports resume.
    assert!(tclo(&sim, "Set_Option enableAppInfo 1").starts_with("OK"));
    wait_appinfo(&sim, &log, "reports again", |a| a["enabled"] == true);
    // An agent that stops withdraws the list.
    if let Some(c) = daemon.0.take() {
        stop_child(c, Duration::from_secs(10));
    }
    wait_appinfo(&sim, &log, "cleared at stop", |a| a["enabled"] == false);
}

#[test]
fn vm_agent_waits_at_least_30_s_after_a_reset_by_default() {
    let sim = Sim::start();
    let (_daemon, log) = agent(&sim, "");
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.show("vm0")["tools"]["status"] != "running" {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first report of a 6-hour interval comes 30 s or more after the
    // channel reset: nothing yet.
    assert_eq!(sim.show("vm0")["appinfo"], Value::Null);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("appinfo: next report in"), "{text}");
}

#[test]
fn vmtoolsd_appinfo_plugin_reports_the_same_document() {
    let sim = Sim::start();
    let dir = sim.dir.path().join("vmtoolsd");
    let (plugins, common) = (dir.join("plugins"), dir.join("common"));
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(&common).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/x86_64-linux-gnu/open-vm-tools/plugins/vmsvc/libappInfo.so",
        plugins.join("libappInfo.so"),
    )
    .unwrap();
    let conf = dir.join("tools.conf");
    let log = dir.join("vmsvc.log");
    std::fs::write(
        &conf,
        format!(
            "[logging]\nlog = true\nvmsvc.level = debug\nvmsvc.handler = file\nvmsvc.data = {}\n\n[appinfo]\npoll-interval = 1\n",
            log.display()
        ),
    )
    .unwrap();
    let child = sim
        .exec("vm0", Path::new("/usr/bin/vmtoolsd"))
        .args(["-n", "vmsvc", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(&plugins)
        .arg("--common-path")
        .arg(&common)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vmtoolsd under hvsim exec");
    let mut daemon = Daemon(Some(child));
    let v = wait_appinfo(&sim, &log, "vmtoolsd's report", |a| {
        a["update_counter"].as_u64() >= Some(1)
    });
    let a = &v["appinfo"];
    assert!(names(a).iter().any(|n| n == "vmtoolsd"), "{a:#}");
    assert_vmtoolsd_layout(v["guestinfo"]["guestinfo.appInfo"].as_str().unwrap());
    // The host switches it off and on.
    assert!(tclo(&sim, "Set_Option enableAppInfo 0").starts_with("OK"));
    wait_appinfo(&sim, &log, "vmtoolsd cleared it", |a| a["enabled"] == false);
    assert!(tclo(&sim, "Set_Option enableAppInfo 1").starts_with("OK"));
    wait_appinfo(&sim, &log, "vmtoolsd reports again", |a| {
        a["enabled"] == true
    });
    if let Some(c) = daemon.0.take() {
        stop_child(c, Duration::from_secs(10));
    }
    wait_appinfo(&sim, &log, "vmtoolsd cleared it at stop", |a| {
        a["enabled"] == false
    });
}
