//! vmbackup: quiesced snapshots, as open-vm-tools' vmbackup plugin does them.
//!
//! The host sends `vmbackup.start` or `vmbackup.startWithOpts`; the guest
//! answers "OK ", reports `reset`, runs the freeze scripts, freezes the file
//! systems (`FIFREEZE`, reverse mount order) and reports
//! `prov.snapshotCommit`. The host takes its snapshot and sends
//! `vmbackup.snapshotDone`; the guest thaws (`FITHAW`), runs the thaw scripts
//! and reports `req.done`. Failures report `req.error <code> <reason>` and run
//! the `freezeFail` scripts; `vmbackup.abort` (or the guest's own timer)
//! thaws and reports `req.aborted`. While busy, `req.keepAlive` goes out
//! whenever no event went out for 2.5 s.
//!
//! Safety nets, so a guest is never left frozen (open-vm-tools #27):
//! * the operation's own timer (the host's timeout, else `timeout_secs`);
//! * a forked watchdog process holding the frozen mount points that thaws
//!   them when the agent dies or overruns the timer;
//! * a marker file (`state_file`, in /run) listing what is frozen, which a
//!   restarted agent thaws;
//! * dropping the plugin (agent stop) thaws.
//!
//! While file systems are frozen nothing may write to them: [`io_frozen`]
//! is true then, the agent's logger holds log lines in memory, and other
//! plugins (guest operations) answer busy.

pub mod freeze;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use protocol::rpc::tclo_reply;
use protocol::vmbackup::{self as wire, event, QuiesceParams, Status};
use serde::Deserialize;

use crate::{Context, Plugin};
use freeze::{FreezeError, Target, Watchdog};

static FROZEN: AtomicBool = AtomicBool::new(false);

/// True while vmbackup holds file systems frozen (between `FIFREEZE` and
/// `FITHAW`). Anything that might write to disk must wait or refuse: the
/// agent's logger buffers lines, guest operations answer busy (as vmtoolsd's
/// VIX refuses commands on TOOLS_CORE_SIG_IO_FREEZE).
pub fn io_frozen() -> bool {
    FROZEN.load(Ordering::SeqCst)
}

fn set_frozen(v: bool) {
    FROZEN.store(v, Ordering::SeqCst);
}

/// The `[vmbackup]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmBackupConfig {
    /// Answer quiesce requests at all.
    pub enabled: bool,
    /// Freeze only these mount points (each must be one); unset: every
    /// local file system.
    pub freeze: Option<Vec<PathBuf>>,
    /// Mount points never frozen (`*`/`?` patterns; vmtoolsd's
    /// `excludedFileSystems`).
    pub excluded_file_systems: Vec<String>,
    /// Freeze file systems; false: only sync(2) (vmtoolsd's
    /// `enableSyncDriver=false`).
    pub enable_sync_driver: bool,
    /// Run the freeze/thaw scripts when the host does not say.
    pub exec_scripts: bool,
    /// Extra argument for the scripts when the host gives none.
    pub script_arg: String,
    /// Give up (thaw) after this many seconds when the host sets no timeout;
    /// 0: never (not recommended).
    pub timeout_secs: u32,
    /// Directory of the freeze/thaw scripts (run in name order to freeze,
    /// reverse to thaw).
    pub scripts_dir: PathBuf,
    /// Legacy script run first to freeze.
    pub pre_freeze_script: PathBuf,
    /// Legacy script run last to thaw.
    pub post_thaw_script: PathBuf,
    /// Where the list of frozen mount points is kept while frozen (on a
    /// file system that is never frozen, e.g. /run).
    pub state_file: PathBuf,
    /// The mount table.
    pub mount_table: PathBuf,
}

impl Default for VmBackupConfig {
    fn default() -> Self {
        VmBackupConfig {
            enabled: true,
            freeze: None,
            excluded_file_systems: Vec::new(),
            enable_sync_driver: true,
            exec_scripts: true,
            script_arg: String::new(),
            timeout_secs: wire::DEFAULT_TIMEOUT_SECS,
            scripts_dir: "/etc/vmware-tools/backupScripts.d".into(),
            pre_freeze_script: "/usr/sbin/pre-freeze-script".into(),
            post_thaw_script: "/usr/sbin/post-thaw-script".into(),
            state_file: "/run/vm-agent/vmbackup-frozen".into(),
            mount_table: "/proc/self/mountinfo".into(),
        }
    }
}

