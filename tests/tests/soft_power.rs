//! One graceful ("soft") power request, one behaviour through every API:
//! IPMI (ipmitool `chassis power soft`, FreeIPMI `ipmipower --soft` over
//! `-D LAN` and `-D LAN_2_0`), Redfish (curl and sushy: GracefulShutdown and
//! GracefulRestart, DMTF's `rf_boot_override.py --reset`) and CIM (pywbem
//! RequestStateChange 4 and 10), each run without a guest agent (refused
//! loudly, nothing changes) and with vm-agent running (the agent carries it
//! out and the VM goes off or restarts).

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use e2e_tests::{bin, frontend, python, stderr, stdout, stop_child, workspace, Frontend, Sim};
use serde_json::Value;

struct Host {
    sim: Sim,
    redfish: String,
    cim: String,
    ipmi: u16,
}

use e2e_tests::free_port;

fn start() -> Host {
    let (rp, np, ip, cp) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        "[[vm]]\nname = \"vm0\"\nipmi = {{ listen = \"127.0.0.1:{ip}\" }}\n\
         [redfish]\nlisten = \"127.0.0.1:{rp}\"\n[nbd]\nlisten = \"127.0.0.1:{np}\"\n\
         [cim]\nhttp = \"127.0.0.1:{cp}\"\n\
         [[user]]\nname = \"admin\"\npassword = \"s3cret\"\nrole = \"Administrator\"\n"
    );
    let sim = Sim::with_config(&cfg);
    sim.eventually("the Redfish and CIM listeners", || {
        let l = sim.log();
        l.contains("Redfish over HTTPS on") && l.contains("CIM-XML over HTTP on")
    });
    Host {
        sim,
        redfish: format!("https://127.0.0.1:{rp}"),
        cim: format!("http://127.0.0.1:{cp}"),
        ipmi: ip,
    }
}

/// vm-agent in vm0 whose halt and reboot commands do nothing to this machine.
struct Agent(Option<Child>);

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop_child(c, Duration::from_secs(10));
        }
    }
}

fn agent(sim: &Sim) -> Agent {
    let dir = sim.dir.path();
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        "[agent]\nreconnect_ms = 100\n[timesync]\nenabled = false\n[guestinfo]\nenabled = false\n\
         [powerops]\nhalt_command = \"true\"\nreboot_command = \"true\"\n",
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
    let log = std::fs::File::create(dir.join("agent.log")).unwrap();
    let child = c
        .arg("--config")
        .arg(&config)
        .env("HVSIM_CONTROL", &sim.control)
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start vm-agent");
    Agent(Some(child))
}

/// What a client reported and what happened to the VM.
#[derive(Debug)]
struct Outcome {
    client: &'static str,
    /// The client said it worked (exit 0 / 2xx / ReturnValue 0 and no error text).
    ok: bool,
    /// What it printed or returned.
    said: String,
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run client")
}

fn ipmitool(h: &Host) -> Outcome {
    let o = run(Command::new("ipmitool")
        .args([
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            &h.ipmi.to_string(),
        ])
        .args(["-U", "admin", "-P", "s3cret", "-N", "1", "-R", "3"])
        .args(["chassis", "power", "soft"]));
    Outcome {
        client: "ipmitool chassis power soft",
        ok: o.status.success(),
        said: format!("{}{}", stdout(&o), stderr(&o)),
    }
}

fn ipmipower(h: &Host, driver: &str) -> Outcome {
    let o = run(Command::new("ipmipower")
        .args(["-D", driver, "-h", &format!("127.0.0.1:{}", h.ipmi)])
        .args(["-u", "admin", "-p", "s3cret", "--soft"]));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    Outcome {
        client: if driver == "LAN" {
            "ipmipower -D LAN --soft"
        } else {
            "ipmipower -D LAN_2_0 --soft"
        },
        // ipmipower prints "HOST: ok" on success.
        ok: o.status.success() && said.contains(": ok"),
        said,
    }
}

