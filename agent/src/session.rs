//! `vm-agent --session`: the agent of one user's desktop session.
//!
//! The root service has no display, so the plugins that need one (the
//! clipboard) run here, started by the desktop's autostart. This loop opens
//! no message channel (no TCLO, no RPCI) and publishes nothing: the root
//! service does that. It reaches the host through the same transport
//! selection as the daemon and makes plain backdoor calls only; one poll(2)
//! loop sleeps until the plugin's next host poll, an X clipboard change (the
//! plugin's descriptor) or a signal.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use plugins::clipboard::{ClipboardError, ClipboardPlugin};
use plugins::{Context, HostCallError, Plugin};
use protocol::guest::Backdoor;
use protocol::Regs;

use crate::config::AgentConfig;
use crate::daemon::{connect_failed, open_backdoor, Signals, VERSION_LINE};
use crate::rpci::BoxedBackdoor;
use crate::transport::{self, BackdoorSpec, SelectError};

/// Longest wait between reconnect attempts while the host is away.
const MAX_RECONNECT: Duration = Duration::from_secs(5);

/// Why the session agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The desktop clipboard is not usable.
    #[error(transparent)]
    Clipboard(#[from] ClipboardError),
    /// The X clipboard watcher ended (the X server went away).
    #[error("the X clipboard is no longer watched (did the X session end?)")]
    Watcher,
}

/// Why a session agent with this transport has nothing to do: `auto`, no
/// `VM_BACKDOOR`, and CPUID names no VMware hypervisor. The autostart entry
/// starts it in every desktop session, VM or not; it then exits quietly.
pub fn nothing_to_do(spec: &BackdoorSpec) -> Option<String> {
    if *spec != BackdoorSpec::Auto {
        return None;
    }
    let env = std::env::var_os(transport::BACKDOOR_ENV);
    match transport::env_choice(env.as_deref()) {
        Ok(Some(_)) | Err(_) => return None,
        Ok(None) => {}
    }
    match transport::resolve_auto(crate::cpuid::hypervisor_signature().as_deref(), None) {
        Err(e @ SelectError::NotVmware { .. }) => Some(e.to_string()),
        _ => None,
    }
}

/// The plugins' view of the host in session mode: plain backdoor calls.
struct Ctx<'a> {
    backdoor: Option<&'a mut BoxedBackdoor>,
    broken: &'a mut bool,
}

impl Context for Ctx<'_> {
    fn rpci(&mut self, _msg: &[u8]) -> Result<Vec<u8>, HostCallError> {
        Err(HostCallError::Channel(
            "the session agent opens no RPCI channel".into(),
        ))
    }

    fn backdoor(&mut self, regs: Regs) -> Result<Regs, HostCallError> {
        let Some(bd) = self.backdoor.as_deref_mut() else {
            return Err(HostCallError::Channel("not connected to the host".into()));
        };
        if *self.broken {
            return Err(HostCallError::Channel("the transport failed".into()));
        }
        bd.call(regs).map_err(|e| {
            *self.broken = true;
            HostCallError::Channel(e.to_string())
        })
    }
}

