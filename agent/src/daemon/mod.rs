//! The `vm-agent` daemon: one thread, one poll(2) loop.
//!
//! It holds a TCLO link (host commands) and an RPCI channel (guest
//! messages). On port I/O it first tries TCLO over vsock, where the host
//! pushes commands ([`crate::vsock`]); otherwise it polls TCLO over the
//! backdoor with vmtoolsd's back-off (immediately after a command, then
//! 10 ms more per idle poll up to `poll_max_ms`). In between it sleeps in
//! poll(2) on the plugins' descriptors (rtnetlink, hostname), the vsock link
//! and a signal pipe. Any channel failure
//! (host restarted, channel closed) drops both channels; the next attempt
//! reopens them and every plugin republishes.

pub mod notify;
pub mod tclo;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plugins::appinfo::AppInfoPlugin;
use plugins::capabilities::{Capabilities, TOOLS_TYPE_OPEN_VM_TOOLS};
use plugins::deploypkg::DeployPkg;
use plugins::guestinfo::GuestInfo;
use plugins::guestops::GuestOps;
use plugins::powerops::PowerOps;
use plugins::timesync::TimeSync;
use plugins::vmbackup::VmBackup;
use plugins::{Context, HostCallError, HostEvent, Plugin};
use protocol::guest::{Backdoor, ChannelError, GuestChannel};
use protocol::rpc::tclo_reply;
use protocol::{proto, Regs};

use crate::config::AgentConfig;
use crate::rpci::{BoxedBackdoor, Rpci, RpciError};
use crate::transport::{self, BackdoorSpec, TraceBackdoor};
use crate::vsock::{VsockRpci, VsockTclo};
use notify::Notifier;
use tclo::TcloCommand;

/// What the daemon reports as its version in the host's log.
pub const VERSION_LINE: &str = concat!("vm-agent ", env!("CARGO_PKG_VERSION"), " (Rust)");

/// TCLO idle poll step: vmtoolsd adds 10 ms per empty poll (lib/rpcIn).
const POLL_STEP: Duration = Duration::from_millis(10);
/// The vsock link's slot among the poll(2) descriptors' owners.
const VSOCK_OWNER: usize = usize::MAX - 1;

/// Longest wait between reconnect attempts while the host is away.
const MAX_RECONNECT: Duration = Duration::from_millis(500);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
}

/// How host commands reach the daemon.
enum TcloLink {
    /// Polled over a backdoor TCLO channel.
    Backdoor(GuestChannel<BoxedBackdoor>),
    /// Pushed over vsock.
    Vsock(VsockTclo),
}

/// The two channels to the host.
struct Conn {
    tclo: TcloLink,
    rpci: Rpci,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tclo = match &self.tclo {
            TcloLink::Backdoor(c) => format!("backdoor channel {}", c.id()),
            TcloLink::Vsock(v) => format!("vsock fd {}", v.fd()),
        };
        f.debug_struct("Conn")
            .field("tclo", &tclo)
            .field("rpci", &self.rpci)
            .finish()
    }
}

/// How long to wait for the hypervisor's vsock TCLO port to answer.
const VSOCK_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a new connection waits for the host's `reset` before the
/// plugins publish anyway (a VMX, and hvsim, send one at once; publishing
/// at connect as well would send everything twice).
const RESET_GRACE: Duration = Duration::from_secs(2);

/// The plugins' view of the RPCI channel.
struct Ctx<'a> {
    rpci: Option<&'a mut Rpci>,
    broken: &'a mut bool,
}

