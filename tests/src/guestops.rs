//! Guest-operation fixtures shared by `tests/guestops.rs` and the
//! guest-operations benchmark: test users that exist only inside a private
//! mount namespace, and a launcher for Debian's vmtoolsd with its vix and
//! hgfsServer plugins under `hvsim exec`.
//!
//! The users: copies of this machine's /etc/passwd, /etc/group and
//! /etc/shadow, with root's password set and three users added, and of
//! /etc/pam.d with a `vm-agent` service added, are bind-mounted over the
//! originals by a script that runs under `unshare -m` and then execs the
//! guest agent. Nothing on the machine itself changes.
//!
//! Another guest agent gets its row in `tests/guestops.rs` and in the
//! benchmark with a launcher like [`launch_vmtoolsd`]: start it through
//! [`GuestUsers::command`] under `hvsim exec --vm vm0`, then
//! [`wait_for_guest_ops`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, stderr, Sim};

/// A test user.
#[derive(Debug, Clone)]
pub struct User {
    /// Login name.
    pub name: &'static str,
    /// Password.
    pub password: &'static str,
    /// uid (= gid).
    pub uid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// The users and the scratch directory the guest works in.
#[derive(Debug)]
pub struct GuestUsers {
    /// Scratch directory (0755), readable by the test users.
    pub dir: tempfile::TempDir,
    /// root, with a known password.
    pub root: User,
    /// An unprivileged user with a login shell.
    pub alice: User,
    /// A user whose shell (/usr/sbin/nologin) is not in /etc/shells:
    /// vmtoolsd's PAM stack (pam_shells) refuses it.
    pub noshell: User,
    /// The script that bind-mounts the files and execs its arguments.
    pub enter: PathBuf,
}

/// A SHA-512 crypt hash of `password` (`openssl passwd -6`).
fn crypt(password: &str) -> String {
    let o = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(password.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run openssl (apt-get install openssl)");
    assert!(o.status.success(), "openssl passwd: {}", stderr(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

impl GuestUsers {
    /// Write the user files and the namespace script.
    pub fn create() -> GuestUsers {
        let dir = tempfile::Builder::new()
            .prefix("hvsim-guestops")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        let user = |name, password, uid, home: &str| User {
            name,
            password,
            uid,
            home: d.join(home),
        };
        let root = User {
            home: PathBuf::from("/root"),
            ..user("root", "root-pw 'quoted\"", 0, "")
        };
        let alice = user("hvsim-alice", "alice-pw", 47011, "home/alice");
        let noshell = user("hvsim-noshell", "noshell-pw", 47012, "home/noshell");
        let etc = d.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let mut group = std::fs::read_to_string("/etc/group").unwrap();
        let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
        let mut shadow: String = shadow
            .lines()
            .filter(|l| !l.starts_with("root:"))
            .map(|l| format!("{l}\n"))
            .collect();
        shadow.push_str(&format!(
            "root:{}:19000:0:99999:7:::\n",
            crypt(root.password)
        ));
        for (u, shell) in [(&alice, "/bin/sh"), (&noshell, "/usr/sbin/nologin")] {
            std::fs::create_dir_all(&u.home).unwrap();
            std::os::unix::fs::chown(&u.home, Some(u.uid), Some(u.uid)).unwrap();
            passwd.push_str(&format!(
                "{}:x:{}:{}:test user:{}:{shell}\n",
                u.name,
                u.uid,
                u.uid,
                u.home.display()
            ));
            group.push_str(&format!("{}:x:{}:\n", u.name, u.uid));
            shadow.push_str(&format!(
                "{}:{}:19000:0:99999:7:::\n",
                u.name,
                crypt(u.password)
            ));
        }
        std::fs::write(etc.join("passwd"), passwd).unwrap();
        std::fs::write(etc.join("group"), group).unwrap();
        std::fs::write(etc.join("shadow"), shadow).unwrap();
        std::fs::set_permissions(etc.join("shadow"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        // A copy of /etc/pam.d with a `vm-agent` service like Debian's
        // `vmtoolsd` one (common-auth, pam_shells, common-account), for an
        // agent whose package ships it.
        let pam = etc.join("pam.d");
        std::fs::create_dir_all(&pam).unwrap();
        for e in std::fs::read_dir("/etc/pam.d").unwrap().flatten() {
            if let Ok(text) = std::fs::read(e.path()) {
                std::fs::write(pam.join(e.file_name()), text).unwrap();
            }
        }
        if !pam.join("vm-agent").exists() {
            std::fs::write(
                pam.join("vm-agent"),
                "@include common-auth\naccount required pam_shells.so\n@include common-account\n",
            )
            .unwrap();
        }
        let enter = d.join("enter.sh");
        std::fs::write(
            &enter,
            format!(
                "#!/bin/sh\n# Runs under unshare -m: the test users exist only here.\nset -e\n\
                 for f in passwd group shadow pam.d; do mount --bind {etc}/$f /etc/$f; done\n\
                 while [ \"$1\" = --bind ]; do mount --bind \"$2\" \"$3\"; shift 3; done\n\
                 exec \"$@\"\n",
                etc = etc.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&enter, std::fs::Permissions::from_mode(0o755)).unwrap();
        GuestUsers {
            dir,
            root,
            alice,
            noshell,
            enter,
        }
    }

    /// A command that runs `program` in a private mount namespace where the
    /// test users exist; `binds` are more (source, target) bind mounts
    /// (e.g. a PAM service file).
    pub fn command(&self, binds: &[(&Path, &Path)], program: &Path) -> Command {
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private"]).arg(&self.enter);
        for (src, dst) in binds {
            c.arg("--bind").arg(src).arg(dst);
        }
        c.arg(program);
        c
    }
}

/// A guest agent process; stopped on drop.
#[derive(Debug)]
pub struct Daemon(pub Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            crate::stop_child(c, Duration::from_secs(10));
        }
    }
}

/// An open-vm-tools file, or a panic that says how to install it.
pub fn ovt(path: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(
        p.exists(),
        "{path} is missing: install Debian's open-vm-tools (apt-get install open-vm-tools)"
    );
    p
}

/// Start Debian's vmtoolsd on `sim`'s vm0 with only its vix and hgfsServer
/// plugins (a private tools.conf and plugin directories), as the test users'
/// namespace sees it, and wait until it answers guest operations. Its log
/// is `vmtoolsd.log` in the users' scratch directory.
pub fn launch_vmtoolsd(sim: &Sim, users: &GuestUsers) -> Daemon {
    let daemon = start_vmtoolsd(sim, users, &["libvix.so", "libhgfsServer.so"]);
    let log = users.dir.path().join("vmtoolsd/vmtoolsd.log");
    wait_for_guest_ops(sim, || std::fs::read_to_string(&log).unwrap_or_default());
    daemon
}

/// Start vmtoolsd as [`launch_vmtoolsd`] does, with only these of its
/// common plugins, without waiting.
pub fn start_vmtoolsd(sim: &Sim, users: &GuestUsers, common_plugins: &[&str]) -> Daemon {
    let vmtoolsd = ovt("/usr/bin/vmtoolsd");
    let lib = "/usr/lib/x86_64-linux-gnu/open-vm-tools/plugins/common";
    let dir = users.dir.path().join("vmtoolsd");
    let (plugins, common, tmp) = (dir.join("plugins"), dir.join("common"), dir.join("tmp"));
    for d in [&plugins, &common, &tmp] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    for p in common_plugins {
        std::os::unix::fs::symlink(ovt(&format!("{lib}/{p}")), common.join(p)).unwrap();
    }
    let log = dir.join("vmtoolsd.log");
    let conf = dir.join("tools.conf");
    std::fs::write(
        &conf,
        format!(
            "[logging]\nlog = true\nvmsvc.level = message\nvmsvc.handler = file\nvmsvc.data = {log}\n\
             vix.level = message\nvix.handler = file\nvix.data = {log}\n\n\
             [guestoperations]\nuseVGAuth = false\n",
            log = log.display()
        ),
    )
    .unwrap();
    let child = users
        .command(&[], &bin("hvsim"))
        .args(["exec", "--vm", "vm0", "--"])
        .arg(&vmtoolsd)
        .args(["-n", "vmsvc", "-c"])
        .arg(&conf)
        .arg("-p")
        .arg(&plugins)
        .arg("--common-path")
        .arg(&common)
        .env("HVSIM_CONTROL", &sim.control)
        .env("TMPDIR", &tmp)
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vmtoolsd under unshare and hvsim exec");
    Daemon(Some(child))
}

/// Wait until vm0's guest answers GET_TOOLS_STATE.
pub fn wait_for_guest_ops(sim: &Sim, log: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = sim.hvsim(&["vm", "guest", "vm0", "tools-state"]);
        if o.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the guest does not answer guest operations after 30 s: {}\nguest log:\n{}",
            stderr(&o),
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Start vm-agent (this workspace's build, and its PAM helper beside it)
/// on `sim`'s vm0 under `hvsim exec`, as the test users' namespace sees it
/// (with a copy of /etc/pam.d holding the packaged `vm-agent` service),
/// and wait until it answers guest operations. Its log is
/// `vm-agent/agent.log` in the users' scratch directory.
pub fn launch_vm_agent(sim: &Sim, users: &GuestUsers) -> Daemon {
    launch_vm_agent_binary(sim, users, &bin("vm-agent"), &bin("vm-agent-auth"))
}

/// [`launch_vm_agent`] with these `vm-agent` and `vm-agent-auth` binaries
/// (the benchmark measures the shipped builds).
pub fn launch_vm_agent_binary(sim: &Sim, users: &GuestUsers, agent: &Path, auth: &Path) -> Daemon {
    let dir = users.dir.path().join("vm-agent");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let pam = dir.join("pam.d");
    let o = Command::new("cp")
        .args(["-a", "/etc/pam.d"])
        .arg(&pam)
        .output()
        .expect("copy /etc/pam.d");
    assert!(o.status.success(), "copy /etc/pam.d: {}", stderr(&o));
    std::fs::copy(
        crate::workspace().join("packaging/pam/vm-agent"),
        pam.join("vm-agent"),
    )
    .unwrap();
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\nreconnect_ms = 100\n[timesync]\nenabled = false\n[powerops]\nenabled = false\n\
             [guestinfo]\nreport_disks = false\n[guestops]\nauth_helper = \"{}\"\n",
            auth.display()
        ),
    )
    .unwrap();
    let log = dir.join("agent.log");
    let logf = std::fs::File::create(&log).unwrap();
    let child = users
        .command(&[(&pam, Path::new("/etc/pam.d"))], &bin("hvsim"))
        .args(["exec", "--vm", "vm0", "--"])
        .arg(agent)
        .arg("--config")
        .arg(&cfg)
        .env("HVSIM_CONTROL", &sim.control)
        .env("TMPDIR", &tmp)
        .env("RUST_LOG", "info")
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .expect("start vm-agent under unshare and hvsim exec");
    let daemon = Daemon(Some(child));
    wait_for_guest_ops(sim, || std::fs::read_to_string(&log).unwrap_or_default());
    daemon
}
