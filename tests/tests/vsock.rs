//! TCLO and RPCI over vsock under `hvsim exec`: a guest program's AF_VSOCK
//! stream to the hypervisor (CID 0, port 975) reaches the VM's TCLO endpoint
//! in serve, which pushes commands as DataMap packets; port 976 reaches its
//! RPCI endpoint, which answers requests as the backdoor does; other vsock
//! ports are refused, other sockets are the kernel's. The guest programs are Python scripts
//! using the socket module as any program would.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{stderr, stdout, Sim};
use protocol::datamap::{read_packet, Packet, PacketKind};

/// A TCLO guest: connects vsock 0:975, answers every command with
/// `OK <command>` (`OK pong` for `ping`), heartbeats after its first answer,
/// and leaves after answering `bye`. Prints each command it got.
const TCLO_GUEST: &str = r#"
import socket, struct, sys, threading, time
s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
s.connect((0, 975))
print("connected", flush=True)
lock = threading.Lock()
def send(kind, payload=None):
    c = struct.pack('>iiII', 1, 1, kind, 0)
    if payload is not None:
        c += struct.pack('>iii', 2, 2, len(payload)) + payload
    with lock:
        s.sendall(struct.pack('>I', len(c)) + c)
def beat():
    while True:
        time.sleep(1)
        send(2)
def rd(n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("host closed")
        b += c
    return b
first = True
while True:
    c = rd(struct.unpack('>I', rd(4))[0])
    cmd = c[c.index(b'\x00\x00\x00\x02\x00\x00\x00\x02') + 12:]
    print("got", cmd.decode(), flush=True)
    send(1, b"OK pong" if cmd == b"ping" else b"OK " + cmd)
    if first:
        threading.Thread(target=beat, daemon=True).start()
        first = False
    if cmd == b"bye":
        break
"#;

/// The system's Python 3 (on PATH: `hvsim exec` looks it up), needing no
/// package beyond the standard library.
fn python3() -> &'static std::path::Path {
    std::path::Path::new("python3")
}

fn guest(sim: &Sim, script: &str) -> Child {
    sim.exec("vm0", python3())
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python under hvsim exec")
}

fn tclo(sim: &Sim, cmd: &str) -> Output {
    sim.hvsim(&["vm", "tclo", "vm0", cmd, "--timeout", "20"])
}

fn transport(sim: &Sim) -> serde_json::Value {
    sim.show("vm0")["tools"]["tclo_transport"].clone()
}

