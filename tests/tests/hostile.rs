//! hvsim under hostile guests and clients, at the open-file limit systemd
//! gives services (soft 1024): one guest or client cannot starve the
//! others, 1000 VMs start (or hvsim says what to set), guest logs are
//! bounded and the log file rotates. Every hvsim here runs under
//! `prlimit --nofile=...`. No timing assertions: the latency comparison is
//! `limits-bench`.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::transport::unix::UnixBackdoor;
use e2e_tests::{stderr, stdout, Sim, SimOptions};
use hvsim::ipmi::client::{Client, ClientError};
use protocol::guest::{Backdoor, GuestChannel};
use protocol::{cmd, proto, Regs};

fn limited(nofile: (u64, u64), netns: bool) -> SimOptions {
    SimOptions {
        nofile: Some(nofile),
        log_level: Some("info".into()),
        netns,
    }
}

fn vms(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[[vm]]\nname = \"{n}\"\n"))
        .collect()
}

/// An RPCI round trip on a fresh connection, as a guest program makes it.
fn rpci(sim: &Sim, vm: &str, msg: &str) -> Result<Vec<u8>, String> {
    let mut bd = UnixBackdoor::connect(sim.socket(vm)).map_err(|e| e.to_string())?;
    let mut ch = GuestChannel::open(&mut bd, proto::RPCI).map_err(|e| e.to_string())?;
    let r = ch.call(msg.as_bytes()).map_err(|e| e.to_string())?.to_vec();
    ch.close().map_err(|e| e.to_string())?;
    Ok(r)
}

/// The other VMs' guests and `hvsim vm list` keep working.
fn others_are_served(sim: &Sim, others: &[&str], all: usize, round: usize) {
    for vm in others {
        let v = format!("v{round}");
        assert_eq!(
            rpci(sim, vm, &format!("info-set guestinfo.round {v}")).unwrap(),
            b"1 "
        );
        assert_eq!(
            rpci(sim, vm, "info-get guestinfo.round").unwrap(),
            format!("1 {v}").as_bytes()
        );
    }
    let out = sim.hvsim(&["vm", "list", "--json"]);
    assert!(out.status.success(), "vm list: {}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(list.as_array().map(Vec::len), Some(all));
}

#[test]
fn a_guest_holding_connections_to_its_cap_starves_no_other_vm() {
    let sim = Sim::with_options(
        &format!(
            "{}[cim]\nenabled = false\n[redfish]\nenabled = false\n",
            vms(&["hog", "a", "b"])
        ),
        limited((1024, 1024), false),
    );
    let cap = sim.show("hog")["connections"]["cap"].as_u64().expect("cap") as usize;
    assert!(
        (16..1024).contains(&cap),
        "per-VM cap {cap} under 1024 descriptors"
    );
    let sock = sim.socket("hog");
    // The guest opens 1100 connections, as in the issue, and keeps them.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..1100 {
        let mut bd = UnixBackdoor::connect(&sock).expect("connect (the backlog takes it)");
        match bd.call(Regs::command(cmd::GETVERSION, 0)) {
            Ok(r) => {
                assert_eq!(r.ebx, protocol::BDOOR_MAGIC);
                held.push(bd);
            }
            Err(_) => refused += 1,
        }
    }
    assert_eq!(held.len(), cap, "the hog holds exactly its cap");
    assert_eq!(refused, 1100 - cap);
    // A refused connection is told why.
    let mut probe = UnixStream::connect(&sock).unwrap();
    let mut why = Vec::new();
    probe.read_to_end(&mut why).unwrap();
    let why = String::from_utf8_lossy(&why);
    assert!(
        why.contains("connection refused") && why.contains("cap"),
        "{why}"
    );

    for round in 0..10 {
        others_are_served(&sim, &["a", "b"], 3, round);
    }
    let show = sim.show("hog");
    assert_eq!(show["connections"]["descriptors"], cap);
    assert!(show["connections"]["refused"].as_u64().unwrap() > (1100 - cap) as u64);
    assert_eq!(sim.show("a")["connections"]["refused"], 0);
    // Refusals are logged once per interval, not once each.
    let lines = sim
        .log()
        .lines()
        .filter(|l| l.contains("refused") && l.contains("backdoor connection"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} refusal lines:\n{}",
        sim.log()
    );

    // Once the hog lets go, its VM serves again.
    drop(held);
    sim.eventually("the hog's connections released", || {
        sim.show("hog")["connections"]["descriptors"] == 0
    });
    assert_eq!(
        rpci(&sim, "hog", "info-get guestinfo.none").unwrap(),
        b"0 No value found"
    );
}