fn curl_reset(h: &Host, reset: &'static str) -> Outcome {
    let o = run(Command::new("curl")
        .args([
            "-sk",
            "-u",
            "admin:s3cret",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
        ])
        .args(["-H", "Content-Type: application/json"])
        .args(["-d", &format!(r#"{{"ResetType":"{reset}"}}"#)])
        .arg(format!(
            "{}/redfish/v1/Systems/vm0/Actions/ComputerSystem.Reset",
            h.redfish
        )));
    let out = stdout(&o);
    let code = out.lines().last().unwrap_or("").to_string();
    Outcome {
        client: if reset == "GracefulShutdown" {
            "curl Redfish GracefulShutdown"
        } else {
            "curl Redfish GracefulRestart"
        },
        ok: code.starts_with('2'),
        said: out,
    }
}

fn py(args: &[&str]) -> Value {
    let o = run(Command::new(python())
        .arg("-W")
        .arg("ignore")
        .arg(workspace().join("tests/py/soft_power.py"))
        .args(args)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE"));
    assert!(o.status.success(), "soft_power.py {args:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("json")
}

fn sushy(h: &Host, reset: &str) -> (Outcome, Value) {
    let v = py(&["sushy", &h.redfish, "admin", "s3cret", reset]);
    (
        Outcome {
            client: "sushy reset_system(GracefulShutdown)",
            ok: v["ok"] == true,
            said: v["error"].as_str().unwrap_or("").to_string(),
        },
        v,
    )
}

fn cim(h: &Host, state: &'static str) -> (Outcome, Value) {
    let v = py(&["cim", &h.cim, "admin", "s3cret", "vm0", state]);
    (
        Outcome {
            client: if state == "4" {
                "pywbem RequestStateChange(4)"
            } else {
                "pywbem RequestStateChange(10)"
            },
            ok: v["ok"] == true,
            said: format!("{} {}", v["rc"], v["error"]),
        },
        v,
    )
}

fn reset_info(h: &Host) -> Vec<String> {
    let o = run(Command::new("curl")
        .args(["-sk", "-u", "admin:s3cret"])
        .arg(format!(
            "{}/redfish/v1/Systems/vm0/ResetActionInfo",
            h.redfish
        )));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("ResetActionInfo");
    v["Parameters"][0]["AllowableValues"]
        .as_array()
        .expect("AllowableValues")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Power transitions hvsim logged so far ("vm0: power X by Y: now Z").
fn transitions(sim: &Sim) -> usize {
    sim.log()
        .lines()
        .filter(|l| l.contains("vm0: power ") && l.contains(": now "))
        .count()
}

#[test]
fn graceful_requests_without_an_agent_are_refused_by_every_api() {
    let h = start();
    assert_ne!(h.sim.show("vm0")["tools"]["status"], "running");
    let before = transitions(&h.sim);

    // What each API offers: no graceful request without the agent.
    let offered = reset_info(&h);
    assert!(
        !offered.iter().any(|t| t.starts_with("Graceful")),
        "{offered:?}"
    );
    assert!(offered.contains(&"ForceOff".to_string()), "{offered:?}");

    let mut table = vec![
        ipmitool(&h),
        ipmipower(&h, "LAN"),
        ipmipower(&h, "LAN_2_0"),
        curl_reset(&h, "GracefulShutdown"),
        curl_reset(&h, "GracefulRestart"),
    ];
    let (s, sv) = sushy(&h, "GracefulShutdown");
    table.push(s);
    let (c4, cv) = cim(&h, "4");
    table.push(c4);
    let (c10, _) = cim(&h, "10");
    table.push(c10);
    for o in &table {
        println!("{:<34} ok={:<5} {}", o.client, o.ok, o.said.trim());
    }

    // Nothing changed: on, no power transition from any of them.
    assert_eq!(h.sim.show("vm0")["power"], "on");
    assert_eq!(transitions(&h.sim), before, "{}", h.sim.log());
    // Every client reported the refusal; none claimed success.
    for o in &table {
        assert!(!o.ok, "{} claimed success: {}", o.client, o.said);
    }
    let said = |i: usize| table[i].said.as_str();
    assert!(
        said(0).contains("Command not supported in present state"),
        "{}",
        said(0)
    );
    assert!(said(1).contains("operation invalid"), "{}", said(1));
    // FreeIPMI 1.6's LAN_2_0 path drops a command's completion code without
    // printing it (its 1.5 path prints it): the BMC answers 0xD5 the same.
    assert!(!said(2).contains(": ok"), "{}", said(2));
    assert!(
        h.sim
            .log()
            .matches("chassis control SoftOff refused")
            .count()
            >= 3,
        "{}",
        h.sim.log()
    );
    for i in [3, 4] {
        assert!(said(i).trim_end().ends_with("409"), "{}", said(i));
        assert!(
            said(i).contains("Start the guest agent, or use ForceOff/ForceRestart"),
            "{}",
            said(i)
        );
    }
    // sushy checks the live AllowableValues and refuses before sending.
    assert!(
        !sv["allowed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str().unwrap().contains("raceful")),
        "{sv}"
    );
    assert!(
        said(5).contains("is invalid") && said(5).to_lowercase().contains("graceful"),
        "{sv}"
    );
    // CIM: CIM_ERR_FAILED with the reason; AvailableRequestedStates has no 4 or 10.
    assert_eq!(cv["available"], serde_json::json!([2, 3, 11]), "{cv}");
    assert_eq!(cv["code"], 1, "{cv}");
    for i in [6, 7] {
        assert!(said(i).contains("Start the guest agent"), "{}", said(i));
    }

    // DMTF's rf_boot_override.py --reset picks an offered type (ForceRestart)
    // and succeeds.
    let tool = python().with_file_name("rf_boot_override.py");
    assert!(
        tool.exists(),
        "{} missing: pip install redfish-utilities",
        tool.display()
    );
    let o = run(Command::new(python()).arg(&tool).args([
        "-u", "admin", "-p", "s3cret", "-r", &h.redfish, "-t", "Pxe", "--reset",
    ]));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    h.sim.eventually("the ForceRestart", || {
        h.sim.log().contains("vm0: power Reset by redfish")
    });
    assert_eq!(h.sim.show("vm0")["power"], "on");
}

/// Power vm0 back on (when off) and wait until the agent is back.
fn ready(h: &Host) {
    if h.sim.show("vm0")["power"] != "on" {
        let o = h.sim.hvsim(&["vm", "power", "vm0", "on"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    h.sim.eventually("the agent running", || {
        h.sim.show("vm0")["tools"]["status"] == "running"
    });
}

fn agent_log(h: &Host) -> String {
    std::fs::read_to_string(h.sim.dir.path().join("agent.log")).unwrap_or_default()
}

fn wait_off(h: &Host, what: &str) {
    h.sim
        .eventually(what, || h.sim.show("vm0")["power"] == "off");
}

fn restarts(h: &Host) -> usize {
    h.sim
        .log()
        .lines()
        .filter(|l| l.contains("vm0: power SoftReboot by"))
        .count()
}

#[test]
fn graceful_requests_with_the_agent_are_carried_out_by_every_api() {
    let h = start();
    let _agent = agent(&h.sim);
    ready(&h);
    let offered = reset_info(&h);
    for t in ["GracefulShutdown", "GracefulRestart"] {
        assert!(offered.iter().any(|o| o == t), "{offered:?}");
    }

    // Shutdowns: each client's request, the agent halts, the VM goes off.
    let mut table = Vec::new();
    type Client = fn(&Host) -> Outcome;
    let clients: [(&str, Client); 6] = [
        ("ipmitool", ipmitool),
        ("ipmipower LAN", |h| ipmipower(h, "LAN")),
        ("ipmipower LAN_2_0", |h| ipmipower(h, "LAN_2_0")),
        ("curl", |h| curl_reset(h, "GracefulShutdown")),
        ("sushy", |h| sushy(h, "GracefulShutdown").0),
        ("pywbem", |h| {
            let (o, v) = cim(h, "4");
            assert_eq!(v["available"], serde_json::json!([2, 3, 4, 10, 11]), "{v}");
            o
        }),
    ];
    for (name, client) in clients {
        ready(&h);
        let o = client(&h);
        assert!(o.ok, "{name}: {}\nagent:\n{}", o.said, agent_log(&h));
        wait_off(&h, &format!("the shutdown {name} asked for"));
        table.push(o);
    }
    // Restarts: the VM resets through the agent and stays on.
    for (name, client) in [
        (
            "curl GracefulRestart",
            (|h| curl_reset(h, "GracefulRestart")) as Client,
        ),
        ("pywbem RequestStateChange(10)", |h| cim(h, "10").0),
    ] {
        ready(&h);
        let n = restarts(&h);
        let o = client(&h);
        assert!(o.ok, "{name}: {}", o.said);
        h.sim.eventually(name, || restarts(&h) > n);
        assert_eq!(h.sim.show("vm0")["power"], "on");
        table.push(o);
    }
    for o in &table {
        println!("{:<34} ok={:<5} {}", o.client, o.ok, o.said.trim());
    }
}
