//! The plugin's dispatch, driven with real encoded VIX requests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use protocol::hgfs;
use protocol::vix::{self, err, flags, op, Credential};

use super::*;
use crate::HostCallError;

#[derive(Debug)]
struct NoHost;

impl Context for NoHost {
    fn rpci(&mut self, _: &[u8]) -> Result<Vec<u8>, HostCallError> {
        Err(HostCallError::Channel("none".into()))
    }
    fn backdoor(&mut self, _: protocol::Regs) -> Result<protocol::Regs, HostCallError> {
        Err(HostCallError::Channel("none".into()))
    }
}

/// A login helper with the real one's contract: password `secret`, the
/// account is the test's own user (so files it makes are ours).
fn helper(dir: &Path) -> PathBuf {
    let p = dir.join("vm-agent-auth");
    std::fs::write(
        &p,
        "#!/bin/bash\nIFS= read -r -d '' u; IFS= read -r -d '' pw\n\
         [ \"$pw\" = secret ] || exit 1\n\
         printf 'uid=%s\\ngid=%s\\ngroups=%s\\nhome=/tmp\\nshell=/bin/sh\\n' \
         \"$(id -u)\" \"$(id -g)\" \"$(id -G | tr ' ' ,)\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

struct Guest {
    ops: GuestOps,
    _dir: tempfile::TempDir,
    work: PathBuf,
}

fn guest(cfg: GuestOpsConfig) -> Guest {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let cfg = GuestOpsConfig {
        auth_helper: helper(dir.path()),
        ..cfg
    };
    Guest {
        ops: GuestOps::new(cfg),
        _dir: dir,
        work,
    }
}

fn args(opcode: u32, common: u8, cred: &Credential, body: &[u8]) -> Vec<u8> {
    let msg = vix::build_request(opcode, common, 7, cred, body).unwrap();
    let cmd = vix::tclo_command("req", &msg);
    cmd[vix::TCLO_RELAYED_COMMAND.len() + 1..].to_vec()
}

fn good() -> Credential {
    Credential::name_password("tester", "secret")
}

impl Guest {
    /// Send a request and wait for its reply (deferred ones included).
    fn call(&mut self, opcode: u32, common: u8, cred: &Credential, body: &[u8]) -> Vec<u8> {
        let a = args(opcode, common, cred, body);
        if let Some(r) = self
            .ops
            .on_tclo_deferred(&mut NoHost, vix::TCLO_RELAYED_COMMAND, &a)
        {
            return r;
        }
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < Duration::from_secs(20), "no reply");
            for (fd, ev) in self.ops.fds() {
                let mut p = libc::pollfd {
                    fd,
                    events: ev,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut p, 1, 10) } > 0 {
                    self.ops.on_ready(&mut NoHost, fd, Instant::now());
                }
            }
            // Time passes faster here: a refusal's delay is due at once.
            if self
                .ops
                .waiting
                .as_ref()
                .is_some_and(|w| w.refusal.is_some())
            {
                assert!(self.ops.take_reply().is_none(), "refusal before its delay");
                self.ops
                    .on_deadline(&mut NoHost, Instant::now() + FAIL_DELAY);
            }
            if let Some(r) = self.ops.take_reply() {
                return r;
            }
        }
    }

    fn text(&mut self, opcode: u32, body: &[u8]) -> (u64, String) {
        let r = self.call(opcode, 0, &good(), body);
        parse(&r)
    }
}

fn parse(tclo: &[u8]) -> (u64, String) {
    let body = tclo.strip_prefix(b"OK ").expect("OK reply");
    let r = vix::Reply::parse(body, false).unwrap();
    (r.error, r.text())
}

#[test]
fn tools_state_needs_no_login() {
    let mut g = guest(GuestOpsConfig::default());
    let r = g.call(op::GET_TOOLS_STATE, 0, &Credential::None, &[]);
    let (code, text) = parse(&r);
    assert_eq!(code, err::OK);
    let props = vix::decode_properties(&vix::base64_decode(text.as_bytes()).unwrap()).unwrap();
    assert!(props
        .iter()
        .any(|p| p.id == vix::prop::GUEST_OS_FAMILY && p.value == vix::PropertyValue::Int(1)));
    assert!(props
        .iter()
        .any(|p| p.id == vix::prop::GUEST_START_PROGRAM_ENABLED
            && p.value == vix::PropertyValue::Bool(true)));
}

