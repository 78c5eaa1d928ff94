//! `hvsim vm ...` against a running simulator, and TCLO through the queue.

use std::time::Duration;

use agent::transport::unix::UnixBackdoor;
use e2e_tests::{stderr, stdout, Sim};
use protocol::guest::GuestChannel;
use protocol::proto;

#[test]
fn list_and_show_have_the_contract_fields() {
    let sim = Sim::with_config(
        "[[vm]]\nname = \"web\"\nuuid = \"564d0000-1111-2222-3333-444455556666\"\nguestinfo = { \"guestinfo.metadata\" = \"m\" }\n[[vm]]\nname = \"db\"\n",
    );
    let o = sim.rpctool("web", &["SetGuestInfo  1 web-01"]);
    assert!(o.status.success(), "{}", stderr(&o));
    sim.rpctool("web", &["SetGuestInfo  6 debian12-64"]);
    sim.rpctool("web", &["SetGuestInfo  5 Debian GNU/Linux 12 (bookworm)"]);
    sim.rpctool("web", &["tools.set.version 12416"]);

    let o = sim.hvsim(&["vm", "list", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "web"]);
    let o = sim.hvsim(&["vm", "list"]);
    assert!(stdout(&o).contains("web-01"), "{}", stdout(&o));

    let v = sim.show("web");
    assert_eq!(v["name"], "web");
    assert_eq!(v["uuid"], "564d0000-1111-2222-3333-444455556666");
    assert_eq!(v["power"], "on");
    assert_eq!(v["tools"]["status"], "not-running");
    assert_eq!(v["tools"]["version"], "12416");
    assert_eq!(v["guest"]["hostname"], "web-01");
    assert_eq!(v["guest"]["os_name"], "debian12-64");
    assert_eq!(v["guest"]["os_full_name"], "Debian GNU/Linux 12 (bookworm)");
    assert!(v["guest"]["nics"].is_array());
    assert_eq!(v["guestinfo"]["guestinfo.metadata"], "m");

    let o = sim.hvsim(&["vm", "show", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no VM named \"nope\""),
        "{}",
        stderr(&o)
    );
}

#[test]
fn set_var_reaches_the_guest() {
    let sim = Sim::start();
    let o = sim.hvsim(&[
        "vm",
        "set-var",
        "vm0",
        "guestinfo.userdata",
        "#cloud-config",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&sim.rpctool("vm0", &["info-get guestinfo.userdata"])),
        "#cloud-config\n"
    );
    let o = sim.hvsim(&["vm", "get-var", "vm0", "userdata"]);
    assert_eq!(stdout(&o), "#cloud-config\n");
}

#[test]
fn control_client_without_server_says_how_to_fix() {
    let o = std::process::Command::new(e2e_tests::bin("hvsim"))
        .args(["vm", "list"])
        .env("HVSIM_CONTROL", "/nonexistent/control.sock")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is `hvsim serve` running?"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn tclo_without_agent_fails_fast_and_clearly() {
    let sim = Sim::start();
    let o = sim.hvsim(&["vm", "tclo", "vm0", "ping", "--timeout", "0.5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no guest agent is polling TCLO"),
        "{}",
        stderr(&o)
    );
}