/// How often a running script or the freeze thread is checked.
const CHECK: Duration = Duration::from_millis(20);
/// Keep-alive after half of VMBACKUP_KEEP_ALIVE_PERIOD without an event.
const KEEP_ALIVE: Duration = Duration::from_millis(wire::KEEP_ALIVE_PERIOD_MS / 2);
/// The watchdog process thaws this long after the operation's timer.
const WATCHDOG_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Freeze,
    Thaw,
    Fail,
}

impl Kind {
    fn arg(self) -> &'static str {
        match self {
            Kind::Freeze => "freeze",
            Kind::Thaw => "thaw",
            Kind::Fail => "freezeFail",
        }
    }
}

#[derive(Debug)]
enum Phase {
    /// Scripts of this kind run (one at a time).
    Scripts(Kind),
    /// The freeze thread runs.
    Freezing(std::thread::JoinHandle<Result<Vec<Target>, FreezeError>>),
    /// Frozen; waiting for `vmbackup.snapshotDone`.
    Frozen,
}

#[derive(Debug)]
struct Op {
    exec_scripts: bool,
    script_arg: String,
    quiesce_fs: bool,
    /// Slot 0 is the legacy script when one exists; vmtoolsd's list.
    scripts: Vec<PathBuf>,
    legacy: bool,
    /// vmtoolsd's `currentScript`: the script last started (-1: none yet).
    cur: isize,
    child: Option<Child>,
    phase: Phase,
    thaw_failed: bool,
    frozen: Vec<Target>,
    watchdog: Option<Watchdog>,
    marker: bool,
    abort_at: Option<Instant>,
    last_event: Instant,
    /// An abort came while the freeze thread ran: thaw when it ends.
    cancel: bool,
    /// Sending an event failed: abort at the next step (vmtoolsd's rpcState).
    rpc_error: bool,
    /// After an abort, send failures no longer matter.
    ignore_rpc: bool,
    /// What ran, for the `req.done` description.
    ran: Vec<String>,
}

/// The vmbackup plugin.
#[derive(Debug)]
pub struct VmBackup {
    cfg: VmBackupConfig,
    op: Option<Op>,
    next_step: Option<Instant>,
}

/// Options of one operation, from the host or the config.
#[derive(Debug, Clone)]
struct Options {
    exec_scripts: bool,
    script_arg: String,
    quiesce_fs: bool,
    timeout: u32,
}

impl VmBackup {
    /// A plugin with this config. Mount points a previous agent left frozen
    /// (its marker file exists) are thawed now.
    pub fn new(cfg: VmBackupConfig) -> VmBackup {
        recover(&cfg.state_file);
        VmBackup {
            cfg,
            op: None,
            next_step: None,
        }
    }

    /// Apply a new config (SIGHUP); an operation in progress goes on.
    pub fn set_config(&mut self, cfg: VmBackupConfig) {
        self.cfg = cfg;
    }

    /// True while an operation runs.
    pub fn busy(&self) -> bool {
        self.op.is_some()
    }

    fn send(&mut self, ctx: &mut dyn Context, name: &str, code: Status, desc: &str) -> bool {
        let msg = wire::event_message(name, code, desc);
        let r = ctx.rpci(&msg);
        if let Some(op) = self.op.as_mut() {
            op.last_event = Instant::now();
            if let Err(e) = &r {
                log::warn!("vmbackup: cannot send {name}: {e}");
                if !op.ignore_rpc {
                    op.rpc_error = true;
                }
            }
        }
        r.is_ok()
    }