#[test]
fn commands_are_pushed_over_vsock_and_answered() {
    let sim = Sim::start();
    assert_eq!(transport(&sim), serde_json::Value::Null);
    assert_eq!(sim.show("vm0")["tools"]["status"], "not-running");
    // Queued before any guest runs: it waits for the next TCLO channel.
    let early = {
        let control = sim.control.clone();
        std::thread::spawn(move || {
            std::process::Command::new(e2e_tests::bin("hvsim"))
                .args(["vm", "tclo", "vm0", "early-bird", "--timeout", "30"])
                .env("HVSIM_CONTROL", control)
                .output()
                .unwrap()
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let g = guest(&sim, TCLO_GUEST);
    let o = early.join().unwrap();
    assert_eq!(stdout(&o), "OK early-bird\n", "{}", stderr(&o));
    sim.eventually("tools running over vsock", || {
        let v = sim.show("vm0");
        v["tools"]["tclo_transport"] == "vsock" && v["tools"]["status"] == "running"
    });
    let text = stdout(&sim.hvsim(&["vm", "show", "vm0"]));
    assert!(text.contains("TCLO over vsock"), "{text}");

    // Pushed at once: no guest poll in between (the guest never polls).
    let t = Instant::now();
    let o = tclo(&sim, "ping");
    assert_eq!(stdout(&o), "OK pong\n", "{}", stderr(&o));
    assert!(t.elapsed() < Duration::from_secs(5));
    // Heartbeats keep the tools running with no command for a while.
    std::thread::sleep(Duration::from_millis(5500));
    assert_eq!(sim.show("vm0")["tools"]["status"], "running");
    let calls = sim.show("vm0")["backdoor"]["calls"].as_u64().unwrap();
    assert_eq!(calls, 0, "the vsock guest used no backdoor call");

    let o = tclo(&sim, "bye");
    assert_eq!(stdout(&o), "OK bye\n", "{}", stderr(&o));
    let out = g.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The host greets a new channel with reset and Capabilities_Register,
    // then sends what was queued, in order.
    assert_eq!(
        stdout(&out),
        "connected\ngot reset\ngot Capabilities_Register\ngot early-bird\ngot ping\ngot bye\n"
    );
    sim.eventually("tools not running once the connection closed", || {
        let v = sim.show("vm0");
        v["tools"]["status"] == "not-running" && v["tools"]["tclo_transport"].is_null()
    });
}

/// Other vsock ports (not 975 or 976) are refused; vsock datagram sockets can be made (the
/// family probe of open-vm-tools); sockets of other families are the
/// kernel's, intercepted connect and bind included.
const OTHER_SOCKETS: &str = r#"
import errno, os, socket, sys, threading
port = int(sys.argv[1]); path = sys.argv[2]
def from_thread():
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        s.connect((0, 977))
    except OSError as e:
        print("thread 977", errno.errorcode[e.errno])
t = threading.Thread(target=from_thread)
t.start(); t.join()
# A vsock address on a socket the kernel made: the kernel's answer.
i = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
addr = (ctypes.c_ubyte * 16)(40, 0, 0, 0, 0xcf, 3, 0, 0)
print("inet with vsock address", libc.connect(i.fileno(), addr, 16), errno.errorcode[ctypes.get_errno()])
for p in (977, 1234):
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        s.connect((0, p))
        print(p, "connected")
    except OSError as e:
        print(p, errno.errorcode[e.errno])
    s.close()
s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
s.bind((0xFFFFFFFF, 1023))
print("bound, nonblocking", not s.getblocking(), "cloexec", not s.get_inheritable())
d = socket.socket(socket.AF_VSOCK, socket.SOCK_DGRAM)
print("dgram", d.fileno() >= 0)
try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_RAW)
except OSError as e:
    print("raw", errno.errorcode[e.errno])
t = socket.create_connection(("127.0.0.1", port))
t.sendall(b"over tcp")
t.close()
u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
u.connect(path)
u.sendall(b"over unix")
u.close()
b = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
b.bind(("127.0.0.1", 0))
print("tcp bind", b.getsockname()[1] > 0)
free = b.getsockname()[1]
b.close()
try:
    socket.create_connection(("127.0.0.1", free))
except OSError as e:
    print("closed port", errno.errorcode[e.errno])
"#;

#[test]
fn other_vsock_ports_are_refused_and_other_sockets_work() {
    let sim = Sim::start();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let path = sim.dir.path().join("guest.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let out = sim
        .exec("vm0", python3())
        .args(["-c", OTHER_SOCKETS, &port.to_string()])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out),
        "thread 977 ECONNREFUSED\ninet with vsock address -1 EAFNOSUPPORT\n977 ECONNREFUSED\n1234 ECONNREFUSED\nbound, nonblocking True cloexec True\ndgram True\nraw ESOCKTNOSUPPORT\ntcp bind True\nclosed port ECONNREFUSED\n"
    );
    let mut got = String::new();
    tcp.accept().unwrap().0.read_to_string(&mut got).unwrap();
    assert_eq!(got, "over tcp");
    got.clear();
    unix.accept().unwrap().0.read_to_string(&mut got).unwrap();
    assert_eq!(got, "over unix");
    assert_eq!(transport(&sim), serde_json::Value::Null);
}

/// A VM's vsock endpoints exist once a program ran under `hvsim exec`
/// against it (no descriptors for VMs that never do).
fn endpoints_made(sim: &Sim) {
    if !sim.dir.path().join("state/vsock/vm0.sock").exists() {
        let out = sim.exec("vm0", Path::new("/bin/true")).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

fn endpoint(sim: &Sim) -> UnixStream {
    endpoints_made(sim);
    let s = UnixStream::connect(sim.dir.path().join("state/vsock/vm0.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// The host's next packet on `s`, or None when it closed the connection.
fn next(s: &mut UnixStream) -> Option<Packet> {
    read_packet(s).expect("a well-formed packet from the host")
}

#[test]
fn malformed_packets_close_the_connection_and_serve_keeps_serving() {
    let sim = Sim::start();
    let bad: [&[u8]; 4] = [
        // Over the size limit.
        &[0xff, 0xff, 0xff, 0xff],
        // An unknown entry type.
        &[0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 1],
        // A string longer than the packet.
        &[0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 2, 0x7f, 0, 0, 0],
        // Cut off inside the content.
        &[0, 0, 0, 40, 0, 0, 0, 1],
    ];
    for b in bad {
        let mut s = endpoint(&sim);
        let p = next(&mut s).unwrap();
        assert_eq!(p.payload.as_deref(), Some(&b"reset"[..]));
        s.write_all(b).unwrap();
        if b.len() == 8 {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        // The host hangs up on the connection.
        assert_eq!(next(&mut s), None, "{b:?}");
        assert!(sim.show("vm0")["tools"]["tclo_transport"].is_null());
    }
    assert!(sim.log().contains("TCLO vsock connection"), "{}", sim.log());

    // A well-behaved client still gets the whole exchange.
    let mut s = endpoint(&sim);
    for want in ["reset", "Capabilities_Register"] {
        let p = next(&mut s).unwrap();
        assert_eq!(p.kind, PacketKind::Data);
        assert_eq!(p.payload.as_deref(), Some(want.as_bytes()));
        s.write_all(&Packet::data(b"OK ").encode()).unwrap();
    }
    s.write_all(&Packet::ping().encode()).unwrap();
    let control = sim.control.clone();
    let asker = std::thread::spawn(move || {
        std::process::Command::new(e2e_tests::bin("hvsim"))
            .args(["vm", "tclo", "vm0", "ping"])
            .env("HVSIM_CONTROL", control)
            .output()
            .unwrap()
    });
    let p = next(&mut s).unwrap();
    assert_eq!(p.payload.as_deref(), Some(&b"ping"[..]));
    s.write_all(&Packet::data(b"OK alive").encode()).unwrap();
    let o = asker.join().unwrap();
    assert_eq!(stdout(&o), "OK alive\n", "{}", stderr(&o));
    assert_eq!(transport(&sim), "vsock");
}

#[test]
fn exec_vsock_takes_only_the_callers_own_seccomp_listener() {
    let sim = Sim::start();
    let e = sim
        .control(serde_json::json!({"op": "exec-vsock", "vm": "vm0", "pid": 1, "fd": 3}))
        .unwrap_err();
    assert!(e.contains("not the caller"), "{e}");
    // Our own stdin is no listener: refused, and serve keeps serving.
    let me = std::process::id();
    let e = sim
        .control(serde_json::json!({"op": "exec-vsock", "vm": "vm0", "pid": me, "fd": 0}))
        .unwrap_err();
    assert!(e.contains("not a seccomp listener"), "{e}");
    assert_eq!(sim.show("vm0")["name"], "vm0");
}

#[test]
fn power_off_and_reset_close_the_vsock_channel() {
    let sim = Sim::start();
    let power = |action: &str| {
        let o = sim.hvsim(&["vm", "power", "vm0", action]);
        assert!(o.status.success(), "{action}: {}", stderr(&o));
    };
    let mut s = endpoint(&sim);
    assert_eq!(
        next(&mut s).unwrap().payload.as_deref(),
        Some(&b"reset"[..])
    );
    // A reset takes the guest's connections down with it ...
    power("reset");
    assert_eq!(next(&mut s), None);
    // ... and the next one is a new channel, greeted again.
    let mut s = endpoint(&sim);
    assert_eq!(
        next(&mut s).unwrap().payload.as_deref(),
        Some(&b"reset"[..])
    );
    power("off");
    assert_eq!(next(&mut s), None);
    // No guest runs in a VM that is off.
    let mut s = endpoint(&sim);
    assert_eq!(next(&mut s), None);
    assert!(transport(&sim).is_null());
    power("on");
    let mut s = endpoint(&sim);
    assert_eq!(
        next(&mut s).unwrap().payload.as_deref(),
        Some(&b"reset"[..])
    );
    assert_eq!(transport(&sim), "vsock");
}

/// An RPCI guest, as open-vm-tools' vsock channel: binds a privileged
/// source port, connects vsock 0:976, sends each message of argv as a DATA
/// packet and prints the reply. Messages go alternately over two
/// connections; the last one asks for a fast close, after which the host
/// hangs up.
const RPCI_GUEST: &str = r#"
import socket, struct, sys
def conn():
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    s.bind((0xFFFFFFFF, 1000))
    s.connect((0, 976))
    return s
def rd(s, n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b
def request(s, msg, fast_close=False):
    c = struct.pack('>iiII', 1, 1, 1, 0) + struct.pack('>iii', 2, 2, len(msg)) + msg
    if fast_close:
        c += struct.pack('>iiII', 1, 3, 1, 0)
    s.sendall(struct.pack('>I', len(c)) + c)
    c = rd(s, struct.unpack('>I', rd(s, 4))[0])
    i = c.find(b'\x00\x00\x00\x02\x00\x00\x00\x02')
    if i < 0:
        return b''
    n = struct.unpack('>i', c[i + 8:i + 12])[0]
    return c[i + 12:i + 12 + n]
conns = [conn(), conn()]
msgs = [m.encode() for m in sys.argv[1:]]
for i, m in enumerate(msgs):
    s = conns[i % 2]
    last = i == len(msgs) - 1
    print(repr(request(s, m, fast_close=last).decode()), flush=True)
    if last:
        print("closed" if s.recv(1) == b'' else "open", flush=True)
"#;

#[test]
fn rpci_over_vsock_answers_as_the_backdoor_does() {
    let sim = Sim::start();
    let out = sim
        .exec("vm0", python3())
        .args(["-c", RPCI_GUEST])
        .args([
            "info-set guestinfo.vsock 42",
            "info-get guestinfo.vsock",
            "no-such-command x",
            "tools.set.versiontype 12352 4",
            "info-get guestinfo.nothing-here",
            "info-get guestinfo.vsock",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let v = sim.show("vm0");
    assert_eq!(v["guestinfo"]["guestinfo.vsock"], "42");
    assert_eq!(v["tools"]["version"], "12352");
    assert_eq!(v["tools"]["version_type"], "4");
    // Counted as vsock RPCI messages, not as backdoor calls.
    assert_eq!(v["vsock"]["rpci_messages"], 6);
    assert_eq!(v["backdoor"]["calls"], 0);
    // The same requests over the backdoor (vm-rpctool through the socket
    // transport) get the same answers: the body on stdout with success,
    // on stderr with failure.
    let backdoor = |msg: &str| {
        let o = std::process::Command::new(e2e_tests::bin("vm-rpctool"))
            .env("VM_BACKDOOR", sim.backdoor("vm0"))
            .arg(msg)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let (flag, body) = if o.status.success() {
            ("1 ", stdout(&o))
        } else {
            ("0 ", stderr(&o))
        };
        format!("{flag}{}", body.trim_end_matches('\n'))
    };
    let unknown = backdoor("no-such-command x");
    assert!(unknown.starts_with("0 "), "{unknown}");
    let missing = backdoor("info-get guestinfo.nothing-here");
    assert!(missing.starts_with("0 "), "{missing}");
    assert_eq!(
        stdout(&out),
        format!("'1 '\n'1 42'\n'{unknown}'\n'1 '\n'{missing}'\n'1 42'\nclosed\n")
    );
    assert_eq!(backdoor("info-get guestinfo.vsock"), "1 42");
    assert_eq!(sim.show("vm0")["vsock"]["rpci_messages"], 6);
}

fn rpci_endpoint(sim: &Sim) -> UnixStream {
    endpoints_made(sim);
    let s = UnixStream::connect(sim.dir.path().join("state/vsock/vm0.rpci.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn malformed_rpci_packets_close_only_that_connection() {
    let sim = Sim::start();
    let mut good = rpci_endpoint(&sim);
    let ask = |s: &mut UnixStream, msg: &[u8]| {
        s.write_all(&Packet::data(msg).encode()).unwrap();
        next(s).map(|p| String::from_utf8(p.payload.unwrap()).unwrap())
    };
    assert_eq!(
        ask(&mut good, b"info-set guestinfo.a 1").as_deref(),
        Some("1 ")
    );
    let bad: [&[u8]; 4] = [
        &[0xff, 0xff, 0xff, 0xff],
        &[0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 1],
        &[0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 2, 0x7f, 0, 0, 0],
        // A type that is neither data nor ping.
        &[0, 0, 0, 16, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0],
    ];
    for b in bad {
        let mut s = rpci_endpoint(&sim);
        s.write_all(b).unwrap();
        assert_eq!(next(&mut s), None, "{b:?}");
    }
    // A request over the VM's message limit (64 KiB by default).
    let mut s = rpci_endpoint(&sim);
    let mut big = b"info-set guestinfo.big ".to_vec();
    big.resize(70_000, b'x');
    s.write_all(&Packet::data(&big).encode()).unwrap();
    assert_eq!(next(&mut s), None);
    assert!(sim.log().contains("RPCI vsock connection"), "{}", sim.log());
    assert!(sim.log().contains("message limit"), "{}", sim.log());
    // The good connection was untouched and still answers; a ping (which an
    // RPCI channel has no use for) is ignored.
    good.write_all(&Packet::ping().encode()).unwrap();
    assert_eq!(
        ask(&mut good, b"info-get guestinfo.a").as_deref(),
        Some("1 1")
    );
    assert_eq!(ask(&mut good, b"").as_deref(), Some("0 Unknown command"));
    // No guest runs in a VM that is off: its requests are not answered.
    let o = sim.hvsim(&["vm", "power", "vm0", "off"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ask(&mut good, b"info-get guestinfo.a"), None);
    let o = sim.hvsim(&["vm", "power", "vm0", "on"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut s = rpci_endpoint(&sim);
    assert_eq!(ask(&mut s, b"info-get guestinfo.a").as_deref(), Some("1 1"));
    assert_eq!(sim.show("vm0")["backdoor"]["calls"], 0);
}