/// A TCP connection from `src` (another loopback address) to `dst`.
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> std::io::Result<TcpStream> {
    // SAFETY: a new socket we own (wrapped at once); bind and connect get
    // sockaddr_in values that live across the calls, with their sizes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = TcpStream::from_raw_fd(fd);
        let sin = |a: SocketAddrV4| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sin(SocketAddrV4::new(src, 0));
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let SocketAddr::V4(d) = dst else {
            return Err(std::io::ErrorKind::InvalidInput.into());
        };
        let remote = sin(d);
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(s)
    }
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// Open 200 connections from 127.0.0.2 and keep them; then one more, which
/// is refused: what it reads before the close.
fn flood(port: u16) -> (Vec<TcpStream>, Vec<u8>) {
    let dst = SocketAddr::from(([127, 0, 0, 1], port));
    let flooder = Ipv4Addr::new(127, 0, 0, 2);
    let held: Vec<TcpStream> = (0..200)
        .map(|_| connect_from(flooder, dst).expect("flood connect"))
        .collect();
    let mut probe = connect_from(flooder, dst).expect("probe connect");
    probe
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::new();
    let _ = probe.read_to_end(&mut got);
    (held, got)
}

fn curl_status(url: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "30",
        ])
        .arg(url)
        .output()
        .expect("curl");
    stdout(&out).trim().parse().unwrap_or(0)
}

