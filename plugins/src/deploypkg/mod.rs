//! deployPkg: guest customization, as open-vm-tools' deployPkg plugin.
//!
//! TCLO `deployPkg.begin` creates a private directory (mode 0700) and
//! answers with its path; the host copies the package into it over HGFS;
//! TCLO `deployPkg.deploy PATH` reports `deployPkg.update.state 3`, answers,
//! and starts the deployment on a worker thread ([`deploy`]): header,
//! payload ([`archive`]), then the header's command (the compatible path,
//! vCenter's own engine), cloud-init's hand-over, or the native path that
//! applies `cust.cfg` ([`render`] makes the files, [`apply`] writes them),
//! the NIC reconnect exchange, the final report and the reboot.
//!
//! The worker reaches the host through this plugin: it queues a report and
//! wakes the agent's loop through a socket pair ([`Plugin::fds`]); the
//! plugin sends it on its RPCI channel and hands the reply back.

pub mod apply;
pub mod archive;
pub mod deploy;
pub mod render;

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::time::{Duration, Instant};

use protocol::deploypkg::{self as dp, error, state, StateReport};
use protocol::rpc::tclo_reply;
use serde::Deserialize;

use crate::{Context, HostCallError, Plugin};

/// The `[customization]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployPkgConfig {
    /// Accept customization from the host at all (false: code 7).
    pub enabled: bool,
    /// Run a package's custom (pre/post) script (false: code 6).
    pub custom_scripts: bool,
    /// Directory every system file is read and written under.
    pub root: PathBuf,
    /// Seconds the header's command or a custom script may run, 1-3600;
    /// 0 means the header's value, else 100.
    pub process_timeout_secs: u64,
    /// `auto` (detect), `netplan`, `networkmanager`, `networkd` or `ifupdown`.
    pub network_stack: String,
    /// Run by `/bin/sh -c` to reboot after a customization.
    pub reboot_command: String,
    /// Run by `/bin/sh -c` with `root:PASSWORD` on stdin to set the root
    /// password (`$VM_AGENT_ROOT` is the root directory).
    pub password_command: String,
    /// Hand customizations over to cloud-init when it is installed and
    /// configured for them (`disable_vmware_customization: false`).
    pub cloud_init: bool,
    /// cloud-init's program (run with `-v` and `status`).
    pub cloud_init_command: String,
    /// Longest wait for a running cloud-init before the reboot, seconds.
    pub cloud_init_wait_secs: u64,
}

impl Default for DeployPkgConfig {
    fn default() -> Self {
        DeployPkgConfig {
            enabled: true,
            custom_scripts: false,
            root: "/".into(),
            process_timeout_secs: 0,
            network_stack: "auto".into(),
            reboot_command: "/sbin/shutdown -r now".into(),
            password_command: "chpasswd".into(),
            cloud_init: true,
            cloud_init_command: "/usr/bin/cloud-init".into(),
            cloud_init_wait_secs: 30,
        }
    }
}

/// How often a running worker is looked at without a wake-up.
const CHECK: Duration = Duration::from_millis(500);

/// A report the worker wants sent, and where the reply goes.
type Call = (Vec<u8>, SyncSender<Result<Vec<u8>, HostCallError>>);

/// The worker's side of the bridge.
struct WorkerReporter {
    tx: Sender<Call>,
    wake: UnixStream,
}

impl deploy::Reporter for WorkerReporter {
    fn report(&mut self, r: &StateReport) -> Option<String> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.tx.send((r.message_bytes(), reply_tx)).ok()?;
        let _ = std::io::Write::write_all(&mut self.wake, b"r");
        match reply_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(body)) => Some(String::from_utf8_lossy(&body).into_owned()),
            Ok(Err(e)) => {
                log::warn!("deployPkg: report {:?} failed: {e}", r.args());
                None
            }
            Err(_) => None,
        }
    }
}

/// A running deployment.
#[derive(Debug)]
struct Worker {
    calls: Receiver<Call>,
    wake: UnixStream,
    thread: std::thread::JoinHandle<deploy::Outcome>,
    next_check: Instant,
}

/// The plugin.
#[derive(Debug)]
pub struct DeployPkg {
    cfg: DeployPkgConfig,
    worker: Option<Worker>,
}

impl DeployPkg {
    /// A plugin with this config.
    pub fn new(cfg: DeployPkgConfig) -> DeployPkg {
        DeployPkg { cfg, worker: None }
    }

    /// Replace the config (SIGHUP); a running deployment keeps the old one.
    pub fn set_config(&mut self, cfg: DeployPkgConfig) {
        self.cfg = cfg;
    }

    /// Whether a deployment is running.
    pub fn busy(&self) -> bool {
        self.worker.is_some()
    }