impl Context for Ctx<'_> {
    fn rpci(&mut self, msg: &[u8]) -> Result<Vec<u8>, HostCallError> {
        let Some(rpci) = self.rpci.as_deref_mut() else {
            return Err(HostCallError::Channel("not connected to the host".into()));
        };
        if *self.broken {
            return Err(HostCallError::Channel("the channel failed".into()));
        }
        log::trace!(
            "rpci > {}",
            String::from_utf8_lossy(&msg[..msg.len().min(120)])
        );
        match rpci.send(msg) {
            Ok(r) if r.ok => Ok(r.body),
            Ok(r) => Err(HostCallError::Refused(
                String::from_utf8_lossy(&r.body).into_owned(),
            )),
            Err(e @ RpciError::Format { .. }) => Err(HostCallError::Refused(e.to_string())),
            Err(e) => {
                *self.broken = true;
                Err(HostCallError::Channel(e.to_string()))
            }
        }
    }

    fn backdoor(&mut self, regs: Regs) -> Result<Regs, HostCallError> {
        let Some(rpci) = self.rpci.as_deref_mut() else {
            return Err(HostCallError::Channel("not connected to the host".into()));
        };
        rpci.backdoor().call(regs).map_err(|e| {
            *self.broken = true;
            HostCallError::Channel(e.to_string())
        })
    }
}

/// Work done after a TCLO reply went out (so the host is not kept waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Reset,
    Event(HostEvent),
}

/// Signals the loop reacts to (also used by the session agent).
#[derive(Debug)]
pub(crate) struct Signals {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) reload: Arc<AtomicBool>,
    pub(crate) wake: UnixStream,
}

impl Signals {
    pub(crate) fn install() -> std::io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let stop = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        let (wake, tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, stop.clone())?;
            signal_hook::low_level::pipe::register(sig, tx.try_clone()?)?;
        }
        signal_hook::flag::register(SIGHUP, reload.clone())?;
        signal_hook::low_level::pipe::register(SIGHUP, tx)?;
        Ok(Signals { stop, reload, wake })
    }

    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = std::io::Read::read(&mut &self.wake, &mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    cfg: AgentConfig,
    config_path: Option<PathBuf>,
    cli_backdoor: Option<BackdoorSpec>,
    spec: BackdoorSpec,
    caps: Capabilities,
    guestinfo: GuestInfo,
    powerops: PowerOps,
    timesync: TimeSync,
    vmbackup: VmBackup,
    appinfo: AppInfoPlugin,
    guestops: GuestOps,
    customization: DeployPkg,
    conn: Option<Conn>,
    /// A plugin (its index) owes the reply to the last TCLO command: no
    /// other command is taken until it comes.
    pending: Option<usize>,
    /// The connection the pending reply belongs to was lost: drop it.
    pending_stale: bool,
    /// Commands that arrived over vsock while a reply was pending.
    queued: std::collections::VecDeque<Vec<u8>>,
    reply: Vec<u8>,
    after: Vec<After>,
    delay: Duration,
    next_poll: Instant,
    next_connect: Instant,
    connect_failures: u32,
    notifier: Notifier,
    next_watchdog: Option<Instant>,
    /// A new connection publishes then, unless the host's `reset` comes first.
    announce_at: Option<Instant>,
    ready_sent: bool,
    /// Plugins did work (a publish burst) since the last trim of the heap.
    trim: bool,
}

impl Daemon {
    /// A daemon with this config; `config_path` is re-read on SIGHUP, and a
    /// `--backdoor` from the command line wins over the file.
    pub fn new(
        cfg: AgentConfig,
        config_path: Option<PathBuf>,
        cli_backdoor: Option<BackdoorSpec>,
    ) -> Daemon {
        let spec = cli_backdoor
            .clone()
            .unwrap_or_else(|| cfg.backdoor_spec().unwrap_or(BackdoorSpec::Auto));
        let now = Instant::now();
        Daemon {
            caps: Capabilities::new(cfg.agent.tools_version, TOOLS_TYPE_OPEN_VM_TOOLS),
            guestinfo: GuestInfo::new(cfg.guestinfo.clone()),
            powerops: PowerOps::new(cfg.powerops.clone()),
            timesync: TimeSync::new(cfg.timesync.clone()),
            vmbackup: VmBackup::new(cfg.vmbackup.clone()),
            appinfo: AppInfoPlugin::new(cfg.appinfo.clone()),
            guestops: GuestOps::new(cfg.guestops.clone()),
            customization: DeployPkg::new(cfg.customization.clone()),
            cfg,
            config_path,
            cli_backdoor,
            spec,
            conn: None,
            pending: None,
            pending_stale: false,
            queued: std::collections::VecDeque::new(),
            reply: Vec::new(),
            after: Vec::new(),
            delay: Duration::ZERO,
            next_poll: now,
            next_connect: now,
            connect_failures: 0,
            notifier: Notifier::from_env(),
            next_watchdog: None,
            announce_at: None,
            ready_sent: false,
            trim: false,
        }
    }

