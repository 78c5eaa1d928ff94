//! Proxy-mode virtual media read throughput against legacy mode, the same
//! image file, one run:
//!
//! * proxy: `scripts/hvsim-nbd-proxy.py` (Python `websockets`) serves the
//!   file over Slot_0's WebSocket (TLS); hvsim is the NBD client and
//!   re-exports it as `vm0/Slot_0`;
//! * legacy https: InsertMedia of an `https://` URL; the image server is
//!   hvsim's own HTTP layer with TLS in this process, answering range
//!   requests with `pread` from the same file; hvsim streams it with ranged
//!   GETs and its block cache (the BMC-fetches-a-URL mode the proxy mode
//!   replaces);
//! * legacy file: InsertMedia of `file://` (sendfile from the page cache),
//!   the upper bound.
//!
//! Each row is `nbdcopy nbd://... null:` through hvsim's NBD server. hvsim
//! runs pinned to one core; nbdcopy and the image source (the Python client,
//! the HTTPS image server) to the other, the same placement for every row.
//! Rounds are interleaved (each round copies every export once, in rotated
//! order); the median is reported. Target: proxy ≥ 50% of legacy https.
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.

use std::net::TcpListener;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hvsim::http::{self, Handler, HttpConfig, HttpLimits, Request, Response};

const SERVER_CPU: usize = 1;
const CLIENT_CPU: usize = 0;

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .expect("bench path")
        .with_file_name(name)
}

fn cpus() -> (usize, usize) {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
    (SERVER_CPU % n, CLIENT_CPU % n)
}

fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside
    // it; sched_setaffinity reads it. No memory is shared.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn pinned(program: impl AsRef<std::ffi::OsStr>, cpu: usize) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(cpu.to_string()).arg(program);
    c
}

/// A child killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn make_image(path: &Path, size: usize) {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut v = Vec::with_capacity(size);
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    std::fs::write(path, v).expect("image");
}

/// An HTTPS image server answering range requests from a file.
#[derive(Debug)]
struct FileServer {
    file: std::fs::File,
    len: usize,
}

impl Handler for FileServer {
    fn handle(&self, req: &Request) -> Response {
        let r = req.header("Range").and_then(|r| r.strip_prefix("bytes="));
        let (a, b) = match r.and_then(|r| r.split_once('-')) {
            Some((a, b)) => (
                a.parse::<usize>().unwrap_or(0),
                b.parse::<usize>().unwrap_or(self.len - 1).min(self.len - 1),
            ),
            None => (0, self.len - 1),
        };
        let mut body = vec![0u8; b + 1 - a];
        if self.file.read_exact_at(&mut body, a as u64).is_err() {
            return Response::text(500, "read failed\n");
        }
        Response {
            status: if r.is_some() { 206 } else { 200 },
            headers: vec![(
                "Content-Range".into(),
                format!("bytes {a}-{b}/{}", self.len),
            )],
            body,
        }
    }
}

