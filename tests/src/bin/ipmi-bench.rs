//! The IPMI BMC side by side with OpenIPMI's `ipmi_sim` (Debian's openipmi),
//! both configured with the same user, measured with the same clients in one
//! run: the wall time of one `ipmitool -I lanplus ... chassis status`
//! process (session setup, the command, close), and Get Chassis Status
//! requests per second over one established RMCP+ session (the in-tree
//! client: one request in flight, as ipmitool sends them).
//!
//! Both servers are pinned to the last CPU, the clients to the first.
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hvsim::ipmi::client::Client;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    exe.parent().expect("bin dir").join(name)
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("udp bind")
        .port()
}

/// Pin the calling thread to `cpu`.
fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it;
    // sched_setaffinity reads it. No memory is shared.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A command whose process runs on `cpu` only.
fn pinned(program: &Path, cpu: usize) -> Command {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(program);
    // SAFETY: the closure only makes the sched_setaffinity system call, which
    // is async-signal-safe, between fork and exec.
    unsafe {
        c.pre_exec(move || {
            pin_self(cpu);
            Ok(())
        });
    }
    c
}

/// Wait until a BMC answers a presence ping.
fn wait_bmc(addr: SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        let _ = s.send_to(&hvsim::ipmi::rmcp::ping(1), addr);
        if s.recv(&mut buf).is_ok() {
            return;
        }
    }
    panic!("no BMC came up on {addr}");
}

/// Median wall time of one ipmitool process.
fn ipmitool_wall(port: u16, extra: &[&str], runs: usize) -> Option<Duration> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let o = Command::new("ipmitool")
            .args(["-I", "lanplus", "-H", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "admin", "-P", "password"])
            .args(extra)
            .args(["chassis", "status"])
            .stdin(Stdio::null())
            .output()
            .expect("run ipmitool (apt-get install ipmitool)");
        let dt = t.elapsed();
        if !o.status.success() {
            eprintln!(
                "ipmitool {extra:?} on port {port} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return None;
        }
        times.push(dt);
    }
    times.sort();
    times.get(times.len() / 2).copied()
}

/// Requests per second over one session (best of `runs`).
fn session_rate(addr: SocketAddr, suite: u8, n: usize, runs: usize) -> Option<f64> {
    let mut best: f64 = 0.0;
    for _ in 0..runs {
        let mut c = match Client::connect(addr, "admin", b"password", suite, 4) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("suite {suite} session to {addr}: {e}");
                return None;
            }
        };
        let t = Instant::now();
        for _ in 0..n {
            match c.request(0x00, 0x01, &[]) {
                Ok((0, _)) => {}
                other => {
                    eprintln!("Get Chassis Status on {addr}: {other:?}");
                    return None;
                }
            }
        }
        best = best.max(n as f64 / t.elapsed().as_secs_f64());
        let _ = c.close();
    }
    Some(best)
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
}