    fn start(&mut self, ctx: &mut dyn Context, o: Options) -> Vec<u8> {
        let mut scripts = Vec::new();
        // Without execScripts vmtoolsd runs no script at all, legacy ones included.
        let legacy = o.exec_scripts
            && (self.cfg.pre_freeze_script.is_file() || self.cfg.post_thaw_script.is_file());
        if legacy {
            scripts.push(self.cfg.pre_freeze_script.clone());
        }
        if o.exec_scripts {
            if let Ok(rd) = std::fs::read_dir(&self.cfg.scripts_dir) {
                let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
                names.sort();
                scripts.extend(
                    names
                        .into_iter()
                        .map(|n| self.cfg.scripts_dir.join(n))
                        .filter(|p| p.is_file()),
                );
            }
        }
        let timeout = if o.timeout != 0 {
            o.timeout
        } else {
            self.cfg.timeout_secs
        };
        let now = Instant::now();
        log::info!(
            "vmbackup: quiesce requested (file systems {}, scripts {}, timeout {timeout} s)",
            if o.quiesce_fs && self.cfg.enable_sync_driver {
                "frozen"
            } else {
                "synced"
            },
            if o.exec_scripts { "on" } else { "off" },
        );
        self.op = Some(Op {
            exec_scripts: o.exec_scripts,
            script_arg: o.script_arg,
            quiesce_fs: o.quiesce_fs,
            scripts,
            legacy,
            cur: -1,
            child: None,
            phase: Phase::Scripts(Kind::Freeze),
            thaw_failed: false,
            frozen: Vec::new(),
            watchdog: None,
            marker: false,
            abort_at: (timeout != 0).then(|| now + Duration::from_secs(timeout.into())),
            last_event: now,
            cancel: false,
            rpc_error: false,
            ignore_rpc: false,
            ran: Vec::new(),
        });
        self.send(ctx, event::RESET, Status::Success, "");
        self.next_step = Some(now);
        tclo_reply(true, b"")
    }

    /// Start the next script of `kind`; false when none is left. A script
    /// that cannot start fails a freeze; thaw and fail go on.
    fn next_script(&mut self, kind: Kind) -> Result<bool, ()> {
        let post = self.cfg.post_thaw_script.clone();
        let Some(op) = self.op.as_mut() else {
            return Ok(false);
        };
        if !op.exec_scripts {
            return Ok(false);
        }
        loop {
            op.cur += if kind == Kind::Freeze { 1 } else { -1 };
            if op.cur < 0 || op.cur as usize >= op.scripts.len() {
                if kind != Kind::Freeze {
                    op.cur = -1;
                }
                return Ok(false);
            }
            let i = op.cur as usize;
            let path = if i == 0 && op.legacy && kind != Kind::Freeze {
                post.clone()
            } else {
                op.scripts[i].clone()
            };
            if !path.is_file() {
                continue;
            }
            let mut c = Command::new(&path);
            c.arg(kind.arg()).stdin(Stdio::null());
            if !op.script_arg.is_empty() {
                c.arg(&op.script_arg);
            }
            log::info!("vmbackup: running {} {}", path.display(), kind.arg());
            op.ran.push(format!(
                "{} {}",
                path.file_name().unwrap_or_default().to_string_lossy(),
                kind.arg()
            ));
            match spawn_retry(&mut c) {
                Ok(child) => {
                    op.child = Some(child);
                    return Ok(true);
                }
                Err(e) => {
                    log::warn!("vmbackup: cannot run {}: {e}", path.display());
                    if kind == Kind::Freeze {
                        return Err(());
                    }
                    op.thaw_failed = true;
                }
            }
        }
    }

    /// Move the operation on; called at each step deadline.
    fn step(&mut self, ctx: &mut dyn Context) {
        let Some(op) = self.op.as_mut() else { return };
        if op.rpc_error && !op.ignore_rpc {
            log::warn!("vmbackup: canceling the operation after failures to reach the host");
            self.do_abort(ctx);
            return;
        }
        match &mut op.phase {
            Phase::Scripts(kind) => {
                let kind = *kind;
                if let Some(child) = op.child.as_mut() {
                    match child.try_wait() {
                        Ok(None) => return,
                        Ok(Some(st)) => {
                            op.child = None;
                            if !st.success() {
                                log::warn!("vmbackup: {} script ended with {st}", kind.arg());
                                match kind {
                                    Kind::Freeze => return self.script_failed(ctx),
                                    Kind::Thaw => op.thaw_failed = true,
                                    Kind::Fail => {}
                                }
                            }
                        }
                        Err(e) => {
                            log::warn!("vmbackup: cannot wait for a script: {e}");
                            op.child = None;
                            if kind == Kind::Freeze {
                                return self.script_failed(ctx);
                            }
                        }
                    }
                }
                match self.next_script(kind) {
                    Ok(true) => {}
                    Err(()) => self.script_failed(ctx),
                    Ok(false) => match kind {
                        Kind::Freeze => self.start_freeze(ctx),
                        Kind::Thaw => {
                            if self.op.as_ref().is_some_and(|o| o.thaw_failed) {
                                self.report_script_error(ctx, "VmBackupOnThaw");
                            }
                            self.finish(ctx);
                        }
                        Kind::Fail => self.finish(ctx),
                    },
                }
            }
            Phase::Freezing(h) => {
                if !h.is_finished() {
                    return;
                }
                let Phase::Freezing(h) = std::mem::replace(&mut op.phase, Phase::Frozen) else {
                    return;
                };
                let r = h.join().unwrap_or_else(|_| Err(FreezeError::Nothing));
                match r {
                    Ok(targets) => {
                        op.frozen = targets;
                        if op.cancel {
                            // Aborted while freezing: undo, then the fail scripts.
                            self.thaw_all();
                            self.begin(Kind::Fail);
                            return;
                        }
                        let paths: Vec<String> = op
                            .frozen
                            .iter()
                            .map(|t| t.path.display().to_string())
                            .collect();
                        log::info!("vmbackup: froze {}", paths.join(", "));
                        if !self.send(ctx, event::SNAPSHOT_COMMIT, Status::Success, "") {
                            // The host will never say snapshotDone: thaw now.
                            log::warn!("vmbackup: the host did not take the commit; thawing");
                            self.thaw_all();
                            if let Some(op) = self.op.as_mut() {
                                op.rpc_error = false;
                                op.ignore_rpc = true;
                            }
                            self.begin(Kind::Fail);
                        }
                    }
                    Err(e) => {
                        self.release_freeze();
                        if op_cancelled(&self.op) {
                            self.begin(Kind::Fail);
                            return;
                        }
                        log::error!("vmbackup: {e}");
                        self.send(ctx, event::ERROR, Status::SyncError, &e.to_string());
                        self.begin(Kind::Fail);
                    }
                }
            }
            Phase::Frozen => {}
        }
    }

