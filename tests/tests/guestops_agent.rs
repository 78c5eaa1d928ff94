//! vm-agent's guest operations end to end: the real `vm-agent` and its PAM
//! helper `vm-agent-auth`, a simulated host (hvsim's VM model and backdoor
//! socket, in this process) sending real encoded VIX requests over TCLO,
//! and test users that exist only inside a private mount namespace: the
//! agent runs under `unshare --mount` with bind-mounted copies of
//! /etc/passwd, shadow, group and pam.d (with the packaged
//! /etc/pam.d/vm-agent), so the machine's own accounts are never touched.
//!
//! Needs root (mount namespaces, impersonation), like the other agent tests.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::{bin, stop_child, workspace};
use hvsim::device::DeviceFacts;
use hvsim::store::Store;
use hvsim::vm::{Vm, VmInfo, VmLimits};
use protocol::hgfs;
use protocol::vix::{self, err, flags, op, Credential};

/// The test user's uid (and group); no such account exists on the machine.
const UID: u32 = 4242;
/// SHA-512 crypt of "secret" (`openssl passwd -6 -salt abcdefgh secret`).
const HASH: &str = "$6$abcdefgh$ltjgWl6579NluT/Vi1nwEvcil.G5Nbc4NiXZaNGStk8PSwGfQv72N2CKPPrVACtLtip/cZ/1GM/O6IND4WQhG.";

struct Guest {
    vm: Arc<Vm>,
    agent: Option<Child>,
    users: Users,
    home: PathBuf,
    log: PathBuf,
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(c) = self.agent.take() {
            stop_child(c, Duration::from_secs(10));
        }
    }
}

fn append(src: &str, dst: &Path, extra: &str) {
    let mut text = std::fs::read_to_string(src).unwrap_or_default();
    if !text.ends_with('\n') && !text.is_empty() {
        text.push('\n');
    }
    text.push_str(extra);
    std::fs::write(dst, text).unwrap();
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The test users' files and the namespace script; nothing on the machine.
struct Users {
    dir: tempfile::TempDir,
    home: PathBuf,
    /// `sh ns.sh PROGRAM ARGS` runs PROGRAM where the users exist.
    wrapper: PathBuf,
}

impl Users {
    fn create() -> Users {
        assert!(
            is_root(),
            "guest operation tests need root (mount namespaces)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The user must reach its home below this directory.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = d.join("home");
        let etc = d.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(UID), Some(UID)).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        append(
            "/etc/passwd",
            &etc.join("passwd"),
            &format!(
                "gopsuser:x:{UID}:{UID}:guest ops test:{h}:/bin/bash\n\
                 gopsnoshell:x:{n}:{n}:no shell:{h}:/usr/sbin/nologin\n",
                h = home.display(),
                n = UID + 1
            ),
        );
        append(
            "/etc/shadow",
            &etc.join("shadow"),
            &format!("gopsuser:{HASH}:19000:0:99999:7:::\ngopsnoshell:{HASH}:19000:0:99999:7:::\n"),
        );
        append(
            "/etc/group",
            &etc.join("group"),
            &format!("gopsuser:x:{UID}:\ngopsnoshell:x:{}:\n", UID + 1),
        );
        std::fs::set_permissions(etc.join("shadow"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        // The machine's PAM stacks plus the packaged vm-agent service.
        let pam = etc.join("pam.d");
        let o = Command::new("cp")
            .args(["-a", "/etc/pam.d"])
            .arg(&pam)
            .output()
            .unwrap();
        assert!(o.status.success(), "copy /etc/pam.d");
        std::fs::copy(
            workspace().join("packaging/pam/vm-agent"),
            pam.join("vm-agent"),
        )
        .unwrap();
        let wrapper = d.join("ns.sh");
        std::fs::write(
            &wrapper,
            format!(
                "set -e\nfor f in passwd shadow group pam.d; do mount --bind {e}/$f /etc/$f; done\n\
                 exec \"$@\"\n",
                e = etc.display()
            ),
        )
        .unwrap();
        Users { dir, home, wrapper }
    }

    /// A vm-agent config for these tests (`extra` appended).
    fn config(&self, extra: &str) -> PathBuf {
        let config = self.dir.path().join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "[agent]\nreconnect_ms = 100\n{extra}[timesync]\nenabled = false\n\
                 [powerops]\nhalt_command = \"true\"\nreboot_command = \"true\"\n\
                 [guestinfo]\nreport_disks = false\n\
                 [guestops]\nauth_helper = \"{}\"\n",
                bin("vm-agent-auth").display()
            ),
        )
        .unwrap();
        config
    }

    /// `unshare -m sh ns.sh PROGRAM`: PROGRAM sees the test users.
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "sh"])
            .arg(&self.wrapper)
            .arg(program);
        c
    }
}

