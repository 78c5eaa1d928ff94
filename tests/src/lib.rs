//! End-to-end test harness: start a fresh `hvsim serve` (temp state dir, its
//! own sockets) per test, run guest programs and clients against it, tear it
//! down on drop.
//!
//! The binaries come from the workspace's target directory; build them first
//! with `cargo build --workspace --bins` (the README's test command does).

pub mod httpbench;
pub mod keys;
pub mod loopfs;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod guestops;

/// A binary built by this workspace.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/<bench> → target/<profile>/<name>;
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let here = exe.parent().expect("target dir");
    let p = match here.join(name) {
        p if p.exists() => p,
        _ => here.parent().expect("target dir").join(name),
    };
    assert!(
        p.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins`",
        p.display()
    );
    p
}

/// The shipped build of a guest binary (`vm-agent`, `vm-rpctool`): static,
/// LTO, the `guest` profile, as `scripts/guest-build.sh` and the packages
/// build it. The benchmarks measure this one when it exists and fall back to
/// [`bin`] (saying so on stderr) when it does not.
pub fn guest_bin(name: &str) -> PathBuf {
    let shipped = workspace()
        .join("target/x86_64-unknown-linux-gnu/guest")
        .join(name);
    if shipped.exists() {
        return shipped;
    }
    let p = bin(name);
    eprintln!(
        "note: {} has no shipped build (scripts/guest-build.sh); measuring {}",
        name,
        p.display()
    );
    p
}

/// How guest programs reach the simulator in [`Sim::rpctool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frontend {
    /// The socket transport (`VM_BACKDOOR=unix:PATH`), the default.
    Socket,
    /// `hvsim exec`: real port I/O, trapped and emulated.
    Trap,
}

/// The frontend `HVSIM_E2E_FRONTEND` names (`socket`, the default, or `trap`).
pub fn frontend() -> Frontend {
    match std::env::var("HVSIM_E2E_FRONTEND").as_deref() {
        Ok("trap") => Frontend::Trap,
        Ok("socket") | Ok("") | Err(_) => Frontend::Socket,
        Ok(other) => panic!("HVSIM_E2E_FRONTEND={other:?}: use socket or trap"),
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct Sim {
    /// Scratch directory holding config, state and sockets.
    pub dir: tempfile::TempDir,
    /// The control socket.
    pub control: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    opts: SimOptions,
}

/// How [`Sim::with_options`] starts `hvsim serve`.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Run it under `prlimit --nofile=SOFT:HARD`.
    pub nofile: Option<(u64, u64)>,
    /// `RUST_LOG` (default `debug`).
    pub log_level: Option<String>,
    /// Run it in a network namespace of its own (`unshare -rn`, loopback
    /// up): its default TCP and UDP ports collide with no other test.
    pub netns: bool,
}

impl Sim {
    /// A simulator with the embedded default config (one VM, vm0).
    pub fn start() -> Sim {
        Sim::with_config("[[vm]]\nname = \"vm0\"\n")
    }

    /// A simulator with this config text (the control socket is added).
    pub fn with_config(toml: &str) -> Sim {
        Sim::with_config_in(Sim::tempdir(), toml)
    }

    /// Like [`Sim::with_config`], in a directory prepared by the caller (for
    /// files the config names).
    pub fn with_config_in(dir: tempfile::TempDir, toml: &str) -> Sim {
        Sim::try_with_options(dir, toml, SimOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A simulator with this config text, started as `opts` say.
    pub fn with_options(toml: &str, opts: SimOptions) -> Sim {
        Sim::try_with_options(Sim::tempdir(), toml, opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A fresh scratch directory for [`Sim::try_with_options`].
    pub fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("hvsim-t")
            .tempdir()
            .expect("tempdir")
    }

    /// Like [`Sim::with_options`] in `dir`; when `hvsim serve` exits at
    /// start, the error says how, with what it logged.
    pub fn try_with_options(
        dir: tempfile::TempDir,
        toml: &str,
        opts: SimOptions,
    ) -> Result<Sim, String> {
        let control = dir.path().join("control.sock");
        let config = dir.path().join("hvsim.toml");
        std::fs::write(
            &config,
            format!("control_socket = \"{}\"\n{toml}", control.display()),
        )
        .expect("write config");
        let mut sim = Sim {
            dir,
            control,
            config,
            child: None,
            opts,
        };
        sim.try_spawn()?;
        Ok(sim)
    }

    fn spawn(&mut self) {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("hvsim.log"))
            .expect("log file");
        // unshare and prlimit exec what follows: the child is hvsim itself.
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if self.opts.netns {
            argv.extend(
                [
                    "unshare",
                    "-rn",
                    "sh",
                    "-c",
                    "ip link set lo up && exec \"$0\" \"$@\"",
                ]
                .map(Into::into),
            );
        }
        if let Some((soft, hard)) = self.opts.nofile {
            argv.push("prlimit".into());
            argv.push(format!("--nofile={soft}:{hard}").into());
            argv.push("--".into());
        }
        argv.push(bin("hvsim").into());
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(self.dir.path().join("state"))
            .env(
                "RUST_LOG",
                self.opts.log_level.as_deref().unwrap_or("debug"),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start hvsim serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if UnixStream::connect(&self.control).is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("hvsim serve exited with {status}:\n{}", self.log()));
            }
            if Instant::now() >= deadline {
                return Err(format!("hvsim serve did not start:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the simulator logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hvsim.log")).unwrap_or_default()
    }

    /// Kill the simulator with SIGKILL (no clean shutdown) and start it again
    /// on the same state.
    pub fn kill9_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    /// The process id of the running simulator.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A VM's backdoor socket.
    pub fn socket(&self, vm: &str) -> PathBuf {
        let v = self
            .control(serde_json::json!({"op": "backdoor", "vm": vm}))
            .expect("backdoor socket");
        PathBuf::from(v["socket"].as_str().expect("socket path"))
    }

    /// `VM_BACKDOOR` value for a VM.
    pub fn backdoor(&self, vm: &str) -> String {
        format!("unix:{}", self.socket(vm).display())
    }

    /// A control request, as `hvsim vm` sends it.
    pub fn control(&self, req: Value) -> Result<Value, String> {
        let mut s = UnixStream::connect(&self.control).map_err(|e| e.to_string())?;
        let mut line = serde_json::to_vec(&req).expect("json");
        line.push(b'\n');
        s.write_all(&line).map_err(|e| e.to_string())?;
        let mut r = std::io::BufReader::new(s);
        let mut answer = String::new();
        std::io::BufRead::read_line(&mut r, &mut answer).map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
        if v["ok"] == Value::Bool(true) {
            Ok(v["result"].clone())
        } else {
            Err(v["error"].as_str().unwrap_or("?").to_string())
        }
    }

    /// Run vm-rpctool against a VM with these arguments, through the
    /// frontend [`frontend`] names.
    pub fn rpctool(&self, vm: &str, args: &[&str]) -> Output {
        let mut c = match frontend() {
            Frontend::Socket => {
                let mut c = Command::new(bin("vm-rpctool"));
                c.env("VM_BACKDOOR", self.backdoor(vm));
                c
            }
            Frontend::Trap => self.exec(vm, &bin("vm-rpctool")),
        };
        c.args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vm-rpctool")
    }

    /// `hvsim exec --vm VM -- PROGRAM` (add the program's arguments to the
    /// command); `VM_BACKDOOR` removed, so guest programs find port I/O.
    pub fn exec(&self, vm: &str, program: &Path) -> Command {
        let mut c = Command::new(bin("hvsim"));
        c.args(["exec", "--vm", vm, "--"])
            .arg(program)
            .env("HVSIM_CONTROL", &self.control)
            .env_remove("VM_BACKDOOR");
        c
    }

    /// Run `hvsim` with this simulator's control socket.
    pub fn hvsim(&self, args: &[&str]) -> Output {
        Command::new(bin("hvsim"))
            .args(args)
            .env("HVSIM_CONTROL", &self.control)
            .stdin(Stdio::null())
            .output()
            .expect("run hvsim")
    }

    /// `hvsim vm show NAME --json`.
    pub fn show(&self, vm: &str) -> Value {
        let out = self.hvsim(&["vm", "show", vm, "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("show json")
    }

    /// Poll `cond` for up to 10 s.
    pub fn eventually(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            stop_child(c, Duration::from_secs(5));
        }
    }
}

/// SIGTERM a child and wait up to `grace` for it; then SIGKILL. Its exit
/// status when it stopped on the SIGTERM.
pub fn stop_child(mut c: Child, grace: Duration) -> Option<std::process::ExitStatus> {
    // SAFETY: sending SIGTERM to our own child process.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The workspace root (the tests crate's parent directory).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The Python with the tests' PyPI tools (pywbem, sushy, the Redfish
/// validator): `HVSIM_PY`, else `target/venv/bin/python`.
pub fn python() -> PathBuf {
    let p = std::env::var_os("HVSIM_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/test-deps.sh (or set HVSIM_PY)",
        p.display()
    );
    p
}

/// A network namespace of a test's own (`ip netns add`), with `lo` up;
/// deleted with its links on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name (`ip netns exec NAME ...`).
    pub name: String,
}

impl Netns {
    /// A new namespace named after `prefix`, the process and a counter.
    pub fn new(prefix: &str) -> Netns {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "{prefix}-t{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// `ip ARGS...`, which must succeed.
pub fn run_ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (install iproute2)");
    assert!(o.status.success(), "ip {}: {}", args.join(" "), stderr(&o));
}

/// A free TCP port on loopback (bound and released; the caller binds it
/// again soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
        .port()
}

/// `curl -sk -i` with `args`: the status, the headers (names lower-cased)
/// and the body.
pub fn curl_i(args: &[&str]) -> (u16, Vec<(String, String)>, String) {
    let out = Command::new("curl")
        .args(["-sk", "-i", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// A guest program on vm0's serial console (`hvsim exec --console` against
/// `sim`), killed on drop. Its stderr is piped (hvsim
/// exec's refusals land there).
#[derive(Debug)]
pub struct ConsoleGuest(pub Child);

impl ConsoleGuest {
    /// Run `sh -c script` on vm0's console.
    pub fn start(sim: &Sim, script: &str) -> ConsoleGuest {
        let child = Command::new(bin("hvsim"))
            .args(["exec", "--console", "--vm", "vm0", "--", "sh", "-c", script])
            .env("HVSIM_CONTROL", &sim.control)
            .env_remove("VM_BACKDOOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hvsim exec --console");
        ConsoleGuest(child)
    }
}

impl Drop for ConsoleGuest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sha256 of a file, as `sha256sum` prints it (lower-case hex).
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(
        out.status.success(),
        "sha256sum {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}