    fn script_failed(&mut self, ctx: &mut dyn Context) {
        log::error!("vmbackup: a freeze script failed");
        self.report_script_error(ctx, "VmBackupOnFreeze");
        self.begin(Kind::Fail);
    }

    /// A script error as vmtoolsd reports it: the script error, then the
    /// failed step (its operation names).
    fn report_script_error(&mut self, ctx: &mut dyn Context, step: &str) {
        self.send(
            ctx,
            event::ERROR,
            Status::ScriptError,
            "Custom quiesce script failed.",
        );
        let msg = format!("'{step}' operation failed.");
        self.send(ctx, event::ERROR, Status::UnexpectedError, &msg);
    }

    /// Switch to running scripts of `kind` (from the current position).
    fn begin(&mut self, kind: Kind) {
        if let Some(op) = self.op.as_mut() {
            op.phase = Phase::Scripts(kind);
            if kind == Kind::Thaw || kind == Kind::Fail {
                // vmtoolsd decrements from the position reached.
                op.cur = op.cur.min(op.scripts.len() as isize);
            }
        }
        self.next_step = Some(Instant::now());
    }

    fn start_freeze(&mut self, ctx: &mut dyn Context) {
        let Some(op) = self.op.as_mut() else { return };
        if !(op.quiesce_fs && self.cfg.enable_sync_driver) {
            // The null provider: flush, then let the host snapshot.
            // SAFETY: sync(2) has no preconditions.
            unsafe { libc::sync() };
            op.phase = Phase::Frozen;
            if !self.send(ctx, event::SNAPSHOT_COMMIT, Status::Success, "") {
                self.begin(Kind::Fail);
            }
            return;
        }
        let prepared = (|| {
            let plan = freeze::plan_from(
                &self.cfg.mount_table,
                self.cfg.freeze.as_deref(),
                &self.cfg.excluded_file_systems,
            )?;
            let targets = freeze::open_targets(&plan)?;
            let paths: Vec<PathBuf> = targets.iter().map(|t| t.path.clone()).collect();
            freeze::write_marker(&self.cfg.state_file, &paths)?;
            Ok::<_, FreezeError>(targets)
        })();
        let mut targets = match prepared {
            Ok(t) => t,
            Err(e) => {
                log::error!("vmbackup: {e}");
                self.send(ctx, event::ERROR, Status::SyncError, &e.to_string());
                self.begin(Kind::Fail);
                return;
            }
        };
        op.marker = true;
        let limit = op.abort_at.map(|a| {
            (a.saturating_duration_since(Instant::now()) + WATCHDOG_GRACE).as_millis() as u64
        });
        match Watchdog::spawn(&targets, limit) {
            Ok(w) => op.watchdog = Some(w),
            Err(e) => {
                log::warn!("vmbackup: no watchdog process ({e}); the timer and marker remain")
            }
        }
        log::debug!("vmbackup: freezing {} file system(s)", targets.len());
        // From here until the thaw, log lines stay in memory.
        set_frozen(true);
        let h = std::thread::Builder::new()
            .name("vmbackup-freeze".into())
            .spawn(move || freeze::freeze(&mut targets).map(|()| targets));
        match h {
            Ok(h) => op.phase = Phase::Freezing(h),
            Err(e) => {
                set_frozen(false);
                self.release_freeze();
                let msg = format!("cannot start the freeze thread: {e}");
                self.send(ctx, event::ERROR, Status::SyncError, &msg);
                self.begin(Kind::Fail);
            }
        }
    }