fn curl(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sk",
            "-u",
            "admin:bench",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .args(["-X", method, "-H", "Content-Type: application/json"])
        .args(if body.is_empty() {
            vec![]
        } else {
            vec!["-d", body]
        })
        .arg(format!("{base}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (b, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), b.to_string())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn nbdcopy(uri: &str, cpu: usize) -> f64 {
    let t = Instant::now();
    let st = pinned("nbdcopy", cpu)
        .arg(uri)
        .arg("null:")
        .status()
        .expect("nbdcopy");
    assert!(st.success(), "nbdcopy {uri} failed");
    t.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (scpu, ccpu) = cpus();
    let mib: usize = if quick { 32 } else { 256 };
    let rounds = if quick { 1 } else { 7 };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let image = d.join("image.raw");
    make_image(&image, mib << 20);
    std::io::copy(
        &mut std::fs::File::open(&image).expect("image"),
        &mut std::io::sink(),
    )
    .expect("warm the page cache");

    // The HTTPS image server (this process, the client core).
    pin_self(ccpu);
    let paths = http::tls::ensure_self_signed(&d.join("img-tls"), "images", &["127.0.0.1".into()])
        .expect("cert");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let img_port = l.local_addr().expect("addr").port();
    let file = std::fs::File::open(&image).expect("image");
    http::spawn(
        l,
        Some(http::tls::server_config(&paths).expect("tls")),
        HttpConfig {
            limits: HttpLimits::default(),
            auth: None,
            realm: "img".into(),
            local_only: false,
            name: "images".into(),
        },
        Arc::new(FileServer {
            file,
            len: mib << 20,
        }),
    )
    .expect("image server");

    // hvsim on the server core.
    let (rp, np) = (free_port(), free_port());
    let conf = d.join("hvsim.toml");
    std::fs::write(
        &conf,
        format!(
            "control_socket = \"{}\"\n[[vm]]\nname = \"vm0\"\n[redfish]\nlisten = \"127.0.0.1:{rp}\"\nmedia_dir = \"{}\"\nmedia_ca = \"{}\"\n[nbd]\nlisten = \"127.0.0.1:{np}\"\n[[user]]\nname = \"admin\"\npassword = \"bench\"\nrole = \"Administrator\"\n",
            d.join("control.sock").display(),
            d.display(),
            paths.cert.display(),
        ),
    )
    .expect("config");
    let log = d.join("hvsim.log");
    let _hvsim = Proc(
        pinned(sibling("hvsim"), scpu)
            .args(["serve", "--config"])
            .arg(&conf)
            .arg("--state-dir")
            .arg(d.join("state"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start hvsim"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("Redfish over HTTPS on")
    {
        assert!(Instant::now() < deadline, "hvsim did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let base = format!("https://127.0.0.1:{rp}");
    let act = "/redfish/v1/Managers/vm0-bmc/VirtualMedia";
    let (s, b) = curl(
        &base,
        "POST",
        &format!("{act}/Cd/Actions/VirtualMedia.InsertMedia"),
        &format!("{{\"Image\": \"https://127.0.0.1:{img_port}/image.raw\"}}"),
    );
    assert_eq!(s, 200, "https insert: {b}");
    let (s, b) = curl(
        &base,
        "POST",
        &format!("{act}/Usb/Actions/VirtualMedia.InsertMedia"),
        &format!("{{\"Image\": \"file://{}\"}}", image.display()),
    );
    assert_eq!(s, 200, "file insert: {b}");

    // The proxy client on the client core.
    let _proxy = Proc(
        pinned(e2e_tests::python(), ccpu)
            .arg(e2e_tests::workspace().join("scripts/hvsim-nbd-proxy.py"))
            .args([
                "--url",
                &base,
                "--user",
                "admin",
                "--password",
                "bench",
                "--quiet",
            ])
            .arg("--cacert")
            .arg(d.join("state/tls/redfish.crt"))
            .arg(&image)
            .spawn()
            .expect("scripts/hvsim-nbd-proxy.py (needs websockets: scripts/test-deps.sh)"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !curl(&base, "GET", &format!("{act}/Slot_0"), "")
        .1
        .contains("\"Inserted\":true")
    {
        assert!(
            Instant::now() < deadline,
            "the proxy medium was not inserted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let rows = [
        ("proxy: Python websockets client over wss", "vm0/Slot_0"),
        ("legacy https:// (hvsim's ranged GETs)", "vm0/Cd"),
        ("legacy file:// (sendfile)", "vm0/Usb"),
    ];
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); rows.len()];
    for r in 0..rounds {
        for k in 0..rows.len() {
            let i = (r + k) % rows.len();
            walls[i].push(nbdcopy(
                &format!("nbd://127.0.0.1:{np}/{}", rows[i].1),
                ccpu,
            ));
        }
    }
    let mbs: Vec<f64> = walls
        .iter_mut()
        .map(|w| (mib << 20) as f64 / 1e6 / median(w))
        .collect();
    println!();
    println!(
        "Virtual media read throughput, proxy vs legacy mode: `nbdcopy nbd://... null:` of a {mib} MiB random image through hvsim's NBD server, median of {rounds} interleaved rounds; hvsim on core {scpu}, nbdcopy and the image source on core {ccpu}:"
    );
    println!();
    println!("| mode | MB/s | proxy vs this | MB/s per round (sorted) | target |");
    println!("|---|---|---|---|---|");
    for (i, (name, _)) in rows.iter().enumerate() {
        let each: Vec<String> = walls[i]
            .iter()
            .map(|w| format!("{:.0}", (mib << 20) as f64 / 1e6 / w))
            .collect();
        let target = if i == 1 { "proxy ≥ 50%" } else { "" };
        let vs = if i == 0 {
            "-".to_string()
        } else {
            format!("{:.0}%", 100.0 * mbs[0] / mbs[i])
        };
        println!(
            "| {name} | {:.0} | {vs} | {} | {target} |",
            mbs[i],
            each.join(" ")
        );
    }
}