fn start() -> Guest {
    let users = Users::create();
    let d = users.dir.path();
    // The host: one VM, its backdoor socket served by this process.
    let store = Arc::new(Store::in_memory().unwrap());
    let sock = d.join("backdoor.sock");
    let info = VmInfo {
        name: "vm0".into(),
        uuid: [7; 16],
        memory_mb: 1024,
        backdoor_socket: sock.clone(),
        clipboard: false,
        model: "VMware Virtual Platform".into(),
    };
    let limits = VmLimits {
        channels: Default::default(),
        max_guest_vars: 256,
    };
    let vm = Arc::new(Vm::new(info, limits, store, 1).unwrap());
    let facts = DeviceFacts {
        uuid: [7; 16],
        memory_mb: 1024,
        mhz: 2000,
        tsc_hz: 2_000_000_000,
        build: 1,
        clock_offset_secs: 0,
        hw_version: 19,
    };
    hvsim::socket::spawn(vm.clone(), facts, UnixListener::bind(&sock).unwrap()).unwrap();

    let config = users.config("vsock = false\n");
    let log = d.join("agent.log");
    let logf = std::fs::File::create(&log).unwrap();
    let agent = users
        .command(&bin("vm-agent"))
        .arg("--backdoor")
        .arg(format!("unix:{}", sock.display()))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "debug")
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("start vm-agent under unshare");
    let g = Guest {
        vm,
        agent: Some(agent),
        home: users.home.clone(),
        users,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !g.vm.tools_running() {
        assert!(
            Instant::now() < deadline,
            "vm-agent never polled TCLO:\n{}",
            g.agent_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    g
}

impl Guest {
    fn agent_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send one VIX request; the VIX reply after the TCLO "OK ".
    fn vix(&self, opcode: u32, common: u8, cred: &Credential, body: &[u8]) -> Vec<u8> {
        let msg = vix::build_request(opcode, common, 1, cred, body).unwrap();
        let reply = self
            .vm
            .tclo_raw(&vix::tclo_command("e2e", &msg), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}\nvm-agent log:\n{}", self.agent_log()));
        reply
            .strip_prefix(b"OK ")
            .unwrap_or_else(|| panic!("not OK: {:?}", String::from_utf8_lossy(&reply)))
            .to_vec()
    }

    fn text(&self, opcode: u32, cred: &Credential, body: &[u8]) -> (u64, String) {
        let r = self.vix(opcode, 0, cred, body);
        let r = vix::Reply::parse(&r, false).unwrap();
        (r.error, r.text())
    }

    fn hgfs(&self, cred: &Credential, packet: &[u8]) -> (u64, Vec<u8>) {
        let body = vix::HgfsPacket { timeout: 0, packet }.encode();
        let r = self.vix(
            op::HGFS_SEND_PACKET,
            flags::GUEST_RETURNS_BINARY,
            cred,
            &body,
        );
        let r = vix::Reply::parse(&r, true).unwrap();
        (r.error, r.data.to_vec())
    }
}

fn user() -> Credential {
    Credential::name_password("gopsuser", "secret")
}

fn mkdir(path: &Path) -> Vec<u8> {
    vix::CreateDirectory {
        file_options: 0,
        path: path.to_string_lossy().into_owned(),
        create_parents: true,
    }
    .encode()
}

#[test]
fn logins_are_checked_by_pam_and_operations_run_as_the_user() {
    let g = start();
    let target = g.home.join("made/by/vix");
    // Wrong password, unknown user, a user without a login shell
    // (pam_shells in the packaged stack): all refused, nothing made.
    for cred in [
        Credential::name_password("gopsuser", "wrong"),
        Credential::name_password("gopsnobody", "secret"),
        Credential::name_password("gopsnoshell", "secret"),
    ] {
        let (code, _) = g.text(op::CREATE_DIRECTORY_EX, &cred, &mkdir(&target));
        assert_eq!(code, err::INVALID_LOGIN_CREDENTIALS, "{cred:?}");
    }
    assert!(!target.exists());
    // The right one: made, and owned by the user (impersonated).
    let (code, _) = g.text(op::CREATE_DIRECTORY_EX, &user(), &mkdir(&target));
    assert_eq!(code, err::OK, "log:\n{}", g.agent_log());
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), UID);
    // The user cannot write where it has no permission: EACCES → 13.
    let private = g.users.dir.path().join("root-only");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, _) = g.text(op::CREATE_DIRECTORY_EX, &user(), &mkdir(&private.join("x")));
    assert_eq!(code, err::FILE_ACCESS_ERROR);
    // A program runs as the user, in its home, with the given environment.
    let start = vix::StartProgram {
        start_minimized: false,
        program: "/bin/sh".into(),
        arguments: "-c 'echo $(id -u) $(pwd) $X > out'".into(),
        working_dir: String::new(),
        env: vec!["X=from-host".into()],
    };
    let (code, pid) = g.text(op::START_PROGRAM, &user(), &start.encode());
    assert_eq!(code, err::OK);
    let ps = vix::ListProcesses {
        key: 0,
        offset: 0,
        pids: vec![pid.parse().unwrap()],
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, text) = g.text(op::LIST_PROCESSES_EX, &user(), &ps.encode());
        assert_eq!(code, err::OK);
        let list = vix::ProcInfo::parse_list(&text).unwrap();
        if list.first().is_some_and(|p| p.exited()) {
            assert_eq!(list[0].exit_code, Some(0));
            assert_eq!(list[0].user, "gopsuser");
            break;
        }
        assert!(Instant::now() < deadline, "program never ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = std::fs::read_to_string(g.home.join("out")).unwrap();
    assert_eq!(out, format!("{UID} {} from-host\n", g.home.display()));
}