    /// Thaw what is frozen and drop the safety nets; the error text if
    /// thawing failed.
    fn thaw_all(&mut self) -> Option<String> {
        let op = self.op.as_mut()?;
        let r = freeze::thaw(&op.frozen);
        op.frozen.clear();
        set_frozen(false);
        self.release_freeze();
        match r {
            Ok(()) => {
                log::info!("vmbackup: thawed");
                None
            }
            Err(e) => {
                log::error!("vmbackup: {e}");
                Some(e.to_string())
            }
        }
    }

    /// Remove the marker and end the watchdog (nothing is frozen any more).
    fn release_freeze(&mut self) {
        set_frozen(false);
        let Some(op) = self.op.as_mut() else { return };
        if let Some(w) = op.watchdog.take() {
            w.finish();
        }
        if op.marker {
            op.marker = false;
            let _ = std::fs::remove_file(&self.cfg.state_file);
        }
    }

    fn snapshot_done(&mut self, ctx: &mut dyn Context) -> Vec<u8> {
        let Some(op) = self.op.as_mut() else {
            return tclo_reply(false, b"Error: no quiesce operation in progress");
        };
        if !matches!(op.phase, Phase::Frozen) {
            return tclo_reply(false, b"Error: unexpected state for quiesce done message.");
        }
        match self.thaw_all() {
            None => self.begin(Kind::Thaw),
            Some(e) => {
                self.send(ctx, event::ERROR, Status::SyncError, &e);
                self.begin(Kind::Fail);
            }
        }
        tclo_reply(true, b"")
    }

    /// `vmbackup.abort`, the timer, or lost contact with the host.
    fn do_abort(&mut self, ctx: &mut dyn Context) {
        let Some(op) = self.op.as_mut() else { return };
        op.ignore_rpc = true;
        op.rpc_error = false;
        op.abort_at = None;
        let phase = match &op.phase {
            Phase::Scripts(k) => Some(*k),
            _ => None,
        };
        if phase == Some(Kind::Fail) {
            return; // already failing
        }
        if let Some(mut c) = op.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let mut msg = "Quiesce canceled.";
        match &op.phase {
            Phase::Frozen => {
                if self.thaw_all().is_some() {
                    msg = "Quiesce could not be canceled.";
                }
            }
            Phase::Freezing(_) => op.cancel = true,
            Phase::Scripts(_) => {}
        }
        log::warn!("vmbackup: operation aborted");
        self.send(ctx, event::ABORTED, Status::RemoteAbort, msg);
        match phase {
            Some(Kind::Thaw) => self.finish(ctx),
            Some(_) => self.begin(Kind::Fail),
            None => {
                if !op_cancelled(&self.op) {
                    self.begin(Kind::Fail);
                }
            }
        }
    }

    fn finish(&mut self, ctx: &mut dyn Context) {
        let ran = self
            .op
            .as_ref()
            .map(|o| o.ran.join(", "))
            .unwrap_or_default();
        self.release_freeze();
        let desc = if ran.is_empty() {
            String::new()
        } else {
            format!("scripts: {ran}")
        };
        self.send(ctx, event::DONE, Status::Success, &desc);
        self.op = None;
        self.next_step = None;
        log::info!("vmbackup: quiesce operation over");
    }

    fn options_from_config(&self) -> Options {
        Options {
            exec_scripts: self.cfg.exec_scripts,
            script_arg: self.cfg.script_arg.clone(),
            quiesce_fs: true,
            timeout: 0,
        }
    }
}

fn op_cancelled(op: &Option<Op>) -> bool {
    op.as_ref().is_some_and(|o| o.cancel)
}

