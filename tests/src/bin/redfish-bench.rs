//! Benchmarks of Redfish virtual media, side by side in one run with the
//! peers the issue names:
//!
//! * NBD read throughput: `nbdcopy nbd://... null:` over a medium inserted
//!   from a `file://` image (random bytes, no holes), against `nbdkit file`
//!   and `qemu-nbd -r -f raw` serving the same file over TCP on 127.0.0.1.
//!   The page cache is warmed first; rounds are interleaved (each round runs
//!   every server once, in rotated order) and the median is reported, with
//!   the median CPU seconds (user + system) the server process and nbdcopy
//!   spent per copy: on a shared machine, wall time follows the load of the
//!   moment, CPU per copy much less.
//! * Redfish GET latency: `GET /redfish/v1/Systems/vm0` with Basic auth on a
//!   keep-alive connection, against sushy-tools' emulator with its fake
//!   driver (`GET /redfish/v1/Systems/<its default UUID>`, the name redirects) over plain HTTP and over HTTPS
//!   (the same certificate as hvsim). hvsim serves Redfish over HTTPS only.
//!   sushy runs without authentication (its Basic auth checks bcrypt hashes,
//!   which would only make it slower); a server that closes the connection
//!   after each answer is reconnected, and the reconnect is part of the
//!   latency, as it is for any client.
//!
//! Every server runs pinned to one core and every client (nbdcopy, the HTTP
//! client thread) to another, the same placement for every row.
//!
//! Run through `scripts/bench.sh` (release build); `--quick` for a smoke run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVER_CPU: usize = 1;
const CLIENT_CPU: usize = 0;
/// admin:bench
const AUTH: &str = "Basic YWRtaW46YmVuY2g=";
/// The fake driver's one system (`/Systems/fake` redirects here).
const SUSHY_SYSTEM: &str = "/redfish/v1/Systems/27946b59-9e44-4fa7-8e91-f3527a1ef094";

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
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it;
    // sched_setaffinity reads it. No memory is shared.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A command whose process (and its threads) runs on `cpu` only.
fn pinned(program: impl AsRef<std::ffi::OsStr>, cpu: usize) -> Command {
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
        .expect("free port")
        .port()
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `size` bytes of xorshift output: no holes, nothing compressible.
fn make_image(path: &Path, size: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("image"));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..size / chunk.len() {
        for w in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&chunk).expect("write image");
    }
    f.flush().expect("flush image");
}

// ---- HTTP(S) client -------------------------------------------------------

mod tls {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    /// The bench talks to its own children on loopback: any certificate.
    #[derive(Debug)]
    pub struct AnyCert(pub rustls::crypto::CryptoProvider);

    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

struct Client {
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<BufReader<Box<dyn Stream>>>,
    reconnects: usize,
}

impl Client {
    fn new(port: u16, https: bool) -> Client {
        let tls = https.then(|| {
            let provider = rustls::crypto::ring::default_provider();
            Arc::new(
                rustls::ClientConfig::builder_with_provider(Arc::new(provider.clone()))
                    .with_safe_default_protocol_versions()
                    .expect("TLS versions")
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(tls::AnyCert(provider)))
                    .with_no_client_auth(),
            )
        });
        Client {
            port,
            tls,
            conn: None,
            reconnects: 0,
        }
    }

    fn connect(&mut self) -> &mut BufReader<Box<dyn Stream>> {
        if self.conn.is_none() {
            self.reconnects += 1;
            let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let s: Box<dyn Stream> = match &self.tls {
                Some(cfg) => {
                    let name = "localhost".try_into().expect("server name");
                    let c = rustls::ClientConnection::new(cfg.clone(), name).expect("TLS client");
                    Box::new(rustls::StreamOwned::new(c, s))
                }
                None => Box::new(s),
            };
            self.conn = Some(BufReader::with_capacity(64 << 10, s));
        }
        self.conn.as_mut().expect("connection")
    }

    /// One request; returns the status and the body.
    fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, Vec<u8>) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = self.connect();
        r.get_mut().write_all(req.as_bytes()).expect("send");
        r.get_mut().flush().expect("send");
        let mut line = String::new();
        r.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut close = line.starts_with("HTTP/1.0");
        let mut len = None;
        loop {
            line.clear();
            r.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap_or((&line, ""));
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                len = v.parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        let mut out = Vec::new();
        match len {
            Some(n) => {
                out.resize(n, 0);
                r.read_exact(&mut out).expect("body");
            }
            None => {
                // Delimited by the close (TLS peers may skip close_notify).
                let _ = r.read_to_end(&mut out);
                close = true;
            }
        }
        if close {
            self.conn = None;
        }
        (status, out)
    }
}

struct Latency {
    p50: Duration,
    p99: Duration,
    rps: f64,
    connections: usize,
    n: usize,
}