    /// Run until SIGTERM or SIGINT.
    pub fn run(mut self) -> Result<(), DaemonError> {
        let signals = Signals::install().map_err(DaemonError::Signals)?;
        log::info!("{VERSION_LINE} starting; backdoor {}", self.spec);
        self.next_watchdog = self
            .notifier
            .watchdog_interval()
            .map(|i| Instant::now() + i);
        loop {
            if signals.stop.swap(false, Ordering::SeqCst) {
                break;
            }
            if signals.reload.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            let now = Instant::now();
            if self.conn.is_none() && now >= self.next_connect {
                self.connect();
            }
            if self.polling() && Instant::now() >= self.next_poll {
                self.poll_tclo();
            }
            self.heartbeat();
            if self.announce_at.is_some_and(|t| Instant::now() >= t) {
                log::debug!("no reset from the host; publishing anyway");
                self.announce();
            }
            self.run_deadlines();
            self.collect_pending();
            if let (Some(at), Some(every)) = (self.next_watchdog, self.notifier.watchdog_interval())
            {
                if Instant::now() >= at {
                    self.notifier.notify("WATCHDOG=1");
                    self.next_watchdog = Some(Instant::now() + every);
                }
            }
            if std::mem::take(&mut self.trim) {
                release_free_memory();
            }
            self.wait(&signals);
            self.collect_pending();
        }
        log::info!("stopping");
        self.notifier.notify("STOPPING=1");
        if self.conn.is_some() {
            self.each_plugin(|p, ctx| p.on_shutdown(ctx));
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.rpci.close();
            if let TcloLink::Backdoor(tclo) = conn.tclo {
                let _ = tclo.close();
            }
        }
        Ok(())
    }

    /// Run `f` on every plugin with a context on the RPCI channel; a channel
    /// failure drops the connection afterwards.
    fn each_plugin(&mut self, mut f: impl FnMut(&mut dyn Plugin, &mut dyn Context)) {
        let mut broken = false;
        {
            let mut ctx = Ctx {
                rpci: self.conn.as_mut().map(|c| &mut c.rpci),
                broken: &mut broken,
            };
            let all: [&mut dyn Plugin; 8] = [
                &mut self.caps,
                &mut self.guestinfo,
                &mut self.powerops,
                &mut self.timesync,
                &mut self.vmbackup,
                &mut self.appinfo,
                &mut self.guestops,
                &mut self.customization,
            ];
            for p in all {
                f(p, &mut ctx);
            }
        }
        if broken {
            self.disconnect("the RPCI channel failed");
        }
    }

    /// Run `f` with a context on the RPCI channel.
    fn with_ctx<R>(&mut self, f: impl FnOnce(&mut dyn Context) -> R) -> R {
        let mut broken = false;
        let r = f(&mut Ctx {
            rpci: self.conn.as_mut().map(|c| &mut c.rpci),
            broken: &mut broken,
        });
        if broken {
            self.disconnect("the RPCI channel failed");
        }
        r
    }

    fn open_backdoor(&self) -> Result<BoxedBackdoor, String> {
        open_backdoor(&self.spec)
    }