/// A minimal TCLO poller in the test plays the guest agent: the command
/// reaches it and its reply reaches `hvsim vm tclo`.
#[test]
fn tclo_command_reaches_the_guest_and_the_reply_comes_back() {
    let sim = Sim::start();
    let sock = sim.socket("vm0");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let guest = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let bd = UnixBackdoor::connect(&sock).unwrap();
            let mut ch = GuestChannel::open(bd, proto::TCLO).unwrap();
            let mut reply: Vec<u8> = Vec::new();
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let cmd = ch.call(&reply).unwrap().to_vec();
                reply = match cmd.as_slice() {
                    b"" => {
                        std::thread::sleep(Duration::from_millis(10));
                        Vec::new()
                    }
                    b"ping" => b"OK ".to_vec(),
                    _ => b"ERROR Unknown Command".to_vec(),
                };
                if !cmd.is_empty() {
                    seen.push(String::from_utf8_lossy(&cmd).into_owned());
                }
            }
            seen
        })
    };
    sim.eventually("tools running", || {
        sim.show("vm0")["tools"]["status"] == "running"
    });
    let o = sim.hvsim(&["vm", "tclo", "vm0", "ping", "--timeout", "10"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "OK \n");
    let o = sim.hvsim(&["vm", "tclo", "vm0", "Frobnicate", "--timeout", "10"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "ERROR Unknown Command\n");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Like a VMX, hvsim greets a new tools channel with reset and
    // Capabilities_Register before anything queued.
    assert_eq!(
        guest.join().unwrap(),
        ["reset", "Capabilities_Register", "ping", "Frobnicate"]
    );
}

#[test]
fn demo_runs_the_tour_and_exits() {
    let o = std::process::Command::new(e2e_tests::bin("hvsim"))
        .args(["demo", "--no-wait"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("oe:key=\"hostname\" oe:value=\"demo-guest\""),
        "{out}"
    );
    assert!(out.contains("hello from the host"), "{out}");
    // vm-agent ran, reported, answered TCLO and shut the VM down gracefully.
    assert!(out.contains("tools:    running"), "{out}");
    assert!(
        out.contains("host$ hvsim vm tclo vm0 ping\n    OK"),
        "{out}"
    );
    assert!(
        out.contains("power: off; last state change: {\"ok\":true,\"state\":\"halt\"}"),
        "{out}"
    );
    assert!(out.contains("(stderr) Unknown command"), "{out}");
}

/// NIC info as vmtoolsd sends it (`SetGuestInfo  10 ` + XDR), disk info JSON
/// and uptime are decoded into `hvsim vm show`.
#[test]
fn guest_info_reports_are_decoded() {
    use protocol::nicinfo::{self, GuestNicV3, IpEntry, NicInfoV3, Route};
    let sim = Sim::start();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let info = NicInfoV3 {
        nics: vec![GuestNicV3 {
            mac: "00:50:56:01:02:03".into(),
            ips: vec![
                IpEntry {
                    addr: ip("198.51.100.7").into(),
                    prefix: 24,
                    origin: Some(nicinfo::origin::MANUAL),
                    status: Some(nicinfo::status::PREFERRED),
                },
                IpEntry {
                    addr: ip("2001:db8::7").into(),
                    prefix: 64,
                    origin: None,
                    status: None,
                },
            ],
            ..Default::default()
        }],
        routes: vec![Route {
            dest: ip("0.0.0.0").into(),
            prefix: 0,
            next_hop: Some(ip("198.51.100.1").into()),
            if_index: 0,
            kind: nicinfo::route_type::REMOTE,
            metric: 100,
        }],
        ..Default::default()
    };
    let mut msg = b"SetGuestInfo  10 ".to_vec();
    msg.extend_from_slice(&nicinfo::encode(&info));
    let mut ch = GuestChannel::open(
        UnixBackdoor::connect(sim.socket("vm0")).unwrap(),
        proto::RPCI,
    )
    .unwrap();
    assert_eq!(ch.call(&msg).unwrap(), b"1 ");
    assert_eq!(ch.call(b"SetGuestInfo  7 12345").unwrap(), b"1 ");
    let disks = br#"SetGuestDiskInfo {"disks":[{"name":"/","free":"1000","total":"2000"}]}"#;
    assert_eq!(ch.call(disks).unwrap(), b"1 ");
    // A hostile NIC report is refused and changes nothing.
    assert_eq!(
        ch.call(b"SetGuestInfo  10 \x00\x00\x00\x03\x00\x00\x00\x01\xff\xff\xff\xff")
            .unwrap(),
        b"0 Invalid NIC info"
    );
    let v = sim.show("vm0");
    let nic = &v["guest"]["nics"][0];
    assert_eq!(nic["mac"], "00:50:56:01:02:03");
    assert_eq!(nic["ips"][0]["addr"], "198.51.100.7");
    assert_eq!(nic["ips"][0]["prefix"], 24);
    assert_eq!(nic["ips"][0]["origin"], "manual");
    assert_eq!(nic["ips"][1]["addr"], "2001:db8::7");
    assert_eq!(nic["ips"][1]["prefix"], 64);
    assert_eq!(v["guest"]["routes"][0]["gateway"], "198.51.100.1");
    assert!(v["guest"]["uptime_s"].as_u64().unwrap() >= 123);
    assert_eq!(v["guest"]["disks"]["disks"][0]["name"], "/");
    assert!(v["guest"]["nic_error"].as_str().unwrap().contains("nics"));
}

/// Graceful shutdown goes to the agent as TCLO OS_Halt, and the VM is off once
/// the agent reports the halt done; hard power actions act at once, and a
/// powered-off VM has no guest to talk to.
#[test]
fn power_actions_and_graceful_shutdown_through_the_agent() {
    let sim = Sim::start();
    let o = sim.hvsim(&["vm", "power", "vm0", "soft"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no guest agent is running"),
        "{}",
        stderr(&o)
    );

    let sock = sim.socket("vm0");
    let agent = std::thread::spawn(move || {
        let mut tclo =
            GuestChannel::open(UnixBackdoor::connect(&sock).unwrap(), proto::TCLO).unwrap();
        let mut rpci =
            GuestChannel::open(UnixBackdoor::connect(&sock).unwrap(), proto::RPCI).unwrap();
        let mut reply: Vec<u8> = Vec::new();
        for _ in 0..2000 {
            let cmd = match tclo.call(&reply) {
                Ok(c) => c.to_vec(),
                Err(_) => return true, // the VM went off: channels are gone
            };
            reply = Vec::new();
            if cmd == b"OS_Halt" {
                // Like vmtoolsd: "OK " first, then the status over RPCI.
                tclo.call(b"OK ").ok();
                rpci.call(b"tools.os.statechange.status 1 1\0").ok();
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        false
    });
    sim.eventually("tools running", || {
        sim.show("vm0")["tools"]["status"] == "running"
    });
    let o = sim.hvsim(&["vm", "power", "vm0", "soft"]);
    assert!(o.status.success(), "{}", stderr(&o));
    sim.eventually("graceful shutdown done", || {
        sim.show("vm0")["power"] == "off"
    });
    assert!(agent.join().unwrap(), "the agent saw its channels close");
    let v = sim.show("vm0");
    assert_eq!(v["tools"]["last_state_change"]["state"], "halt");
    assert_eq!(v["channels"], 0);
    // Off: guests cannot open channels.
    let o = sim.rpctool("vm0", &["info-get guestinfo.x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("open"), "{}", stderr(&o));
    let o = sim.hvsim(&["vm", "power", "vm0", "reset"]);
    assert!(stderr(&o).contains("powered off"), "{}", stderr(&o));
    // On again.
    assert!(sim.hvsim(&["vm", "power", "vm0", "on"]).status.success());
    assert_eq!(sim.show("vm0")["power"], "on");
    assert!(sim
        .rpctool("vm0", &["info-set guestinfo.back on"])
        .status
        .success());
    let o = sim.hvsim(&["vm", "power", "vm0", "sideways"]);
    assert!(
        stderr(&o).contains("unknown power action"),
        "{}",
        stderr(&o)
    );
}

fn guest_read_clipboard(bd: &mut UnixBackdoor) -> Option<Vec<u8>> {
    use protocol::guest::Backdoor;
    use protocol::{cmd, Regs};
    let len = bd.call(Regs::command(cmd::GETSELLENGTH, 0)).unwrap().eax;
    if len >= 0xFFFF_FFFE {
        return None;
    }
    let mut out = Vec::new();
    while out.len() < len as usize {
        let w = bd.call(Regs::command(cmd::GETNEXTPIECE, 0)).unwrap().eax;
        out.extend_from_slice(&w.to_le_bytes());
    }
    out.truncate(len as usize);
    Some(out)
}

fn guest_write_clipboard(bd: &mut UnixBackdoor, text: &[u8]) {
    use protocol::guest::Backdoor;
    use protocol::{cmd, Regs};
    bd.call(Regs::command(cmd::SETSELLENGTH, text.len() as u32))
        .unwrap();
    for c in text.chunks(4) {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        bd.call(Regs::command(cmd::SETNEXTPIECE, u32::from_le_bytes(w)))
            .unwrap();
    }
}

/// Copy/paste over the backdoor selection commands: off unless the VM's
/// config allows it; both directions when it does.
#[test]
fn clipboard_is_off_by_default_and_works_both_ways_when_enabled() {
    let sim =
        Sim::with_config("[[vm]]\nname = \"locked\"\n[[vm]]\nname = \"desk\"\nclipboard = true\n");
    let mut bd = UnixBackdoor::connect(sim.socket("locked")).unwrap();
    assert_eq!(
        guest_read_clipboard(&mut bd),
        None,
        "disabled: the guest is told not to exchange"
    );
    guest_write_clipboard(&mut bd, b"secret");
    let o = sim.hvsim(&["vm", "clipboard", "locked"]);
    assert_eq!(stdout(&o), "", "nothing crossed");
    let o = sim.hvsim(&["vm", "clipboard", "locked", "--set", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("copy/paste is disabled"),
        "{}",
        stderr(&o)
    );

    let mut bd = UnixBackdoor::connect(sim.socket("desk")).unwrap();
    let text = "line one\nlínea dos ✓";
    assert!(sim
        .hvsim(&["vm", "clipboard", "desk", "--set", text])
        .status
        .success());
    assert_eq!(guest_read_clipboard(&mut bd).unwrap(), text.as_bytes());
    guest_write_clipboard(&mut bd, "from the guest\n日本語".as_bytes());
    assert_eq!(
        stdout(&sim.hvsim(&["vm", "clipboard", "desk"])),
        "from the guest\n日本語"
    );
    assert_eq!(sim.show("desk")["clipboard"]["enabled"], true);
}
