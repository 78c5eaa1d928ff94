//! The VM's `vmware.log`: guest `log` messages as the VMX writes them, read
//! back by Debian's `vmware-xferlogs -g` (a file sent with
//! `vmware-xferlogs -p` comes out unchanged).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use e2e_tests::{stderr, stdout, Sim};

fn vmware_log(sim: &Sim) -> PathBuf {
    let p = PathBuf::from(sim.show("vm0")["vmware_log"].as_str().expect("vmware_log"));
    assert_eq!(p, sim.dir.path().join("state/vms/vm0/vmware.log"));
    p
}

/// The text after the `<time>| <thread>| I005: ` prefix, checking it.
fn body<'a>(line: &'a str, thread: &str) -> &'a str {
    let (time, rest) = line.split_once("| ").expect("prefix");
    // 2026-12-04T19:32:24.123Z
    assert_eq!(time.len(), 24, "{line}");
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
    rest.strip_prefix(&format!("{thread}| I005: "))
        .unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn guest_log_messages_are_guest_lines() {
    let sim = Sim::start();
    let o = sim.rpctool("vm0", &["log hello from the guest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let long = format!("log {}", "x".repeat(10_000));
    let o = sim.rpctool("vm0", &[&long]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(vmware_log(&sim)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        body(lines[0], "vmx").starts_with("Log for VMware ESX"),
        "{text}"
    );
    let guest: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("| vcpu-0| "))
        .map(|l| body(l, "vcpu-0"))
        .collect();
    assert_eq!(guest[0], "Guest: hello from the guest");
    // Cut at 4 KiB, as the VMX does.
    assert_eq!(guest[1].len(), 4096);
    assert!(guest[1].starts_with("Guest: xxx"));
}

#[test]
fn vmware_xferlogs_gets_back_what_it_put() {
    let sim = Sim::start();
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let file = sim.dir.path().join("support.tar.gz");
    std::fs::write(&file, &payload).unwrap();
    let xferlogs = Path::new("/usr/bin/vmware-xferlogs");
    let o = sim
        .exec("vm0", xferlogs)
        .arg("-p")
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let log = vmware_log(&sim);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!(
            "| vcpu-0| I005: Guest: >Logfile Begins : {}: ver - 1\n",
            file.display()
        )),
        "{text}"
    );
    // -g reads the log (it checks for a VMware VM first: under hvsim exec)
    // and writes vm-support-0-<time>.tar.gz into its working directory.
    let out = sim.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = sim
        .exec("vm0", xferlogs)
        .arg("-g")
        .arg(&log)
        .current_dir(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Reading file"), "{}", stdout(&o));
    let got: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(got.len(), 1, "{got:?}");
    let name = got[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("vm-support-0-") && name.ends_with(".tar.gz"),
        "{name}"
    );
    assert_eq!(std::fs::read(&got[0]).unwrap(), payload);
}
