//! Benchmark of the backdoor wire path over the socket frontend, measured side
//! by side with the bare limits of this machine in the same run:
//!
//! * bare ping-pong: one 36-byte frame each way over a unix socket, between
//!   two processes (the floor for one LB backdoor call);
//! * bare bulk: the same request, answered with a large payload (the floor for
//!   an HB in of that size).
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::transport::unix::UnixBackdoor;
use protocol::frame::HEADER_LEN;
use protocol::guest::{Backdoor, GuestChannel};
use protocol::{cmd, proto, Regs};

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("bench path")
        .with_file_name(name)
}

/// Echo one header per header (bare ping-pong), or answer each header with a
/// header plus `payload` bytes (bare bulk).
fn serve_bare(path: &Path, payload: usize) -> ! {
    let l = UnixListener::bind(path).expect("bind bare socket");
    let (mut s, _) = l.accept().expect("accept");
    let data = vec![0x5Au8; payload];
    let mut h = [0u8; HEADER_LEN];
    loop {
        if s.read_exact(&mut h).is_err() {
            std::process::exit(0);
        }
        if payload == 0 {
            let _ = s.write_all(&h);
        } else {
            let mut bufs = [std::io::IoSlice::new(&h), std::io::IoSlice::new(&data)];
            let _ = hvsim::socket::write_all_vectored(&mut s, &mut bufs);
        }
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never came up",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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

/// A command whose process (and its threads) runs on `cpu` only.
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

fn bare_server(dir: &Path, name: &str, payload: usize, cpu: usize) -> (Proc, PathBuf) {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{name}-{n}.sock"));
    let child = pinned(&std::env::current_exe().expect("self"), cpu)
        .arg("--bare-server")
        .arg(&path)
        .arg(payload.to_string())
        .spawn()
        .expect("start bare server");
    (Proc(child), path)
}

/// Connect to a bare server, which accepts exactly one connection: retry
/// until it listens rather than probing (a probe would use up its accept).
fn connect_bare(path: &Path) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return s,
            Err(e) => assert!(Instant::now() < deadline, "bare server did not start: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Round trips per second of the bare ping-pong.
fn bare_pingpong(dir: &Path, n: usize, cpu: usize) -> f64 {
    let (_p, path) = bare_server(dir, "pingpong", 0, cpu);
    let mut s = connect_bare(&path);
    let mut h = [1u8; HEADER_LEN];
    let t = Instant::now();
    for _ in 0..n {
        s.write_all(&h).expect("write");
        s.read_exact(&mut h).expect("read");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Bytes per second of the bare bulk reply of `size` bytes.
fn bare_bulk(dir: &Path, size: usize, n: usize, cpu: usize) -> f64 {
    let (_p, path) = bare_server(dir, "bulk", size, cpu);
    let mut s = connect_bare(&path);
    let mut h = [1u8; HEADER_LEN];
    let mut buf = vec![0u8; size];
    let t = Instant::now();
    for _ in 0..n {
        s.write_all(&h).expect("write");
        s.read_exact(&mut h).expect("read");
        s.read_exact(&mut buf).expect("read");
    }
    (size * n) as f64 / t.elapsed().as_secs_f64()
}

fn best_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(0.0, f64::max)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--bare-server") {
        serve_bare(Path::new(&args[2]), args[3].parse().expect("payload size"));
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let runs = if quick { 1 } else { 3 };

    let dir = tempfile::Builder::new()
        .prefix("hvsim-bench")
        .tempdir()
        .expect("tempdir");
    let big = 8 << 20;
    std::fs::write(dir.path().join("ovf-env.xml"), vec![b'o'; big]).expect("ovf");
    println!("| placement | measure | hvsim | bare limit, same placement | ratio | target |");
    println!("|---|---|---|---|---|---|");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let placements: &[(&str, usize)] = if cpus > 1 {
        &[("same core", 0), ("cross core", 1)]
    } else {
        &[("same core", 0)]
    };
    for &(place, server_cpu) in placements {
        pin_self(0);
        measure(dir.path(), place, server_cpu, big, scale, runs);
    }
}

fn measure(dir: &Path, place: &str, server_cpu: usize, big: usize, scale: usize, runs: usize) {
    let control = dir.join(format!("control-{server_cpu}.sock"));
    let config = dir.join(format!("hvsim-{server_cpu}.toml"));
    std::fs::write(
        &config,
        format!(
            "control_socket = \"{}\"\n[[vm]]\nname = \"vm0\"\novf_env = \"ovf-env.xml\"\nguestinfo = {{ \"guestinfo.small\" = \"0123456789abcdef\" }}\n",
            control.display()
        ),
    )
    .expect("config");
    let _sim = Proc(
        pinned(&sibling("hvsim"), server_cpu)
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.join(format!("state-{server_cpu}")))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("start hvsim (build it: cargo build --release --workspace --bins)"),
    );
    wait_for(&control);
    let sock = dir.join(format!("state-{server_cpu}/vms/vm0/backdoor.sock"));

    // Bare limits.
    let pp = best_of(runs, || bare_pingpong(dir, 40_000 / scale, server_cpu));
    let bulk = best_of(runs, || bare_bulk(dir, big, 200 / scale, server_cpu));

    // LB backdoor calls.
    let lb = best_of(runs, || {
        let mut bd = UnixBackdoor::connect(&sock).expect("connect");
        let n = 40_000 / scale;
        let t = Instant::now();
        for _ in 0..n {
            let r = bd.call(Regs::command(cmd::GETVERSION, 0)).expect("call");
            assert_eq!(r.ebx, protocol::BDOOR_MAGIC);
        }
        n as f64 / t.elapsed().as_secs_f64()
    });

    // RPCI round trip on an open channel (5 backdoor calls per message).
    let rpci = best_of(runs, || {
        let bd = UnixBackdoor::connect(&sock).expect("connect");
        let mut ch = GuestChannel::open(bd, proto::RPCI).expect("open");
        let n = 8_000 / scale;
        let t = Instant::now();
        for _ in 0..n {
            let r = ch.call(b"info-get guestinfo.small").expect("rpci");
            assert_eq!(r, b"1 0123456789abcdef");
        }
        n as f64 / t.elapsed().as_secs_f64()
    });

    // HB in: an 8 MiB OVF environment.
    let hb = best_of(runs, || {
        let bd = UnixBackdoor::connect(&sock).expect("connect");
        let mut ch = GuestChannel::open(bd, proto::RPCI).expect("open");
        let n = 200 / scale;
        let t = Instant::now();
        for _ in 0..n {
            let r = ch.call(b"info-get guestinfo.ovfEnv").expect("rpci");
            assert_eq!(r.len(), big + 2);
        }
        (big * n) as f64 / t.elapsed().as_secs_f64()
    });

    // One vm-rpctool process per message, as scripts use it.
    let rpctool = sibling("vm-rpctool");
    let tool = best_of(runs, || {
        let n = 200 / scale;
        let t = Instant::now();
        for _ in 0..n {
            let o = Command::new(&rpctool)
                .arg("info-get guestinfo.small")
                .env("VM_BACKDOOR", format!("unix:{}", sock.display()))
                .output()
                .expect("vm-rpctool");
            assert!(o.status.success());
        }
        n as f64 / t.elapsed().as_secs_f64()
    });

    let us = |per_s: f64| 1e6 / per_s;
    println!(
        "| {place} | LB backdoor call (GETVERSION) | {:.0}/s ({:.1} µs) | {:.0} ping-pongs/s ({:.1} µs) | {:.0}% | ≥ 70% |",
        lb,
        us(lb),
        pp,
        us(pp),
        100.0 * lb / pp
    );
    println!(
        "| {place} | HB in payload (8 MiB OVF environment via RPCI) | {:.2} GB/s | {:.2} GB/s bulk | {:.0}% | ≥ 50% |",
        hb / 1e9,
        bulk / 1e9,
        100.0 * hb / bulk
    );
    println!(
        "| {place} | RPCI round trip, open channel (5 calls) | {:.1} µs ({:.0}/s) | {:.1} µs = 5 ping-pongs | {:.0}% | |",
        us(rpci),
        rpci,
        5.0 * us(pp),
        100.0 * (5.0 * us(pp)) / us(rpci)
    );
    println!(
        "| {place} | vm-rpctool process per message (open, 5 calls, close) | {:.2} ms ({:.0}/s) | | | |",
        us(tool) / 1000.0,
        tool
    );
}
