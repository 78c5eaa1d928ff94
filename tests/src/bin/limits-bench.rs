//! hvsim at scale and under a hostile guest (docs/hvsim-limits.md).
//!
//! `limits-bench cost [N...]`: per-VM cost of `hvsim serve` with N VMs
//! (default 100, 500 and 1000), each with and without an idle vm-agent per
//! VM (socket transport): descriptors, threads, RSS and idle CPU of the
//! hvsim process, in total and per VM, as a Markdown table. hvsim runs in
//! a network namespace of its own (its default BMC, CIM, Redfish and NBD
//! ports collide with nothing) under `prlimit --nofile=1024:HARD` (this process's hard
//! limit, at most 65536), the shape of systemd's default (soft 1024, a
//! higher hard limit).
//!
//! `limits-bench latency`: RPCI round trips (connect, open a channel,
//! `info-get`, close: what a guest program does) on one VM, p50 and p99,
//! unloaded and while another VM's guest holds connections to its cap and
//! keeps opening more; also `hvsim vm list` over the control socket. Prints
//! the loaded/unloaded p99 ratio (the issue asks for at most 2×). Then the
//! same for CIM-XML over HTTP while one client (127.0.0.2) holds its share
//! of connections and keeps opening more.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::transport::unix::UnixBackdoor;
use e2e_tests::{bin, guest_bin, Sim, SimOptions};
use protocol::guest::{Backdoor, GuestChannel};
use protocol::{cmd, proto, Regs};

struct Agents(Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &self.0 {
            // SAFETY: signalling our own children.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of every thread of `pid`, in nanoseconds (schedstat).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    d.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn tools_running(sim: &Sim) -> usize {
    sim.control(serde_json::json!({"op": "list"}))
        .ok()
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter(|vm| vm["tools"]["status"] == "running")
                    .count()
            })
        })
        .unwrap_or(0)
}

/// This process's hard open-file limit (a child cannot get more).
fn hard_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `r`, which we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    r.rlim_max.min(65536)
}

