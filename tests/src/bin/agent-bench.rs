//! Benchmark of the guest agent: vm-agent (socket transport and under
//! `hvsim exec`) side by side with Debian's vmtoolsd (under `hvsim exec`,
//! with every vmsvc plugin Debian ships that cannot change the machine: see
//! [`VMSVC_PLUGINS`]) in one run, each in a network namespace of its own with
//! one veth NIC carrying documentation addresses.
//!
//! Per agent, over one idle window that starts after its first report:
//! steady idle RSS (and its anonymous part) at the end of the window; CPU
//! time (schedstat nanoseconds of every thread of the agent and of its
//! descendants, plus reaped children's ticks; the host side, `hvsim serve`,
//! which also runs the `hvsim exec` tracer, is excluded for every subject and
//! shown apart); backdoor calls per second
//! (the VM's `backdoor.calls` counter from `hvsim vm show`, which counts every
//! LB/HB call through any frontend); then host→guest command latency
//! (`tclo ping` p50/p99, sent at random phases of the poll) and freshness (an
//! address added in the namespace until the host shows it, p50/p99).
//!
//! `--quick`: short windows, vm-agent only (a CI smoke run).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("bench path")
        .with_file_name(name)
}

const VMTOOLSD: &str = "/usr/bin/vmtoolsd";
const VMSVC_DIR: &str = "/usr/lib/x86_64-linux-gnu/open-vm-tools/plugins/vmsvc";

/// The vmsvc plugins vmtoolsd loads here: every one Debian's open-vm-tools
/// ships except those that can change the machine (timeSync steps the clock,
/// powerOps halts and reboots, vmbackup freezes file systems and runs
/// scripts, deployPkgPlugin runs guest customization, componentMgr installs
/// and removes the Salt minion, resolutionKMS changes the display layout),
/// plus the `common` plugins [`COMMON_PLUGINS`] (guest operations, which
/// vm-agent answers too).
const VMSVC_PLUGINS: &[&str] = &[
    "libguestInfo.so",
    "libappInfo.so",
    "libgdp.so",
    "libguestStore.so",
];

