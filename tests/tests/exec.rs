//! `hvsim exec`, the trap frontend: unmodified guest programs whose port I/O
//! and CPUID are trapped and emulated, and the process management around it
//! (threads, fork/exec, crashes, signals, exit status, a killed tracer).

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{bin, stderr, stdout, Sim};

fn guest(sim: &Sim, args: &[&str]) -> std::process::Output {
    sim.exec("vm0", &bin("trap-guest"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hvsim exec")
}

fn var(sim: &Sim, key: &str) -> serde_json::Value {
    sim.show("vm0")["guestinfo"][key].clone()
}

#[test]
fn cpuid_says_vmware_and_vm_rpctool_uses_port_io() {
    let sim = Sim::start();
    let o = guest(&sim, &["signature"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "VMwareVMware\n");
    // Without VM_BACKDOOR, vm-rpctool only works through the trapped port.
    let o = sim
        .exec("vm0", &bin("vm-rpctool"))
        .arg("info-set guestinfo.via trap")
        .env("HVSIM_EXEC_STATS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("io: ") && !stderr(&o).contains("io: 0,"),
        "no backdoor instruction was emulated: {}",
        stderr(&o)
    );
    assert_eq!(var(&sim, "guestinfo.via"), "trap");
}

#[test]
fn multithreaded_guest() {
    let sim = Sim::start();
    let o = guest(&sim, &["threads", "8"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "8 threads done, 0 failed\n");
    for i in 0..8 {
        assert_eq!(
            var(&sim, &format!("guestinfo.thread{i}")),
            format!("t{i}r4")
        );
    }
    // Every traced process's channels were closed or freed.
    sim.eventually("channels freed", || sim.show("vm0")["channels"] == 0);
}

#[test]
fn guest_forks_and_execs_another_guest() {
    let sim = Sim::start();
    let rpctool = bin("vm-rpctool");
    let o = guest(
        &sim,
        &[
            "fork-exec",
            rpctool.to_str().unwrap(),
            "info-set guestinfo.child from-exec",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(var(&sim, "guestinfo.child"), "from-exec");
    assert_eq!(var(&sim, "guestinfo.parent"), "alive");
    // The exec'd program's exit code comes back through both processes.
    let me = bin("trap-guest");
    let o = guest(&sim, &["fork-exec", me.to_str().unwrap(), "exit", "7"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(var(&sim, "guestinfo.exit"), "soon");
}

#[test]
fn exit_status_propagates() {
    let sim = Sim::start();
    for code in [0, 1, 7, 255] {
        let o = guest(&sim, &["exit", &code.to_string()]);
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
    }
}

/// A real crash under the tracer ends with the same signal as without it.
#[test]
fn real_crashes_keep_their_signal() {
    let sim = Sim::start();
    for (mode, sig) in [("segv", libc::SIGSEGV), ("ud2", libc::SIGILL)] {
        let bare = Command::new(bin("trap-guest")).arg(mode).output().unwrap();
        assert_eq!(bare.status.signal(), Some(sig), "{mode} without the tracer");
        let o = guest(&sim, &[mode]);
        assert_eq!(o.status.signal(), Some(sig), "{mode}: {}", stderr(&o));
    }
}

#[test]
fn killed_by_a_signal() {
    let sim = Sim::start();
    for sig in [libc::SIGABRT, libc::SIGKILL, libc::SIGUSR1] {
        let o = guest(&sim, &["raise", &sig.to_string()]);
        assert_eq!(o.status.signal(), Some(sig), "{}", stderr(&o));
    }
    assert_eq!(var(&sim, "guestinfo.raise"), "soon");
}

/// Start `trap-guest wait-term` under the tracer and wait for "ready".
fn waiting_guest(sim: &Sim) -> std::process::Child {
    let mut child = sim
        .exec("vm0", &bin("trap-guest"))
        .arg("wait-term")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    child
}

#[test]
fn sigterm_is_forwarded_to_the_program() {
    let sim = Sim::start();
    let mut child = waiting_guest(&sim);
    // SAFETY: signalling our own child (hvsim exec).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(42), "the program's SIGTERM handler ran");
    assert_eq!(var(&sim, "guestinfo.term"), "received");
}

fn children_of(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let Ok(t) = t else { continue };
        let p = t.path().join("children");
        if let Ok(s) = std::fs::read_to_string(p) {
            out.extend(s.split_whitespace().filter_map(|v| v.parse::<i32>().ok()));
        }
    }
    out
}

fn state_of(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.chars().next()
}

#[test]
fn killing_the_tracer_kills_the_program() {
    let sim = Sim::start();
    let mut child = waiting_guest(&sim);
    let traced = children_of(child.id());
    assert_eq!(traced.len(), 1, "one traced program: {traced:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let pid = traced[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match state_of(pid) {
            None => break,
            // A zombie whose parent is gone is init's to reap; it runs nothing.
            Some('Z') | Some('X') => break,
            // Running, sleeping or (the bug this catches) stopped forever.
            Some(s) => assert!(
                Instant::now() < deadline,
                "traced program {pid} still there in state {s} after the tracer died"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    sim.eventually("its backdoor connection closed", || {
        sim.show("vm0")["channels"] == 0
    });
}

#[test]
fn errors_say_what_to_do() {
    let sim = Sim::start();
    let o = sim.hvsim(&["exec", "--vm", "vm0", "--", "no-such-program-here"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("command not found"), "{}", stderr(&o));
    let o = sim.hvsim(&["exec", "--vm", "nope", "--", "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no VM named"), "{}", stderr(&o));
    let o = Command::new(bin("hvsim"))
        .args(["exec", "--vm", "vm0", "--", "true"])
        .env("HVSIM_CONTROL", sim.dir.path().join("nothing.sock"))
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("is `hvsim serve` running?"),
        "{}",
        stderr(&o)
    );
}
