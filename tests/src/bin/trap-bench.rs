//! Benchmark of the trap frontend (`hvsim exec`), side by side with the bare
//! ptrace limit measured in the same run. Everything runs pinned to one CPU
//! (simulator, tracer, guest): on this nested-virtualization machine kind a
//! wake-up on the other core costs 3-4 times one on the same core.
//!
//! * bare ptrace round trip: a child executes `int3` in a loop; the tracer
//!   waits for each stop and resumes it (waitpid + PTRACE_CONT);
//! * bare trapped `in`: the child executes `in eax, dx`, the tracer answers
//!   with an empty emulation (GETREGS, RIP + 1, SETREGS, CONT);
//! * one emulated LB backdoor call (GETVERSION) under `hvsim exec`;
//! * HB in throughput: an RPCI info-get of a large OVF environment, through
//!   the trap and through the socket transport;
//! * vm-rpctool against vmware-rpctool, a process per message, both under
//!   `hvsim exec`.
//!
//! The machine is shared and its load drifts, so the measures that are
//! compared are interleaved: the bare limits and the emulated call alternate
//! in rounds (the median of the rounds is reported), and the two rpctools
//! alternate run by run (the median of the runs is reported), both tools
//! under the same `hvsim serve`, whose CPUID-site cache is warm for both
//! (one unmeasured run each first).
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.
//! Guest modes (run under `hvsim exec` by the benchmark itself):
//! `trap-bench guest-lb N`, `trap-bench guest-hb N`.

use std::arch::asm;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use agent::rpci::Rpci;
use agent::transport::{self, port::PortIo, BackdoorSpec};
use e2e_tests::Sim;
use protocol::guest::Backdoor;
use protocol::{cmd, Regs};

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("bench path")
        .with_file_name(name)
}

fn pin_self(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it and
    // sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Guest side: `n` GETVERSION calls over real port I/O; prints µs per call.
fn guest_lb(n: u32) {
    let mut bd = PortIo::new();
    let t = Instant::now();
    for _ in 0..n {
        let r = bd.call(Regs::command(cmd::GETVERSION, 0)).expect("call");
        assert_eq!(r.ebx, protocol::BDOOR_MAGIC, "no backdoor answered");
    }
    println!("{}", t.elapsed().as_secs_f64() * 1e6 / f64::from(n));
}

/// Guest side: `n` RPCI info-gets of the OVF environment over one channel;
/// prints bytes per second of reply.
fn guest_hb(n: u32) {
    let bd = transport::connect(&BackdoorSpec::Auto).expect("backdoor");
    let mut ch = Rpci::open(bd).expect("open");
    let mut bytes = 0usize;
    let t = Instant::now();
    for _ in 0..n {
        let r = ch.send(b"info-get guestinfo.ovfEnv").expect("send");
        assert!(r.ok);
        bytes += r.body.len();
    }
    println!("{}", bytes as f64 / t.elapsed().as_secs_f64());
}

/// Trace a child that runs `body` `n` times; `answer` handles each stop.
/// Returns µs per stop.
fn bare(n: u32, body: fn(), answer: fn(i32)) -> f64 {
    // SAFETY: the child runs only the asm loop and async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain syscalls in the child; _exit never returns.
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::raise(libc::SIGSTOP);
            for _ in 0..n {
                body();
            }
            libc::_exit(0);
        }
    }
    let mut st = 0;
    // SAFETY: waiting for and resuming our own traced child.
    unsafe {
        libc::waitpid(pid, &mut st, 0);
        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
    }
    let t = Instant::now();
    loop {
        // SAFETY: as above.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        if !libc::WIFSTOPPED(st) {
            break;
        }
        answer(pid);
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

fn int3() {
    // SAFETY: int3 raises SIGTRAP, which the tracer swallows; no state changes.
    unsafe { asm!("int3", options(nomem, nostack)) };
}

fn cont(pid: i32) {
    // SAFETY: resuming our stopped tracee without a signal.
    unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, 0) };
}

fn port_in() {
    // SAFETY: `in eax, dx` faults (no I/O privilege); the tracer steps past
    // it. eax and edx are declared clobbered/used.
    unsafe {
        asm!("in eax, dx", inout("eax") 0u32 => _, in("dx") 0x5658u16, options(nomem, nostack))
    };
}

fn empty_emulation(pid: i32) {
    // SAFETY: GETREGS/SETREGS on our stopped tracee with a valid buffer.
    unsafe {
        let mut r: libc::user_regs_struct = std::mem::zeroed();
        libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut r as *mut _);
        r.rip += 1;
        libc::ptrace(libc::PTRACE_SETREGS, pid, 0, &r as *const _);
        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
    }
}

