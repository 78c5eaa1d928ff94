//! Guest operations (`hvsim vm guest ...`: VIX over TCLO, HGFS over VIX
//! opcode 84) against a real guest agent under `hvsim exec`.
//!
//! The checks are tables that run against any guest: each `#[test]` below
//! is a launcher (start the agent on vm0 as the test users' namespace sees
//! it) and a table, so another guest agent is one more pair of lines. Debian's vmtoolsd (open-vm-tools
//! 12.2 with its vix and hgfsServer plugins) is the reference: hvsim is
//! judged by the real implementation. vm-agent (with its PAM helper and the
//! packaged `/etc/pam.d/vm-agent`) runs the same tables. The test users
//! exist only inside the agent's private mount namespace (see
//! `e2e_tests::guestops`).

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use e2e_tests::guestops::{
    launch_vm_agent, launch_vmtoolsd, start_vmtoolsd, Daemon, GuestUsers, User,
};
use e2e_tests::{bin, stderr, stdout, Sim};
use serde_json::Value;

/// Starts a guest agent on vm0 of the simulator.
type Launcher = fn(&Sim, &GuestUsers) -> Daemon;

/// One check of the matrix.
type Check = (&'static str, fn(&Ctx));

/// What the checks work with.
struct Ctx {
    sim: Sim,
    users: GuestUsers,
    _guest: Daemon,
}

impl Ctx {
    fn start(launch: Launcher) -> Ctx {
        let sim = Sim::start();
        let users = GuestUsers::create();
        let guest = launch(&sim, &users);
        Ctx {
            sim,
            users,
            _guest: guest,
        }
    }

    /// `hvsim vm guest vm0 --user U ARGS` with U's password in the
    /// environment.
    fn cmd(&self, user: &User, args: &[&str]) -> Command {
        let mut c = Command::new(bin("hvsim"));
        c.args(["vm", "guest", "vm0", "--user", user.name])
            .args(args)
            .env("HVSIM_CONTROL", &self.sim.control)
            .env("HVSIM_GUEST_PASSWORD", user.password)
            .stdin(Stdio::null());
        c
    }

    fn g(&self, user: &User, args: &[&str]) -> Output {
        self.cmd(user, args).output().expect("run hvsim vm guest")
    }

    /// As root; must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_as(&self.users.root, args)
    }

    fn ok_as(&self, user: &User, args: &[&str]) -> String {
        let o = self.g(user, args);
        assert!(
            o.status.success(),
            "hvsim vm guest {args:?} as {}: {}{}",
            user.name,
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Must fail with exit code 1 and a message containing `want`.
    fn fails(&self, user: &User, args: &[&str], want: &str) {
        let o = self.g(user, args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "hvsim vm guest {args:?} as {} should fail: {}{}",
            user.name,
            stdout(&o),
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(want),
            "hvsim vm guest {args:?} as {}: expected {want:?} in {:?}",
            user.name,
            stderr(&o)
        );
    }

    /// A fresh directory for one check (mode 0755, root's).
    fn work(&self, name: &str) -> PathBuf {
        let d = self.users.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Run every check of `table` against one guest started by `launch`.
fn run_table(launch: Launcher, table: &[Check]) {
    let ctx = Ctx::start(launch);
    for (name, check) in table {
        let t = Instant::now();
        eprintln!("guestops check: {name}");
        check(&ctx);
        eprintln!(
            "guestops check: {name} passed in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
}

/// Everything but the large transfers.
const MATRIX: &[Check] = &[
    (
        "run: exit codes 0, 3, 127 and a missing program",
        run_exit_codes,
    ),
    (
        "run: stdout, stderr and argument quoting",
        run_output_and_quoting,
    ),
    (
        "run: redirections, environment, working directory, user",
        run_env_cwd_user,
    ),
    ("ps and kill", ps_and_kill),
    ("ls pages past one 64 KiB reply", ls_pages_past_64k),
    (
        "mkdir -p, mv, rm, rmdir -r, mktemp",
        files_mkdir_mv_rm_mktemp,
    ),
    ("env", env_vars),
    (
        "wrong password, unknown user, user without a login shell",
        credentials_refused,
    ),
    ("permission denied for an unprivileged user", permissions),
    ("path traversal and symlinks", traversal_and_symlinks),
];

/// Uploads and downloads of 0 B, 1 B, 63 KiB and 64 MiB.
const TRANSFERS: &[Check] = &[
    (
        "upload/download byte-exact with modes kept",
        transfers_byte_exact,
    ),
    (
        "upload/download through stdin/stdout, as a user, no-clobber",
        transfers_edges,
    ),
];

#[test]
fn vmtoolsd_guest_operations() {
    run_table(launch_vmtoolsd, MATRIX);
}

#[test]
fn vmtoolsd_file_transfers() {
    run_table(launch_vmtoolsd, TRANSFERS);
}

#[test]
fn vm_agent_guest_operations() {
    run_table(launch_vm_agent, MATRIX);
}

#[test]
fn vm_agent_file_transfers() {
    run_table(launch_vm_agent, TRANSFERS);
}

/// Without a guest agent, every operation says so at once.
#[test]
fn guest_operations_without_tools_say_so() {
    let sim = Sim::start();
    let t = Instant::now();
    let o = Command::new(bin("hvsim"))
        .args(["vm", "guest", "vm0", "ls", "/"])
        .env("HVSIM_CONTROL", &sim.control)
        .env("HVSIM_GUEST_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the guest tools are not running in vm0"),
        "{}",
        stderr(&o)
    );
    let o = Command::new(bin("hvsim"))
        .args(["vm", "guest", "vm0", "run", "--", "/bin/true"])
        .env("HVSIM_CONTROL", &sim.control)
        .env("HVSIM_GUEST_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
    eprintln!("answered in {:.2} s", t.elapsed().as_secs_f64());
}

/// vmtoolsd without its vix plugin: the operations say what is missing.
#[test]
fn vmtoolsd_without_vix_plugin_says_so() {
    let sim = Sim::start();
    let users = GuestUsers::create();
    let _guest = start_vmtoolsd(&sim, &users, &["libhgfsServer.so"]);
    sim.eventually("vmtoolsd polls TCLO", || {
        sim.show("vm0")["tools"]["status"] == "running"
    });
    let o = sim.hvsim(&["vm", "guest", "vm0", "tools-state"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("do not support guest operations (no vix plugin?)"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------
// The checks.

fn run_exit_codes(c: &Ctx) {
    let root = &c.users.root;
    for (args, code) in [
        (&["run", "--", "/bin/true"][..], 0),
        (&["run", "--", "/bin/sh", "-c", "exit 3"][..], 3),
        (
            &["run", "--", "/bin/sh", "-c", "no-such-command-hvsim"][..],
            127,
        ),
    ] {
        let o = c.g(root, args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
    }
    let o = c.g(
        root,
        &["run", "--", "/bin/sh", "-c", "no-such-command-hvsim"],
    );
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    // A program that does not exist is refused before it starts: the
    // operation fails (255), saying so.
    let o = c.g(root, &["run", "--", "/no/such/program"]);
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no such file or directory in the guest"),
        "{}",
        stderr(&o)
    );
}

fn run_output_and_quoting(c: &Ctx) {
    let o = c.g(
        &c.users.root,
        &["run", "--", "/bin/sh", "-c", "echo out; echo err >&2"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    // Each argument is one word; nothing is expanded by the guest shell.
    let out = c.ok(&["run", "--", "/bin/echo", "a  b", "it's", "$HOME", "*"]);
    assert_eq!(out, "a  b it's $HOME *\n");
    // Output larger than one HGFS chunk comes back whole.
    let out = c.ok(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "head -c 200000 /dev/zero | tr '\\0' x",
    ]);
    assert_eq!(out.len(), 200_000);
    assert!(out.bytes().all(|b| b == b'x'));
}

fn run_env_cwd_user(c: &Ctx) {
    let w = c.work("run-cwd");
    let out = c.ok(&[
        "run",
        "--cwd",
        p(&w),
        "--env",
        "HVSIM_T=value one",
        "--",
        "/bin/sh",
        "-c",
        "echo \"$HVSIM_T\" > f.txt; pwd",
    ]);
    assert_eq!(out, format!("{}\n", w.display()));
    assert_eq!(
        std::fs::read_to_string(w.join("f.txt")).unwrap(),
        "value one\n"
    );
    // Programs run as the user, in the user's home by default.
    let alice = &c.users.alice;
    let out = c.ok_as(alice, &["run", "--", "/bin/sh", "-c", "id -u; pwd"]);
    assert_eq!(out, format!("{}\n{}\n", alice.uid, alice.home.display()));
}

fn ps_and_kill(c: &Ctx) {
    let out = c.ok(&[
        "run",
        "--",
        "/bin/sh",
        "-c",
        "sleep 60 >/dev/null 2>&1 & echo $!",
    ]);
    let pid: i64 = out.trim().parse().expect("a pid");
    let ps: Value = serde_json::from_str(&c.ok(&["ps", "--json"])).unwrap();
    let entry = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} missing from {ps:#}"));
    assert!(entry["name"].as_str().unwrap().contains("sleep"), "{entry}");
    assert_eq!(entry["user"], "root");
    c.ok(&["kill", &pid.to_string()]);
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    };
    c.sim.eventually("the killed process is gone", gone);
    c.fails(&c.users.root, &["kill", "999999999"], "no such process");
}

fn ls_pages_past_64k(c: &Ctx) {
    let w = c.work("ls");
    let mut want = BTreeSet::new();
    for i in 0..1500 {
        let name = format!("entry-with-a-name-long-enough-to-need-several-pages-{i:04}");
        std::fs::write(w.join(&name), b"").unwrap();
        want.insert(name);
    }
    std::fs::write(w.join("five"), b"12345").unwrap();
    std::fs::set_permissions(w.join("five"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::create_dir(w.join("subdir")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", w.join("link")).unwrap();
    for n in ["five", "subdir", "link"] {
        want.insert(n.to_string());
    }
    let v: Value = serde_json::from_str(&c.ok(&["ls", "--json", p(&w)])).unwrap();
    let entries = v.as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .filter(|n| *n != "." && *n != "..")
        .collect();
    let got: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    assert_eq!(got.len(), names.len(), "no entry twice across pages");
    assert_eq!(got, want);
    let find = |n: &str| entries.iter().find(|e| e["name"] == n).unwrap();
    assert_eq!(find("five")["type"], "file");
    assert_eq!(find("five")["size"], 5);
    assert_eq!(find("five")["mode"].as_u64().unwrap() & 0o777, 0o640);
    assert_eq!(find("subdir")["type"], "dir");
    assert_eq!(find("link")["type"], "symlink");
    assert_eq!(find("link")["target"], "/etc/hostname");
    // The text form lists them all too.
    let text = c.ok(&["ls", p(&w)]);
    assert!(
        text.lines().count() >= 1503,
        "{} lines",
        text.lines().count()
    );
    c.fails(
        &c.users.root,
        &["ls", p(&w.join("missing"))],
        "no such file or directory",
    );
}

fn files_mkdir_mv_rm_mktemp(c: &Ctx) {
    let root = &c.users.root;
    let w = c.work("files");
    let deep = w.join("a/b/c");
    c.fails(root, &["mkdir", p(&deep)], "no such file or directory");
    c.ok(&["mkdir", "-p", p(&deep)]);
    assert!(deep.is_dir());
    c.ok(&["mkdir", p(&w.join("a/b/d"))]);
    assert!(w.join("a/b/d").is_dir());
    // mv: a file, a directory, no-clobber onto an existing file.
    std::fs::write(w.join("f1"), b"one").unwrap();
    std::fs::write(w.join("f2"), b"two").unwrap();
    c.ok(&["mv", p(&w.join("f1")), p(&w.join("f3"))]);
    assert!(!w.join("f1").exists());
    assert_eq!(std::fs::read(w.join("f3")).unwrap(), b"one");
    c.fails(
        root,
        &["mv", "-n", p(&w.join("f3")), p(&w.join("f2"))],
        "already exists",
    );
    assert_eq!(std::fs::read(w.join("f2")).unwrap(), b"two");
    c.ok(&["mv", p(&w.join("a/b")), p(&w.join("moved"))]);
    assert!(w.join("moved/c").is_dir());
    // rm: files only; rmdir: empty unless -r.
    c.fails(root, &["rm", p(&w.join("moved"))], "not a regular file");
    c.ok(&["rm", p(&w.join("f3"))]);
    assert!(!w.join("f3").exists());
    c.fails(root, &["rm", p(&w.join("f3"))], "no such file or directory");
    c.fails(root, &["rmdir", p(&w.join("moved"))], "not empty");
    c.ok(&["rmdir", "-r", p(&w.join("moved"))]);
    assert!(!w.join("moved").exists());
    c.ok(&["rmdir", p(&w.join("a"))]);
    assert!(!w.join("a").exists());
    // mktemp: a new file, a new directory, where asked.
    let f = c.ok(&["mktemp"]);
    let f = Path::new(f.trim());
    assert!(f.is_file(), "{}", f.display());
    std::fs::remove_file(f).unwrap();
    let d = c.ok(&[
        "mktemp",
        "-d",
        "--prefix",
        "pre-",
        "--suffix",
        ".x",
        "--dir",
        p(&w),
    ]);
    let d = Path::new(d.trim());
    assert!(d.is_dir(), "{}", d.display());
    assert_eq!(d.parent().unwrap(), w);
    let n = d.file_name().unwrap().to_str().unwrap();
    assert!(n.starts_with("pre-") && n.ends_with(".x"), "{n}");
}

fn env_vars(c: &Ctx) {
    let alice = &c.users.alice;
    let out = c.ok_as(alice, &["env", "HOME"]);
    assert_eq!(out, format!("HOME={}\n", alice.home.display()));
    let all = c.ok(&["env"]);
    assert!(all.lines().any(|l| l.starts_with("PATH=")), "{all}");
}

fn credentials_refused(c: &Ctx) {
    let refused = "refused the user name or password";
    let wrong = User {
        password: "not-the-password",
        ..c.users.alice.clone()
    };
    c.fails(&wrong, &["env", "HOME"], refused);
    let unknown = User {
        name: "hvsim-no-such-user",
        ..c.users.alice.clone()
    };
    c.fails(&unknown, &["env", "HOME"], refused);
    c.fails(&c.users.noshell, &["env", "HOME"], refused);
    // run says so too, with its own exit code.
    let o = c.g(&wrong, &["run", "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains(refused), "{}", stderr(&o));
    // No password at all: the CLI says where to put it.
    let o = Command::new(bin("hvsim"))
        .args(["vm", "guest", "vm0", "env"])
        .env("HVSIM_CONTROL", &c.sim.control)
        .env_remove("HVSIM_GUEST_PASSWORD")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--password-file"), "{}", stderr(&o));
}

fn permissions(c: &Ctx) {
    let alice = &c.users.alice;
    let w = c.work("perm");
    let closed = w.join("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::write(closed.join("secret"), b"s").unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(w.join("public"), b"readable by all").unwrap();
    std::fs::set_permissions(w.join("public"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let denied = "permission denied";
    c.fails(alice, &["ls", p(&closed)], denied);
    c.fails(alice, &["mkdir", p(&closed.join("x"))], denied);
    c.fails(alice, &["mkdir", p(&w.join("x"))], denied);
    c.fails(alice, &["rm", p(&w.join("public"))], denied);
    let local = c.users.dir.path().join("perm-local");
    std::fs::write(&local, b"data").unwrap();
    c.fails(alice, &["upload", p(&local), p(&w.join("new"))], denied);
    c.fails(alice, &["upload", p(&local), p(&w.join("public"))], denied);
    assert_eq!(std::fs::read(w.join("public")).unwrap(), b"readable by all");
    // Readable files download; the closed one does not.
    let got = c.users.dir.path().join("perm-got");
    c.ok_as(alice, &["download", p(&w.join("public")), p(&got)]);
    assert_eq!(std::fs::read(&got).unwrap(), b"readable by all");
    c.fails(
        alice,
        &["download", p(&closed.join("secret")), p(&got)],
        denied,
    );
    assert!(!got.exists(), "a failed download leaves no file");
    // Root may do all of it.
    c.ok(&["ls", p(&closed)]);
}

fn traversal_and_symlinks(c: &Ctx) {
    let alice = &c.users.alice;
    let w = c.work("links");
    let closed = w.join("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    // ".." is resolved by the guest as the user: no way around a
    // permission by walking up.
    let around = format!("{}/../../links/closed", alice.home.display());
    c.fails(alice, &["ls", &around], "permission denied");
    let up = format!("{}/../links", w.display());
    assert!(c.ok(&["ls", &up]).contains("closed"));
    // File transfers name files by HGFS path components, where ".." has no
    // place: refused before anything reaches the guest.
    let local = c.users.dir.path().join("trav-local");
    std::fs::write(&local, b"x").unwrap();
    c.fails(
        &c.users.root,
        &["upload", p(&local), &format!("{}/../x", w.display())],
        "..",
    );
    // Symlinks: listed (not followed) with their target, not followed for
    // transfers, no way into a closed directory through one, rm removes the
    // link.
    std::os::unix::fs::symlink(&closed, w.join("to-closed")).unwrap();
    std::os::unix::fs::symlink(w.join("target"), w.join("to-file")).unwrap();
    std::fs::write(w.join("target"), b"target data").unwrap();
    // Listing a link lists the link itself, as lstat sees it.
    let v: Value =
        serde_json::from_str(&c.ok_as(alice, &["ls", "--json", p(&w.join("to-closed"))])).unwrap();
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["type"], "symlink");
    assert_eq!(v[0]["target"], p(&closed));
    c.fails(
        alice,
        &["ls", &format!("{}/", w.join("to-closed").display())],
        "permission denied",
    );
    c.fails(
        &c.users.root,
        &["download", p(&w.join("to-file")), p(&local)],
        "invalid argument",
    );
    c.ok(&["rm", p(&w.join("to-closed"))]);
    assert!(w.join("to-closed").symlink_metadata().is_err());
    assert!(closed.is_dir());
}

// ---------------------------------------------------------------------------
// Transfers.

/// Deterministic bytes (xorshift) of a given length.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn transfers_byte_exact(c: &Ctx) {
    let w = c.work("xfer");
    let local = c.work("xfer-local");
    for (i, (len, mode)) in [
        (0usize, 0o600u32),
        (1, 0o640),
        (63 * 1024, 0o755),
        (64 << 20, 0o604),
    ]
    .into_iter()
    .enumerate()
    {
        let data = bytes(len, i as u64 + 7);
        let src = local.join(format!("src{i}"));
        std::fs::write(&src, &data).unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(mode)).unwrap();
        let gp = w.join(format!("up{i}"));
        let t = Instant::now();
        c.ok(&["upload", p(&src), p(&gp)]);
        let up = t.elapsed();
        assert!(std::fs::read(&gp).unwrap() == data, "{len} bytes uploaded");
        let md = std::fs::metadata(&gp).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, mode, "mode after upload");
        // Download a file with another mode.
        let other = mode ^ 0o044;
        std::fs::set_permissions(&gp, std::fs::Permissions::from_mode(other)).unwrap();
        let dst = local.join(format!("dst{i}"));
        let t = Instant::now();
        c.ok(&["download", p(&gp), p(&dst)]);
        let down = t.elapsed();
        assert!(
            std::fs::read(&dst).unwrap() == data,
            "{len} bytes downloaded"
        );
        let md = std::fs::metadata(&dst).unwrap();
        assert_eq!(
            md.permissions().mode() & 0o7777,
            other,
            "mode after download"
        );
        eprintln!(
            "  {len} bytes: upload {:.2} s, download {:.2} s",
            up.as_secs_f64(),
            down.as_secs_f64()
        );
        std::fs::remove_file(&src).unwrap();
        std::fs::remove_file(&dst).unwrap();
        std::fs::remove_file(&gp).unwrap();
    }
}

fn transfers_edges(c: &Ctx) {
    let alice = &c.users.alice;
    let w = c.work("edges");
    // stdin → guest, guest → stdout.
    let data = bytes(100_000, 99);
    let gp = w.join("from-stdin");
    let mut child = c
        .cmd(&c.users.root, &["upload", "-", p(&gp)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&data).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&gp).unwrap() == data);
    let o = c.g(&c.users.root, &["download", p(&gp), "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == data);
    // No-clobber keeps an existing file.
    let src = c.users.dir.path().join("edges-src");
    std::fs::write(&src, b"new").unwrap();
    c.fails(
        &c.users.root,
        &["upload", "-n", p(&src), p(&gp)],
        "already exists",
    );
    assert!(std::fs::read(&gp).unwrap() == data);
    // A user's upload belongs to the user.
    let mine = alice.home.join("mine");
    c.ok_as(alice, &["upload", p(&src), p(&mine)]);
    let md = std::fs::metadata(&mine).unwrap();
    assert_eq!((md.uid(), md.gid()), (alice.uid, alice.uid));
    assert_eq!(std::fs::read(&mine).unwrap(), b"new");
    // A directory is not a file to download.
    c.fails(
        &c.users.root,
        &["download", p(&w), p(&src)],
        "not a regular file",
    );
}