/// vmtoolsd's common plugins for guest operations: vix (programs, files)
/// and hgfsServer (file transfers); they change nothing until the host asks.
const COMMON_PLUGINS: &[&str] = &["libvix.so", "libhgfsServer.so"];
const COMMON_DIR: &str = "/usr/lib/x86_64-linux-gnu/open-vm-tools/plugins/common";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("agentbench-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ns = Netns(name);
        ns.run(&["netns", "add", &ns.0], false);
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&[
            "link",
            "add",
            "eth1",
            "address",
            "00:50:56:cc:00:01",
            "type",
            "veth",
            "peer",
            "name",
            "veth-p1",
        ]);
        ns.ip(&["addr", "add", "198.51.100.2/24", "dev", "eth1"]);
        ns.ip(&["link", "set", "eth1", "up"]);
        ns.ip(&["link", "set", "veth-p1", "up"]);
        ns
    }

    fn run(&self, args: &[&str], inside: bool) {
        let mut all: Vec<&str> = Vec::new();
        if inside {
            all.extend(["-n", &self.0]);
        }
        all.extend_from_slice(args);
        let o = Command::new("ip").args(&all).output().expect("run ip");
        assert!(
            o.status.success(),
            "ip {}: {}",
            all.join(" "),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn ip(&self, args: &[&str]) {
        self.run(args, true);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

struct Host {
    dir: tempfile::TempDir,
    control: PathBuf,
    serve: Proc,
}

impl Host {
    fn start() -> Host {
        let dir = tempfile::Builder::new()
            .prefix("agent-bench")
            .tempdir()
            .unwrap();
        let control = dir.path().join("control.sock");
        let cfg = dir.path().join("hvsim.toml");
        std::fs::write(
            &cfg,
            format!(
                "control_socket = \"{}\"\n[[vm]]\nname = \"vm0\"\n",
                control.display()
            ),
        )
        .unwrap();
        let p = Command::new(sibling("hvsim"))
            .args(["serve", "--config"])
            .arg(&cfg)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hvsim");
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&control).is_err() {
            assert!(Instant::now() < deadline, "hvsim did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Host {
            dir,
            control,
            serve: Proc(p),
        }
    }

    fn request(&self, req: Value) -> Result<Value, String> {
        let mut s = UnixStream::connect(&self.control).map_err(|e| e.to_string())?;
        let mut line = serde_json::to_vec(&req).unwrap();
        line.push(b'\n');
        s.write_all(&line).map_err(|e| e.to_string())?;
        let mut answer = String::new();
        BufReader::new(s)
            .read_line(&mut answer)
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
        if v["ok"] == true {
            Ok(v["result"].clone())
        } else {
            Err(v["error"].to_string())
        }
    }

    fn show(&self) -> Value {
        self.request(json!({"op": "show", "vm": "vm0"}))
            .unwrap_or(Value::Null)
    }

    fn socket(&self) -> String {
        let v = self
            .request(json!({"op": "backdoor", "vm": "vm0"}))
            .unwrap();
        v["socket"].as_str().unwrap().to_owned()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Subject {
    AgentSocket,
    AgentTrap,
    AgentTrapPoll,
    Vmtoolsd,
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::AgentSocket => "vm-agent (socket)",
            Subject::AgentTrap => "vm-agent (hvsim exec)",
            Subject::AgentTrapPoll => "vm-agent (hvsim exec, vsock = false)",
            Subject::Vmtoolsd => "vmtoolsd (hvsim exec)",
        }
    }

    fn trapped(self) -> bool {
        self != Subject::AgentSocket
    }
}

/// Start `s` in `ns` against `host`; the process (for exec'd subjects,
/// `hvsim exec`, whose child is the agent) and where its stderr goes.
fn launch(s: Subject, host: &Host, ns: &Netns) -> (Proc, PathBuf) {
    let dir = host.dir.path();
    let err = dir.join(format!("{}.stderr", s.name().split(' ').next().unwrap()));
    let mut argv: Vec<String> = ["ip", "netns", "exec", &ns.0].map(String::from).to_vec();
    if s.trapped() {
        argv.push(sibling("hvsim").display().to_string());
        argv.extend(["exec", "--vm", "vm0", "--"].map(String::from));
    }
    match s {
        Subject::AgentSocket | Subject::AgentTrap | Subject::AgentTrapPoll => {
            let cfg = dir.join("agent.toml");
            std::fs::write(
                &cfg,
                if s == Subject::AgentTrapPoll {
                    "[agent]\nvsock = false\n[timesync]\nenabled = false\n[powerops]\nenabled = false\n"
                } else {
                    "[timesync]\nenabled = false\n[powerops]\nenabled = false\n"
                },
            )
            .unwrap();
            argv.push(e2e_tests::guest_bin("vm-agent").display().to_string());
            argv.extend(["--config".into(), cfg.display().to_string()]);
            if s == Subject::AgentSocket {
                argv.extend(["--backdoor".into(), format!("unix:{}", host.socket())]);
            }
        }
        Subject::Vmtoolsd => {
            let plugins = dir.join("plugins");
            let common = dir.join("common");
            std::fs::create_dir_all(&plugins).unwrap();
            std::fs::create_dir_all(&common).unwrap();
            for so in VMSVC_PLUGINS {
                let _ = std::os::unix::fs::symlink(Path::new(VMSVC_DIR).join(so), plugins.join(so));
            }
            for so in COMMON_PLUGINS {
                let _ = std::os::unix::fs::symlink(Path::new(COMMON_DIR).join(so), common.join(so));
            }
            let conf = dir.join("tools.conf");
            std::fs::write(&conf, "[logging]\nlog = false\n").unwrap();
            argv.push(VMTOOLSD.into());
            argv.extend(["-n", "vmsvc", "-c"].map(String::from));
            argv.push(conf.display().to_string());
            argv.push("-p".into());
            argv.push(plugins.display().to_string());
            argv.push("--common-path".into());
            argv.push(common.display().to_string());
        }
    }
    let p = Command::new(&argv[0])
        .args(&argv[1..])
        .env("HVSIM_CONTROL", &host.control)
        .env("RUST_LOG", "warn")
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start the agent");
    (Proc(p), err)
}

/// The agent's pid, once the launched process has become it (`ip netns
/// exec` and `hvsim exec` both exec the program in place).
fn guest_pid(p: &Proc, s: Subject) -> i32 {
    let pid = p.0.id() as i32;
    let want = match s {
        Subject::Vmtoolsd => "vmtoolsd",
        _ => "vm-agent",
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if exe.file_name().is_some_and(|n| n == want) {
            return pid;
        }
        assert!(Instant::now() < deadline, "{want} did not start as {pid}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nanoseconds on CPU of all of a process's threads (schedstat: finer than
/// the 10 ms ticks of /proc/PID/stat, which read 0 for an idle agent).
fn cpu_ns(pid: i32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The live children of `pid` (of all its threads).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|k| k.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Nanoseconds on CPU of `pid`, its threads and all its live descendants,
/// plus what its reaped children used (cutime + cstime, in clock ticks).
fn tree_cpu_ns(pid: i32) -> u64 {
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        total += cpu_ns(p);
        todo.extend(children(p));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is #3,
    // cutime #16, cstime #17.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let reaped = f.get(12).copied().unwrap_or(0) + f.get(13).copied().unwrap_or(0);
    total + reaped * 1_000_000_000 / hz
}

/// Resident memory of `pid` in KiB: (VmRSS, RssAnon).
fn rss_kib(pid: i32) -> (u64, u64) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |key: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("RssAnon:"))
}

/// The VM's backdoor call counter (every LB/HB call, any frontend).
fn backdoor_calls(host: &Host) -> Option<u64> {
    host.show()["backdoor"]["calls"].as_u64()
}

fn has_ip(v: &Value, addr: &str) -> bool {
    v["guest"]["nics"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["ips"].as_array().into_iter().flatten())
        .any(|i| i["addr"] == addr)
}

fn wait_report(host: &Host, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let v = host.show();
        if v["tools"]["status"] == "running" && has_ip(&v, "198.51.100.2") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// A pseudo-random phase in [0, 1) without a crate.
fn phase(i: u64) -> f64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Default)]
struct Row {
    rss_kib: u64,
    anon_kib: u64,
    cpu_ms: f64,
    host_cpu_ms: f64,
    calls_per_s: Option<f64>,
    tclo: String,
    ping_p50: f64,
    ping_p99: f64,
    fresh_p50: f64,
    fresh_p99: f64,
    fresh_missed: usize,
    fresh_n: usize,
}

fn measure(
    s: Subject,
    idle: Duration,
    pings: usize,
    fresh: usize,
    fresh_timeout: u64,
) -> Option<Row> {
    let mut row = Row::default();
    let host = Host::start();
    let ns = Netns::new("run");
    let (p, err) = launch(s, &host, &ns);
    if !wait_report(&host, 60) {
        eprintln!("{}: no report within 60 s; skipped", s.name());
        return None;
    }
    let pid = guest_pid(&p, s);
    let serve = host.serve.0.id() as i32;
    let n0 = backdoor_calls(&host);
    let (c0, t0) = (tree_cpu_ns(pid), cpu_ns(serve));
    let w0 = Instant::now();
    std::thread::sleep(idle);
    let (c1, t1) = (tree_cpu_ns(pid), cpu_ns(serve));
    let n1 = backdoor_calls(&host);
    let window = w0.elapsed().as_secs_f64();
    row.cpu_ms = c1.saturating_sub(c0) as f64 / 1e6;
    row.host_cpu_ms = t1.saturating_sub(t0) as f64 / 1e6;
    if let (Some(n0), Some(n1)) = (n0, n1) {
        row.calls_per_s = Some(n1.saturating_sub(n0) as f64 / window);
    }
    (row.rss_kib, row.anon_kib) = rss_kib(pid);
    row.tclo = host.show()["tools"]["tclo_transport"]
        .as_str()
        .unwrap_or("?")
        .to_owned();

    let mut lat = Vec::new();
    for i in 0..pings {
        // Random phase against the agent's idle poll.
        std::thread::sleep(Duration::from_secs_f64(0.1 + 0.15 * phase(i as u64)));
        let t = Instant::now();
        let r = host.request(json!({"op": "tclo", "vm": "vm0", "command": "ping"}));
        if r.is_ok() {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    row.ping_p50 = pct(&mut lat, 0.5);
    row.ping_p99 = pct(&mut lat, 0.99);

    let mut fr = Vec::new();
    for i in 0..fresh {
        std::thread::sleep(Duration::from_secs_f64(0.2 + 0.3 * phase(1000 + i as u64)));
        let addr = format!("198.51.100.{}", 100 + i);
        let t = Instant::now();
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth1"]);
        let deadline = t + Duration::from_secs(fresh_timeout);
        loop {
            if has_ip(&host.show(), &addr) {
                fr.push(t.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                row.fresh_missed += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        ns.ip(&["addr", "del", &format!("{addr}/24"), "dev", "eth1"]);
    }
    row.fresh_n = fresh;
    row.fresh_p50 = pct(&mut fr.clone(), 0.5);
    row.fresh_p99 = pct(&mut fr, 0.99);

    drop(p);
    let _ = err;
    Some(row)
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v >= 1000.0 {
        format!("{:.1} s", v / 1000.0)
    } else {
        format!("{v:.1} ms")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "—".into()
    } else {
        format!("{:.0}%", 100.0 * a / b)
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (idle, pings, fresh) = if quick {
        (Duration::from_secs(3), 10, 3)
    } else {
        (Duration::from_secs(60), 200, 20)
    };
    let exec_ok = Command::new(sibling("hvsim"))
        .args(["exec", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    let vmtoolsd_ok = exec_ok
        && Path::new(VMTOOLSD).exists()
        && VMSVC_PLUGINS
            .iter()
            .all(|so| Path::new(VMSVC_DIR).join(so).exists());
    let mut subjects = vec![Subject::AgentSocket];
    if exec_ok {
        subjects.push(Subject::AgentTrap);
        if !quick {
            subjects.push(Subject::AgentTrapPoll);
        }
    }
    if vmtoolsd_ok && !quick {
        subjects.push(Subject::Vmtoolsd);
    }
    let mut rows = Vec::new();
    for &s in &subjects {
        eprintln!("== {}", s.name());
        // vmtoolsd reports on its 30 s poll: give each address up to 40 s,
        // and ask for fewer samples.
        let (n, timeout) = if s == Subject::Vmtoolsd {
            (fresh.min(5), 40)
        } else {
            (fresh, 10)
        };
        let Some(row) = measure(s, idle, pings, n, timeout) else {
            continue;
        };
        rows.push((s, row));
    }
    println!(
        "idle window {} s, {pings} pings, freshness samples as listed{}",
        idle.as_secs(),
        if quick {
            " (quick run: vm-agent only)"
        } else {
            ""
        }
    );
    if !vmtoolsd_ok {
        println!("vmtoolsd rows missing: needs `hvsim exec` and open-vm-tools installed");
    }
    println!();
    println!("| agent | TCLO | idle RSS (anon) | CPU over idle window (hvsim serve's) | backdoor calls/s idle | tclo ping p50 / p99 | new address visible p50 / p99 |");
    println!("|---|---|---|---|---|---|---|");
    for (s, r) in &rows {
        println!(
            "| {} | {} | {} KiB ({} KiB) | {:.1} ms ({:.0} ms) | {} | {} / {} | {} / {}{} |",
            s.name(),
            r.tclo,
            r.rss_kib,
            r.anon_kib,
            r.cpu_ms,
            r.host_cpu_ms,
            r.calls_per_s.map_or("—".into(), |c| format!("{c:.1}")),
            fmt_ms(r.ping_p50),
            fmt_ms(r.ping_p99),
            fmt_ms(r.fresh_p50),
            fmt_ms(r.fresh_p99),
            if r.fresh_missed > 0 {
                format!(" ({} of {} not seen in time)", r.fresh_missed, r.fresh_n)
            } else {
                String::new()
            }
        );
    }
    let get = |s: Subject| rows.iter().find(|(x, _)| *x == s).map(|(_, r)| r);
    if let (Some(a), Some(v)) = (get(Subject::AgentTrap), get(Subject::Vmtoolsd)) {
        println!();
        println!("| vm-agent / vmtoolsd (both under hvsim exec) | ratio | target |");
        println!("|---|---|---|");
        println!(
            "| idle RSS | {} | ≤ 25% |",
            ratio(a.rss_kib as f64, v.rss_kib as f64)
        );
        println!(
            "| idle RSS, anonymous | {} | |",
            ratio(a.anon_kib as f64, v.anon_kib as f64)
        );
        println!(
            "| CPU over idle window | {} | ≤ 50% |",
            ratio(a.cpu_ms, v.cpu_ms)
        );
        let (ac, vc) = (
            a.calls_per_s.unwrap_or(f64::NAN),
            v.calls_per_s.unwrap_or(f64::NAN),
        );
        println!(
            "| backdoor calls/s idle | {} | ≤ 100% |",
            if vc == 0.0 {
                // Both over vsock: no ratio to take, the counts say it.
                format!("{ac:.2} vs {vc:.2} calls/s")
            } else {
                ratio(ac, vc)
            }
        );
        println!(
            "| tclo ping p99 | {} | p99 ≤ 100 ms |",
            ratio(a.ping_p99, v.ping_p99)
        );
        println!(
            "| new address visible p99 | {} | p99 ≤ 1 s |",
            ratio(a.fresh_p99, v.fresh_p99)
        );
    }
}