#[test]
fn unknown_opcodes_malformed_messages_frozen_and_disabled() {
    let mut g = guest(GuestOpsConfig {
        disabled: vec!["StartProgramInGuest".into()],
        ..GuestOpsConfig::default()
    });
    assert_eq!(
        parse(&g.call(85, 0, &good(), &[])).0,
        err::UNRECOGNIZED_COMMAND_IN_GUEST
    );
    let start = vix::StartProgram {
        program: "/bin/true".into(),
        ..vix::StartProgram::default()
    };
    assert_eq!(
        parse(&g.call(op::START_PROGRAM, 0, &good(), &start.encode())).0,
        err::OPERATION_DISABLED
    );
    let r = g
        .ops
        .on_tclo_deferred(&mut NoHost, vix::TCLO_RELAYED_COMMAND, b"\"x\"\0garbage")
        .unwrap();
    assert_eq!(parse(&r).0, err::INVALID_MESSAGE_HEADER);
    g.ops.on_event(&mut NoHost, HostEvent::Frozen);
    assert_eq!(
        parse(&g.call(op::LIST_FILES, 0, &good(), &[])).0,
        err::OBJECT_IS_BUSY
    );
    g.ops.on_event(&mut NoHost, HostEvent::Thawed);
    assert!(GuestOpsConfig {
        disabled: vec!["Bogus".into()],
        ..GuestOpsConfig::default()
    }
    .validate()
    .is_err());
}

#[test]
fn bad_login_is_refused_after_the_delay_good_login_is_cached() {
    let mut g = guest(GuestOpsConfig::default());
    let bad = Credential::name_password("tester", "wrong");
    let mk = vix::CreateDirectory {
        file_options: 0,
        path: g.work.join("d").to_string_lossy().into_owned(),
        create_parents: false,
    };
    let r = g.call(op::CREATE_DIRECTORY_EX, 0, &bad, &mk.encode());
    assert_eq!(parse(&r).0, err::INVALID_LOGIN_CREDENTIALS);
    assert!(!g.work.join("d").exists());
    // HGFS packets report a bad login as missing permission (vmtoolsd's
    // rewrite), in the binary form.
    let pkt = vix::HgfsPacket {
        timeout: 0,
        packet: &hgfs::build_request(hgfs::op::CREATE_SESSION_V4, 1, 0, &[0; 16]).unwrap(),
    };
    let r = g.call(
        op::HGFS_SEND_PACKET,
        flags::GUEST_RETURNS_BINARY,
        &bad,
        &pkt.encode(),
    );
    assert!(
        r.starts_with(b"OK 3015 0 #"),
        "{:?}",
        String::from_utf8_lossy(&r)
    );
    // The good login runs after the check, then is cached (answered at once).
    let (code, _) = g.text(op::CREATE_DIRECTORY_EX, &mk.encode());
    assert_eq!(code, err::OK);
    assert!(g.work.join("d").is_dir());
    let a = args(op::CREATE_DIRECTORY_EX, 0, &good(), &mk.encode());
    let r = g
        .ops
        .on_tclo_deferred(&mut NoHost, vix::TCLO_RELAYED_COMMAND, &a)
        .expect("cached login answers at once");
    assert_eq!(parse(&r).0, err::FILE_ALREADY_EXISTS);
    assert!(g.ops.deadline().is_some(), "the cached login expires");
}

#[test]
fn file_operations() {
    let mut g = guest(GuestOpsConfig::default());
    let w = g.work.to_string_lossy().into_owned();
    let tmp = vix::CreateTemp {
        options: 0,
        prefix: "p".into(),
        suffix: ".s".into(),
        directory: w.clone(),
    };
    let (code, path) = g.text(op::CREATE_TEMPORARY_FILE_EX, &tmp.encode());
    assert_eq!(code, err::OK);
    assert!(path.starts_with(&format!("{w}/pvmware")), "{path}");
    let ls = vix::ListFiles {
        file_options: 0,
        path: w.clone(),
        pattern: "^p".into(),
        index: 0,
        max_results: 50,
        offset: 0,
    };
    let (code, text) = g.text(op::LIST_FILES, &ls.encode());
    assert_eq!(code, err::OK);
    let list = vix::FileList::parse(&text).unwrap();
    assert_eq!(list.files.len(), 1);
    let mv = vix::Move {
        options: 0,
        old_path: path.clone(),
        new_path: format!("{w}/moved"),
        overwrite: false,
    };
    assert_eq!(g.text(op::MOVE_GUEST_FILE_EX, &mv.encode()).0, err::OK);
    let rm = vix::DeleteFile {
        file_options: 0,
        path: format!("{w}/moved"),
    };
    assert_eq!(g.text(op::DELETE_GUEST_FILE_EX, &rm.encode()).0, err::OK);
    assert_eq!(
        g.text(op::DELETE_GUEST_FILE_EX, &rm.encode()).0,
        err::FILE_NOT_FOUND
    );
    let rmdir = vix::DeleteDirectory {
        file_options: 0,
        path: w.clone(),
        recursive: true,
    };
    assert_eq!(
        g.text(op::DELETE_GUEST_DIRECTORY_EX, &rmdir.encode()).0,
        err::OK
    );
    assert!(!g.work.exists());
}

