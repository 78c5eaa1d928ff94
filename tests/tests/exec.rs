//! `hvsim exec`, the trap frontend: unmodified guest programs whose port I/O
//! and CPUID are trapped and emulated, and the process management around it
//! (threads, fork/exec, crashes, signals, exit status, a killed tracer,
//! the CPUID site cache).

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

/// Start `trap-guest MODE` under the tracer and wait for "ready".
fn ready_guest(sim: &Sim, mode: &str) -> std::process::Child {
    let mut child = sim
        .exec("vm0", &bin("trap-guest"))
        .arg(mode)
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
fn sigterm_reaches_the_program() {
    let sim = Sim::start();
    let mut child = ready_guest(&sim, "wait-term");
    // SAFETY: signalling our own child (hvsim exec, now the program).
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

/// Wait up to 10 s for `child` to end; it must never sit stopped.
fn ends_within(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        let pid = child.id() as i32;
        assert!(
            Instant::now() < deadline,
            "program {pid} still there in state {:?}",
            state_of(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `hvsim exec` becomes the program: the caller's own child, no process in
/// between, and the tracer lives in `hvsim serve`.
#[test]
fn hvsim_exec_becomes_the_program() {
    let sim = Sim::start();
    let mut child = ready_guest(&sim, "wait-term");
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    assert_eq!(exe, bin("trap-guest"));
    assert!(children_of(child.id()).is_empty());
    let field = |pid: &str, name: &str| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap()
    };
    // The tracer is a thread of hvsim serve.
    let tracer = field(&child.id().to_string(), "TracerPid:");
    assert_eq!(field(&tracer, "Tgid:"), sim.pid().to_string());
    child.kill().unwrap();
    assert_eq!(ends_within(&mut child).signal(), Some(libc::SIGKILL));
}

/// The tracer is `hvsim serve`: when it dies, its programs die with it
/// (their CPUIDs are UD2 now), none is left stopped.
#[test]
fn killing_hvsim_serve_kills_the_program() {
    let mut sim = Sim::start();
    let mut child = ready_guest(&sim, "wait-term");
    sim.kill9_and_restart();
    assert_eq!(ends_within(&mut child).signal(), Some(libc::SIGKILL));
    // The restarted host runs programs again.
    let o = guest(&sim, &["exit", "3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

/// A program killed while it holds a channel: its channels close, and the
/// session ends.
#[test]
fn killed_program_frees_its_channels() {
    let sim = Sim::start();
    let mut child = ready_guest(&sim, "hold");
    assert_eq!(sim.show("vm0")["channels"], 1);
    child.kill().unwrap();
    assert_eq!(ends_within(&mut child).signal(), Some(libc::SIGKILL));
    sim.eventually("its channels closed", || sim.show("vm0")["channels"] == 0);
    let pid = child.id();
    sim.eventually("the session ended", || {
        sim.log().contains(&format!("exec session {pid} ended"))
    });
}

/// Each file is disassembled once per `hvsim serve`: a second run of the
/// same program finds every CPUID site in the cache.
#[test]
fn cpuid_sites_are_cached_per_file() {
    let sim = Sim::start();
    let stats = |sim: &Sim| {
        let o = sim
            .exec("vm0", &bin("trap-guest"))
            .arg("signature")
            .env("HVSIM_EXEC_STATS", "1")
            .output()
            .unwrap();
        assert_eq!(stdout(&o), "VMwareVMware\n", "{}", stderr(&o));
        stderr(&o)
    };
    let first = stats(&sim);
    assert!(!first.contains("disassembled: 0,"), "{first}");
    let second = stats(&sim);
    assert!(second.contains("disassembled: 0,"), "{second}");
    assert!(!second.contains("patched: 0,"), "{second}");
}

/// serve traces only the process that asks for it.
#[test]
fn exec_attach_is_for_the_caller_only() {
    let sim = Sim::start();
    let e = sim
        .control(serde_json::json!({"op": "exec-attach", "vm": "vm0", "pid": 1}))
        .unwrap_err();
    assert!(e.contains("not the caller"), "{e}");
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