#[test]
fn upload_run_and_download_with_hvsims_client() {
    let g = start();
    let host = hvsim::guestops::Guest::new(&*g.vm, "gopsuser", "secret");
    let path = g.home.join("upload.bin");
    let ps = path.to_string_lossy().into_owned();
    // Upload (INITIATE_FILE_TRANSFER_TO_GUEST + HGFS writes), mode kept.
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let opts = hvsim::guestops::UploadOptions {
        overwrite: false,
        mode: Some(0o640),
    };
    let n = host
        .upload(&mut &data[..], &ps, &opts, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", g.agent_log()));
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (UID, 0o640));
    // Run through the shell with redirections; the output comes back.
    let spec = hvsim::guestops::RunSpec {
        program: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            "wc -c < upload.bin; echo oops >&2; exit 3".into(),
        ],
        working_dir: String::new(),
        env: Vec::new(),
        timeout: Some(Duration::from_secs(20)),
    };
    let (mut out, mut errout) = (Vec::new(), Vec::new());
    let outcome = host
        .run(&spec, &mut out, &mut errout)
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", g.agent_log()));
    assert_eq!(outcome.exit_code, 3);
    assert_eq!(String::from_utf8_lossy(&out).trim(), "1000000");
    assert_eq!(String::from_utf8_lossy(&errout), "oops\n");
    // Download (INITIATE_FILE_TRANSFER_FROM_GUEST + HGFS reads).
    let mut back = Vec::new();
    let (n, info) = host
        .download(&ps, &mut back, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", g.agent_log()));
    assert_eq!(n, data.len() as u64);
    assert_eq!(back, data);
    assert_eq!(info.perm & 0o777, 0o640);
    // A bad login on an HGFS packet reads "no permission" (vmtoolsd).
    let pkt = hgfs::build_request(hgfs::op::CREATE_SESSION_V4, 3, 0, &[0; 16]).unwrap();
    let bad = Credential::name_password("gopsuser", "wrong");
    assert_eq!(g.hgfs(&bad, &pkt).0, err::GUEST_USER_PERMISSIONS);
    // The right login gets a session, in the binary reply form.
    let (code, reply) = g.hgfs(&user(), &pkt);
    assert_eq!(code, err::OK);
    let p = hgfs::Packet::parse(&reply).unwrap();
    assert_eq!(p.header.status, hgfs::status::SUCCESS);
    assert_ne!(p.header.session_id, 0);
}