fn get_latency(port: u16, https: bool, path: &str, n: usize) -> Latency {
    let mut c = Client::new(port, https);
    for _ in 0..20 {
        let (s, _) = c.call("GET", path, "");
        assert_eq!(s, 200, "GET {path}");
    }
    c.reconnects = 0;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let (s, _) = c.call("GET", path, "");
        lat.push(t.elapsed());
        assert_eq!(s, 200);
    }
    let total = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Latency {
        p50: pct(0.50),
        p99: pct(0.99),
        rps: n as f64 / total.as_secs_f64(),
        connections: c.reconnects,
        n,
    }
}

// ---- servers --------------------------------------------------------------

struct Hvsim {
    p: Proc,
    redfish: u16,
    nbd: u16,
    cert: PathBuf,
    key: PathBuf,
}

fn start_hvsim(dir: &Path, cpu: usize) -> Hvsim {
    let conf = dir.join("hvsim.toml");
    std::fs::write(
        &conf,
        format!(
            "control_socket = \"{}\"\n[[vm]]\nname = \"vm0\"\n[redfish]\nlisten = \"127.0.0.1:0\"\nmedia_dir = \"{}\"\n[nbd]\nlisten = \"127.0.0.1:0\"\n[[user]]\nname = \"admin\"\npassword = \"bench\"\nrole = \"Administrator\"\n",
            dir.join("control.sock").display(),
            dir.display()
        ),
    )
    .expect("config");
    let log = dir.join("hvsim.log");
    let child = pinned(sibling("hvsim"), cpu)
        .args(["serve", "--config"])
        .arg(&conf)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start hvsim");
    let p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let port_after = |text: &str, what: &str| -> Option<u16> {
        text.lines()
            .find(|l| l.contains(what))
            .and_then(|l| l.split(what).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
    };
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let (Some(redfish), Some(nbd)) = (
            port_after(&text, "Redfish over HTTPS on "),
            port_after(&text, "NBD server on "),
        ) {
            let tls = dir.join("state/tls");
            return Hvsim {
                p,
                redfish,
                nbd,
                cert: tls.join("redfish.crt"),
                key: tls.join("redfish.key"),
            };
        }
        assert!(Instant::now() < deadline, "hvsim did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn venv_bin(name: &str) -> Option<PathBuf> {
    let dirs = [
        std::env::var_os("HVSIM_PY").map(|p| PathBuf::from(p).with_file_name(name)),
        Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/venv/bin")
                .join(name),
        ),
    ];
    dirs.into_iter().flatten().find(|p| p.exists())
}

fn start_sushy(cpu: usize, tls: Option<(&Path, &Path)>) -> Option<(Proc, u16)> {
    let bin = venv_bin("sushy-emulator")?;
    let port = free_port();
    let mut c = pinned(&bin, cpu);
    c.args(["--fake", "-i", "127.0.0.1", "-p", &port.to_string()]);
    if let Some((cert, key)) = tls {
        c.arg("--ssl-certificate").arg(cert);
        c.arg("--ssl-key").arg(key);
    }
    let p = Proc(c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?);
    wait_port(port, "sushy-emulator");
    Some((p, port))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU seconds (user + system) a process has used, all its threads
/// (including ended ones) counted.
fn proc_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf only reads a system value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    f.iter().sum::<u64>() as f64 / hz
}

/// CPU seconds (user + system) of the children waited for so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One `nbdcopy URI null:` on the client core: wall seconds, CPU seconds of
/// the server process `server` and of nbdcopy.
fn nbdcopy(uri: &str, cpu: usize, server: u32) -> (f64, f64, f64) {
    let (s0, c0) = (proc_cpu(server), children_cpu());
    let t = Instant::now();
    let st = pinned("nbdcopy", cpu)
        .arg(uri)
        .arg("null:")
        .status()
        .expect("nbdcopy");
    let wall = t.elapsed().as_secs_f64();
    assert!(st.success(), "nbdcopy {uri} failed");
    (wall, proc_cpu(server) - s0, children_cpu() - c0)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (scpu, ccpu) = cpus();
    let mib: usize = if quick { 64 } else { 512 };
    let rounds = if quick { 1 } else { 9 };
    let n_hvsim = if quick { 500 } else { 5000 };
    let n_sushy = if quick { 50 } else { 500 };
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("image.raw");
    make_image(&image, mib << 20);
    // Warm the page cache: every server reads from memory.
    std::io::copy(
        &mut std::fs::File::open(&image).expect("image"),
        &mut std::io::sink(),
    )
    .expect("warm");

    let h = start_hvsim(dir.path(), scpu);
    pin_self(ccpu);
    let mut c = Client::new(h.redfish, true);
    let (s, body) = c.call(
        "POST",
        "/redfish/v1/Managers/vm0-bmc/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
        &format!("{{\"Image\": \"file://{}\"}}", image.display()),
    );
    assert_eq!(s, 200, "insert: {}", String::from_utf8_lossy(&body));
    drop(c);

    let nbdkit_port = free_port();
    let nbdkit = Proc(
        pinned("nbdkit", scpu)
            .args(["-f", "-r", "--exit-with-parent", "-i", "127.0.0.1", "-p"])
            .arg(nbdkit_port.to_string())
            .arg("file")
            .arg(&image)
            .stderr(Stdio::null())
            .spawn()
            .expect("nbdkit"),
    );
    let qemu_port = free_port();
    let qemu = Proc(
        pinned("qemu-nbd", scpu)
            .args(["-r", "-f", "raw", "-t", "-e", "16", "-b", "127.0.0.1", "-p"])
            .arg(qemu_port.to_string())
            .arg(&image)
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-nbd"),
    );
    wait_port(nbdkit_port, "nbdkit");
    wait_port(qemu_port, "qemu-nbd");
    let servers = [
        (
            "hvsim",
            format!("nbd://127.0.0.1:{}/vm0/Cd", h.nbd),
            h.p.0.id(),
        ),
        (
            "nbdkit file",
            format!("nbd://127.0.0.1:{nbdkit_port}/"),
            nbdkit.0.id(),
        ),
        (
            "qemu-nbd -r -f raw",
            format!("nbd://127.0.0.1:{qemu_port}/"),
            qemu.0.id(),
        ),
    ];
    // Per server: wall, server CPU and nbdcopy CPU seconds of each round.
    let mut runs: Vec<[Vec<f64>; 3]> = vec![Default::default(); servers.len()];
    for r in 0..rounds {
        for k in 0..servers.len() {
            let i = (r + k) % servers.len();
            let (wall, scpu_s, ccpu_s) = nbdcopy(&servers[i].1, ccpu, servers[i].2);
            runs[i][0].push(wall);
            runs[i][1].push(scpu_s);
            runs[i][2].push(ccpu_s);
        }
    }
    let mbs: Vec<f64> = runs
        .iter_mut()
        .map(|t| (mib << 20) as f64 / 1e6 / median(&mut t[0]))
        .collect();
    let peer = mbs[1].max(mbs[2]);

    // Redfish GET latency.
    let rf = get_latency(h.redfish, true, "/redfish/v1/Systems/vm0", n_hvsim);
    let sushy_http =
        start_sushy(scpu, None).map(|(_p, port)| get_latency(port, false, SUSHY_SYSTEM, n_sushy));
    let sushy_https = start_sushy(scpu, Some((&h.cert, &h.key)))
        .map(|(_p, port)| get_latency(port, true, SUSHY_SYSTEM, n_sushy));

    println!();
    println!(
        "NBD read throughput: `nbdcopy nbd://... null:` of a {mib} MiB random image (page cache warm), median of {rounds} interleaved rounds; servers on core {scpu}, nbdcopy on core {ccpu}:"
    );
    println!();
    println!("| server | MB/s | vs faster peer | server CPU s/copy | nbdcopy CPU s/copy | MB/s per round (sorted) | target |");
    println!("|---|---|---|---|---|---|---|");
    for (i, (name, _, _)) in servers.iter().enumerate() {
        let target = if i == 0 { "≥ 90%" } else { "" };
        let each: Vec<String> = runs[i][0]
            .iter()
            .map(|w| format!("{:.0}", (mib << 20) as f64 / 1e6 / w))
            .collect();
        println!(
            "| {name} | {:.0} | {:.0}% | {:.3} | {:.3} | {} | {target} |",
            mbs[i],
            100.0 * mbs[i] / peer,
            median(&mut runs[i][1]),
            median(&mut runs[i][2]),
            each.join(" "),
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!(
        "Redfish GET /redfish/v1/Systems/{{vm0|<fake UUID>}}, one client thread (core {ccpu}), servers on core {scpu}; hvsim with Basic auth over HTTPS keep-alive, sushy-tools emulator (fake driver, no auth):"
    );
    println!();
    println!("| server | protocol | requests | connections | p50 | p99 | req/s | hvsim faster (p50) | target |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let row = |name: &str, proto: &str, l: &Latency, target: &str| {
        println!(
            "| {name} | {proto} | {} | {} | {:.3} ms | {:.3} ms | {:.0} | {:.1}× | {target} |",
            l.n,
            l.connections.max(1),
            ms(l.p50),
            ms(l.p99),
            l.rps,
            l.p50.as_secs_f64() / rf.p50.as_secs_f64()
        );
    };
    row("hvsim", "HTTPS (TLS 1.3)", &rf, "");
    match &sushy_http {
        Some(l) => row("sushy-emulator", "HTTP", l, "≥ 10×"),
        None => println!("| sushy-emulator | HTTP | not installed (target/venv) | | | | | | |"),
    }
    match &sushy_https {
        Some(l) => row("sushy-emulator", "HTTPS", l, "≥ 10×"),
        None => println!("| sushy-emulator | HTTPS | not installed (target/venv) | | | | | | |"),
    }
}
