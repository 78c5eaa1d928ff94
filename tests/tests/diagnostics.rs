//! What the tools say when something is off: `hvsim vm show | head` ends
//! quietly, `VM_BACKDOOR_TRACE=1` shows the port probe's GETVERSION, a
//! missing I/O privilege is named as such, the agent logs the same cause
//! vm-rpctool prints, and the agent publishes once per connection.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{bin, stderr, stop_child, Sim};

/// The machine's own CPUID hypervisor signature (trap-guest outside
/// `hvsim exec`).
fn machine_is_vmware() -> bool {
    let o = Command::new(bin("trap-guest"))
        .arg("signature")
        .output()
        .expect("trap-guest");
    String::from_utf8_lossy(&o.stdout).trim() == "VMwareVMware"
}

#[test]
fn vm_show_into_a_closed_pipe_ends_quietly() {
    let sim = Sim::start();
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two new descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fresh descriptors owned by nothing else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The reader is gone before hvsim writes, as after `| head` has quit.
    drop(rd);
    for args in [["vm", "show", "vm0"], ["vm", "list", "--json"]] {
        let o = Command::new(bin("hvsim"))
            .args(args)
            .env("HVSIM_CONTROL", &sim.control)
            .stdin(Stdio::null())
            .stdout(Stdio::from(wr.try_clone().unwrap()))
            .output()
            .unwrap();
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{:?}", o.status);
    }
}

#[test]
fn port_probe_is_traced_and_a_missing_io_privilege_named() {
    if machine_is_vmware() {
        eprintln!("skipped: on VMware, port I/O needs no probe");
        return;
    }
    let o = Command::new(bin("vm-rpctool"))
        .args(["--backdoor", "port", "info-get guestinfo.x"])
        .env("VM_BACKDOOR_TRACE", "1")
        .env_remove("VM_BACKDOOR")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    // GETVERSION (ecx 10) with the magic, to port 0x5658, in the probe.
    assert!(
        err.contains(
            "backdoor in 0B Regs { eax: 0x564d5868, ebx: 0x00000000, ecx: 0x0000000a, edx: 0x00005658"
        ) && err.contains("-> error: port I/O faulted (SIGSEGV)")
            && err.contains("probe in a child process"),
        "{err}"
    );
    assert!(
        err.contains("this process has no I/O privilege for port 0x5658"),
        "{err}"
    );
    assert!(err.contains("hvsim exec"), "{err}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let o = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin("vm-rpctool"))
            .args(["--backdoor", "port", "info-get guestinfo.x"])
            .env_remove("VM_BACKDOOR")
            .output()
            .unwrap();
        assert!(
            stderr(&o).contains("(uid 65534, not root)"),
            "{}",
            stderr(&o)
        );
    }
}

/// A socket that takes each connection and closes it at once.
fn slamming_socket(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("slam.sock");
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            drop(c);
        }
    });
    path
}

#[test]
fn agent_logs_the_cause_vm_rpctool_prints() {
    let dir = tempfile::tempdir().unwrap();
    let sock = slamming_socket(dir.path());
    let o = Command::new(bin("vm-rpctool"))
        .arg("info-get guestinfo.x")
        .env("VM_BACKDOOR", format!("unix:{}", sock.display()))
        .output()
        .unwrap();
    let printed = stderr(&o);
    // The cause (which OS error depends on timing, the kind does not).
    let cause = "unable to open the communication channel: backdoor transport i/o: ";
    assert!(
        printed.starts_with(&format!("vm-rpctool: {cause}")),
        "{printed}"
    );
    let log = dir.path().join("agent.log");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, "[timesync]\nenabled = false\n").unwrap();
    let child = Command::new(bin("vm-agent"))
        .arg("--backdoor")
        .arg(format!("unix:{}", sock.display()))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("cannot reach the host")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no error logged:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    stop_child(child, Duration::from_secs(5));
    assert!(
        line.contains(cause),
        "{line}\nvm-rpctool printed: {printed}"
    );
}

#[test]
fn agent_publishes_once_when_it_connects() {
    let sim = Sim::start();
    let dir = sim.dir.path();
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        "[timesync]\nenabled = false\n[guestinfo]\nreport_disks = false\n",
    )
    .unwrap();
    let child = Command::new(bin("vm-agent"))
        .args(["--backdoor", &sim.backdoor("vm0")])
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sim.eventually("the agent reported", || {
        let v = sim.show("vm0");
        v["tools"]["status"] == "running" && v["guest"]["hostname"].is_string()
    });
    // Past the agent's wait for the host's reset (2 s), so a publish at
    // connect and another at reset would both be in the log by now.
    std::thread::sleep(Duration::from_secs(3));
    stop_child(child, Duration::from_secs(5));
    let log = std::fs::read_to_string(dir.join("state/vms/vm0/vmware.log")).unwrap();
    // Each publish starts with the agent's version in the VM's log.
    let announcements = log
        .lines()
        .filter(|l| l.contains("| I005: Guest: vm-agent "))
        .count();
    assert_eq!(announcements, 1, "{log}");
}