/// Under `hvsim exec` (real port I/O trapped, TCLO pushed over vsock) with
/// `hvsim vm guest` as the host's client: run, upload, download, a refused
/// login.
#[test]
fn hvsim_vm_guest_against_vm_agent_under_hvsim_exec() {
    let users = Users::create();
    let sim = e2e_tests::Sim::start();
    let log = users.dir.path().join("agent.log");
    let logf = std::fs::File::create(&log).unwrap();
    let agent = users
        .command(&bin("hvsim"))
        .args(["exec", "--vm", "vm0", "--"])
        .arg(bin("vm-agent"))
        .arg("--config")
        .arg(users.config(""))
        .env("HVSIM_CONTROL", &sim.control)
        .env("RUST_LOG", "debug")
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("start vm-agent under unshare and hvsim exec");
    let _agent = Daemon(Some(agent));
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let guest = |password: &str, args: &[&str]| {
        Command::new(bin("hvsim"))
            .args(["vm", "guest", "vm0", "--user", "gopsuser"])
            .args(args)
            .env("HVSIM_CONTROL", &sim.control)
            .env("HVSIM_GUEST_PASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .expect("run hvsim vm guest")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !guest("secret", &["tools-state"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "vm-agent does not answer guest operations:\n{}",
            agent_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = guest(
        "secret",
        &[
            "run",
            "--",
            "/bin/sh",
            "-c",
            "id -un; pwd; echo err >&2; exit 3",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}\n{}",
        e2e_tests::stderr(&o),
        agent_log()
    );
    assert_eq!(
        e2e_tests::stdout(&o),
        format!("gopsuser\n{}\n", users.home.display())
    );
    assert_eq!(e2e_tests::stderr(&o), "err\n");
    let local = users.dir.path().join("local.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 256) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o604)).unwrap();
    let remote = users.home.join("copy.bin");
    let o = guest(
        "secret",
        &["upload", local.to_str().unwrap(), remote.to_str().unwrap()],
    );
    assert!(
        o.status.success(),
        "{}\n{}",
        e2e_tests::stderr(&o),
        agent_log()
    );
    assert_eq!(std::fs::read(&remote).unwrap(), data);
    assert_eq!(std::fs::metadata(&remote).unwrap().mode() & 0o777, 0o604);
    let back = users.dir.path().join("back.bin");
    let o = guest(
        "secret",
        &["download", remote.to_str().unwrap(), back.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", e2e_tests::stderr(&o));
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let o = guest("wrong", &["mkdir", users.home.join("x").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!users.home.join("x").exists());
}

/// A guest agent process; stopped on drop.
struct Daemon(Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            stop_child(c, Duration::from_secs(10));
        }
    }
}