    /// Whether TCLO over vsock is worth a try: on port I/O (a VMware host,
    /// or `hvsim exec`), not with a simulator's backdoor socket.
    fn vsock_applies(&self) -> bool {
        if !self.cfg.agent.vsock {
            return false;
        }
        match &self.spec {
            BackdoorSpec::Port => true,
            BackdoorSpec::Unix(_) => false,
            BackdoorSpec::Auto => {
                let env = std::env::var_os(transport::BACKDOOR_ENV);
                matches!(
                    transport::env_choice(env.as_deref()),
                    Ok(None | Some(BackdoorSpec::Port))
                )
            }
        }
    }

    /// Whether host commands are polled (the backdoor link) and none is
    /// waiting for a plugin's reply.
    fn polling(&self) -> bool {
        self.pending.is_none()
            && matches!(
                self.conn,
                Some(Conn {
                    tclo: TcloLink::Backdoor(_),
                    ..
                })
            )
    }

    fn connect(&mut self) {
        let try_vsock = self.vsock_applies();
        let attempt = || -> Result<Conn, String> {
            // RPCI first: it proves the backdoor works before vsock is tried.
            let rpci = Rpci::open(self.open_backdoor()?)
                .map_err(|e| format!("cannot open the RPCI channel: {}", crate::error_chain(&e)))?;
            let vsock = if try_vsock {
                match VsockTclo::connect(VSOCK_CONNECT_TIMEOUT) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        log::info!("no TCLO over vsock ({e}); polling over the backdoor");
                        None
                    }
                }
            } else {
                None
            };
            let mut rpci = rpci;
            if vsock.is_some() {
                // The host has vsock: RPCI over it too (port 976).
                match VsockRpci::connect(VSOCK_CONNECT_TIMEOUT) {
                    Ok(link) => rpci.use_vsock(link),
                    Err(e) => log::info!("no RPCI over vsock ({e}); sending over the backdoor"),
                }
            }
            let tclo = match vsock {
                Some(v) => TcloLink::Vsock(v),
                None => TcloLink::Backdoor(
                    GuestChannel::open(self.open_backdoor()?, proto::TCLO).map_err(|e| {
                        format!("cannot open the TCLO channel: {}", crate::error_chain(&e))
                    })?,
                ),
            };
            Ok(Conn { tclo, rpci })
        };
        match attempt() {
            Ok(conn) => {
                if self.connect_failures > 0 {
                    log::info!(
                        "reached the host again after {} attempt(s)",
                        self.connect_failures
                    );
                } else {
                    log::info!("connected to the host");
                }
                if matches!(conn.tclo, TcloLink::Vsock(_)) {
                    log::info!("host commands arrive over vsock");
                }
                if conn.rpci.over_vsock() {
                    log::info!("guest messages go over vsock");
                }
                self.conn = Some(conn);
                self.connect_failures = 0;
                self.reply.clear();
                self.delay = Duration::ZERO;
                self.next_poll = Instant::now();
                // The host greets a new channel with `reset`, which makes
                // the plugins publish (announce); without one, they publish
                // after RESET_GRACE.
                self.announce_at = Some(Instant::now() + RESET_GRACE);
                if !self.ready_sent {
                    self.ready_sent = true;
                    self.notifier
                        .notify("READY=1\nSTATUS=connected to the host");
                } else {
                    self.notifier.notify("STATUS=connected to the host");
                }
            }
            Err(e) => {
                self.connect_failures += 1;
                self.next_connect = connect_failed(
                    self.connect_failures,
                    &e,
                    self.cfg.agent.reconnect_ms,
                    5,
                    MAX_RECONNECT,
                );
                if !self.ready_sent {
                    // Ready as a service even without a host: systemd must
                    // not time the unit out on a machine that is not a VM yet.
                    self.ready_sent = true;
                    self.notifier.notify("READY=1\nSTATUS=waiting for the host");
                }
            }
        }
    }

    fn disconnect(&mut self, why: &str) {
        if self.conn.take().is_some() {
            log::warn!("lost the host: {why}; reconnecting");
            self.notifier.notify("STATUS=reconnecting to the host");
        }
        self.next_connect = Instant::now();
        self.connect_failures = self.connect_failures.max(1);
        self.after.clear();
        self.announce_at = None;
        self.queued.clear();
        self.pending_stale = self.pending.is_some();
    }

    /// What vmtoolsd does on `reset`: tell the host this is the unified
    /// loop, log the version, and have every plugin republish.
    fn announce(&mut self) {
        self.announce_at = None;
        let mut broken = false;
        if let Some(conn) = self.conn.as_mut() {
            for msg in [
                b"vmx.capability.unified_loop toolbox".to_vec(),
                format!("log {VERSION_LINE}").into_bytes(),
            ] {
                if let Err(e) = conn.rpci.send(&msg) {
                    broken = !matches!(e, RpciError::Format { .. });
                    break;
                }
            }
        }
        if broken {
            self.disconnect("the RPCI channel failed");
            return;
        }
        self.each_plugin(|p, ctx| p.on_reset(ctx));
        self.trim = true;
    }

    /// Commands pushed over vsock: answer each, then do what it asked for
    /// after the answer (as the backdoor poll does).
    fn service_vsock(&mut self) {
        let cmds = match self.conn.as_mut().map(|c| &mut c.tclo) {
            Some(TcloLink::Vsock(v)) => v.receive(),
            _ => return,
        };
        match cmds {
            Ok(c) => self.queued.extend(c),
            Err(e) => return self.disconnect(&format!("TCLO over vsock failed: {e}")),
        }
        self.run_vsock_queue();
    }

    /// Answer the queued vsock commands in order, stopping at one whose
    /// reply a plugin defers.
    fn run_vsock_queue(&mut self) {
        while self.pending.is_none() {
            let Some(cmd) = self.queued.pop_front() else {
                return;
            };
            log::debug!("tclo > {}", loggable(&cmd));
            match self.dispatch(&cmd) {
                Some(reply) => self.vsock_reply(&reply),
                None => return,
            }
        }
    }

    /// Send a reply over vsock, then do what the command asked for after it.
    fn vsock_reply(&mut self, reply: &[u8]) {
        let sent = match self.conn.as_mut().map(|c| &mut c.tclo) {
            Some(TcloLink::Vsock(v)) => v.reply(reply, Instant::now()),
            _ => return,
        };
        if let Err(e) = sent {
            return self.disconnect(&format!("TCLO over vsock failed: {e}"));
        }
        log::debug!(
            "tclo < {}",
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        );
        for a in std::mem::take(&mut self.after) {
            match a {
                After::Reset => self.announce(),
                After::Event(ev) => self.each_plugin(|p, ctx| p.on_event(ctx, ev)),
            }
        }
    }

    /// A deferred reply, once its plugin has it: send it (vsock) or hand it
    /// to the next poll (backdoor), then take commands again.
    fn collect_pending(&mut self) {
        let Some(index) = self.pending else {
            return;
        };
        // The same order as in `dispatch_tclo`, which gave the index.
        let all: [&mut dyn Plugin; 8] = [
            &mut self.caps,
            &mut self.guestinfo,
            &mut self.powerops,
            &mut self.timesync,
            &mut self.vmbackup,
            &mut self.appinfo,
            &mut self.guestops,
            &mut self.customization,
        ];
        let Some(reply) = all.into_iter().nth(index).and_then(|p| p.take_reply()) else {
            return;
        };
        self.pending = None;
        if std::mem::take(&mut self.pending_stale) {
            // The host that asked went away; the new one expects nothing.
            return;
        }
        match self.conn.as_ref().map(|c| &c.tclo) {
            Some(TcloLink::Vsock(_)) => {
                self.vsock_reply(&reply);
                self.run_vsock_queue();
            }
            Some(TcloLink::Backdoor(_)) => {
                self.reply = reply;
                self.next_poll = Instant::now();
            }
            // The host went away meanwhile: the reply has no one to go to.
            None => {}
        }
    }

    /// The vsock link's heartbeat, when due.
    fn heartbeat(&mut self) {
        if let Some(Conn {
            tclo: TcloLink::Vsock(v),
            ..
        }) = self.conn.as_mut()
        {
            if let Err(e) = v.heartbeat(Instant::now()) {
                self.disconnect(&format!("TCLO over vsock failed: {e}"));
            }
        }
    }

    fn poll_tclo(&mut self) {
        let Some(Conn {
            tclo: TcloLink::Backdoor(tclo),
            ..
        }) = self.conn.as_mut()
        else {
            return;
        };
        let reply = std::mem::take(&mut self.reply);
        if let Err(e) = tclo.send(&reply) {
            return self.tclo_failed(e);
        }
        if !reply.is_empty() {
            log::debug!(
                "tclo < {}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            );
        }
        for a in std::mem::take(&mut self.after) {
            match a {
                After::Reset => self.announce(),
                After::Event(ev) => self.each_plugin(|p, ctx| p.on_event(ctx, ev)),
            }
        }
        let Some(Conn {
            tclo: TcloLink::Backdoor(tclo),
            ..
        }) = self.conn.as_mut()
        else {
            return;
        };
        let cmd = match tclo.receive() {
            Ok(c) => c.to_vec(),
            Err(e) => return self.tclo_failed(e),
        };
        let now = Instant::now();
        if cmd.is_empty() {
            let max = Duration::from_millis(self.cfg.agent.poll_max_ms.max(1));
            self.delay = (self.delay + POLL_STEP).min(max);
        } else {
            log::debug!("tclo > {}", loggable(&cmd));
            // A deferred reply goes out at the first poll after it is ready.
            self.reply = self.dispatch(&cmd).unwrap_or_default();
            self.delay = Duration::ZERO;
        }
        self.next_poll = now + self.delay;
    }

    fn tclo_failed(&mut self, e: ChannelError) {
        self.disconnect(&format!("the TCLO channel failed: {e}"));
    }

    /// The reply to a host command, or `None` when a plugin defers it
    /// ([`Daemon::pending`] is then set).
    fn dispatch(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        Some(match tclo::parse(msg) {
            TcloCommand::Reset => {
                self.after.push(After::Reset);
                tclo_reply(true, b"ATR toolbox")
            }
            TcloCommand::Ping => tclo_reply(true, b""),
            TcloCommand::CapabilitiesRegister => {
                let all: [&dyn Plugin; 8] = [
                    &self.caps,
                    &self.guestinfo,
                    &self.powerops,
                    &self.timesync,
                    &self.vmbackup,
                    &self.appinfo,
                    &self.guestops,
                    &self.customization,
                ];
                let msgs: Vec<Vec<u8>> = all.iter().flat_map(|p| p.capabilities()).collect();
                self.with_ctx(|ctx| {
                    for m in &msgs {
                        if let Err(e) = ctx.rpci(m) {
                            log::warn!(
                                "capability {:?} not taken: {e}",
                                String::from_utf8_lossy(m)
                            );
                        }
                    }
                });
                tclo_reply(true, b"")
            }
            TcloCommand::SetOption { key, value } => {
                let mut verdict = None;
                self.each_plugin(|p, ctx| {
                    if verdict.is_none() {
                        verdict = p.set_option(ctx, key, value);
                    }
                });
                match verdict {
                    Some(true) => tclo_reply(true, b""),
                    _ => {
                        log::debug!("Set_Option {key} {value}: not taken");
                        tclo_reply(false, b"Unknown or invalid option")
                    }
                }
            }
            TcloCommand::Other { name, args } => {
                let mut reply = None;
                let mut index = 0;
                let mut deferred = None;
                self.each_plugin(|p, ctx| {
                    if reply.is_none() && deferred.is_none() && p.tclo_commands().contains(&name) {
                        match p.on_tclo_deferred(ctx, name, args) {
                            Some(r) => reply = Some(r),
                            None => deferred = Some(index),
                        }
                    }
                    index += 1;
                });
                if deferred.is_some() {
                    self.pending = deferred;
                    return None;
                }
                match reply {
                    Some(r) => {
                        if name == "OS_Resume" && r.starts_with(b"OK") {
                            self.after.push(After::Event(HostEvent::Resumed));
                        }
                        r
                    }
                    None => {
                        log::debug!("unknown TCLO command {name:?}");
                        tclo_reply(false, b"Unknown Command")
                    }
                }
            }
            TcloCommand::Invalid(why) => {
                log::warn!(
                    "malformed TCLO command from the host ({why}): {:?}",
                    String::from_utf8_lossy(&msg[..msg.len().min(64)])
                );
                tclo_reply(false, b"Unknown Command")
            }
        })
    }

    fn run_deadlines(&mut self) {
        let now = Instant::now();
        let mut ran = false;
        self.each_plugin(|p, ctx| {
            if p.deadline().is_some_and(|d| d <= now) {
                p.on_deadline(ctx, now);
                ran = true;
            }
        });
        self.trim |= ran;
    }

    /// Sleep in poll(2) until the next TCLO poll, plugin deadline or
    /// reconnect, a plugin descriptor or a signal.
    fn wait(&mut self, signals: &Signals) {
        let far = Instant::now() + Duration::from_secs(3600);
        let waiting = self.pending.is_some();
        let (mut until, vsock_fd) = match &self.conn {
            None => (self.next_connect, None),
            Some(Conn {
                tclo: TcloLink::Backdoor(_),
                ..
            }) => (if waiting { far } else { self.next_poll }, None),
            // While a reply is pending, new commands wait in the socket.
            Some(Conn {
                tclo: TcloLink::Vsock(v),
                ..
            }) => (v.next_ping().unwrap_or(far), (!waiting).then(|| v.fd())),
        };
        let mut fds: Vec<libc::pollfd> = vec![libc::pollfd {
            fd: signals.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut owners: Vec<usize> = vec![usize::MAX];
        if let Some(fd) = vsock_fd {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            owners.push(VSOCK_OWNER);
        }
        let all: [&dyn Plugin; 8] = [
            &self.caps,
            &self.guestinfo,
            &self.powerops,
            &self.timesync,
            &self.vmbackup,
            &self.appinfo,
            &self.guestops,
            &self.customization,
        ];
        for (i, p) in all.iter().enumerate() {
            if let Some(d) = p.deadline() {
                until = until.min(d);
            }
            for (fd, events) in p.fds() {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                owners.push(i);
            }
        }
        if let Some(w) = self.next_watchdog {
            until = until.min(w);
        }
        if let Some(a) = self.announce_at {
            until = until.min(a);
        }
        let timeout = until.saturating_duration_since(Instant::now());
        // Round up so a wake-up is never early (poll takes milliseconds).
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return;
        }
        if fds[0].revents != 0 {
            signals.drain();
        }
        if vsock_fd.is_some() && fds[1].revents != 0 {
            self.service_vsock();
        }
        let ready: Vec<(usize, RawFd)> = fds
            .iter()
            .zip(&owners)
            .skip(1)
            .filter(|(f, &o)| f.revents != 0 && o != VSOCK_OWNER)
            .map(|(f, &o)| (o, f.fd))
            .collect();
        if ready.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut index = 0;
        self.trim = true;
        self.each_plugin(|p, ctx| {
            for &(owner, fd) in &ready {
                if owner == index {
                    p.on_ready(ctx, fd, now);
                }
            }
            index += 1;
        });
    }

    /// SIGHUP: re-read the config file; keep the old one if the new fails.
    fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            log::info!("SIGHUP: no config file to reload");
            return;
        };
        let cfg = match AgentConfig::load(&path, false) {
            Ok(c) => c,
            Err(e) => {
                log::error!("SIGHUP: {e}; keeping the running config");
                return;
            }
        };
        log::info!("SIGHUP: reloaded {}", path.display());
        self.guestinfo.set_config(cfg.guestinfo.clone());
        self.powerops.set_config(cfg.powerops.clone());
        self.timesync.set_config(cfg.timesync.clone());
        self.vmbackup.set_config(cfg.vmbackup.clone());
        self.appinfo.set_config(cfg.appinfo.clone());
        self.guestops.set_config(cfg.guestops.clone());
        self.customization.set_config(cfg.customization.clone());
        self.caps = Capabilities::new(cfg.agent.tools_version, TOOLS_TYPE_OPEN_VM_TOOLS);
        let spec = self
            .cli_backdoor
            .clone()
            .unwrap_or_else(|| cfg.backdoor_spec().unwrap_or(BackdoorSpec::Auto));
        self.cfg = cfg;
        if spec != self.spec {
            self.spec = spec;
            self.disconnect("the backdoor setting changed");
        }
    }
}