fn cost_row(n: usize, with_agents: bool, agent_cfg: &Path) {
    let cfg: String = (0..n)
        .map(|i| format!("[[vm]]\nname = \"v{i}\"\n"))
        .collect();
    let sim = Sim::with_options(
        &cfg,
        SimOptions {
            nofile: Some((1024, hard_nofile())),
            log_level: Some("warn".into()),
            netns: true,
        },
    );
    let pid = sim.pid();
    let _agents = if with_agents {
        let agent = guest_bin("vm-agent");
        let mut kids = Vec::new();
        for i in 0..n {
            let sock = sim.dir.path().join(format!("state/vms/v{i}/backdoor.sock"));
            kids.push(
                Command::new(&agent)
                    .arg("--backdoor")
                    .arg(format!("unix:{}", sock.display()))
                    .arg("--config")
                    .arg(agent_cfg)
                    .env("RUST_LOG", "error")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start vm-agent"),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while tools_running(&sim) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let up = tools_running(&sim);
        if up < n {
            eprintln!("note: only {up} of {n} agents reported running");
        }
        Some(Agents(kids))
    } else {
        None
    };
    // Settle, then an idle window.
    std::thread::sleep(Duration::from_secs(3));
    let window = Duration::from_secs(10);
    let c0 = cpu_ns(pid);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let cpu = (cpu_ns(pid) - c0) as f64 / t0.elapsed().as_nanos() as f64 * 100.0;
    let (f, threads, rss) = (
        fds(pid),
        status_field(pid, "Threads:"),
        status_field(pid, "VmRSS:"),
    );
    println!(
        "| {n:>5} | {:<6} | {f:>6} | {:>6.2} | {threads:>7} | {:>6.2} | {:>7.1} | {:>7.1} | {cpu:>6.2} | {:>8.4} |",
        if with_agents { "idle" } else { "none" },
        f as f64 / n as f64,
        threads as f64 / n as f64,
        rss as f64 / 1024.0,
        rss as f64 / n as f64,
        cpu / n as f64,
    );
}

fn cost(ns: &[usize]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        "[timesync]\nenabled = false\n[powerops]\nenabled = false\n",
    )
    .expect("agent config");
    println!(
        "hvsim serve: {}; under prlimit --nofile=1024:{}, own network namespace",
        bin("hvsim").display(),
        hard_nofile()
    );
    println!("| VMs   | agents | fds    | fds/VM | threads | thr/VM | RSS MiB | KiB/VM  | CPU %  | CPU%/VM  |");
    println!("|------:|--------|-------:|-------:|--------:|-------:|--------:|--------:|-------:|---------:|");
    for &n in ns {
        for agents in [false, true] {
            cost_row(n, agents, &agent_cfg);
        }
    }
}

/// One guest program's RPCI request: connect, open, call, close.
fn rpci_once(sock: &Path) -> Duration {
    let t = Instant::now();
    let mut bd = UnixBackdoor::connect(sock).expect("connect");
    let mut ch = GuestChannel::open(&mut bd, proto::RPCI).expect("open");
    let r = ch.call(b"info-get guestinfo.bench").expect("call").to_vec();
    assert_eq!(r, b"1 x");
    ch.close().expect("close");
    t.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn sample(sim: &Sim, sock: &Path, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut rpci = Vec::with_capacity(n);
    let mut list = Vec::with_capacity(n / 10);
    for i in 0..n {
        rpci.push(rpci_once(sock));
        if i % 10 == 0 {
            let t = Instant::now();
            sim.control(serde_json::json!({"op": "list"}))
                .expect("vm list");
            list.push(t.elapsed());
        }
    }
    (rpci, list)
}

fn latency() {
    let sim = Sim::with_options(
        "[[vm]]\nname = \"hog\"\n[[vm]]\nname = \"a\"\n[[vm]]\nname = \"b\"\n[cim]\nenabled = false\n[redfish]\nenabled = false\n",
        SimOptions {
            nofile: Some((1024, 1024)),
            log_level: Some("info".into()),
            netns: true,
        },
    );
    sim.control(serde_json::json!({"op": "set-var", "vm": "a", "key": "bench", "value": "x"}))
        .expect("set-var");
    let sock = sim.socket("a");
    let hog_sock = sim.socket("hog");
    let n = 3000;
    // Warm up, then the unloaded run.
    sample(&sim, &sock, 200);
    let (mut base, mut base_list) = sample(&sim, &sock, n);
    // The hog: connections to its cap, held, and a thread that keeps
    // opening more (each refused).
    let mut held = Vec::new();
    loop {
        let mut bd = UnixBackdoor::connect(&hog_sock).expect("hog connect");
        if bd.call(Regs::command(cmd::GETVERSION, 0)).is_err() {
            break;
        }
        held.push(bd);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let hs = hog_sock.clone();
    let flooder = std::thread::spawn(move || {
        let mut tries = 0u64;
        while !s2.load(Ordering::Relaxed) {
            if let Ok(mut bd) = UnixBackdoor::connect(&hs) {
                let _ = bd.call(Regs::command(cmd::GETVERSION, 0));
            }
            tries += 1;
        }
        tries
    });
    let (mut loaded, mut loaded_list) = sample(&sim, &sock, n);
    stop.store(true, Ordering::Relaxed);
    let tries = flooder.join().unwrap_or(0);
    let refused = sim.show("hog")["connections"]["refused"].clone();
    println!(
        "hog: {} connections held (its cap), {tries} more attempts during the loaded run, {refused} refused",
        held.len()
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (b50, b99) = (pct(&mut base, 0.5), pct(&mut base, 0.99));
    let (l50, l99) = (pct(&mut loaded, 0.5), pct(&mut loaded, 0.99));
    println!("| run      | RPCI p50 ms | RPCI p99 ms | vm list p50 ms | vm list p99 ms |");
    println!("|----------|------------:|------------:|---------------:|---------------:|");
    println!(
        "| unloaded | {:>11.3} | {:>11.3} | {:>14.3} | {:>14.3} |",
        ms(b50),
        ms(b99),
        ms(pct(&mut base_list, 0.5)),
        ms(pct(&mut base_list, 0.99))
    );
    println!(
        "| hog      | {:>11.3} | {:>11.3} | {:>14.3} | {:>14.3} |",
        ms(l50),
        ms(l99),
        ms(pct(&mut loaded_list, 0.5)),
        ms(pct(&mut loaded_list, 0.99))
    );
    println!(
        "p99 ratio (hog / unloaded): RPCI {:.2}, vm list {:.2}",
        ms(l99) / ms(b99),
        ms(pct(&mut loaded_list, 0.99)) / ms(pct(&mut base_list, 0.99))
    );
    drop(held);
}

/// A TCP connection from `src` (another loopback address) to `dst`.
fn connect_from(
    src: std::net::Ipv4Addr,
    dst: std::net::SocketAddrV4,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::FromRawFd;
    let sin = |a: std::net::SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let (local, remote) = (sin(std::net::SocketAddrV4::new(src, 0)), sin(dst));
    // SAFETY: a new socket we own (wrapped at once); bind and connect get
    // sockaddr_in values that live across the calls, with their sizes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = std::net::TcpStream::from_raw_fd(fd);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0
            || libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(s)
    }
}

/// One HTTP request on a fresh connection: the status line's time.
fn http_once(port: u16) -> Duration {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.write_all(b"GET /cimom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut out = Vec::new();
    c.read_to_end(&mut out).expect("response");
    assert!(
        out.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(!out.starts_with(b"HTTP/1.1 503"), "refused");
    t.elapsed()
}

/// CIM-XML over HTTP, unloaded and while a client from 127.0.0.2 holds
/// its share of connections and keeps opening more.
fn http_latency() {
    let sim = Sim::with_options(
        "[[vm]]\nname = \"vm0\"\n[cim]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n[redfish]\nenabled = false\n",
        SimOptions {
            nofile: Some((1024, 1024)),
            log_level: Some("info".into()),
            netns: false,
        },
    );
    sim.eventually("the CIM listener", || {
        sim.log().contains("CIM-XML over HTTP on")
    });
    let port: u16 = sim
        .log()
        .lines()
        .find(|l| l.contains("CIM-XML over HTTP on"))
        .and_then(|l| l.split("127.0.0.1:").nth(1))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("CIM port");
    let n = 2000;
    for _ in 0..100 {
        http_once(port);
    }
    let mut base: Vec<Duration> = (0..n).map(|_| http_once(port)).collect();
    let dst = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port);
    let flooder = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let held: Vec<_> = (0..64)
        .filter_map(|_| connect_from(flooder, dst).ok())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        let mut tries = 0u64;
        while !s2.load(Ordering::Relaxed) {
            if let Ok(mut c) = connect_from(flooder, dst) {
                let mut b = [0u8; 64];
                let _ = std::io::Read::read(&mut c, &mut b);
            }
            tries += 1;
        }
        tries
    });
    let mut loaded: Vec<Duration> = (0..n).map(|_| http_once(port)).collect();
    stop.store(true, Ordering::Relaxed);
    let tries = t.join().unwrap_or(0);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (b99, l99) = (pct(&mut base, 0.99), pct(&mut loaded, 0.99));
    println!(
        "CIM-XML HTTP, one request per connection: p50 {:.3} / p99 {:.3} ms unloaded; p50 {:.3} / p99 {:.3} ms while 127.0.0.2 holds {} connections and opened {tries} more",
        ms(pct(&mut base, 0.5)),
        ms(b99),
        ms(pct(&mut loaded, 0.5)),
        ms(l99),
        held.len()
    );
    println!(
        "p99 ratio (flood / unloaded): HTTP {:.2}",
        ms(l99) / ms(b99)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("cost") => {
            let ns: Vec<usize> = args[1..].iter().filter_map(|a| a.parse().ok()).collect();
            cost(if ns.is_empty() {
                &[100, 500, 1000]
            } else {
                &ns
            });
        }
        Some("latency") => {
            latency();
            http_latency();
        }
        _ => {
            eprintln!("usage: limits-bench cost [N...] | limits-bench latency");
            std::process::exit(2);
        }
    }
}
