//! `hvsim demo`: start a simulated host in a scratch directory, run real guest
//! programs against it, and show what the host sees.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::config::Config;
use crate::{serve, vm};

const OVF_ENV: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"
             xmlns:oe="http://schemas.dmtf.org/ovf/environment/1"
             oe:id="vm0">
  <PropertySection>
    <Property oe:key="hostname" oe:value="demo-guest"/>
    <Property oe:key="ip0" oe:value="192.0.2.10"/>
    <Property oe:key="netmask0" oe:value="255.255.255.0"/>
  </PropertySection>
</Environment>
"#;

fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find the hvsim executable")?;
    let p = me.with_file_name(name);
    if !p.exists() {
        bail!(
            "{name} not found next to hvsim ({}); build the whole workspace first: cargo build --release",
            p.display()
        );
    }
    Ok(p)
}

struct Guest<'a> {
    rpctool: &'a Path,
    backdoor: String,
}

impl Guest<'_> {
    /// Run vm-rpctool like a shell transcript and return its exit status.
    fn run(&self, msg: &str) -> Result<bool> {
        println!("  guest$ vm-rpctool '{msg}'");
        let out = Command::new(self.rpctool)
            .arg(msg)
            .env("VM_BACKDOOR", &self.backdoor)
            .output()
            .context("cannot run vm-rpctool")?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_string();
        for line in text(&out.stdout).lines() {
            println!("    {line}");
        }
        for line in text(&out.stderr).lines() {
            println!("    (stderr) {line}");
        }
        println!("    (exit {})", out.status.code().unwrap_or(-1));
        Ok(out.status.success())
    }
}