#[test]
fn one_client_flooding_each_network_listener_locks_out_no_one() {
    let (rf, nbd, ipmi) = (free_tcp(), free_tcp(), free_udp());
    let sim = Sim::with_options(
        &format!(
            "[[vm]]\nname = \"vm0\"\nipmi = {{ listen = \"127.0.0.1:{ipmi}\" }}\n\
             [cim]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n\
             [redfish]\nlisten = \"127.0.0.1:{rf}\"\n[nbd]\nlisten = \"127.0.0.1:{nbd}\"\n\
             [[user]]\nname = \"admin\"\npassword = \"s3cret\"\nrole = \"Administrator\"\n"
        ),
        limited((1024, 1024), false),
    );
    sim.eventually("the listeners", || {
        let l = sim.log();
        l.contains("Redfish over HTTPS on") && l.contains("CIM-XML over HTTP on")
    });
    let log = sim.log();
    let cim: u16 = log
        .lines()
        .find(|l| l.contains("CIM-XML over HTTP on"))
        .and_then(|l| l.split("127.0.0.1:").nth(1))
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("CIM port");

    // CIM-XML over HTTP: the flooder's extra connection gets 503 and why;
    // another client is answered (401: no credentials).
    let (held_cim, got) = flood(cim);
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("per-client limit"), "{got}");
    assert_eq!(curl_status(&format!("http://127.0.0.1:{cim}/cimom")), 401);

    // Redfish over HTTPS: the same, through TLS for the other client.
    let (held_rf, got) = flood(rf);
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 503"),
        "{got:?}"
    );
    assert_eq!(
        curl_status(&format!("https://127.0.0.1:{rf}/redfish/v1")),
        200
    );

    // NBD: the flooder's extra connection is closed before the greeting;
    // another client gets it.
    let (held_nbd, got) = flood(nbd);
    assert!(got.is_empty(), "refused NBD connection got {got:?}");
    let mut c = TcpStream::connect(("127.0.0.1", nbd)).unwrap();
    let mut hello = [0u8; 18];
    c.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..8], b"NBDMAGIC");

    // IPMI: a client with valid credentials opening sessions as fast as
    // it can holds at most half the table (8 of 16); ipmitool from another
    // address logs in.
    let bmc = SocketAddr::from(([127, 0, 0, 1], ipmi));
    let flooder: std::net::IpAddr = [127, 0, 0, 2].into();
    let mut sessions = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        match Client::connect_from(flooder, bmc, "admin", b"s3cret", 3, 4) {
            Ok(c) => sessions.push(c),
            Err(ClientError::Refused(0x01)) => refused += 1,
            Err(e) => panic!("session from the flooder: {e:?}"),
        }
    }
    assert_eq!((sessions.len(), refused), (8, 12));
    let out = Command::new("ipmitool")
        .args(["-I", "lanplus", "-H", "127.0.0.1", "-p"])
        .arg(ipmi.to_string())
        .args([
            "-U", "admin", "-P", "s3cret", "-N", "1", "-R", "3", "mc", "info",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ipmitool");
    assert!(out.status.success(), "ipmitool: {}", stderr(&out));
    assert!(stdout(&out).contains("IPMI Version"), "{}", stdout(&out));
    for c in sessions.iter_mut() {
        assert_eq!(
            c.request(0x06, 0x01, &[]).unwrap().0,
            0,
            "held sessions work"
        );
    }

    // The control socket answers throughout.
    let out = sim.hvsim(&["vm", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Refusals are summed up, not logged one by one.
    let refusal_lines = sim
        .log()
        .lines()
        .filter(|l| l.contains("refused") && l.contains("connection(s) in the last"))
        .count();
    assert!(refusal_lines <= 6, "{}", sim.log());
    drop((held_cim, held_rf, held_nbd));
}

#[test]
fn a_thousand_vms_start_under_a_soft_limit_of_1024_or_hvsim_says_what_to_set() {
    let cfg = vms(&(0..1000)
        .map(|i| format!("v{i}"))
        .collect::<Vec<_>>()
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>())
        + "[cim]\nenabled = false\n[redfish]\nenabled = false\n";
    // Soft and hard 1024: impossible (a backdoor socket per VM and room
    // for a guest connection each); the error names the limit and the fix.
    let err = Sim::try_with_options(Sim::tempdir(), &cfg, limited((1024, 1024), true))
        .expect_err("1000 VMs in 1024 descriptors");
    assert!(err.contains("1000 VMs need at least"), "{err}");
    assert!(
        err.contains("the open-file limit is 1024 (hard limit 1024"),
        "{err}"
    );
    let set: usize = err
        .split("LimitNOFILE=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no LimitNOFILE=N in {err}"));
    assert!(set >= 2048, "{err}");
    // systemd's default for services: soft 1024, a higher hard limit.
    // hvsim raises its soft limit and serves all of them.
    let sim = Sim::with_options(&cfg, limited((1024, 4096), true));
    assert!(sim
        .log()
        .contains("open-file limit raised from 1024 to 4096"));
    let out = sim.hvsim(&["vm", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(1000));
    for vm in ["v0", "v500", "v999"] {
        assert_eq!(
            rpci(&sim, vm, &format!("info-set guestinfo.x {vm}")).unwrap(),
            b"1 "
        );
        assert_eq!(
            rpci(&sim, vm, "info-get guestinfo.x").unwrap(),
            format!("1 {vm}").as_bytes()
        );
    }
    assert!(sim.show("v999")["connections"]["guaranteed"].as_u64() >= Some(1));
}

fn log_file_bytes(dir: &std::path::Path) -> u64 {
    ["own.log", "own.log.1", "own.log.2", "own.log.3"]
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).map_or(0, |m| m.len()))
        .sum()
}

/// Send `lines` guest `log` messages of `size` bytes on one channel as
/// fast as the guest can.
fn guest_logs(sim: &Sim, lines: usize, size: usize) {
    let mut bd = UnixBackdoor::connect(sim.socket("vm0")).unwrap();
    let mut ch = GuestChannel::open(&mut bd, proto::RPCI).unwrap();
    let mut msg = b"log ".to_vec();
    msg.extend((0..size).map(|i| b'a' + (i % 26) as u8));
    for _ in 0..lines {
        assert_eq!(ch.call(&msg).unwrap(), b"1 ");
    }
    ch.close().unwrap();
}

#[test]
fn a_guest_logging_60_kib_lines_flat_out_grows_the_log_by_at_most_1_mib_a_second() {
    let sim = Sim::with_options(
        "[[vm]]\nname = \"vm0\"\n[cim]\nenabled = false\n[redfish]\nenabled = false\n\
         [log]\nfile = \"own.log\"\n",
        limited((1024, 1024), false),
    );
    let dir = sim.dir.path().to_path_buf();
    let before = log_file_bytes(&dir);
    let t0 = Instant::now();
    guest_logs(&sim, 1000, 60 << 10);
    let elapsed = t0.elapsed();
    // The last summary line comes with the next line that passes.
    std::thread::sleep(Duration::from_millis(50));
    let grown = log_file_bytes(&dir) - before;
    let sent = 1000 * (60 << 10) as u64;
    // 1000 lines of 60 KiB are 60 MiB; a bounded log keeps the burst and
    // 256 KiB a second after it, whatever the elapsed time was.
    let bound = (1 << 20) + (elapsed.as_secs_f64() * (1 << 20) as f64) as u64;
    assert!(
        grown <= bound,
        "log grew {grown} bytes in {elapsed:?} (bound {bound}) for {sent} bytes sent"
    );
    let text = std::fs::read_to_string(dir.join("own.log")).unwrap();
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096 + 200, "a guest line of {longest} bytes");
    assert!(text.contains("bytes cut]"), "lines are cut at 4 KiB");
    let suppressed = sim.show("vm0")["log"]["suppressed_guest_lines"]
        .as_u64()
        .unwrap();
    assert!(suppressed > 0);
    // One more line after the flood carries the summary.
    std::thread::sleep(Duration::from_millis(200));
    guest_logs(&sim, 1, 100);
    let text = std::fs::read_to_string(dir.join("own.log")).unwrap();
    assert!(text.contains("guest log: suppressed"), "no summary line");
    // A guest message is one log line: it cannot forge others.
    assert_eq!(
        rpci(&sim, "vm0", "log one\n[2026] INFO vm9: forged").unwrap(),
        b"1 "
    );
    let text = std::fs::read_to_string(dir.join("own.log")).unwrap();
    assert!(
        text.contains("guest log: one\\n[2026] INFO vm9: forged"),
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("[2026] INFO vm9")));
}

#[test]
fn hvsims_own_log_file_rotates_by_size() {
    let sim = Sim::with_options(
        "[[vm]]\nname = \"vm0\"\n[cim]\nenabled = false\n[redfish]\nenabled = false\n\
         [log]\nfile = \"own.log\"\nmax_size = 65536\nkeep = 2\n",
        limited((1024, 1024), false),
    );
    let dir = sim.dir.path().to_path_buf();
    // 120 lines of 3 KiB: within the guest's burst, 360 KiB of log.
    guest_logs(&sim, 120, 3 << 10);
    let size = |f: &str| std::fs::metadata(dir.join(f)).map(|m| m.len()).ok();
    for f in ["own.log", "own.log.1", "own.log.2"] {
        let s = size(f).unwrap_or_else(|| panic!("{f} missing"));
        assert!(s <= 65536, "{f} is {s} bytes");
    }
    assert_eq!(size("own.log.3"), None, "keep = 2");
    let newest = std::fs::read_to_string(dir.join("own.log")).unwrap();
    assert!(newest.contains("guest log: abc"), "{newest}");
    // Nothing of it went to stderr.
    assert!(!sim.log().contains("guest log:"));
}
