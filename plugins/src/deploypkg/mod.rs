//! deployPkg: guest customization, as open-vm-tools' deployPkg plugin.
//!
//! TCLO `deployPkg.begin` creates a private directory (mode 0700) and
//! answers with its path; the host copies the package into it over HGFS;
//! TCLO `deployPkg.deploy PATH` reports `deployPkg.update.state 3`, answers,
//! and starts the deployment ([`deploy`]) in a helper process,
//! `vm-agent-deploy` ([`helper`]): header, payload ([`archive`]), then the
//! header's command (the compatible path, vCenter's own engine),
//! cloud-init's hand-over, or the native path that applies `cust.cfg`
//! ([`render`] makes the files, [`apply`] writes them), the NIC reconnect
//! exchange, the final report and the reboot.
//!
//! The helper reaches the host through this plugin: it writes a report on
//! its channel, which wakes the agent's loop ([`Plugin::fds`]); the plugin
//! sends it on its RPCI channel and hands the reply back. The package
//! readers and everything else only a deployment needs are in the helper's
//! code, not the resident daemon's.

pub mod apply;
pub mod archive;
pub mod deploy;
pub mod helper;
pub mod render;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::deploypkg::{self as dp, error, event, state, StateReport};
use protocol::rpc::tclo_reply;
use serde::{Deserialize, Serialize};

use crate::{Context, Plugin};

/// The `[customization]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The deployment helper; empty: `vm-agent-deploy` next to the agent.
    pub helper: PathBuf,
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
            helper: PathBuf::new(),
        }
    }
}

/// How often a running helper is looked at without a wake-up.
const CHECK: Duration = Duration::from_millis(500);
/// Longest wait for the helper's exit after it closed its channel.
const EXIT_WAIT: Duration = Duration::from_millis(200);

/// A running deployment: the `vm-agent-deploy` process and our end of its
/// channel.
#[derive(Debug)]
struct Worker {
    child: Child,
    chan: UnixStream,
    /// Bytes read from the channel that do not make a whole frame yet.
    buf: Vec<u8>,
    /// The helper closed the channel (it is exiting).
    closed: bool,
    /// The last report relayed ended the deployment (done or failed).
    reported_end: bool,
    /// When to look at the helper without a wake-up (to reap it).
    next_check: Instant,
}