    fn begin(&self) -> Vec<u8> {
        let root = apply::Root::new(&self.cfg.root);
        match deploy::private_dir(&deploy::base_dir(&root), "") {
            Ok(d) => {
                log::info!("deployPkg.begin: package directory {}", d.display());
                tclo_reply(true, format!("{}/", d.display()).as_bytes())
            }
            Err(e) => {
                log::error!("deployPkg.begin: cannot create a package directory: {e}");
                tclo_reply(false, b"failed to get temp dir")
            }
        }
    }

    fn deploy(&mut self, ctx: &mut dyn Context, args: &[u8]) -> Vec<u8> {
        if self.worker.is_some() {
            return tclo_reply(false, b"a customization is already running");
        }
        let deploying = StateReport {
            state: state::DEPLOYING,
            code: None,
            message: String::new(),
        };
        let _ = ctx.rpci(&deploying.message_bytes());
        let text = String::from_utf8_lossy(args);
        let path = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        if path.is_empty() || !Path::new(path).exists() {
            let r = StateReport {
                state: state::DEPLOYING,
                code: Some(error::DEPLOY_FAILED),
                message: format!("Package file {path} not found"),
            };
            let _ = ctx.rpci(&r.message_bytes());
            log::error!("deployPkg.deploy: package file {path:?} not found");
            return tclo_reply(false, b"failed to get package file");
        }
        match self.spawn(PathBuf::from(path)) {
            Ok(w) => {
                self.worker = Some(w);
                tclo_reply(true, b"")
            }
            Err(e) => {
                let r = StateReport {
                    state: state::DEPLOYING,
                    code: Some(error::DEPLOY_FAILED),
                    message: "failed to spawn deploy execution thread".into(),
                };
                let _ = ctx.rpci(&r.message_bytes());
                log::error!("deployPkg.deploy: cannot start the worker: {e}");
                tclo_reply(true, b"")
            }
        }
    }

    fn spawn(&self, pkg: PathBuf) -> std::io::Result<Worker> {
        let (wake_r, wake_w) = UnixStream::pair()?;
        wake_r.set_nonblocking(true)?;
        let (tx, calls) = mpsc::channel();
        let cfg = self.cfg.clone();
        let thread = std::thread::Builder::new()
            .name("deploypkg".into())
            .spawn(move || {
                let mut rep = WorkerReporter { tx, wake: wake_w };
                let outcome = deploy::run(&cfg, &mut rep, &pkg);
                log::info!("deployPkg: {outcome:?}");
                // Dropping the reporter closes the socket: the loop sees EOF.
                outcome
            })?;
        Ok(Worker {
            calls,
            wake: wake_r,
            thread,
            next_check: Instant::now() + CHECK,
        })
    }

    /// Send what the worker queued; reap it once it ended.
    fn service(&mut self, ctx: &mut dyn Context) {
        let Some(w) = &mut self.worker else { return };
        w.next_check = Instant::now() + CHECK;
        let mut buf = [0u8; 64];
        let mut closed = false;
        loop {
            match w.wake.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        while let Ok((msg, reply)) = w.calls.try_recv() {
            let _ = reply.send(ctx.rpci(&msg));
        }
        if closed || w.thread.is_finished() {
            if let Some(w) = self.worker.take() {
                while let Ok((msg, reply)) = w.calls.try_recv() {
                    let _ = reply.send(ctx.rpci(&msg));
                }
                let _ = w.thread.join();
            }
        }
    }
}

impl Plugin for DeployPkg {
    fn name(&self) -> &'static str {
        "customization"
    }

    fn tclo_commands(&self) -> &'static [&'static str] {
        &[dp::TCLO_BEGIN, dp::TCLO_DEPLOY]
    }

    fn on_tclo(&mut self, ctx: &mut dyn Context, cmd: &str, args: &[u8]) -> Vec<u8> {
        match cmd {
            dp::TCLO_BEGIN => self.begin(),
            dp::TCLO_DEPLOY => self.deploy(ctx, args),
            _ => tclo_reply(false, b"Unknown Command"),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        // A safety net: the socket wakes the loop; this reaps a worker
        // whose wake-up was missed.
        self.worker
            .as_ref()
            .map(|_| Instant::now() + Duration::from_millis(500))
    }

    fn on_deadline(&mut self, ctx: &mut dyn Context, _now: Instant) {
        self.service(ctx);
    }

    fn fds(&self) -> Vec<(RawFd, i16)> {
        self.worker
            .as_ref()
            .map(|w| vec![(w.wake.as_raw_fd(), libc::POLLIN)])
            .unwrap_or_default()
    }

    fn on_ready(&mut self, ctx: &mut dyn Context, _fd: RawFd, _now: Instant) {
        self.service(ctx);
    }
}
