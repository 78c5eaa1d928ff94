//! powerops: the host's power requests (`OS_Halt`, `OS_Reboot`, `OS_PowerOn`,
//! `OS_Resume`, `OS_Suspend`).
//!
//! As in open-vm-tools' powerOps plugin: answer "OK " once the state change
//! started, run the state's script from the scripts directory (if present),
//! report `tools.os.statechange.status <1|0> <state>` when it ends, then, for
//! halt and reboot after a successful script, run the halt or reboot command.
//! A second request while one runs gets "ERROR State change already in
//! progress".

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::rpc::tclo_reply;
use serde::Deserialize;

use crate::{Context, HostEvent, Plugin};

/// The `[powerops]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowerOpsConfig {
    /// Answer power requests at all.
    pub enabled: bool,
    /// Run (by `/bin/sh -c`) to halt the guest.
    pub halt_command: String,
    /// Run (by `/bin/sh -c`) to reboot the guest.
    pub reboot_command: String,
    /// Directory of the state scripts (`poweroff-vm-default`, ...).
    pub scripts_dir: PathBuf,
    /// A script still running after this many seconds is killed and the
    /// state change reported as failed.
    pub script_timeout_secs: u64,
}

impl Default for PowerOpsConfig {
    fn default() -> Self {
        PowerOpsConfig {
            enabled: true,
            halt_command: "/sbin/shutdown -h now".into(),
            reboot_command: "/sbin/shutdown -r now".into(),
            scripts_dir: "/etc/vm-agent/scripts".into(),
            script_timeout_secs: 60,
        }
    }
}

/// A guest OS state, numbered as open-vm-tools' `GuestOsState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsState {
    /// `OS_Halt`.
    Halt = 1,
    /// `OS_Reboot`.
    Reboot = 2,
    /// `OS_PowerOn`.
    PowerOn = 3,
    /// `OS_Resume`.
    Resume = 4,
    /// `OS_Suspend`.
    Suspend = 5,
}

impl OsState {
    /// The state a TCLO command asks for.
    pub fn from_command(cmd: &str) -> Option<OsState> {
        Some(match cmd {
            "OS_Halt" => OsState::Halt,
            "OS_Reboot" => OsState::Reboot,
            "OS_PowerOn" => OsState::PowerOn,
            "OS_Resume" => OsState::Resume,
            "OS_Suspend" => OsState::Suspend,
            _ => return None,
        })
    }

    /// The script open-vm-tools runs for this state.
    pub fn script(self) -> &'static str {
        match self {
            OsState::Halt | OsState::Reboot => "poweroff-vm-default",
            OsState::PowerOn => "poweron-vm-default",
            OsState::Resume => "resume-vm-default",
            OsState::Suspend => "suspend-vm-default",
        }
    }
}

#[derive(Debug)]
enum Stage {
    /// No script: report at the next check, after the "OK " reply went out
    /// (a host may power the VM off as soon as the status arrives).
    NoScript,
    /// The state's script runs.
    Script(Child, Instant),
    /// The halt or reboot command runs (status already reported).
    Command(Child),
}

/// The powerops plugin.
#[derive(Debug)]
pub struct PowerOps {
    cfg: PowerOpsConfig,
    running: Option<(OsState, Stage)>,
    next_check: Instant,
}

/// How often a running script or command is checked.
const CHILD_CHECK: Duration = Duration::from_millis(20);

fn shell(cmd: &str) -> std::io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .spawn()
}

/// Run a script directly (any interpreter its `#!` names). A script written
/// a moment ago may still be open for writing in a child some other thread
/// forked ("text file busy"): retry briefly.
fn spawn_script(script: &std::path::Path) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match Command::new(script).stdin(Stdio::null()).spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

impl PowerOps {
    /// A plugin with this config.
    pub fn new(cfg: PowerOpsConfig) -> PowerOps {
        PowerOps {
            cfg,
            running: None,
            next_check: Instant::now(),
        }
    }

    /// Apply a new config (SIGHUP); a state change in progress goes on.
    pub fn set_config(&mut self, cfg: PowerOpsConfig) {
        self.cfg = cfg;
    }