/// The session agent.
pub struct Session {
    cfg: AgentConfig,
    config_path: Option<std::path::PathBuf>,
    cli_backdoor: Option<BackdoorSpec>,
    spec: BackdoorSpec,
    clipboard: ClipboardPlugin,
    backdoor: Option<BoxedBackdoor>,
    next_connect: Instant,
    connect_failures: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport is a trait object without Debug.
        f.debug_struct("Session")
            .field("spec", &self.spec)
            .field("clipboard", &self.clipboard)
            .field("connected", &self.backdoor.is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The transport a session with this config and `--backdoor` uses.
    pub fn spec(cfg: &AgentConfig, cli_backdoor: Option<&BackdoorSpec>) -> BackdoorSpec {
        cli_backdoor
            .cloned()
            .unwrap_or_else(|| cfg.backdoor_spec().unwrap_or(BackdoorSpec::Auto))
    }

    /// A session agent with this config (`--backdoor` from the command line
    /// wins over the file). Fails when the desktop clipboard is unusable
    /// (no X display).
    pub fn new(
        cfg: AgentConfig,
        config_path: Option<std::path::PathBuf>,
        cli_backdoor: Option<BackdoorSpec>,
    ) -> Result<Session, SessionError> {
        let spec = Session::spec(&cfg, cli_backdoor.as_ref());
        let clipboard = ClipboardPlugin::x11(cfg.clipboard.clone())?;
        Ok(Session {
            cfg,
            config_path,
            cli_backdoor,
            spec,
            clipboard,
            backdoor: None,
            next_connect: Instant::now(),
            connect_failures: 0,
        })
    }

    /// Run until SIGTERM or SIGINT, or until the X session ends.
    pub fn run(mut self) -> Result<(), SessionError> {
        let signals = Signals::install().map_err(SessionError::Signals)?;
        log::info!(
            "{VERSION_LINE} starting in session mode (clipboard {}); backdoor {}",
            if self.cfg.clipboard.enabled {
                "on"
            } else {
                "off in the config"
            },
            self.spec
        );
        loop {
            if signals.stop.swap(false, Ordering::SeqCst) {
                break;
            }
            if signals.reload.swap(false, Ordering::SeqCst) {
                self.reload();
            }
            if !self.clipboard.watching() {
                return Err(SessionError::Watcher);
            }
            if self.backdoor.is_none() && Instant::now() >= self.next_connect {
                self.connect();
            }
            if self
                .clipboard
                .deadline()
                .is_some_and(|d| d <= Instant::now())
            {
                self.with_ctx(|p, ctx| p.on_deadline(ctx, Instant::now()));
            }
            self.wait(&signals);
        }
        log::info!("stopping");
        Ok(())
    }

    fn with_ctx(&mut self, f: impl FnOnce(&mut ClipboardPlugin, &mut dyn Context)) {
        let mut broken = false;
        f(
            &mut self.clipboard,
            &mut Ctx {
                backdoor: self.backdoor.as_mut(),
                broken: &mut broken,
            },
        );
        if broken {
            log::warn!("lost the host: the transport failed; reconnecting");
            self.backdoor = None;
            self.next_connect = Instant::now();
            self.connect_failures = self.connect_failures.max(1);
        }
    }

    fn connect(&mut self) {
        match open_backdoor(&self.spec) {
            Ok(bd) => {
                if self.connect_failures > 0 {
                    log::info!(
                        "reached the host again after {} attempt(s)",
                        self.connect_failures
                    );
                } else {
                    log::info!("connected to the host");
                }
                self.connect_failures = 0;
                self.backdoor = Some(bd);
                self.with_ctx(|p, ctx| p.on_reset(ctx));
            }
            Err(e) => {
                self.connect_failures += 1;
                self.next_connect = connect_failed(
                    self.connect_failures,
                    &e,
                    self.cfg.agent.reconnect_ms,
                    25,
                    MAX_RECONNECT,
                );
            }
        }
    }

    /// Sleep in poll(2) until the plugin's deadline, a reconnect, the
    /// plugin's descriptor or a signal.
    fn wait(&mut self, signals: &Signals) {
        let mut until = self.clipboard.deadline();
        if self.backdoor.is_none() {
            until = Some(until.map_or(self.next_connect, |d| d.min(self.next_connect)));
        }
        let mut fds = vec![libc::pollfd {
            fd: signals.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for (fd, events) in self.clipboard.fds() {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
        }
        let ms = match until {
            // Round up so a wake-up is never early (poll takes milliseconds).
            Some(t) => t
                .saturating_duration_since(Instant::now())
                .as_micros()
                .div_ceil(1000)
                .min(i32::MAX as u128) as i32,
            None => -1,
        };
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return;
        }
        if fds[0].revents != 0 {
            signals.drain();
        }
        let ready: Vec<RawFd> = fds
            .iter()
            .skip(1)
            .filter(|f| f.revents != 0)
            .map(|f| f.fd)
            .collect();
        for fd in ready {
            self.with_ctx(|p, ctx| p.on_ready(ctx, fd, Instant::now()));
        }
    }

    /// SIGHUP: re-read the `[clipboard]` section (and the backdoor).
    fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            log::info!("SIGHUP: no config file to reload");
            return;
        };
        match AgentConfig::load(&path, false) {
            Ok(cfg) => {
                log::info!("SIGHUP: reloaded {}", path.display());
                self.clipboard.set_config(cfg.clipboard.clone());
                self.spec = Session::spec(&cfg, self.cli_backdoor.as_ref());
                self.cfg = cfg;
                // Start over: the plugin resynchronises on reconnect.
                self.backdoor = None;
                self.next_connect = Instant::now();
            }
            Err(e) => log::error!("SIGHUP: {e}; keeping the running config"),
        }
    }
}