fn rate(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.0}/s"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (walls, reqs, runs) = if quick { (3, 300, 1) } else { (21, 5000, 3) };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let server_cpu = cpus - 1;
    pin_self(0);

    let dir = tempfile::Builder::new()
        .prefix("ipmi-bench")
        .tempdir()
        .expect("tempdir");
    let d = dir.path();

    // hvsim with one VM and its BMC.
    let hv_port = free_port();
    let config = d.join("hvsim.toml");
    std::fs::write(
        &config,
        format!(
            "control_socket = \"{}\"\n[[vm]]\nname = \"vm0\"\nipmi = {{ listen = \"127.0.0.1:{hv_port}\" }}\n[[user]]\nname = \"admin\"\npassword = \"password\"\nrole = \"Administrator\"\n",
            d.join("control.sock").display()
        ),
    )
    .expect("config");
    let _hv = Proc(
        pinned(&sibling("hvsim"), server_cpu)
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(d.join("state"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start hvsim (build it: cargo build --release --workspace --bins)"),
    );

    // ipmi_sim with the same user, a BMC at 0x20 with chassis support.
    let sim_port = free_port();
    std::fs::write(
        d.join("lan.conf"),
        format!(
            "name \"bench\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {sim_port}\n    priv_limit admin\n    allowed_auths_callback md5\n    allowed_auths_user md5\n    allowed_auths_operator md5\n    allowed_auths_admin md5\n    guid a123456789abcdefa123456789abcdef\n  endlan\n  user 2 true \"admin\" \"password\" admin 10 md5\n"
        ),
    )
    .expect("lan.conf");
    std::fs::write(
        d.join("bench.emu"),
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\nmc_enable 0x20\n",
    )
    .expect("emu");
    std::fs::create_dir_all(d.join("sim-state")).expect("state dir");
    let sim = pinned(Path::new("ipmi_sim"), server_cpu)
        .current_dir(d)
        .args(["-c", "lan.conf", "-f", "bench.emu", "-n", "-s"])
        .arg(d.join("sim-state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc);
    let hv_addr = SocketAddr::from(([127, 0, 0, 1], hv_port));
    let sim_addr = SocketAddr::from(([127, 0, 0, 1], sim_port));
    wait_bmc(hv_addr);
    let have_sim = match &sim {
        Ok(_) => {
            wait_bmc(sim_addr);
            true
        }
        Err(e) => {
            eprintln!("ipmi_sim not started ({e}): apt-get install openipmi");
            false
        }
    };

    println!();
    println!("| measure (same client, same run) | hvsim | ipmi_sim | ratio |");
    println!("|---|---|---|---|");
    let row = |what: &str, h: String, s: String, ratio: String| {
        println!("| {what} | {h} | {s} | {ratio} |");
    };
    let wall_ratio = |h: Option<Duration>, s: Option<Duration>| match (h, s) {
        (Some(h), Some(s)) => format!("{:.2}x faster", s.as_secs_f64() / h.as_secs_f64()),
        _ => "-".into(),
    };
    let h3 = ipmitool_wall(hv_port, &["-C", "3"], walls);
    let s3 = have_sim
        .then(|| ipmitool_wall(sim_port, &["-C", "3"], walls))
        .flatten();
    row(
        "`ipmitool -I lanplus -C 3 chassis status` wall time (median)",
        ms(h3),
        ms(s3),
        wall_ratio(h3, s3),
    );
    let h17 = ipmitool_wall(hv_port, &["-C", "17"], walls);
    row(
        "`ipmitool -I lanplus -C 17 chassis status` wall time (median)",
        ms(h17),
        "no suite 17".into(),
        "-".into(),
    );
    // ipmitool 1.8.19's default asks for the cipher suite list first; a BMC
    // that does not answer costs its timeout (here -N 1 -R 1: one second).
    let hd = ipmitool_wall(hv_port, &["-N", "1", "-R", "1"], 1);
    let sd = have_sim
        .then(|| ipmitool_wall(sim_port, &["-N", "1", "-R", "1"], 1))
        .flatten();
    row(
        "same, default suite (`-N 1 -R 1`)",
        ms(hd),
        ms(sd),
        wall_ratio(hd, sd),
    );
    let hr = session_rate(hv_addr, 3, reqs, runs);
    let sr = have_sim
        .then(|| session_rate(sim_addr, 3, reqs, runs))
        .flatten();
    let rate_ratio = match (hr, sr) {
        (Some(h), Some(s)) => format!("{:.0}%", h / s * 100.0),
        _ => "-".into(),
    };
    row(
        "Get Chassis Status over one session, suite 3 (best of runs)",
        rate(hr),
        rate(sr),
        rate_ratio,
    );
    let hr17 = session_rate(hv_addr, 17, reqs, runs);
    row(
        "Get Chassis Status over one session, suite 17",
        rate(hr17),
        "no suite 17".into(),
        "-".into(),
    );
}