/// Log failed attempt number `failures` to reach the host (the first as an
/// error, later ones at debug) and say when to try again: `reconnect_ms`
/// (at least 10) times the attempts so far, counting at most `steps`, and no
/// later than `cap` unless `reconnect_ms` itself is longer.
pub(crate) fn connect_failed(
    failures: u32,
    e: &str,
    reconnect_ms: u64,
    steps: u32,
    cap: Duration,
) -> Instant {
    if failures == 1 {
        log::error!("cannot reach the host: {e}; retrying");
    } else {
        log::debug!("cannot reach the host (attempt {failures}): {e}");
    }
    let base = Duration::from_millis(reconnect_ms.max(10));
    Instant::now() + (base * failures.min(steps)).min(cap.max(base))
}

/// A host command as the debug log shows it: guest operations carry a
/// user's password (and HGFS packets file data), so only their name and
/// size are logged.
fn loggable(cmd: &[u8]) -> String {
    let (name, args) = protocol::rpc::split_command(cmd);
    if name == b"Vix_1_Relayed_Command" || name == b"f" {
        return format!("{} ({} bytes)", String::from_utf8_lossy(name), args.len());
    }
    String::from_utf8_lossy(&cmd[..cmd.len().min(200)]).into_owned()
}

/// Set up the transport `spec` names (traced when `VM_BACKDOOR_TRACE=1`);
/// the error says why, with its cause.
pub(crate) fn open_backdoor(spec: &BackdoorSpec) -> Result<BoxedBackdoor, String> {
    let bd = transport::connect(spec).map_err(|e| crate::error_chain(&e))?;
    if transport::trace_enabled() {
        Ok(Box::new(TraceBackdoor::new(bd)))
    } else {
        Ok(bd)
    }
}

/// Give the heap's free pages back to the kernel after a burst of work
/// (a full publish builds and drops the NIC, disk and OS reports): the
/// daemon then idles at the memory its steady state needs.
fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every transport a daemon can use is a [`Backdoor`].
const _: fn() = || {
    fn is_backdoor<T: Backdoor>() {}
    is_backdoor::<BoxedBackdoor>();
};

#[cfg(test)]
mod tests {
    use super::loggable;

    #[test]
    fn guest_operations_are_logged_without_their_credentials() {
        let msg = protocol::vix::build_request(
            protocol::vix::op::LIST_FILES,
            0,
            1,
            &protocol::vix::Credential::name_password("alice", "hunter2"),
            b"",
        )
        .unwrap();
        let cmd = protocol::vix::tclo_command("1", &msg);
        let line = loggable(&cmd);
        assert!(line.starts_with("Vix_1_Relayed_Command ("), "{line}");
        let b64 = protocol::vix::obfuscate_name_password("alice", "hunter2");
        assert!(!line.contains(&b64[..8]));
        assert_eq!(loggable(b"ping"), "ping");
    }
}
