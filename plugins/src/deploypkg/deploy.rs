//! One deployment, from the package file to the reboot, run on a worker
//! thread: the steps and reports of open-vm-tools' libDeployPkg
//! (linuxDeployment.c `Deploy`), with the native path added for packages
//! that carry a `cust.cfg` and no command.

use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol::custcfg::CustSpec;
use protocol::deploypkg::{self as dp, error, event, flags, state, Header, StateReport};

use super::apply::Root;
use super::archive;
use super::render::{self, FileOut, NetStack};
use super::DeployPkgConfig;

/// Where the host's answers to the reports come from.
pub trait Reporter {
    /// Send one report; the host's reply body, or `None` when it failed.
    fn report(&mut self, r: &StateReport) -> Option<String>;
}

/// How a deployment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Customization is disabled in agent.toml (code 7 sent).
    Disabled,
    /// Failed with this code (sent) and reason.
    Failed(u32, String),
    /// Handed over to cloud-init (it reports the rest).
    CloudInit,
    /// The MARKER-ID was applied before: nothing changed.
    AlreadyApplied,
    /// Done; `rebooting` says whether the reboot command ran.
    Done {
        /// Whether the reboot command was started.
        rebooting: bool,
    },
}

/// Largest package accepted.
const MAX_PACKAGE: u64 = 512 << 20;
/// The command timeout when neither agent.toml nor the header sets one
/// (vmtoolsd's `DEPLOYPKG_PROCESSTIMEOUT_DEFAULT`).
const DEFAULT_TIMEOUT: u64 = 100;
/// Output kept of a command, per stream.
const MAX_OUTPUT: usize = 64 << 10;
/// Exit codes of vCenter's customization engine meaning the network failed.
const NETWORK_EXIT_CODES: [i32; 3] = [252, 253, 254];
/// Its exit code for "custom scripts are disabled".
const SCRIPT_DISABLED_EXIT: i32 = 6;
/// Where the marker files live, under the root.
pub const MARKER_DIR: &str = "var/lib/vm-agent/customization";
/// Where cloud-init looks for the customization it is handed (under the root).
pub const CLOUD_INIT_DIR: &str = "var/run/vmware-imc";

/// The deployment log (`/var/log/vmware-imc/toolsDeployPkg.log` under the root).
struct Log(Option<std::fs::File>);

impl Log {
    fn open(root: &Root) -> Log {
        let path = root.path(dp::LOG_PATH);
        if let Some(p) = path.parent() {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(p);
        }
        Log(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok())
    }

    fn line(&mut self, msg: &str) {
        log::info!("deployPkg: {msg}");
        if let Some(f) = &mut self.0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let _ = writeln!(f, "[{}.{:03}] {msg}", t.as_secs(), t.subsec_millis());
        }
    }
}

struct Run<'a> {
    cfg: &'a DeployPkgConfig,
    root: Root,
    host: &'a mut dyn Reporter,
    log: Log,
}

/// What a command did.
#[derive(Debug)]
struct Ran {
    /// Exit code; 127 when killed or not started (as vmtoolsd counts it).
    code: i32,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

fn read_capped(mut r: impl Read) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Run `cmd` in its own process group, feed it `stdin`, collect its output,
/// kill the group after `timeout`.
fn run_command(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Ran {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ran {
                code: 127,
                stdout: String::new(),
                stderr: format!("cannot start {:?}: {e}", cmd.get_program()),
                timed_out: false,
            }
        }
    };
    if let (Some(data), Some(mut w)) = (stdin, child.stdin.take()) {
        let _ = w.write_all(data);
    }
    let out = child
        .stdout
        .take()
        .map(|o| std::thread::spawn(move || read_capped(o)));
    let err = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || read_capped(e)));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let pgid = child.id() as i32;
                // SAFETY: kill(2) with a negative pid signals the process
                // group this child leads (process_group(0)); no memory is
                // involved.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let code = match status {
        Some(s) if !timed_out && s.signal().is_none() => s.code().unwrap_or(127),
        _ => 127,
    };
    Ran {
        code,
        stdout: out.and_then(|t| t.join().ok()).unwrap_or_default(),
        stderr: err.and_then(|t| t.join().ok()).unwrap_or_default(),
        timed_out,
    }
}