    /// True while a state change runs.
    pub fn busy(&self) -> bool {
        self.running.is_some()
    }

    fn report(&self, ctx: &mut dyn Context, state: OsState, ok: bool) {
        let msg = format!(
            "tools.os.statechange.status {} {}",
            u8::from(ok),
            state as u32
        );
        if let Err(e) = ctx.rpci(msg.as_bytes()) {
            log::warn!("powerops: cannot report the state change: {e}");
        }
    }

    /// The script ended (or could not start): report, then halt or reboot.
    fn script_done(&mut self, ctx: &mut dyn Context, state: OsState, ok: bool) {
        self.report(ctx, state, ok);
        self.running = None;
        if !ok {
            log::error!("powerops: {state:?} failed: its script did not succeed");
            return;
        }
        let cmd = match state {
            OsState::Halt => &self.cfg.halt_command,
            OsState::Reboot => &self.cfg.reboot_command,
            _ => {
                log::info!("powerops: {state:?} done");
                return;
            }
        };
        log::info!("powerops: {state:?}: running `{cmd}`");
        match shell(cmd) {
            Ok(child) => {
                self.running = Some((state, Stage::Command(child)));
                self.next_check = Instant::now() + CHILD_CHECK;
            }
            Err(e) => log::error!("powerops: cannot run `{cmd}`: {e}"),
        }
    }

    fn start(&mut self, ctx: &mut dyn Context, state: OsState) -> Vec<u8> {
        if self.running.is_some() {
            return tclo_reply(false, b"State change already in progress");
        }
        let script = self.cfg.scripts_dir.join(state.script());
        if script.is_file() {
            log::info!("powerops: {state:?}: running {}", script.display());
            match spawn_script(&script) {
                Ok(child) => {
                    self.running = Some((state, Stage::Script(child, Instant::now())));
                    self.next_check = Instant::now() + CHILD_CHECK;
                }
                Err(e) => {
                    log::error!("powerops: cannot run {}: {e}", script.display());
                    self.script_done(ctx, state, false);
                }
            }
        } else {
            log::info!("powerops: {state:?} (no script at {})", script.display());
            self.running = Some((state, Stage::NoScript));
            self.next_check = Instant::now();
        }
        tclo_reply(true, b"")
    }
}

