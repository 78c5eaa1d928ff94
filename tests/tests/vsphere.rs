//! The vSphere API (vim25 SOAP) against pyvmomi (tests/py/vsphere_client.py,
//! in the Python named by `HVSIM_PY`), with a real vm-agent reporting from a
//! network and UTS namespace the test creates: what pyvmomi reads is what
//! the agent reported, a variable set through ReconfigVM is what the guest
//! reads with vm-rpctool, power changes reach the VM every service sees, a
//! property filter wakes when the guest gets a new address.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::loopfs::LoopFs;
use e2e_tests::{bin, python, stderr, stdout, stop_child, workspace, Netns, Sim};
use serde_json::Value;

const USERS: &str = "[[user]]\nname = \"admin\"\npassword = \"s3cret\"\nrole = \"Administrator\"\n\
                     [[user]]\nname = \"viewer\"\npassword = \"look\"\nrole = \"ReadOnly\"\n";

/// A simulator with the vSphere API on a free port; the port.
fn vsphere_sim(vms: &[&str]) -> (Sim, u16) {
    let mut cfg = String::new();
    for v in vms {
        cfg.push_str(&format!("[[vm]]\nname = \"{v}\"\n"));
    }
    cfg.push_str(
        "[vsphere]\nlisten = \"127.0.0.1:0\"\n[cim]\nenabled = false\n[redfish]\nenabled = false\n",
    );
    cfg.push_str(USERS);
    let sim = Sim::with_config(&cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        let log = sim.log();
        if let Some(p) = log
            .lines()
            .find(|l| l.contains("vSphere API"))
            .and_then(|l| l.split("127.0.0.1:").nth(1))
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no vSphere listener:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    (sim, port)
}

fn pyvmomi(port: u16, user: &str, pw: &str, scenario: &str, args: &[&str]) -> Value {
    let out = run_py(port, user, pw, scenario, args);
    assert!(
        out.status.success(),
        "pyvmomi {scenario} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).expect("json from the pyvmomi scenario")
}

fn run_py(port: u16, user: &str, pw: &str, scenario: &str, args: &[&str]) -> Output {
    Command::new(python())
        .arg(workspace().join("tests/py/vsphere_client.py"))
        .args([scenario, "127.0.0.1", &port.to_string(), user, pw])
        .args(args)
        .output()
        .expect("run python")
}

/// vm-agent for VM `vm0` inside `ns` with hostname `host`: the clock is
/// never touched (timesync off, CAP_SYS_TIME dropped), power commands
/// are stubs.
struct Agent(Option<Child>);

impl Agent {
    fn start(sim: &Sim, ns: &Netns, host: &str) -> Agent {
        Agent::start_in(sim, ns, host, None)
    }

    /// With `fs`: the agent runs in the loop mount's namespace and its
    /// vmbackup freezes that mount point, and nothing else (`[vmbackup]
    /// freeze`); without, vmbackup only syncs.
    fn start_in(sim: &Sim, ns: &Netns, host: &str, fs: Option<&LoopFs>) -> Agent {
        let dir = sim.dir.path();
        let freeze = match fs {
            Some(fs) => {
                fs.check_is_loop_mount();
                format!("freeze = [\"{}\"]\n", fs.mnt.display())
            }
            None => "enable_sync_driver = false\n".into(),
        };
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
                 [vmbackup]\n{freeze}scripts_dir = \"{d}/backup.d\"\n\
                 pre_freeze_script = \"{d}/none\"\npost_thaw_script = \"{d}/none\"\n\
                 state_file = \"{d}/vmbackup-frozen\"\n\
                 [guestinfo]\nos_release = \"{o}\"\nreport_disks = false\ndebounce_ms = 100\n",
                d = dir.display(),
                o = os.display()
            ),
        )
        .unwrap();
        let log = dir.join("agent.log");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--bounding-set=-sys_time", "--inh-caps=-sys_time", "--"]);
        if let Some(fs) = fs {
            cmd.arg("nsenter")
                .args(["-t", &fs.pid().to_string(), "-m", "--"]);
        }
        let child = cmd
            .args([
                "ip", "netns", "exec", &ns.name, "unshare", "--uts", "--", "sh", "-c",
            ])
            .arg(format!("hostname {host} && exec \"$0\" \"$@\""))
            .arg(bin("vm-agent"))
            .args(["--backdoor", &sim.backdoor("vm0"), "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
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
    let ns = Netns::new("vsphere");
    ns.ip(&[
        "link",
        "add",
        "eth1",
        "address",
        "00:50:56:aa:10:01",
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

fn wait_for(sim: &Sim, what: &str, cond: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = sim.show("vm0");
        if cond(&v) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn pyvmomi_reads_what_the_agent_reports_and_finds_the_vm() {
    let (sim, port) = vsphere_sim(&["vm0", "db"]);
    let ns = guest_netns();
    let _agent = Agent::start(&sim, &ns, "web-01");
    wait_for(&sim, "the agent reports its address", |v| {
        v["guest"]["nics"].to_string().contains("198.51.100.21")
    });
    let inv = pyvmomi(port, "admin", "s3cret", "inventory", &[]);
    assert_eq!(inv["about"]["name"], "VMware ESXi");
    assert_eq!(inv["about"]["apiType"], "HostAgent");
    assert_eq!(inv["datacenter"], "ha-datacenter");
    let vms = inv["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 2, "{inv}");
    let vm0 = vms.iter().find(|v| v["name"] == "vm0").unwrap();
    let show = sim.show("vm0");
    assert_eq!(vm0["uuid"], show["uuid"]);
    assert_eq!(vm0["power"], "poweredOn");
    assert_eq!(vm0["toolsRunningStatus"], "guestToolsRunning");
    assert_eq!(vm0["toolsStatus"], "toolsOk");
    assert_eq!(vm0["heartbeat"], "green");
    assert_eq!(vm0["hostName"], "web-01");
    assert_eq!(vm0["guestId"], "debian12_64Guest");
    assert_eq!(vm0["guestFullName"], show["guest"]["os_full_name"]);
    assert_eq!(vm0["ipAddress"], "198.51.100.21");
    assert_eq!(vm0["summaryIp"], "198.51.100.21");
    let nic = vm0["net"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["mac"] == "00:50:56:aa:10:01")
        .unwrap_or_else(|| panic!("the guest's NIC in {vm0}"));
    assert!(nic["ips"]
        .as_array()
        .unwrap()
        .contains(&"198.51.100.21".into()));
    assert!(nic["prefixes"].as_array().unwrap().contains(&24.into()));
    // Found by every index a client uses.
    let f = &inv["find"]["vm0"];
    for k in ["uuid", "instanceUuid", "path", "ip", "dns"] {
        assert_eq!(f[k], "vm0", "FindBy {k}: {inv}");
    }
    assert_eq!(inv["find"]["db"]["uuid"], "db");
    assert_eq!(inv["missing"], Value::Null);
    // The other VM has no tools.
    let db = vms.iter().find(|v| v["name"] == "db").unwrap();
    assert_eq!(db["toolsRunningStatus"], "guestToolsNotRunning");
    assert_eq!(db["ipAddress"], Value::Null);
}

#[test]
fn extra_config_is_the_guests_variables_both_ways() {
    let (sim, port) = vsphere_sim(&["vm0"]);
    let r = pyvmomi(
        port,
        "admin",
        "s3cret",
        "reconfig",
        &["vm0", "guestinfo.role", "web server"],
    );
    assert_eq!(r["state"], "success");
    assert_eq!(r["extraConfig"]["guestinfo.role"], "web server");
    // The guest reads it.
    let o = sim.rpctool("vm0", &["info-get guestinfo.role"]);
    assert_eq!(stdout(&o), "web server\n", "{}", stderr(&o));
    // A variable the guest sets shows in extraConfig.
    let o = sim.rpctool("vm0", &["info-set guestinfo.from-guest hello"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let inv = pyvmomi(port, "admin", "s3cret", "inventory", &[]);
    assert_eq!(
        inv["vms"][0]["extraConfig"]["guestinfo.from-guest"],
        "hello"
    );
    // Other keys are kept as extraConfig, not as guest variables.
    let r = pyvmomi(
        port,
        "admin",
        "s3cret",
        "reconfig",
        &["vm0", "disk.EnableUUID", "TRUE"],
    );
    assert_eq!(r["extraConfig"]["disk.EnableUUID"], "TRUE");
    assert_eq!(sim.show("vm0")["guestinfo"].get("disk.EnableUUID"), None);
    // A read-only user may not.
    let out = run_py(
        port,
        "viewer",
        "look",
        "reconfig",
        &["vm0", "guestinfo.role", "x"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("NoPermission"), "{}", stderr(&out));
}

#[test]
fn power_through_the_api_is_the_vms_power() {
    let (sim, port) = vsphere_sim(&["vm0"]);
    let r = pyvmomi(port, "admin", "s3cret", "power", &["vm0", "off"]);
    assert_eq!(r, serde_json::json!({"fault": null, "power": "poweredOff"}));
    assert_eq!(sim.show("vm0")["power"], "off");
    let r = pyvmomi(port, "admin", "s3cret", "power", &["vm0", "off"]);
    assert_eq!(r["fault"], "InvalidPowerState");
    // Powered on through the CLI: the API sees it.
    let o = sim.hvsim(&["vm", "power", "vm0", "on"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = pyvmomi(port, "admin", "s3cret", "power", &["vm0", "reset"]);
    assert_eq!(r["power"], "poweredOn");
    // No agent: a guest shutdown is refused as vCenter refuses it.
    let r = pyvmomi(port, "admin", "s3cret", "power", &["vm0", "shutdown"]);
    assert_eq!(r["fault"], "ToolsUnavailable");
    assert_eq!(r["power"], "poweredOn");
}

#[test]
fn shutdown_guest_reaches_the_agent() {
    let (sim, port) = vsphere_sim(&["vm0"]);
    let ns = guest_netns();
    let _agent = Agent::start(&sim, &ns, "web-02");
    wait_for(&sim, "tools running", |v| v["tools"]["status"] == "running");
    let r = pyvmomi(port, "admin", "s3cret", "power", &["vm0", "shutdown"]);
    assert_eq!(r["fault"], Value::Null, "{r}");
    wait_for(
        &sim,
        "the guest halts (its stub ran) and the VM goes off",
        |v| v["power"] == "off",
    );
    let log = std::fs::read_to_string(sim.dir.path().join("power.log")).unwrap_or_default();
    assert_eq!(log, "halt\n");
}

#[test]
fn a_property_filter_wakes_on_a_new_guest_address() {
    let (sim, port) = vsphere_sim(&["vm0"]);
    let ns = guest_netns();
    let _agent = Agent::start(&sim, &ns, "web-03");
    wait_for(&sim, "first report", |v| {
        v["guest"]["nics"].to_string().contains("198.51.100.21")
    });
    let mut child = Command::new(python())
        .arg(workspace().join("tests/py/vsphere_client.py"))
        .args(["wait-ip", "127.0.0.1", &port.to_string(), "admin", "s3cret"])
        .args(["vm0", "203.0.113.9", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    // The first update (the addresses so far) is in: now add one.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("ready") {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "the scenario ended early"
        );
    }
    assert!(!line.contains("203.0.113.9"), "{line}");
    ns.ip(&["addr", "add", "203.0.113.9/28", "dev", "eth1"]);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["found"], true, "{r}");
    // The first update has the old address, a later one the new.
    assert!(r["rounds"].as_u64().unwrap() >= 2, "{r}");
}

#[test]
fn bad_requests_get_vsphere_faults_and_the_service_keeps_serving() {
    let (_sim, port) = vsphere_sim(&["vm0"]);
    let f = pyvmomi(port, "admin", "s3cret", "faults", &[]);
    assert_eq!(
        f,
        serde_json::json!({"wrong_password": "InvalidLogin", "unauthenticated": "NotAuthenticated", "missing_vm": "ManagedObjectNotFound"})
    );
    // Raw HTTPS: malformed XML, a DOCTYPE, an unknown method.
    for (body, want) in [
        ("<soapenv:Envelope", "ClientFaultCode"),
        ("<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>", "DOCTYPE"),
        (
            "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><NoSuchMethod xmlns=\"urn:vim25\"><_this type=\"Folder\">ha-folder-root</_this></NoSuchMethod></soapenv:Body></soapenv:Envelope>",
            "NotAuthenticated",
        ),
    ] {
        let resp = https_post(port, body);
        assert!(resp.starts_with("HTTP/1.1 500"), "{resp}");
        assert!(resp.contains(want), "{want} in {resp}");
    }
    // Still serving.
    let inv = pyvmomi(port, "admin", "s3cret", "inventory", &[]);
    assert_eq!(inv["vms"][0]["name"], "vm0");
}

/// POST a body to /sdk over TLS (no certificate check) with curl; the
/// status line, headers and body.
fn https_post(port: u16, body: &str) -> String {
    let mut child = Command::new("curl")
        .args([
            "-sk",
            "-i",
            "-X",
            "POST",
            "-H",
            "Content-Type: text/xml",
            "--data-binary",
            "@-",
        ])
        .arg(format!("https://127.0.0.1:{port}/sdk"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_version_document_and_a_dropped_wait_leave_others_unaffected() {
    let (_sim, port) = vsphere_sim(&["vm0"]);
    let o = Command::new("curl")
        .args(["-sk"])
        .arg(format!(
            "https://127.0.0.1:{port}/sdk/vimServiceVersions.xml"
        ))
        .output()
        .unwrap();
    let text = stdout(&o);
    assert!(
        text.contains("<name>urn:vim25</name>") && text.contains("8.0.3.0"),
        "{text}"
    );
    // A client that connects and vanishes mid-request.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
    drop(s);
    let inv = pyvmomi(port, "admin", "s3cret", "inventory", &[]);
    assert_eq!(inv["vms"][0]["name"], "vm0");
}

/// Run `playbook` against localhost with the tests' Python and the
/// community.vmware collection; it must succeed.
fn run_playbook(sim: &Sim, playbook: &std::path::Path) {
    let py = python();
    let out = Command::new(py.parent().unwrap().join("ansible-playbook"))
        .args(["-i", "localhost,", "-c", "local"])
        .arg("-e")
        .arg(format!("ansible_python_interpreter={}", py.display()))
        .arg(playbook)
        .env("ANSIBLE_COLLECTIONS_PATH", ansible_collections())
        .env("ANSIBLE_DEPRECATION_WARNINGS", "false")
        .env("ANSIBLE_LOCAL_TEMP", sim.dir.path().join("ansible-tmp"))
        .env("ANSIBLE_HOME", sim.dir.path().join("ansible-home"))
        .output()
        .expect("run ansible-playbook");
    assert!(
        out.status.success(),
        "ansible-playbook failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

/// The collections Ansible reads: community.vmware as `scripts/test-deps.sh`
/// unpacks it from the `ansible` wheel.
fn ansible_collections() -> PathBuf {
    let p = workspace().join("target/ansible");
    assert!(
        p.join("ansible_collections/community/vmware").exists(),
        "{} is missing: run scripts/test-deps.sh",
        p.display()
    );
    p
}

#[test]
fn ansible_community_vmware_waits_for_the_agent_and_powers_the_vm() {
    let (sim, port) = vsphere_sim(&["vm0"]);
    let ns = guest_netns();
    let _agent = Agent::start(&sim, &ns, "web-04");
    let playbook = sim.dir.path().join("play.yml");
    std::fs::write(
        &playbook,
        format!(
            r#"- hosts: localhost
  gather_facts: false
  module_defaults:
    group/community.vmware.vmware:
      hostname: 127.0.0.1
      port: {port}
      username: admin
      password: s3cret
      validate_certs: false
  tasks:
    - community.vmware.vmware_guest_tools_wait:
        name: vm0
        timeout: 30
      register: tools
    - ansible.builtin.assert:
        that:
          - tools.instance.guest_tools_status == "guestToolsRunning"
          - tools.instance.ipv4 == "198.51.100.21"
    - community.vmware.vmware_guest_info:
        datacenter: ha-datacenter
        name: vm0
      register: info
    - ansible.builtin.assert:
        that:
          - info.instance.hw_name == "vm0"
          - info.instance.hw_power_status == "poweredOn"
          - info.instance.hw_guest_id == "debian12_64Guest"
          - info.instance.hw_product_uuid == "{uuid}"
          - info.instance.ipv4 == "198.51.100.21"
          - info.instance.hw_esxi_host == "hvsim.localdomain"
          - info.instance.hw_interfaces == ["eth0"]
    - community.vmware.vmware_guest_powerstate:
        name: vm0
        state: powered-off
      register: poweroff
    - ansible.builtin.assert:
        that: [poweroff.changed]
"#,
            uuid = sim.show("vm0")["uuid"].as_str().unwrap()
        ),
    )
    .unwrap();
    run_playbook(&sim, &playbook);
    assert_eq!(sim.show("vm0")["power"], "off");
}

#[test]
fn snapshots_through_the_api_and_quiesce_needs_tools() {
    let (sim, port) = vsphere_sim(&["vm0"]);
    let r = pyvmomi(
        port,
        "admin",
        "s3cret",
        "snapshot",
        &["vm0", "before-upgrade", "plain"],
    );
    assert_eq!(r["fault"], Value::Null, "{r}");
    assert_eq!(r["snapshots"], serde_json::json!(["before-upgrade"]));
    assert_eq!(r["quiesced"], serde_json::json!([false]));
    let r = pyvmomi(
        port,
        "admin",
        "s3cret",
        "snapshot",
        &["vm0", "q", "quiesce"],
    );
    assert_eq!(r["fault"]["type"], "ToolsUnavailable", "{r}");
    assert_eq!(r["snapshots"], serde_json::json!(["before-upgrade"]));
    // hvsim's own record of it.
    let snaps = sim.show("vm0")["snapshots"].clone();
    assert_eq!(snaps[0]["result"], "ok", "{snaps}");
}

#[test]
fn a_quiesced_snapshot_runs_the_guests_freeze_scripts() {
    let (sim, port) = vsphere_sim(&["vm0"]);
    let dir = sim.dir.path();
    std::fs::create_dir_all(dir.join("backup.d")).unwrap();
    let script = dir.join("backup.d/10-record");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" >> {}/scripts.log\n", dir.display()),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&script).unwrap().permissions(),
        0o755,
    );
    Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap();
    let ns = guest_netns();
    let _agent = Agent::start(&sim, &ns, "db-01");
    wait_for(&sim, "tools running", |v| v["tools"]["status"] == "running");
    let r = pyvmomi(
        port,
        "admin",
        "s3cret",
        "snapshot",
        &["vm0", "consistent", "quiesce"],
    );
    assert_eq!(r["fault"], Value::Null, "{r}");
    assert_eq!(r["quiesced"], serde_json::json!([true]));
    let log = std::fs::read_to_string(dir.join("scripts.log")).unwrap_or_default();
    assert_eq!(log, "freeze\nthaw\n");
    assert_eq!(sim.show("vm0")["snapshots"][0]["quiesced"], true);
}

#[test]
fn guest_operations_through_the_api_reach_vmtoolsd() {
    use e2e_tests::guestops::{launch_vmtoolsd, GuestUsers};
    let (sim, port) = vsphere_sim(&["vm0"]);
    let users = GuestUsers::create();
    let _guest = launch_vmtoolsd(&sim, &users);
    let dir = users.dir.path().display().to_string();
    let r = pyvmomi(
        port,
        "admin",
        "s3cret",
        "guestops",
        &["vm0", users.root.name, users.root.password, &dir],
    );
    assert_eq!(r["wrong_password"], "InvalidGuestLogin", "{r}");
    assert_eq!(r["put_status"], 200);
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_eq!(r["owner"], "root");
    assert_eq!(r["output"], "HELLO FROM PYVMOMI\nHELLO FROM PYVMOMI\nHE");
    assert_eq!(r["output_len"], 19 * 1000 + "hi-there\n".len());
    assert_eq!(r["size"], r["output_len"]);
    assert_eq!(r["src_mode"], "0o640");
    let files = r["files"].as_array().unwrap();
    assert!(
        files.contains(&serde_json::json!(["a", "directory"])),
        "{r}"
    );
    assert!(
        files.contains(&serde_json::json!(["out.txt", "file"])),
        "{r}"
    );
    assert_eq!(r["env_home"], serde_json::json!(["HOME=/root"]));
    assert_eq!(r["missing"], "FileNotFound");
    assert_eq!(r["kill_missing"], "GuestProcessNotFound");
}

#[test]
fn ansible_guest_shell_and_file_operations_reach_vmtoolsd() {
    use e2e_tests::guestops::{launch_vmtoolsd, GuestUsers};
    let (sim, port) = vsphere_sim(&["vm0"]);
    let users = GuestUsers::create();
    let _guest = launch_vmtoolsd(&sim, &users);
    let gdir = users.dir.path().join("ansible");
    let local = sim.dir.path().join("local.txt");
    std::fs::write(&local, "copied by ansible\n").unwrap();
    let fetched = sim.dir.path().join("fetched.txt");
    let playbook = sim.dir.path().join("guest.yml");
    std::fs::write(
        &playbook,
        format!(
            r#"- hosts: localhost
  gather_facts: false
  module_defaults:
    group/community.vmware.vmware:
      hostname: 127.0.0.1
      port: {port}
      username: admin
      password: s3cret
      validate_certs: false
  tasks:
    - community.vmware.vmware_guest_file_operation:
        vm_id: vm0
        vm_username: {user}
        vm_password: {pw}
        directory: {{operation: create, path: "{g}", recurse: true}}
    - community.vmware.vmware_guest_file_operation:
        vm_id: vm0
        vm_username: {user}
        vm_password: {pw}
        copy: {{src: "{local}", dest: "{g}/in.txt", overwrite: true}}
    - community.vmware.vmware_vm_shell:
        vm_id: vm0
        vm_username: {user}
        vm_password: {pw}
        vm_shell: /bin/sh
        vm_shell_args: "-c 'tr a-z A-Z < {g}/in.txt > {g}/out.txt'"
        wait_for_process: true
        timeout: 60
      register: shell
    - ansible.builtin.assert:
        that: [shell.exit_code == 0]
    - community.vmware.vmware_guest_file_operation:
        vm_id: vm0
        vm_username: {user}
        vm_password: {pw}
        fetch: {{src: "{g}/out.txt", dest: "{fetched}"}}
"#,
            user = users.root.name,
            pw = users.root.password,
            g = gdir.display(),
            local = local.display(),
            fetched = fetched.display(),
        ),
    )
    .unwrap();
    run_playbook(&sim, &playbook);
    assert_eq!(
        std::fs::read_to_string(&fetched).unwrap(),
        "COPIED BY ANSIBLE\n"
    );
}

/// Ansible's vmware_guest_snapshot takes a quiesced snapshot of a VM whose
/// vm-agent really freezes a file system (only the test's loop mount, in a
/// mount namespace of its own: see `e2e_tests::loopfs`), then removes one
/// snapshot, renames one, reverts to one (the next snapshot branches from
/// it) and removes them all; vmware_guest_snapshot_info sees each state.
#[test]
fn ansible_snapshots_quiesce_the_guest_rename_revert_and_remove() {
    let (sim, port) = vsphere_sim(&["vm0"]);
    let dir = sim.dir.path().to_path_buf();
    std::fs::create_dir_all(dir.join("backup.d")).unwrap();
    let script = dir.join("backup.d/10-record");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" >> {}/scripts.log\n", dir.display()),
    )
    .unwrap();
    assert!(Command::new("chmod")
        .arg("755")
        .arg(&script)
        .status()
        .unwrap()
        .success());
    // The network namespace first: the loop mount's namespace copies the
    // mount table, /run/netns included.
    let ns = guest_netns();
    let fs = LoopFs::new();
    let _agent = Agent::start_in(&sim, &ns, "db-02", Some(&fs));
    wait_for(&sim, "tools running", |v| v["tools"]["status"] == "running");
    let playbook = dir.join("snap.yml");
    std::fs::write(
        &playbook,
        format!(
            r#"- hosts: localhost
  gather_facts: false
  module_defaults:
    group/community.vmware.vmware:
      hostname: 127.0.0.1
      port: {port}
      username: admin
      password: s3cret
      validate_certs: false
      datacenter: ha-datacenter
      folder: /ha-datacenter/vm
      name: vm0
  tasks:
    - community.vmware.vmware_guest_snapshot:
        snapshot_name: consistent
        description: before the upgrade
        quiesce: true
      register: quiesced
    - ansible.builtin.assert:
        that:
          - quiesced.changed
          - quiesced.snapshot_results.current_snapshot.name == "consistent"
          - quiesced.snapshot_results.current_snapshot.quiesced
          - quiesced.snapshot_results.current_snapshot.description == "before the upgrade"
    - community.vmware.vmware_guest_snapshot:
        snapshot_name: consistent
        quiesce: true
      register: again
    - ansible.builtin.assert:
        that: [not again.changed]
    - community.vmware.vmware_guest_snapshot:
        snapshot_name: plain
      register: plain
    - ansible.builtin.assert:
        that:
          - plain.snapshot_results.snapshots | map(attribute="name") | list == ["consistent", "plain"]
          - plain.snapshot_results.snapshots | map(attribute="quiesced") | list == [true, false]
          - plain.snapshot_results.current_snapshot.name == "plain"
    - community.vmware.vmware_guest_snapshot_info:
      register: info
    - ansible.builtin.assert:
        that:
          - info.guest_snapshots.snapshots | length == 2
          - info.guest_snapshots.snapshots[0].id != info.guest_snapshots.snapshots[1].id
    - community.vmware.vmware_guest_snapshot:
        state: absent
        snapshot_name: consistent
      register: removed
    - ansible.builtin.assert:
        that:
          - removed.changed
          - removed.snapshot_results.snapshots | map(attribute="name") | list == ["plain"]
    - community.vmware.vmware_guest_snapshot:
        snapshot_name: plain
        new_snapshot_name: kept
        new_description: renamed by ansible
      register: renamed
    - ansible.builtin.assert:
        that: [renamed.changed]
    - community.vmware.vmware_guest_snapshot:
        snapshot_name: last
    - community.vmware.vmware_guest_snapshot:
        state: revert
        snapshot_name: kept
      register: reverted
    - ansible.builtin.assert:
        that:
          - reverted.changed
          - reverted.snapshot_results.current_snapshot.name == "kept"
          - reverted.snapshot_results.current_snapshot.description == "renamed by ansible"
    - community.vmware.vmware_guest_snapshot:
        snapshot_name: after-revert
      register: branch
    - ansible.builtin.assert:
        that:
          - branch.snapshot_results.snapshots | map(attribute="name") | list == ["kept", "last", "after-revert"]
          - branch.snapshot_results.current_snapshot.name == "after-revert"
    - community.vmware.vmware_guest_snapshot:
        state: remove_all
      register: removed_all
    - ansible.builtin.assert:
        that: [removed_all.changed]
    - community.vmware.vmware_guest_snapshot_info:
      register: emptied
    - ansible.builtin.assert:
        that: ["emptied.guest_snapshots == {{}}"]
"#
        ),
    )
    .unwrap();
    run_playbook(&sim, &playbook);
    // The guest ran its scripts around one freeze, of the loop mount.
    let log = std::fs::read_to_string(dir.join("scripts.log")).unwrap_or_default();
    assert_eq!(log, "freeze\nthaw\n");
    let agent = std::fs::read_to_string(dir.join("agent.err")).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    let froze = format!("vmbackup: froze {}", fs.mnt.display());
    let at = agent
        .find(&froze)
        .unwrap_or_else(|| panic!("{froze} in the agent's log:\n{agent}"));
    assert!(agent[at..].contains("vmbackup: thawed"), "{agent}");
    fs.assert_thawed("the snapshots");
    // hvsim's own records: one quiesced capture, then the plain ones.
    let snaps = sim.show("vm0")["snapshots"].clone();
    let quiesced: Vec<_> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["quiesced"].clone())
        .collect();
    assert_eq!(quiesced, [true, false, false, false], "{snaps}");
    // Reverting to a snapshot without memory left the VM off, as on ESXi.
    assert_eq!(sim.show("vm0")["power"], "off");
}

/// A change is never answered with the cached rendering from before it:
/// extraConfig, power and snapshots changed through the API read back at
/// once through RetrievePropertiesEx, while another session reads every
/// VM all along (so renderings are cached and rebuilt concurrently).
#[test]
fn changes_read_back_at_once_despite_the_property_cache() {
    let (_sim, port) = vsphere_sim(&["vm0", "vm1", "vm2"]);
    let r = pyvmomi(port, "admin", "s3cret", "readback", &["vm1", "40"]);
    assert_eq!(r["stale"], serde_json::json!([]), "{r}");
    assert!(r["background_reads"].as_u64().unwrap() > 0, "{r}");
}