/// Split a header command into arguments as vmtoolsd does: at spaces and
/// tabs, with double quotes grouping (the quotes themselves are dropped)
/// and a backslash taking the next character literally.
pub fn split_command(cmd: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = cmd.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                any = true;
            }
            '"' => {
                for n in chars.by_ref() {
                    if n == '"' {
                        break;
                    }
                    cur.push(n);
                }
                any = true;
            }
            ' ' | '\t' => {
                if any {
                    args.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        args.push(cur);
    }
    args
}

fn random_hex() -> String {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let v = u32::from_le_bytes(b) ^ t.rotate_left(7) ^ std::process::id();
    format!("{v:08x}")
}

/// The first of `/var/run/vmware-imc`, `/var/run`, `/run` (under the root)
/// that is a directory, else the system's temporary directory.
pub fn base_dir(root: &Root) -> PathBuf {
    for d in ["var/run/vmware-imc", "var/run", "run"] {
        let p = root.path(d);
        if p.is_dir() {
            return p;
        }
    }
    std::env::temp_dir()
}

/// A new private directory (mode 0700) `BASE/PREFIXxxxxxxxx`.
pub fn private_dir(base: &Path, prefix: &str) -> std::io::Result<PathBuf> {
    let mut last = None;
    for _ in 0..10 {
        let p = base.join(format!("{prefix}{}", random_hex()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no directory")))
}

/// Run a deployment of the package at `pkg`.
pub fn run(cfg: &DeployPkgConfig, host: &mut dyn Reporter, pkg: &Path) -> Outcome {
    let root = Root::new(&cfg.root);
    if !cfg.enabled {
        log::warn!("deployPkg: customization is disabled in agent.toml ([customization] enabled)");
        host.report(&StateReport {
            state: state::DEPLOYING,
            code: Some(error::CUST_DISABLED),
            message: "Customization is disabled by guest admin".into(),
        });
        remove_package(pkg);
        return Outcome::Disabled;
    }
    let log = Log::open(&root);
    let mut r = Run {
        cfg,
        root,
        host,
        log,
    };
    let outcome = r.deploy(pkg);
    remove_package(pkg);
    outcome
}

/// Delete the package and its directory once empty, as vmtoolsd does.
fn remove_package(pkg: &Path) {
    if std::fs::remove_file(pkg).is_ok() {
        if let Some(d) = pkg.parent() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Run<'_> {
    fn send(&mut self, st: u32, code: u32, text: Option<&str>) -> Option<String> {
        let r = StateReport::with_log(st, code, dp::LOG_PATH, text);
        self.log.line(&format!("report: {}", r.args()));
        self.host.report(&r)
    }

    fn fail(&mut self, code: u32, why: String) -> Outcome {
        self.log
            .line(&format!("deployment failed (code {code}): {why}"));
        log::error!("deployPkg: customization failed: {why}");
        self.send(state::RUNNING, code, Some(&why));
        Outcome::Failed(code, why)
    }

    fn timeout(&self, header: &Header) -> Duration {
        let secs = if (1..=3600).contains(&self.cfg.process_timeout_secs) {
            self.cfg.process_timeout_secs
        } else if header.process_timeout > 0 {
            u64::from(header.process_timeout)
        } else {
            DEFAULT_TIMEOUT
        };
        Duration::from_secs(secs)
    }

    fn deploy(&mut self, pkg: &Path) -> Outcome {
        self.log.line(&format!("deploying {}", pkg.display()));
        self.send(state::RUNNING, error::SUCCESS, None);
        let bytes = match std::fs::File::open(pkg).and_then(|f| {
            let mut b = Vec::new();
            f.take(MAX_PACKAGE + 1).read_to_end(&mut b).map(|_| b)
        }) {
            Ok(b) if b.len() as u64 > MAX_PACKAGE => {
                return self.fail(
                    event::CUSTOMIZE_FAILED,
                    "package larger than 512 MiB".into(),
                )
            }
            Ok(b) => b,
            Err(e) => {
                return self.fail(
                    event::CUSTOMIZE_FAILED,
                    format!("cannot read the package: {e}"),
                )
            }
        };
        let header = match Header::parse(&bytes) {
            Ok(h) => h,
            Err(e) => {
                return self.fail(event::CUSTOMIZE_FAILED, format!("bad package header: {e}"))
            }
        };
        self.log.line(&format!(
            "header: payload {:?}, flags {}, timeout {}, command {:?}",
            header.payload_type, header.flags, header.process_timeout, header.command
        ));
        let payload = match header.payload_range(bytes.len() as u64) {
            Ok(r) => &bytes[r],
            Err(e) => {
                return self.fail(event::CUSTOMIZE_FAILED, format!("bad package header: {e}"))
            }
        };
        let members = match archive::unpack(header.payload_type, payload) {
            Ok(m) => m,
            Err(e) => {
                return self.fail(
                    event::CUSTOMIZE_FAILED,
                    format!("cannot unpack the payload: {e}"),
                )
            }
        };
        let dir = match private_dir(&base_dir(&self.root), ".vmware-imgcust-d") {
            Ok(d) => d,
            Err(e) => {
                return self.fail(
                    event::CUSTOMIZE_FAILED,
                    format!("cannot create the extraction directory: {e}"),
                )
            }
        };
        let outcome = self.deploy_in(&header, &members, &dir);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            self.log
                .line(&format!("cannot remove {}: {e}", dir.display()));
        }
        match outcome {
            Outcome::Done { .. } => {
                let rebooting = header.flags & flags::SKIP_REBOOT == 0;
                if rebooting {
                    self.reboot();
                } else {
                    self.log.line("the header says: no reboot");
                }
                Outcome::Done { rebooting }
            }
            other => other,
        }
    }

    fn deploy_in(&mut self, header: &Header, members: &[archive::Member], dir: &Path) -> Outcome {
        if let Err(e) = archive::write_members(dir, members) {
            return self.fail(
                event::CUSTOMIZE_FAILED,
                format!("cannot unpack the payload: {e}"),
            );
        }
        self.log.line(&format!(
            "unpacked {} file(s) into {}",
            members.len(),
            dir.display()
        ));
        let has = |n: &str| members.iter().any(|m| m.path == n);
        let cloud_init = self.cloud_init_installed();
        if cloud_init && header.flags & flags::IGNORE_CLOUD_INIT == 0 && has("cust.cfg") {
            if has("metadata") {
                if !self.cloud_init_new_enough() {
                    return self.fail(
                        error::CLOUDINIT_NOT_SUPPORT_RAWDATA,
                        "cloud-init is older than 21.1 and cannot take raw cloud-init data".into(),
                    );
                }
                return self.hand_to_cloud_init(members);
            }
            if self.cloud_init_takes_vmware_customization() {
                return self.hand_to_cloud_init(members);
            }
        }
        let dir_text = dir.to_string_lossy();
        if !header.command.trim().is_empty() {
            let command = dp::substitute_dir(&header.command, &dir_text);
            self.log.line(&format!("running {command:?}"));
            let args = split_command(&command);
            let Some((program, rest)) = args.split_first() else {
                return self.fail(event::CUSTOMIZE_FAILED, "the command is empty".into());
            };
            let mut cmd = Command::new(program);
            cmd.args(rest);
            let ran = run_command(cmd, None, self.timeout(header));
            self.log.line(&format!(
                "exit {}{}; stdout: {:?}; stderr: {:?}",
                ran.code,
                if ran.timed_out {
                    " (timed out, killed)"
                } else {
                    ""
                },
                ran.stdout,
                ran.stderr
            ));
            if ran.code != 0 || !ran.stderr.is_empty() {
                let code = if NETWORK_EXIT_CODES.contains(&ran.code) {
                    event::NETWORK_SETUP_FAILED
                } else if ran.code == SCRIPT_DISABLED_EXIT {
                    error::CUST_SCRIPT_DISABLED
                } else {
                    event::CUSTOMIZE_FAILED
                };
                let why = if ran.timed_out {
                    format!(
                        "the command ran longer than {} s and was killed",
                        self.timeout(header).as_secs()
                    )
                } else if ran.code == 0 {
                    "the command wrote to stderr".to_string()
                } else {
                    format!("the command exited with {}", ran.code)
                };
                return self.fail(code, why);
            }
        } else if has("cust.cfg") {
            match self.native(dir, header) {
                Ok(true) => {}
                Ok(false) => return Outcome::AlreadyApplied,
                Err((code, why)) => return self.fail(code, why),
            }
        } else {
            return self.fail(
                event::CUSTOMIZE_FAILED,
                "the package has neither a command nor a cust.cfg".into(),
            );
        }
        if let Some(nics) = members.iter().find(|m| m.path == "nics.txt") {
            let text = String::from_utf8_lossy(&nics.data);
            let nics = text.lines().next().unwrap_or("").trim().to_string();
            if !nics.is_empty() {
                self.enable_nics(&nics);
            }
        }
        self.send(state::DONE, error::SUCCESS, None);
        if cloud_init {
            self.wait_for_cloud_init();
        }
        Outcome::Done { rebooting: false }
    }

    /// The NIC reconnect exchange: `4 103 LOG@NICS` until the host answers
    /// `queryNicsSupported`, then `4 104 LOG@NICS` until `connected`.
    fn enable_nics(&mut self, nics: &str) {
        for _attempt in 0..5 {
            let Some(reply) = self.send(state::RUNNING, event::ENABLE_NICS, Some(nics)) else {
                std::thread::sleep(Duration::from_secs(5));
                continue;
            };
            if reply.trim_end_matches('\0') != dp::QUERY_NICS_SUPPORTED {
                self.log
                    .line("the host cannot report NIC state; not waiting");
                return;
            }
            for _ in 0..5 {
                let r = self.send(state::RUNNING, event::QUERY_NICS, Some(nics));
                if r.as_deref().map(|s| s.trim_end_matches('\0')) == Some(dp::NICS_CONNECTED) {
                    self.log.line(&format!("NICs {nics} are connected"));
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        self.log
            .line(&format!("NICs {nics} are still not connected; giving up"));
    }

    fn shell(&self, cmd: &str, args: &[&str]) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c")
            .arg(format!("{cmd} \"$@\""))
            .arg("sh")
            .args(args)
            .env("VM_AGENT_ROOT", self.root.dir());
        c
    }

    fn cloud_init_installed(&mut self) -> bool {
        if !self.cfg.cloud_init {
            return false;
        }
        let ran = run_command(
            self.shell(&self.cfg.cloud_init_command, &["-v"]),
            None,
            Duration::from_secs(30),
        );
        let yes = ran.code == 0;
        self.log.line(&format!(
            "cloud-init installed: {yes} ({})",
            ran.stdout.trim()
        ));
        yes
    }

    fn cloud_init_new_enough(&mut self) -> bool {
        let ran = run_command(
            self.shell(&self.cfg.cloud_init_command, &["-v"]),
            None,
            Duration::from_secs(30),
        );
        let text = if ran.stdout.trim().is_empty() {
            ran.stderr
        } else {
            ran.stdout
        };
        let version = text
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or("0");
        let mut it = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
        (major, minor) >= (21, 1)
    }

    /// `disable_vmware_customization: false` in cloud.cfg.d/*.cfg (last file
    /// that sets it wins) or else cloud.cfg.
    fn cloud_init_takes_vmware_customization(&self) -> bool {
        let flag = |text: &str| {
            text.lines().rev().find_map(|l| {
                let l = l.split(" #").next().unwrap_or(l).trim();
                let v = l.strip_prefix("disable_vmware_customization")?.trim_start();
                match v.strip_prefix(':')?.trim() {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                }
            })
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.root.path("etc/cloud/cloud.cfg.d"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "cfg"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let set = files
            .iter()
            .rev()
            .find_map(|p| std::fs::read_to_string(p).ok().and_then(|t| flag(&t)))
            .or_else(|| self.root.read("etc/cloud/cloud.cfg").and_then(|t| flag(&t)));
        set == Some(false)
    }

    /// Copy what cloud-init's VMware datasource reads into
    /// `/var/run/vmware-imc`; it applies the customization and reports.
    fn hand_to_cloud_init(&mut self, members: &[archive::Member]) -> Outcome {
        self.log
            .line("handing the customization over to cloud-init");
        let mut files: Vec<FileOut> = Vec::new();
        let mut add = |name: &str| {
            if let Some(m) = members.iter().find(|m| m.path == name) {
                files.push(FileOut {
                    path: format!(
                        "{CLOUD_INIT_DIR}/{}",
                        name.rsplit('/').next().unwrap_or(name)
                    ),
                    content: render::FileContent::Text(
                        String::from_utf8_lossy(&m.data).into_owned(),
                    ),
                    mode: if m.exec { 0o700 } else { 0o600 },
                });
            }
        };
        for n in ["nics.txt", "metadata", "userdata"] {
            add(n);
        }
        if let Some(script) = members.iter().find(|m| {
            m.path.starts_with("script") && m.path.ends_with(".bat") && !m.path.contains('/')
        }) {
            let name = script.path.clone();
            add("scripts/post-customize-guest.sh");
            add(&name);
        }
        add("cust.cfg");
        match self.root.write_all(&files) {
            Ok(()) => Outcome::CloudInit,
            Err(e) => {
                let _ = std::fs::remove_dir_all(self.root.path(CLOUD_INIT_DIR));
                self.fail(
                    event::CUSTOMIZE_FAILED,
                    format!("cannot hand over to cloud-init: {e}"),
                )
            }
        }
    }

    /// Before rebooting, let a running cloud-init finish (bounded).
    fn wait_for_cloud_init(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(self.cfg.cloud_init_wait_secs);
        while Instant::now() < deadline {
            let ran = run_command(
                self.shell(&self.cfg.cloud_init_command, &["status"]),
                None,
                Duration::from_secs(30),
            );
            let out = if ran.stdout.is_empty() {
                &ran.stderr
            } else {
                &ran.stdout
            };
            let busy =
                out.contains("not run") || out.contains("not started") || out.contains("running");
            if ran.code == 1 || !busy {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        self.log
            .line("cloud-init is still running; rebooting anyway");
    }

    fn reboot(&mut self) {
        self.log
            .line(&format!("rebooting: {}", self.cfg.reboot_command));
        let ran = run_command(
            self.shell(&self.cfg.reboot_command, &[]),
            None,
            Duration::from_secs(60),
        );
        if ran.code != 0 {
            self.log.line(&format!(
                "the reboot command failed ({}): {}",
                ran.code, ran.stderr
            ));
            log::error!(
                "deployPkg: the reboot command failed: {}",
                ran.stderr.trim()
            );
        }
    }

    /// The native path: apply cust.cfg. `Ok(false)` when the marker says
    /// it was applied before.
    fn native(&mut self, dir: &Path, header: &Header) -> Result<bool, (u32, String)> {
        let text = std::fs::read(dir.join("cust.cfg")).map_err(|e| {
            (
                event::CUSTOMIZE_FAILED,
                format!("cannot read cust.cfg: {e}"),
            )
        })?;
        let spec = CustSpec::parse(&text).map_err(|e| (event::CUSTOMIZE_FAILED, e.to_string()))?;
        let marker = spec
            .marker_id
            .as_ref()
            .map(|m| format!("{MARKER_DIR}/marker-{m}"));
        if let Some(m) = &marker {
            if self.root.exists(m) {
                self.log.line(&format!(
                    "marker {m} exists: this customization was applied before"
                ));
                self.send(
                    state::DONE,
                    error::SUCCESS,
                    Some("already customized (MARKER-ID seen before)"),
                );
                return Ok(false);
            }
        }
        let script =
            match &spec.custom_script {
                Some(_) if !self.cfg.custom_scripts => return Err((
                    error::CUST_SCRIPT_DISABLED,
                    "the package has a custom script and [customization] custom_scripts is false"
                        .into(),
                )),
                Some(s) if !dir.join(s).is_file() => {
                    return Err((
                        event::CUSTOMIZE_FAILED,
                        format!("custom script {s} is not in the package"),
                    ))
                }
                Some(s) => Some(dir.join(s)),
                None => None,
            };
        let files = self.render(&spec)?;
        let timeout = self.timeout(header);
        if let Some(s) = &script {
            self.custom_script(s, "precustomization", timeout)?;
        }
        for f in &files {
            self.log.line(&format!("writing /{}", f.path));
        }
        self.root
            .write_all(&files)
            .map_err(|e| (event::CUSTOMIZE_FAILED, e.to_string()))?;
        if let Some(pw) = &spec.root_password {
            let input = format!("root:{pw}\n");
            let ran = run_command(
                self.shell(&self.cfg.password_command, &[]),
                Some(input.as_bytes()),
                timeout,
            );
            if ran.code != 0 {
                return Err((
                    event::CUSTOMIZE_FAILED,
                    format!(
                        "the password command failed ({}): {}",
                        ran.code,
                        ran.stderr.trim()
                    ),
                ));
            }
            self.log.line("root password set");
        }
        if spec.reset_password {
            self.log
                .line("PASSWORD|RESET is not supported: the root password does not expire");
            log::warn!("deployPkg: cust.cfg asks to expire the root password; not supported");
        }
        if let Some(s) = &script {
            self.custom_script(s, "postcustomization", timeout)?;
        }
        if let Some(m) = marker {
            self.root
                .write(&FileOut {
                    path: m,
                    content: render::FileContent::Text(String::new()),
                    mode: 0o644,
                })
                .map_err(|e| (event::CUSTOMIZE_FAILED, e.to_string()))?;
        }
        Ok(true)
    }

    fn custom_script(
        &mut self,
        script: &Path,
        phase: &str,
        timeout: Duration,
    ) -> Result<(), (u32, String)> {
        let mut c = Command::new("/bin/sh");
        c.arg(script).arg(phase);
        if let Some(d) = script.parent() {
            c.current_dir(d);
        }
        let ran = run_command(c, None, timeout);
        self.log.line(&format!(
            "custom script {phase}: exit {}; {:?}",
            ran.code, ran.stdout
        ));
        if ran.code != 0 {
            return Err((
                event::CUSTOMIZE_FAILED,
                format!("custom script {phase} exited with {}", ran.code),
            ));
        }
        Ok(())
    }

    /// Every file the specification asks for, rendered before anything is
    /// written.
    fn render(&mut self, spec: &CustSpec) -> Result<Vec<FileOut>, (u32, String)> {
        let mut files = Vec::new();
        if let Some(host) = &spec.hostname {
            let fqdn = spec.fqdn().unwrap_or_else(|| host.clone());
            files.push(render::hostname(host));
            let old = self.root.read("etc/hosts").unwrap_or_default();
            files.push(render::hosts(&old, host, &fqdn));
        }
        if !spec.nics.is_empty() {
            let stack = match self.cfg.network_stack.as_str() {
                "auto" => self.root.detect_stack(),
                name => NetStack::from_name(name),
            }
            .ok_or((
                event::NETWORK_SETUP_FAILED,
                "no supported network stack found (netplan, NetworkManager, systemd-networkd, ifupdown)".to_string(),
            ))?;
            self.log.line(&format!("network stack: {}", stack.name()));
            let root = self.root.clone();
            let net = render::network(stack, spec, &|mac| root.interface_with_mac(mac))
                .map_err(|e| (event::NETWORK_SETUP_FAILED, e.to_string()))?;
            files.extend(net);
        }
        if let Some(tz) = &spec.time_zone {
            if !self
                .root
                .path(&format!("usr/share/zoneinfo/{tz}"))
                .is_file()
            {
                return Err((
                    event::CUSTOMIZE_FAILED,
                    format!("unknown time zone {tz} (not in /usr/share/zoneinfo)"),
                ));
            }
            files.extend(render::time_zone(tz));
        }
        if let Some(utc) = spec.utc {
            let old = self.root.read("etc/adjtime");
            files.push(render::adjtime(old.as_deref(), utc));
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_like_vmtoolsd() {
        assert_eq!(
            split_command("/usr/bin/perl -I/d/scripts  /d/Customize.pl\t/d/cust.cfg"),
            [
                "/usr/bin/perl",
                "-I/d/scripts",
                "/d/Customize.pl",
                "/d/cust.cfg"
            ]
        );
        assert_eq!(
            split_command("/bin/sh \"a b\" c\\ d"),
            ["/bin/sh", "a b", "c d"]
        );
        assert!(split_command("   ").is_empty());
    }

    #[test]
    fn commands_are_bounded() {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let r = run_command(c, None, Duration::from_secs(10));
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str(), r.timed_out),
            (3, "out\n", "err\n", false)
        );
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "sleep 30 & sleep 30"]);
        let r = run_command(c, None, Duration::from_millis(200));
        assert_eq!((r.code, r.timed_out), (127, true));
        let r = run_command(Command::new("/nonexistent/x"), None, Duration::from_secs(1));
        assert_eq!(r.code, 127);
        let mut c = Command::new("/bin/cat");
        c.stdin(Stdio::piped());
        let r = run_command(c, Some(b"root:pw\n"), Duration::from_secs(5));
        assert_eq!(r.stdout, "root:pw\n");
    }
}