/// Whether a report ends the deployment as far as the host is concerned:
/// the final state, or an error code (not the NIC events in between).
fn ends_deployment(r: &StateReport) -> bool {
    r.state == state::DONE
        || r.code.is_some_and(|c| {
            c != error::SUCCESS && c != event::ENABLE_NICS && c != event::QUERY_NICS
        })
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
        // A helper that just finished may not have been reaped yet.
        self.service(ctx);
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
                log::error!("deployPkg.deploy: {e}");
                tclo_reply(true, b"")
            }
        }
    }

    /// Start `vm-agent-deploy` for `pkg` and hand it the job.
    fn spawn(&self, pkg: PathBuf) -> std::io::Result<Worker> {
        let program = helper::path(&self.cfg.helper);
        let (ours, theirs) = UnixStream::pair()?;
        let job = helper::Job {
            package: pkg,
            config: self.cfg.clone(),
            log_level: log::max_level().to_string().to_ascii_lowercase(),
        };
        let body = serde_json::to_vec(&job).map_err(std::io::Error::other)?;
        let mut child = Command::new(&program)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start the helper {}: {e}", program.display()),
                )
            })?;
        log::info!(
            "deployPkg: {} (pid {}) deploys {}",
            program.display(),
            child.id(),
            job.package.display()
        );
        let mut chan = ours;
        if let Err(e) = helper::write_frame(&mut chan, &body) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        chan.set_nonblocking(true)?;
        Ok(Worker {
            child,
            chan,
            buf: Vec::new(),
            closed: false,
            reported_end: false,
            next_check: Instant::now() + CHECK,
        })
    }

    /// Relay what the helper sent; reap it once it ended.
    fn service(&mut self, ctx: &mut dyn Context) {
        let Some(w) = &mut self.worker else { return };
        w.next_check = Instant::now() + CHECK;
        let mut chunk = [0u8; 4096];
        while !w.closed {
            match w.chan.read(&mut chunk) {
                Ok(0) => w.closed = true,
                Ok(n) => w.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("deployPkg: reading from the helper: {e}");
                    w.closed = true;
                }
            }
        }
        let frames = helper::take_frames(&mut w.buf).unwrap_or_else(|e| {
            log::error!("deployPkg: {e}; stopping it");
            let _ = w.child.kill();
            w.closed = true;
            Vec::new()
        });
        for frame in frames {
            let args = String::from_utf8_lossy(&frame);
            let Some(report) = StateReport::parse(&args) else {
                log::error!("deployPkg: the helper sent a bad report {args:?}");
                let _ = w.child.kill();
                w.closed = true;
                break;
            };
            w.reported_end = ends_deployment(&report);
            let reply = match ctx.rpci(&report.message_bytes()) {
                Ok(body) => [&[helper::REPLY_OK][..], &body].concat(),
                Err(e) => [&[helper::REPLY_FAILED][..], e.to_string().as_bytes()].concat(),
            };
            // A blocking write: the helper waits for this reply.
            let sent = w
                .chan
                .set_nonblocking(false)
                .and_then(|()| helper::write_frame(&mut w.chan, &reply))
                .and_then(|()| w.chan.set_nonblocking(true));
            if let Err(e) = sent {
                log::warn!("deployPkg: cannot answer the helper: {e}");
            }
        }
        // The channel closes when the helper exits (its standard input is
        // the channel, which its commands do not inherit): reap it now,
        // waiting a moment for the exit to complete; a helper still there
        // is looked at again at the next check.
        let patience = Instant::now() + if w.closed { EXIT_WAIT } else { Duration::ZERO };
        let status = loop {
            match w.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < patience => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => return,
                Err(e) => {
                    log::error!("deployPkg: waiting for the helper: {e}");
                    return;
                }
            }
        };
        let reported_end = w.reported_end;
        self.worker = None;
        match status.code() {
            Some(helper::exit::DONE) => log::info!("deployPkg: the deployment finished"),
            Some(helper::exit::FAILED | helper::exit::DISABLED) => {
                log::info!("deployPkg: the deployment failed")
            }
            _ => {
                log::error!("deployPkg: the deployment helper ended: {status}");
                if !reported_end {
                    let r = StateReport::with_log(
                        state::RUNNING,
                        error::DEPLOY_FAILED,
                        dp::LOG_PATH,
                        Some(&format!("the deployment helper ended: {status}")),
                    );
                    let _ = ctx.rpci(&r.message_bytes());
                }
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
        // The channel wakes the loop for reports; this reaps the helper
        // after it closed the channel.
        self.worker.as_ref().map(|w| w.next_check)
    }

    fn on_deadline(&mut self, ctx: &mut dyn Context, _now: Instant) {
        self.service(ctx);
    }

    fn fds(&self) -> Vec<(RawFd, i16)> {
        self.worker
            .as_ref()
            .filter(|w| !w.closed)
            .map(|w| vec![(w.chan.as_raw_fd(), libc::POLLIN)])
            .unwrap_or_default()
    }

    fn on_ready(&mut self, ctx: &mut dyn Context, _fd: RawFd, _now: Instant) {
        self.service(ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::HostCallError;

    /// The host: records every RPCI message and answers "".
    #[derive(Default)]
    struct Host(Vec<String>);

    impl Context for Host {
        fn rpci(&mut self, msg: &[u8]) -> Result<Vec<u8>, HostCallError> {
            self.0.push(String::from_utf8_lossy(msg).into_owned());
            Ok(Vec::new())
        }
        fn backdoor(&mut self, _: protocol::Regs) -> Result<protocol::Regs, HostCallError> {
            Err(HostCallError::Channel("none".into()))
        }
    }

    /// Deploy a package with `script` as the helper; the messages the host
    /// got once the helper was reaped.
    fn deploy_with(script: Option<&str>) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkg");
        std::fs::write(&pkg, b"not read by these helpers").unwrap();
        let helper = dir.path().join("helper");
        if let Some(s) = script {
            std::fs::write(&helper, format!("#!/bin/bash\n{s}\n")).unwrap();
            std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut p = DeployPkg::new(DeployPkgConfig {
            root: dir.path().into(),
            helper: helper.clone(),
            ..DeployPkgConfig::default()
        });
        let mut host = Host::default();
        let reply = p.on_tclo(
            &mut host,
            dp::TCLO_DEPLOY,
            pkg.display().to_string().as_bytes(),
        );
        assert_eq!(reply, tclo_reply(true, b""));
        // Bounded: a helper that hangs fails the test instead of hanging it.
        for _ in 0..2000 {
            if !p.busy() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            p.on_deadline(&mut host, Instant::now());
        }
        assert!(!p.busy(), "the helper was not reaped: {:?}", host.0);
        host.0
    }

    #[test]
    fn the_helpers_reports_are_relayed_and_a_clean_exit_adds_nothing() {
        // Two frames ("4 0 L", "5 0 L"), each answered before the next.
        let got = deploy_with(Some(
            "printf '\\x05\\x00\\x00\\x004 0 L' >&0; head -c 5 >/dev/null; \
             printf '\\x05\\x00\\x00\\x005 0 L' >&0; head -c 5 >/dev/null; exit 0",
        ));
        assert_eq!(
            got,
            [
                "deployPkg.update.state 3",
                "deployPkg.update.state 4 0 L",
                "deployPkg.update.state 5 0 L"
            ]
        );
    }

    #[test]
    fn a_helper_killed_before_its_final_report_is_reported_as_failed() {
        let got = deploy_with(Some(
            "printf '\\x05\\x00\\x00\\x004 0 L' >&0; kill -KILL $$",
        ));
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[1], "deployPkg.update.state 4 0 L");
        assert!(
            got[2].starts_with(
                "deployPkg.update.state 4 5 /var/log/vmware-imc/toolsDeployPkg.log@the deployment helper ended"
            ),
            "{got:?}"
        );
    }

    #[test]
    fn a_helper_that_sends_anything_but_a_report_is_stopped() {
        let got = deploy_with(Some("printf '\\x03\\x00\\x00\\x00x y' >&0; cat >/dev/null"));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].contains("@the deployment helper ended"), "{got:?}");
    }

    #[test]
    fn a_helper_that_cannot_start_is_reported_as_vmtoolsd_reports_its_thread() {
        let got = deploy_with(None);
        assert_eq!(
            got,
            [
                "deployPkg.update.state 3",
                "deployPkg.update.state 3 5 failed to spawn deploy execution thread"
            ]
        );
    }
}