impl Plugin for PowerOps {
    fn name(&self) -> &'static str {
        "powerops"
    }

    fn tclo_commands(&self) -> &'static [&'static str] {
        &[
            "OS_Halt",
            "OS_Reboot",
            "OS_PowerOn",
            "OS_Resume",
            "OS_Suspend",
        ]
    }

    fn on_tclo(&mut self, ctx: &mut dyn Context, cmd: &str, _args: &[u8]) -> Vec<u8> {
        if !self.cfg.enabled {
            return tclo_reply(false, b"Power operations are disabled in the guest");
        }
        match OsState::from_command(cmd) {
            Some(state) => {
                let reply = self.start(ctx, state);
                if state == OsState::Resume && reply.starts_with(b"OK") {
                    // The agent relays this to the other plugins (timesync).
                    log::debug!("powerops: resumed");
                }
                reply
            }
            None => tclo_reply(false, b"Unknown Command"),
        }
    }

    fn capabilities(&self) -> Vec<Vec<u8>> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        // open-vm-tools: statechange support and retrying soft power ops.
        vec![
            b"tools.capability.statechange ".to_vec(),
            b"tools.capability.softpowerop_retry 1".to_vec(),
        ]
    }

    fn on_event(&mut self, _ctx: &mut dyn Context, _event: HostEvent) {}

    fn deadline(&self) -> Option<Instant> {
        self.running.as_ref().map(|_| self.next_check)
    }

    fn on_deadline(&mut self, ctx: &mut dyn Context, now: Instant) {
        let Some((state, stage)) = &mut self.running else {
            return;
        };
        let state = *state;
        self.next_check = now + CHILD_CHECK;
        match stage {
            Stage::NoScript => self.script_done(ctx, state, true),
            Stage::Script(child, started) => match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        log::warn!("powerops: {state:?} script ended with {status}");
                    }
                    self.script_done(ctx, state, status.success());
                }
                Ok(None)
                    if now.duration_since(*started)
                        > Duration::from_secs(self.cfg.script_timeout_secs) =>
                {
                    log::warn!("powerops: {state:?} script timed out; killed");
                    let _ = child.kill();
                    let _ = child.wait();
                    self.script_done(ctx, state, false);
                }
                Ok(None) => {}
                Err(e) => {
                    log::warn!("powerops: cannot wait for the {state:?} script: {e}");
                    self.script_done(ctx, state, false);
                }
            },
            Stage::Command(child) => match child.try_wait() {
                Ok(Some(status)) => {
                    if status.success() {
                        log::info!("powerops: {state:?} command done");
                    } else {
                        log::error!("powerops: the {state:?} command failed: {status}");
                    }
                    self.running = None;
                }
                Ok(None) => {}
                Err(_) => self.running = None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostCallError;

    #[derive(Debug, Default)]
    struct Recorder(Vec<String>);

    impl Context for Recorder {
        fn rpci(&mut self, msg: &[u8]) -> Result<Vec<u8>, HostCallError> {
            self.0.push(String::from_utf8_lossy(msg).into_owned());
            Ok(Vec::new())
        }
        fn backdoor(&mut self, _: protocol::Regs) -> Result<protocol::Regs, HostCallError> {
            Err(HostCallError::Channel("none".into()))
        }
    }

    fn run_until_idle(p: &mut PowerOps, ctx: &mut Recorder) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.busy() {
            assert!(Instant::now() < deadline, "state change never ended");
            std::thread::sleep(Duration::from_millis(5));
            p.on_deadline(ctx, Instant::now());
        }
    }

    #[test]
    fn halt_runs_script_reports_then_runs_command() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = dir.path().join("poweroff-vm-default");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho script >> {}\nsleep 0.2\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut p = PowerOps::new(PowerOpsConfig {
            halt_command: format!("echo halt >> {}", log.display()),
            scripts_dir: dir.path().into(),
            ..PowerOpsConfig::default()
        });
        let mut ctx = Recorder::default();
        assert_eq!(p.on_tclo(&mut ctx, "OS_Halt", b""), b"OK ");
        assert_eq!(
            p.on_tclo(&mut ctx, "OS_Reboot", b""),
            b"ERROR State change already in progress"
        );
        run_until_idle(&mut p, &mut ctx);
        assert_eq!(ctx.0, ["tools.os.statechange.status 1 1"]);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "script\nhalt\n");
    }

    #[test]
    fn failing_script_reports_failure_and_does_not_reboot() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("poweroff-vm-default");
        std::fs::write(&script, "#!/bin/sh\nexit 3\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let marker = dir.path().join("rebooted");
        let mut p = PowerOps::new(PowerOpsConfig {
            reboot_command: format!("touch {}", marker.display()),
            scripts_dir: dir.path().into(),
            ..PowerOpsConfig::default()
        });
        let mut ctx = Recorder::default();
        assert_eq!(p.on_tclo(&mut ctx, "OS_Reboot", b""), b"OK ");
        run_until_idle(&mut p, &mut ctx);
        assert_eq!(ctx.0, ["tools.os.statechange.status 0 2"]);
        assert!(!marker.exists());
    }

    #[test]
    fn resume_without_script() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = PowerOps::new(PowerOpsConfig {
            scripts_dir: dir.path().into(),
            ..PowerOpsConfig::default()
        });
        let mut ctx = Recorder::default();
        assert_eq!(p.on_tclo(&mut ctx, "OS_Resume", b""), b"OK ");
        // The status goes out after the reply, at the next check.
        assert!(ctx.0.is_empty());
        assert!(p.deadline().unwrap() <= Instant::now());
        p.on_deadline(&mut ctx, Instant::now());
        assert!(!p.busy());
        assert_eq!(ctx.0, ["tools.os.statechange.status 1 4"]);
    }
}
