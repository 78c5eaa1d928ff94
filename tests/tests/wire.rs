//! The backdoor wire path end to end over the socket frontend: vm-rpctool and
//! raw guests against a real `hvsim serve`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use agent::transport::unix::UnixBackdoor;
use e2e_tests::{stderr, stdout, Sim};
use protocol::frame::{Op, Reply, Request, HEADER_LEN};
use protocol::guest::{Backdoor, GuestChannel};
use protocol::regs::{halves, hi};
use protocol::{cmd, msg_type, proto, status, Regs, BDOOR_MAGIC, GUESTMSG_FLAG_COOKIE};

/// Deterministic, XML-ish, printable content of exactly `n` bytes.
fn ovf_like(n: usize) -> Vec<u8> {
    let mut out = b"<?xml version=\"1.0\"?>\n<Environment>\n".to_vec();
    let mut x: u32 = 12345;
    while out.len() < n {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        out.extend_from_slice(
            format!(
                "  <Property oe:key=\"k{}\" oe:value=\"{:08x}\"/>\n",
                out.len(),
                x
            )
            .as_bytes(),
        );
    }
    out.truncate(n);
    out
}

#[test]
fn info_set_then_info_get_round_trips() {
    let sim = Sim::start();
    let o = sim.rpctool("vm0", &["info-set guestinfo.greeting hello world"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "\n", "info-set prints the empty reply");
    let o = sim.rpctool("vm0", &["info-get guestinfo.greeting"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello world\n");
    // The host sees what the guest set.
    assert_eq!(
        sim.show("vm0")["guestinfo"]["guestinfo.greeting"],
        "hello world"
    );
}

#[test]
fn failures_exit_1_with_the_host_reply_on_stderr() {
    let sim = Sim::start();
    let o = sim.rpctool("vm0", &["no-such-command arg"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "Unknown command\n");
    assert_eq!(stdout(&o), "");
    let o = sim.rpctool("vm0", &["info-get guestinfo.unset"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "No value found\n");
}

fn ovf_sim(size: usize) -> (Sim, Vec<u8>) {
    let dir = tempfile::Builder::new()
        .prefix("hvsim-t")
        .tempdir()
        .unwrap();
    let ovf = ovf_like(size);
    std::fs::write(dir.path().join("ovf-env.xml"), &ovf).unwrap();
    let sim = Sim::with_config_in(dir, "[[vm]]\nname = \"vm0\"\novf_env = \"ovf-env.xml\"\n");
    (sim, ovf)
}

#[test]
fn one_mib_ovf_environment_over_hb_byte_for_byte() {
    let (sim, ovf) = ovf_sim(1 << 20);
    let o = sim.rpctool("vm0", &["info-get guestinfo.ovfEnv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), ovf.len() + 1);
    assert!(o.stdout[..ovf.len()] == ovf[..], "OVF environment differs");
}

#[test]
fn one_mib_ovf_environment_over_lb_only_byte_for_byte() {
    let (sim, ovf) = ovf_sim(1 << 20);
    let o = sim.rpctool("vm0", &["--no-hb", "info-get guestinfo.ovfEnv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout[..ovf.len()] == ovf[..] && o.stdout.len() == ovf.len() + 1);
}

#[test]
fn fifty_concurrent_guests() {
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n");
    std::thread::scope(|s| {
        let sim = &sim;
        for i in 0..50 {
            s.spawn(move || {
                let vm = if i % 2 == 0 { "vm0" } else { "vm1" };
                let set = format!("info-set guestinfo.g{i} value-{i}");
                let o = sim.rpctool(vm, &[&set]);
                assert!(o.status.success(), "guest {i}: {}", stderr(&o));
                let o = sim.rpctool(vm, &[&format!("info-get guestinfo.g{i}")]);
                assert_eq!(stdout(&o), format!("value-{i}\n"), "guest {i}");
            });
        }
    });
    for (vm, parity) in [("vm0", 0), ("vm1", 1)] {
        let vars = sim.show(vm)["guestinfo"].as_object().unwrap().len();
        assert_eq!(
            vars, 25,
            "{vm} holds the variables of its {parity}-parity guests only"
        );
    }
}

#[test]
fn variables_survive_kill_9_and_restart() {
    let mut sim = Sim::start();
    let o = sim.rpctool("vm0", &["info-set guestinfo.from-guest kept"]);
    assert!(o.status.success());
    let o = sim.hvsim(&["vm", "set-var", "vm0", "from-host", "also kept"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // No pause: the write must be durable once the guest has its answer.
    sim.kill9_and_restart();
    let o = sim.rpctool("vm0", &["info-get guestinfo.from-guest"]);
    assert_eq!(stdout(&o), "kept\n", "{}", stderr(&o));
    let o = sim.rpctool("vm0", &["info-get guestinfo.from-host"]);
    assert_eq!(stdout(&o), "also kept\n");
}

fn read_reply(s: &mut UnixStream) -> Option<(Reply, Vec<u8>)> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).ok()?;
    let r = Reply::decode(&h, 1 << 20).ok()?;
    let mut body = vec![0; r.len as usize];
    s.read_exact(&mut body).ok()?;
    Some((r, body))
}

fn assert_closed(s: &mut UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        s.read(&mut b).unwrap(),
        0,
        "the sim closes a misbehaving connection"
    );
}

fn still_serving(sim: &Sim) {
    for vm in ["vm0", "vm1"] {
        let o = sim.rpctool(vm, &["info-set guestinfo.alive yes"]);
        assert!(o.status.success(), "{vm}: {}\n{}", stderr(&o), sim.log());
    }
}

#[test]
fn malformed_frames_are_refused_and_others_keep_being_served() {
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n");
    let sock = sim.socket("vm0");

    // Garbage header: refused with a reason, connection closed.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&[0xAB; HEADER_LEN]).unwrap();
    let (r, why) = read_reply(&mut s).expect("a refusal");
    assert!(!r.ok);
    assert!(
        String::from_utf8_lossy(&why).contains("unknown frame op"),
        "{why:?}"
    );
    assert_closed(&mut s);

    // HB out announcing 1 GiB: refused before any byte is read.
    let mut s = UnixStream::connect(&sock).unwrap();
    let req = Request {
        op: Op::HbOut,
        regs: Regs::default(),
        len: 1 << 30,
    };
    s.write_all(&req.encode()).unwrap();
    let (r, why) = read_reply(&mut s).expect("a refusal");
    assert!(!r.ok);
    assert!(String::from_utf8_lossy(&why).contains("exceeds"), "{why:?}");
    assert_closed(&mut s);

    // `in` frame with a length, wrong version: refused.
    for (op, ver) in [(1u8, 1u8), (1, 9)] {
        let mut h = Request {
            op: Op::In,
            regs: Regs::default(),
            len: 0,
        }
        .encode();
        h[0] = op;
        h[1] = ver;
        if ver == 1 {
            h[32] = 4;
        }
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(&h).unwrap();
        let (r, _) = read_reply(&mut s).expect("a refusal");
        assert!(!r.ok);
    }

    // Truncated header, then gone.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&[1, 1, 0]).unwrap();
    drop(s);

    // HB in for bytes that are not there: status 0, no data, connection lives.
    let mut bd = UnixBackdoor::connect(&sock).unwrap();
    let mut buf = [0u8; 16];
    let r = Regs {
        eax: BDOOR_MAGIC,
        ebx: halves(status::SUCCESS, 0),
        ecx: 16,
        edx: 0x5659,
        ..Regs::default()
    };
    let out = bd.hb_in(r, &mut buf).unwrap();
    assert_eq!(hi(out.ebx) & status::SUCCESS, 0);
    let v = bd.call(Regs::command(cmd::GETVERSION, 0)).unwrap();
    assert_eq!(v.ebx, BDOOR_MAGIC, "the same connection still works");

    still_serving(&sim);
}

#[test]
fn oversize_message_is_refused_and_limit_size_works() {
    let sim = Sim::start();
    // 64 KiB exactly: accepted, like a real host.
    let prefix = "info-set guestinfo.big ";
    let value = "v".repeat(64 * 1024 - prefix.len());
    let msg = format!("{prefix}{value}");
    assert_eq!(msg.len(), 64 * 1024);
    let o = sim.rpctool("vm0", &[&msg]);
    assert!(o.status.success(), "{}", stderr(&o));
    // One byte more: refused, nothing stored.
    let o = sim.rpctool("vm0", &[&format!("{msg}w")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unable to send"), "{}", stderr(&o));
    // Over LB the same.
    let o = sim.rpctool("vm0", &["--no-hb", &format!("{msg}w")]);
    assert_eq!(o.status.code(), Some(1));
    let o = sim.rpctool("vm0", &["info-get guestinfo.big"]);
    assert_eq!(o.stdout.len(), value.len() + 1);
}

fn open_regs(flags: u32) -> Regs {
    let mut r = Regs::command(cmd::MESSAGE, proto::RPCI | flags);
    r.ecx = halves(msg_type::OPEN, cmd::MESSAGE);
    r
}

#[test]
fn two_hundred_channel_opens_hit_the_limit_and_leave_others_served() {
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n");
    let mut hog = UnixBackdoor::connect(sim.socket("vm0")).unwrap();
    let mut opened = 0;
    for _ in 0..200 {
        let out = hog.call(open_regs(GUESTMSG_FLAG_COOKIE)).unwrap();
        if hi(out.ecx) & status::SUCCESS != 0 {
            opened += 1;
        }
    }
    assert_eq!(opened, 128, "a real host allows 128 channels per VM");
    assert_eq!(sim.show("vm0")["channels"], 128);
    // vm0 is full: a new guest there cannot open a channel, and says so.
    let o = sim.rpctool("vm0", &["info-get guestinfo.x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("open"), "{}", stderr(&o));
    // Other VMs do not notice.
    assert!(sim
        .rpctool("vm1", &["info-set guestinfo.a b"])
        .status
        .success());
    // When the hog goes away its channels are freed.
    drop(hog);
    sim.eventually("channels freed", || sim.show("vm0")["channels"] == 0);
    assert!(sim
        .rpctool("vm0", &["info-set guestinfo.a b"])
        .status
        .success());
}

#[test]
fn guest_vanishing_mid_message_frees_its_channel() {
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n");
    let sock = sim.socket("vm0");
    // Half-sent message over LB, then gone.
    {
        let mut bd = UnixBackdoor::connect(&sock).unwrap();
        let out = bd.call(open_regs(0)).unwrap();
        assert_ne!(hi(out.ecx) & status::SUCCESS, 0);
        let mut r = Regs::command(cmd::MESSAGE, 1000);
        r.ecx = halves(msg_type::SENDSIZE, cmd::MESSAGE);
        r.edx = halves(hi(out.edx), 0x5658);
        let out = bd.call(r).unwrap();
        assert_ne!(hi(out.ecx) & status::SUCCESS, 0);
        let mut r = Regs::command(cmd::MESSAGE, 0x6f66_6e69);
        r.ecx = halves(msg_type::SENDPAYLOAD, cmd::MESSAGE);
        r.edx = halves(hi(out.edx), 0x5658);
        bd.call(r).unwrap();
        drop(bd); // no CLOSE: the process just dies
    }
    // Half of an HB out frame, then gone.
    {
        let mut s = UnixStream::connect(&sock).unwrap();
        let req = Request {
            op: Op::HbOut,
            regs: Regs::default(),
            len: 1000,
        };
        s.write_all(&req.encode()).unwrap();
        s.write_all(&[b'x'; 10]).unwrap();
    }
    // A reply never collected.
    {
        let mut bd = UnixBackdoor::connect(&sock).unwrap();
        let mut ch = GuestChannel::open(&mut bd, proto::RPCI).unwrap();
        ch.send(b"info-get guestinfo.ovfEnv").unwrap();
        std::mem::forget(ch);
        drop(bd);
    }
    sim.eventually("departed guests' channels closed", || {
        sim.show("vm0")["channels"] == 0
    });
    still_serving(&sim);
}

#[test]
fn backdoor_commands_answer_like_esx() {
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\nuuid = \"564d1234-5678-9abc-def0-123456789abc\"\nmemory_mb = 4096\n");
    let mut bd = UnixBackdoor::connect(sim.socket("vm0")).unwrap();
    let v = bd.call(Regs::command(cmd::GETVERSION, 0)).unwrap();
    assert_eq!((v.eax, v.ebx, v.ecx), (6, BDOOR_MAGIC, 2));
    let u = bd.call(Regs::command(cmd::GETUUID, 0)).unwrap();
    let bytes: Vec<u8> = [u.eax, u.ebx, u.ecx, u.edx]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    assert_eq!(
        bytes,
        [
            0x56, 0x4d, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78,
            0x9a, 0xbc
        ]
    );
    assert_eq!(
        bd.call(Regs::command(cmd::GETMEMSIZE, 0)).unwrap().eax,
        4096
    );
    let t = bd
        .call(Regs::command(cmd::GETTIMEFULL_WITH_LAG, 0))
        .unwrap();
    assert_eq!(t.eax, BDOOR_MAGIC);
    let host_secs = (t.esi as u64) << 32 | t.edx as u64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        host_secs.abs_diff(now) <= 5,
        "host time {host_secs} vs {now}"
    );
    assert!(t.ebx < 1_000_000);
    let mhz = bd.call(Regs::command(cmd::GETMHZ, 0)).unwrap();
    assert!(mhz.eax > 0);
    let unknown = bd.call(Regs::command(0x7FFF, 0)).unwrap();
    assert_eq!(
        unknown.eax, 0xFFFF_FFFF,
        "unknown commands leave eax = 0xFFFFFFFF"
    );
}

#[test]
fn batch_mode_sends_one_message_per_line() {
    let sim = Sim::start();
    let mut child = std::process::Command::new(e2e_tests::bin("vm-rpctool"))
        .arg("--batch")
        .env("VM_BACKDOOR", sim.backdoor("vm0"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"info-set guestinfo.a 1\ninfo-get guestinfo.a\nbogus\ninfo-get guestinfo.a\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "\n1\n1\n");
    assert_eq!(stderr(&o), "Unknown command\n");
    assert_eq!(o.status.code(), Some(1), "one message failed");
}

#[test]
fn without_a_backdoor_the_error_says_what_to_set() {
    if agent::cpuid::is_vmware() {
        return; // on a real VMware guest `auto` legitimately finds the port
    }
    let o = std::process::Command::new(e2e_tests::bin("vm-rpctool"))
        .arg("info-get guestinfo.x")
        .env_remove("VM_BACKDOOR")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("VM_BACKDOOR") && e.contains("not running on a VMware hypervisor"),
        "{e}"
    );
}