/// Run the tour. `wait` keeps the host up for the user afterwards.
pub fn run(wait: Option<bool>) -> Result<()> {
    let rpctool = sibling("vm-rpctool")?;
    let dir = std::env::temp_dir().join(format!("hvsim-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveOnDrop(dir.clone());
    std::fs::write(dir.join("ovf-env.xml"), OVF_ENV)?;
    let cfg_text = r#"control_socket = "control.sock"
[[vm]]
name = "vm0"
ovf_env = "ovf-env.xml"
guestinfo = { "guestinfo.metadata" = "eyJpbnN0YW5jZS1pZCI6ICJkZW1vIn0=", "guestinfo.metadata.encoding" = "base64" }

[[user]]
name = "admin"
password = "password"
role = "Administrator"
"#;
    let cfg_path = dir.join("hvsim.toml");
    std::fs::write(&cfg_path, cfg_text)?;
    let cfg = Config::load(Some(&cfg_path))?;
    let server = serve::start(&cfg, Some(&dir.join("state")))?;
    let vm0 = server.vms.get("vm0").context("vm0 missing")?.clone();
    let backdoor = format!("unix:{}", vm0.info.backdoor_socket.display());
    let guest = Guest {
        rpctool: &rpctool,
        backdoor: backdoor.clone(),
    };

    println!(
        "hvsim demo: a simulated VMware host with one VM, vm0, in {}\n",
        dir.display()
    );
    println!("The guest side is our vm-rpctool and vm-agent, talking GuestRPC over the VMware");
    println!("backdoor protocol (carried here over the VM's backdoor socket:");
    println!(
        "VM_BACKDOOR={backdoor}; `hvsim exec` runs them, or open-vm-tools, on real port I/O).\n"
    );

    println!("1. The guest reads its OVF environment and cloud-init metadata from the host:");
    guest.run("info-get guestinfo.ovfEnv")?;
    guest.run("info-get guestinfo.metadata.encoding")?;

    println!("\n2. The guest agent starts and reports what it knows (this machine's");
    println!("   hostname, OS, NICs and disks); the host shows it:");
    let _agent = KillOnDrop(start_agent(&dir, &backdoor)?);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let shown = loop {
        let v = vm::show_json(&vm0);
        if v["tools"]["status"] == "running" && v["guest"]["hostname"].is_string() {
            break v;
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "vm-agent did not report within 15 s; see {}",
                dir.join("vm-agent.log").display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let txt = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    println!("  host$ hvsim vm show vm0");
    println!(
        "    tools:    {} (version {})",
        txt(&shown["tools"]["status"]),
        txt(&shown["tools"]["version"])
    );
    println!("    hostname: {}", txt(&shown["guest"]["hostname"]));
    println!(
        "    os:       {} ({})",
        txt(&shown["guest"]["os_full_name"]),
        txt(&shown["guest"]["os_name"])
    );
    for nic in shown["guest"]["nics"].as_array().into_iter().flatten() {
        let ips: Vec<String> = nic["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| format!("{}/{}", txt(&i["addr"]), i["prefix"]))
            .collect();
        println!("    nic {}: {}", txt(&nic["mac"]), ips.join(" "));
    }

    println!("\n3. The host commands the agent over TCLO:");
    println!("  host$ hvsim vm tclo vm0 ping");
    let reply = vm0
        .tclo(b"ping", std::time::Duration::from_secs(10))
        .map_err(anyhow::Error::msg)?;
    println!("    {}", String::from_utf8_lossy(&reply));

    println!("\n4. Guest variables go both ways:");
    guest.run("info-set guestinfo.demo.greeting hello from the guest")?;
    println!("  host$ hvsim vm get-var vm0 demo.greeting");
    let v = vm0.get_var("guestinfo.demo.greeting").unwrap_or_default();
    println!("    {}", String::from_utf8_lossy(&v));
    println!("  host$ hvsim vm set-var vm0 guestinfo.demo.fromhost 'hello from the host'");
    vm0.set_var("guestinfo.demo.fromhost", b"hello from the host")
        .map_err(anyhow::Error::msg)?;
    guest.run("info-get guestinfo.demo.fromhost")?;

    println!("\n5. Errors come back like a real host's, with exit status 1:");
    guest.run("info-get guestinfo.nothing-here")?;
    guest.run("no-such-command")?;

    println!("\n6. A graceful shutdown goes to the agent (TCLO OS_Halt); the VM is off once");
    println!("   the agent reports the halt done (its halt command here is `true`):");
    println!("  host$ hvsim vm power vm0 soft");
    vm0.power(vm::PowerAction::SoftOff, "demo")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while vm0.power_state() != vm::Power::Off {
        if std::time::Instant::now() > deadline {
            bail!("the agent did not complete the graceful shutdown within 15 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let v = vm::show_json(&vm0);
    println!(
        "    power: {}; last state change: {}",
        txt(&v["power"]),
        v["tools"]["last_state_change"]
    );
    println!("  host$ hvsim vm power vm0 on");
    vm0.power(vm::PowerAction::On, "demo")?;

    println!("\n7. Everything the host knows (hvsim vm show vm0 --json, shortened):");
    let mut shown = vm::show_json(&vm0);
    if let Some(v) = shown["guestinfo"].get_mut("guestinfo.ovfEnv") {
        *v = format!("<{} bytes of OVF environment>", OVF_ENV.len()).into();
    }
    if let Some(g) = shown["guest"].as_object_mut() {
        g.remove("raw");
        g.remove("os_detailed");
    }
    println!("{}", serde_json::to_string_pretty(&shown)?);

    let wait =
        wait.unwrap_or_else(|| std::io::stdin().is_terminal() && std::io::stdout().is_terminal());
    println!("\nPoke it further, from another terminal:");
    println!("  export HVSIM_CONTROL={}", server.control_socket.display());
    println!("  hvsim vm list");
    println!("  hvsim vm show vm0 --json");
    println!("  hvsim vm set-var vm0 guestinfo.foo bar");
    println!("  VM_BACKDOOR={backdoor} vm-rpctool 'info-get guestinfo.foo'");
    println!("  echo 'info-get guestinfo.foo' | VM_BACKDOOR={backdoor} vm-rpctool --batch");
    println!("  ipmitool -I lanplus -H 127.0.0.1 -p 6230 -U admin -P password chassis status");
    println!("  wbemcli ein 'http://admin:password@127.0.0.1:5988/root/cimv2:CIM_ComputerSystem'");
    if wait {
        println!("\nThe host keeps running; press Ctrl-C to stop it.");
        serve::wait_for_signal();
    } else {
        println!("\n(Run `hvsim demo --wait` in a terminal to keep the host up; `hvsim serve` runs it for real.)");
    }
    drop(server);
    Ok(())
}

/// Start vm-agent against the VM: power operations run harmless stubs, and
/// the clock is never touched.
fn start_agent(dir: &Path, backdoor: &str) -> Result<std::process::Child> {
    let agent = sibling("vm-agent")?;
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nlog_level = \"warn\"\n\n[timesync]\nenabled = false\n\n\
             [powerops]\nhalt_command = \"true\"\nreboot_command = \"true\"\nscripts_dir = \"{}\"\n",
            dir.join("scripts").display()
        ),
    )?;
    let log = std::fs::File::create(dir.join("vm-agent.log"))?;
    let mut cmd = Command::new(agent);
    // hvsim blocks its shutdown signals to wait for them; the agent must
    // not inherit that mask, or SIGTERM would never reach it.
    // SAFETY: the closure only calls pthread_sigmask, which is
    // async-signal-safe, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            serve::unblock_signals();
            Ok(())
        });
    }
    cmd.arg("--config")
        .arg(&cfg)
        .arg("--backdoor")
        .arg(backdoor)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start vm-agent")
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
