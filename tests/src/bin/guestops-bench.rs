//! Benchmark of guest operations, one row per guest agent under the same
//! frontend (`hvsim exec`, TCLO over vsock): the round trip of
//! `hvsim vm guest NAME run -- /bin/true` as a user sees it (median of
//! several runs; mktemp ×2, start, polls, two downloads, rm ×2), and the
//! throughput of `upload` and `download` of one large file through HGFS.
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.
//! Needs root (the test users live in a private mount namespace).

use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::guestops::{launch_vm_agent_binary, launch_vmtoolsd, Daemon, GuestUsers, User};
use e2e_tests::{bin, stderr, Sim};

/// Starts a guest agent on vm0.
type Launcher = fn(&Sim, &GuestUsers) -> Daemon;

/// The guests compared, under the same frontend.
const GUESTS: &[(&str, Launcher)] = &[
    ("vmtoolsd 12.2 (vix + hgfsServer)", launch_vmtoolsd),
    ("vm-agent", launch_vm_agent),
];

/// vm-agent as it ships (static, guest profile) when built, with its PAM
/// helper.
fn launch_vm_agent(sim: &Sim, users: &GuestUsers) -> Daemon {
    launch_vm_agent_binary(
        sim,
        users,
        &e2e_tests::guest_bin("vm-agent"),
        &e2e_tests::guest_bin("vm-agent-auth"),
    )
}

fn guest(sim: &Sim, user: &User, args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = Command::new(bin("hvsim"))
        .args(["vm", "guest", "vm0", "--user", user.name])
        .args(args)
        .env("HVSIM_CONTROL", &sim.control)
        .env("HVSIM_GUEST_PASSWORD", user.password)
        .output()
        .expect("run hvsim vm guest");
    let d = t.elapsed();
    assert!(
        o.status.success(),
        "hvsim vm guest {args:?}: {}",
        stderr(&o)
    );
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Row {
    name: &'static str,
    run_ms: f64,
    up_mbs: f64,
    down_mbs: f64,
}

fn measure(name: &'static str, launch: Launcher, runs: usize, size: usize) -> Row {
    let sim = Sim::start();
    let users = GuestUsers::create();
    let _guest = launch(&sim, &users);
    let root = &users.root;
    // One unmeasured run: caches (the tracer's, the page cache) warm.
    guest(&sim, root, &["run", "--", "/bin/true"]);
    let run = median(
        (0..runs)
            .map(|_| guest(&sim, root, &["run", "--", "/bin/true"]))
            .collect(),
    );
    let dir = users.dir.path();
    let src = dir.join("bench-src");
    let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    drop(data);
    let gp = dir.join("bench-guest");
    let back = dir.join("bench-back");
    let up = guest(
        &sim,
        root,
        &["upload", src.to_str().unwrap(), gp.to_str().unwrap()],
    );
    let down = guest(
        &sim,
        root,
        &["download", gp.to_str().unwrap(), back.to_str().unwrap()],
    );
    assert_eq!(std::fs::metadata(&back).unwrap().len(), size as u64);
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&src).unwrap());
    let mb = size as f64 / 1e6;
    Row {
        name,
        run_ms: run.as_secs_f64() * 1e3,
        up_mbs: mb / up.as_secs_f64(),
        down_mbs: mb / down.as_secs_f64(),
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (runs, size) = if quick { (3, 8 << 20) } else { (11, 256 << 20) };
    let rows: Vec<Row> = GUESTS
        .iter()
        .map(|(name, launch)| measure(name, *launch, runs, size))
        .collect();
    println!();
    println!(
        "Guest operations through hvsim (hvsim exec, TCLO over vsock; run: median of {runs}; transfers: {} MiB)",
        size >> 20
    );
    println!();
    println!("| guest | `run /bin/true` round trip | upload | download |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} ms | {:.1} MB/s | {:.1} MB/s |",
            r.name, r.run_ms, r.up_mbs, r.down_mbs
        );
    }
    if rows.len() > 1 {
        let base = &rows[0];
        for r in &rows[1..] {
            println!(
                "\n{} vs {}: round trip ×{:.2}, upload ×{:.2}, download ×{:.2}",
                r.name,
                base.name,
                r.run_ms / base.run_ms,
                r.up_mbs / base.up_mbs,
                r.down_mbs / base.down_mbs
            );
        }
    }
}