fn exec(sim: &Sim, program: &Path, args: &[&str]) -> Command {
    let mut c = sim.exec("vm0", program);
    c.args(args).stdin(Stdio::null());
    c
}

fn number(c: &mut Command) -> f64 {
    let o = c.output().expect("run guest");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("guest prints a number")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Wall time of one run of `c`, ms.
fn wall_ms(mut c: Command) -> f64 {
    let s = Instant::now();
    let o = c.output().expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.elapsed().as_secs_f64() * 1e3
}

/// Median wall times (ms) of `runs` runs of each command, alternating
/// between them so that load changes hit both alike; one unmeasured warm-up
/// run each first.
fn per_process(cmds: &[&dyn Fn() -> Command], runs: usize) -> Vec<f64> {
    for c in cmds {
        wall_ms(c());
    }
    let mut times = vec![Vec::with_capacity(runs); cmds.len()];
    for _ in 0..runs {
        for (i, c) in cmds.iter().enumerate() {
            times[i].push(wall_ms(c()));
        }
    }
    times.into_iter().map(median).collect()
}

fn find(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("guest-lb") => return guest_lb(args[1].parse().expect("count")),
        Some("guest-hb") => return guest_hb(args[1].parse().expect("count")),
        _ => {}
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (n_lb, rounds, n_hb, runs) = if quick {
        (500, 3, 3, 5)
    } else {
        (5_000, 9, 20, 100)
    };
    pin_self(0);

    let dir = tempfile::Builder::new()
        .prefix("trap-bench")
        .tempdir()
        .expect("tempdir");
    let ovf_len = 8 << 20;
    std::fs::write(dir.path().join("ovf-env.xml"), vec![b'x'; ovf_len]).expect("ovf");
    let sim = Sim::with_config_in(dir, "[[vm]]\nname = \"vm0\"\novf_env = \"ovf-env.xml\"\n");
    let me = sibling("trap-bench");
    let (mut bare_trap, mut bare_in, mut lb) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        bare_trap.push(bare(n_lb, int3, cont));
        bare_in.push(bare(n_lb, port_in, empty_emulation));
        lb.push(number(&mut exec(
            &sim,
            &me,
            &["guest-lb", &n_lb.to_string()],
        )));
    }
    let (bare_trap, bare_in, lb) = (median(bare_trap), median(bare_in), median(lb));
    let hb_trap = number(&mut exec(&sim, &me, &["guest-hb", &n_hb.to_string()]));
    let hb_socket = number(
        Command::new(&me)
            .args(["guest-hb", &n_hb.to_string()])
            .env("VM_BACKDOOR", sim.backdoor("vm0")),
    );
    let rpctool = e2e_tests::guest_bin("vm-rpctool");
    let msg = "info-get guestinfo.bench";
    sim.control(serde_json::json!({"op": "set-var", "vm": "vm0", "key": "bench", "value": "v"}))
        .expect("set-var");
    let ours = || exec(&sim, &rpctool, &[msg]);
    let (ours, theirs) = match find("vmware-rpctool") {
        Some(p) => {
            let t = per_process(&[&ours, &|| exec(&sim, &p, &[msg])], runs);
            (t[0], Some(t[1]))
        }
        None => (per_process(&[&ours], runs)[0], None),
    };

    println!();
    println!(
        "Trap frontend (`hvsim exec`), everything pinned to one core; LB: median of {rounds} interleaved rounds of {n_lb} calls; rpctools: median of {runs} alternating runs, site cache warm:"
    );
    println!();
    println!("| measure | hvsim exec | bare limit, same run | ratio | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| one emulated LB backdoor call (GETVERSION) | {lb:.1} µs | {bare_trap:.1} µs ptrace stop/resume (int3) | {:.2}× | ≤ 2× |",
        lb / bare_trap
    );
    println!(
        "| same, against a trapped `in` with an empty emulation | {lb:.1} µs | {bare_in:.1} µs | {:.2}× | |",
        lb / bare_in
    );
    println!(
        "| HB in payload (8 MiB OVF environment via RPCI) | {:.2} GB/s | {:.2} GB/s socket frontend | {:.0}% | |",
        hb_trap / 1e9,
        hb_socket / 1e9,
        hb_trap / hb_socket * 100.0
    );
    match theirs {
        Some(t) => println!(
            "| process per message, `{msg}` | vm-rpctool {ours:.2} ms | vmware-rpctool {t:.2} ms | {:.2}× the time | ≤ 1× |",
            ours / t
        ),
        None => println!(
            "| process per message, `{msg}` | vm-rpctool {ours:.2} ms | vmware-rpctool not installed | | |"
        ),
    }
}