/// Run a command; retry briefly on ETXTBSY (a script written a moment ago
/// may still be open in a child another thread forked).
fn spawn_retry(c: &mut Command) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match c.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Thaw what a previous agent's marker lists, then remove the marker.
fn recover(marker: &Path) {
    let Some(paths) = freeze::read_marker(marker) else {
        return;
    };
    log::warn!(
        "vmbackup: a previous run left file systems frozen ({}); thawing them",
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    match freeze::thaw_paths(&paths) {
        Ok(n) => log::info!("vmbackup: thawed {n} file system(s) left frozen"),
        Err(e) => log::error!("vmbackup: {e}"),
    }
    let _ = std::fs::remove_file(marker);
}

impl Plugin for VmBackup {
    fn name(&self) -> &'static str {
        "vmbackup"
    }

    fn tclo_commands(&self) -> &'static [&'static str] {
        &[
            wire::START,
            wire::START_WITH_OPTS,
            wire::ABORT,
            wire::SNAPSHOT_DONE,
            wire::SNAPSHOT_COMPLETED,
        ]
    }

    fn on_tclo(&mut self, ctx: &mut dyn Context, cmd: &str, args: &[u8]) -> Vec<u8> {
        if !self.cfg.enabled {
            return tclo_reply(false, b"Quiescing is disabled in the guest");
        }
        match cmd {
            wire::START | wire::START_WITH_OPTS => {
                if self.op.is_some() {
                    return tclo_reply(false, wire::BUSY.as_bytes());
                }
                let o = if cmd == wire::START {
                    // The options come from the config (vmtoolsd: tools.conf);
                    // generateManifests and disk UUIDs mean nothing here.
                    let _ = wire::parse_start(args);
                    self.options_from_config()
                } else {
                    match QuiesceParams::decode(args) {
                        Ok(p) => {
                            if p.create_manifest {
                                log::debug!("vmbackup: manifests are not written");
                            }
                            Options {
                                exec_scripts: p.exec_scripts,
                                script_arg: p.script_arg,
                                quiesce_fs: p.quiesce_fs,
                                timeout: p.timeout,
                            }
                        }
                        Err(e) => {
                            log::warn!("vmbackup: {e}");
                            return tclo_reply(false, e.to_string().as_bytes());
                        }
                    }
                };
                self.start(ctx, o)
            }
            wire::ABORT => {
                if self.op.is_none() {
                    return tclo_reply(false, b"Error: no quiesce operation in progress");
                }
                self.do_abort(ctx);
                tclo_reply(true, b"")
            }
            wire::SNAPSHOT_DONE => self.snapshot_done(ctx),
            _ => tclo_reply(false, b"Error: no quiesce complete in progress"),
        }
    }

    fn on_reset(&mut self, ctx: &mut dyn Context) {
        if self.op.is_some() {
            // The host's side of the operation is gone with the channel.
            log::warn!("vmbackup: the channel to the host was reset mid-operation");
            if let Some(op) = self.op.as_mut() {
                op.rpc_error = false;
            }
            self.do_abort(ctx);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let op = self.op.as_ref()?;
        let mut d = op.last_event + KEEP_ALIVE;
        if let Some(a) = op.abort_at {
            d = d.min(a);
        }
        if let Some(s) = self.next_step {
            d = d.min(s);
        }
        Some(d)
    }

    fn on_deadline(&mut self, ctx: &mut dyn Context, now: Instant) {
        let Some(op) = self.op.as_ref() else { return };
        if op.abort_at.is_some_and(|a| now >= a) {
            log::warn!("vmbackup: canceling the operation: timed out");
            self.do_abort(ctx);
        }
        if self.next_step.is_some_and(|s| now >= s) {
            self.next_step = Some(now + CHECK);
            self.step(ctx);
        }
        if let Some(op) = self.op.as_ref() {
            if now >= op.last_event + KEEP_ALIVE {
                self.send(ctx, event::KEEP_ALIVE, Status::Success, "");
            }
        }
    }
}