#[test]
fn start_program_then_list_it_with_its_exit_code() {
    let mut g = guest(GuestOpsConfig::default());
    let out = g.work.join("out");
    let start = vix::StartProgram {
        start_minimized: false,
        program: "/bin/sh".into(),
        arguments: format!("-c 'echo $GREETING > {}; exit 3'", out.display()),
        working_dir: g.work.to_string_lossy().into_owned(),
        env: vec!["GREETING=hello".into()],
    };
    let (code, pid) = g.text(op::START_PROGRAM, &start.encode());
    assert_eq!(code, err::OK);
    let pid: u64 = pid.parse().unwrap();
    let ps = vix::ListProcesses {
        key: 0,
        offset: 0,
        pids: vec![pid],
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let info = loop {
        let (code, text) = g.text(op::LIST_PROCESSES_EX, &ps.encode());
        assert_eq!(code, err::OK);
        let list = vix::ProcInfo::parse_list(&text).unwrap();
        assert_eq!(list.len(), 1);
        if list[0].exited() {
            break list[0].clone();
        }
        assert!(Instant::now() < deadline, "never exited");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(info.exit_code, Some(3));
    assert_eq!(info.cmd.as_deref(), Some("sh"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "hello\n");
    let kill = vix::TerminateProcess {
        pid: u64::from(u32::MAX - 1),
        options: 0,
    };
    assert_eq!(
        g.text(op::TERMINATE_PROCESS, &kill.encode()).0,
        err::NO_SUCH_PROCESS
    );
    let missing = vix::StartProgram {
        program: "/nonexistent".into(),
        ..vix::StartProgram::default()
    };
    assert_eq!(
        g.text(op::START_PROGRAM, &missing.encode()).0,
        err::FILE_NOT_FOUND
    );
}

#[test]
fn the_full_process_list_comes_in_trips_when_large() {
    let mut g = guest(GuestOpsConfig::default());
    let ps = vix::ListProcesses::default();
    let (code, first) = g.text(op::LIST_PROCESSES_EX, &ps.encode());
    assert_eq!(code, err::OK);
    let mut all = String::new();
    match vix::ProcChunk::parse(&first).unwrap() {
        vix::ProcChunk::Complete(t) => all.push_str(t),
        vix::ProcChunk::First {
            key,
            mut left,
            data,
            ..
        } => {
            all.push_str(data);
            while left > 0 {
                let next = vix::ListProcesses {
                    key,
                    offset: all.len() as u32,
                    pids: Vec::new(),
                };
                let (code, text) = g.text(op::LIST_PROCESSES_EX, &next.encode());
                assert_eq!(code, err::OK);
                let vix::ProcChunk::Next { left: l, data } = vix::ProcChunk::parse(&text).unwrap()
                else {
                    panic!("expected a later trip")
                };
                all.push_str(data);
                left = l;
            }
        }
        other => panic!("unexpected {other:?}"),
    }
    let list = vix::ProcInfo::parse_list(&all).unwrap();
    let me = i64::from(std::process::id());
    assert!(list.iter().any(|p| p.pid == me));
}

#[test]
fn hgfs_over_vix_and_tclo_f() {
    let mut g = guest(GuestOpsConfig::default());
    let pkt = hgfs::build_request(hgfs::op::CREATE_SESSION_V4, 1, 0, &[0; 16]).unwrap();
    let body = vix::HgfsPacket {
        timeout: 0,
        packet: &pkt,
    }
    .encode();
    let r = g.call(
        op::HGFS_SEND_PACKET,
        flags::GUEST_RETURNS_BINARY,
        &good(),
        &body,
    );
    let reply = vix::Reply::parse(r.strip_prefix(b"OK ").unwrap(), true).unwrap();
    assert_eq!(reply.error, err::OK);
    let p = hgfs::Packet::parse(reply.data).unwrap();
    assert_eq!(p.header.status, hgfs::status::SUCCESS);
    assert_ne!(p.header.session_id, 0);
    // TCLO `f`: the same server, the packet bare.
    let r = g.ops.on_tclo(&mut NoHost, TCLO_HGFS, &pkt);
    let p = hgfs::Packet::parse(r.strip_prefix(b"OK ").unwrap()).unwrap();
    assert_eq!(p.header.status, hgfs::status::SUCCESS);
    assert_eq!(
        g.ops.capabilities(),
        [b"tools.capability.hgfs_server toolbox 1".to_vec()]
    );
}
