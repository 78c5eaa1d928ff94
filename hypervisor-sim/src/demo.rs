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
    println!("The guest side is vm-rpctool, talking GuestRPC over the VMware backdoor protocol");
    println!("(here carried over the VM's backdoor socket: VM_BACKDOOR={backdoor}).\n");

    println!("1. The guest reads its OVF environment and cloud-init metadata from the host:");
    guest.run("info-get guestinfo.ovfEnv")?;
    guest.run("info-get guestinfo.metadata.encoding")?;
    println!("\n2. The guest publishes a variable, and reports its host name and OS:");
    guest.run("info-set guestinfo.demo.greeting hello from the guest")?;
    guest.run("SetGuestInfo  1 demo-guest")?;
    guest.run("SetGuestInfo  6 debian12-64")?;
    guest.run("SetGuestInfo  5 Debian GNU/Linux 12 (bookworm)")?;
    guest.run("tools.set.version 2147483647")?;
    println!("\n3. The host sets a variable; the guest reads it:");
    println!("  host$ hvsim vm set-var vm0 guestinfo.demo.fromhost 'hello from the host'");
    vm0.set_var("guestinfo.demo.fromhost", b"hello from the host")
        .map_err(anyhow::Error::msg)?;
    guest.run("info-get guestinfo.demo.fromhost")?;
    println!("\n4. Errors come back like a real host's, with exit status 1:");
    guest.run("info-get guestinfo.nothing-here")?;
    guest.run("no-such-command")?;

    println!("\n5. What the host sees (hvsim vm show vm0 --json, ovfEnv shortened):");
    let mut shown = vm::show_json(&vm0);
    if let Some(v) = shown["guestinfo"].get_mut("guestinfo.ovfEnv") {
        *v = format!("<{} bytes of OVF environment>", OVF_ENV.len()).into();
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
    if wait {
        println!("\nThe host keeps running; press Ctrl-C to stop it.");
        serve::wait_for_signal();
    } else {
        println!("\n(Run `hvsim demo --wait` in a terminal to keep the host up; `hvsim serve` runs it for real.)");
    }
    drop(server);
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