impl Drop for VmBackup {
    fn drop(&mut self) {
        if let Some(op) = self.op.as_mut() {
            if let Some(mut c) = op.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            if let Phase::Freezing(h) = std::mem::replace(&mut op.phase, Phase::Frozen) {
                if let Ok(Ok(t)) = h.join() {
                    op.frozen = t;
                }
            }
            self.thaw_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostCallError;

    #[derive(Debug, Default)]
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

    /// A plugin that never freezes (sync only) with scripts in `dir`.
    fn plugin(dir: &Path) -> VmBackup {
        VmBackup::new(VmBackupConfig {
            enable_sync_driver: false,
            scripts_dir: dir.join("scripts"),
            pre_freeze_script: dir.join("pre"),
            post_thaw_script: dir.join("post"),
            state_file: dir.join("marker"),
            ..VmBackupConfig::default()
        })
    }

    fn run_until(p: &mut VmBackup, h: &mut Host, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !h.0.iter().any(|m| m.contains(what)) {
            assert!(Instant::now() < deadline, "no {what}: {:?}", h.0);
            std::thread::sleep(Duration::from_millis(5));
            p.on_deadline(h, Instant::now());
        }
    }

    #[test]
    fn replies_and_events_as_vmtoolsd() {
        let d = tempfile::tempdir().unwrap();
        let mut p = plugin(d.path());
        let mut h = Host::default();
        assert_eq!(
            p.on_tclo(&mut h, wire::SNAPSHOT_DONE, b""),
            b"ERROR Error: no quiesce operation in progress"
        );
        assert_eq!(
            p.on_tclo(&mut h, wire::ABORT, b""),
            b"ERROR Error: no quiesce operation in progress"
        );
        let mut v2 = QuiesceParams::default().encode();
        v2[3] = 2;
        assert_eq!(
            p.on_tclo(&mut h, wire::START_WITH_OPTS, &v2),
            b"ERROR Incompatible quiesce parameter version"
        );
        assert_eq!(p.on_tclo(&mut h, wire::START, b"0"), b"OK ");
        assert_eq!(
            p.on_tclo(&mut h, wire::START, b"0"),
            b"ERROR Quiesce operation already in progress."
        );
        assert_eq!(h.0, ["vmbackup.eventSet reset 0 "]);
        // Not quiesced yet: snapshotDone is out of order until the commit.
        run_until(&mut p, &mut h, "prov.snapshotCommit");
        assert!(!io_frozen(), "the sync-only provider freezes nothing");
        assert_eq!(p.on_tclo(&mut h, wire::SNAPSHOT_DONE, b""), b"OK ");
        run_until(&mut p, &mut h, "req.done");
        assert_eq!(
            h.0,
            [
                "vmbackup.eventSet reset 0 ",
                "vmbackup.eventSet prov.snapshotCommit 0 ",
                "vmbackup.eventSet req.done 0 ",
            ]
        );
        assert!(!p.busy());
        assert_eq!(p.deadline(), None, "nothing scheduled when idle");
    }

    #[test]
    fn legacy_scripts_first_and_last_and_only_with_exec_scripts() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        std::fs::create_dir(d.path().join("scripts")).unwrap();
        for (name, path) in [
            ("pre", d.path().join("pre")),
            ("post", d.path().join("post")),
            ("10-a", d.path().join("scripts/10-a")),
        ] {
            std::fs::write(
                &path,
                format!("#!/bin/sh\necho \"{name} $*\" >> {}\n", log.display()),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let mut p = plugin(d.path());
        let mut h = Host::default();
        let opts = |exec_scripts| {
            QuiesceParams {
                quiesce_fs: true,
                exec_scripts,
                script_arg: "x y".into(),
                ..QuiesceParams::default()
            }
            .encode()
        };
        assert_eq!(
            p.on_tclo(&mut h, wire::START_WITH_OPTS, &opts(true)),
            b"OK "
        );
        run_until(&mut p, &mut h, "prov.snapshotCommit");
        p.on_tclo(&mut h, wire::SNAPSHOT_DONE, b"");
        run_until(&mut p, &mut h, "req.done");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "pre freeze x y\n10-a freeze x y\n10-a thaw x y\npost thaw x y\n"
        );
        assert!(h
            .0
            .last()
            .unwrap()
            .ends_with("req.done 0 scripts: pre freeze, 10-a freeze, 10-a thaw, post thaw"));
        std::fs::remove_file(&log).unwrap();
        h.0.clear();
        p.on_tclo(&mut h, wire::START_WITH_OPTS, &opts(false));
        run_until(&mut p, &mut h, "prov.snapshotCommit");
        p.on_tclo(&mut h, wire::ABORT, b"");
        run_until(&mut p, &mut h, "req.done");
        assert!(!log.exists(), "no script runs without execScripts");
        assert!(h
            .0
            .contains(&"vmbackup.eventSet req.aborted 4 Quiesce canceled.".to_string()));
    }
}
