//! clipboard: copy and paste of text between the guest's desktop and the
//! host, over the backdoor's legacy selection commands (open-vm-tools
//! `services/plugins/dndcp/copyPasteCompat*.c`).
//!
//! * Guest to host: the X clipboard's change events (clipboard-master, on a
//!   thread of its own) wake the agent through a socket pair the plugin
//!   exposes as a file descriptor; the plugin then reads the text and hands it
//!   over with SETSELLENGTH and one SETNEXTPIECE per 4 bytes.
//! * Host to guest: the host's selection is polled (GETSELLENGTH, then one
//!   GETNEXTPIECE per 4 bytes) every `host_poll_ms`, and put on the X
//!   clipboard when it changed.
//! * GETSELLENGTH answering -2 means the host does not allow copy/paste for
//!   this VM: then nothing crosses in either direction and the host is asked
//!   again only every `disabled_poll_ms`.
//!
//! Loops: the plugin remembers the last text exchanged, as the desktop holds
//! it and as the host holds it. Text it put on the X clipboard comes back as
//! a change event and is recognised; the guest's own text read back from the
//! host (hosts keep the last selection from either side) is too.
//!
//! Limits, as open-vm-tools: a selection is at most
//! [`MAX_SELECTION`] bytes including the C string's terminator, so guest text
//! is cut to [`MAX_GUEST_TEXT`] bytes (at a UTF-8 character boundary, where
//! the tools cut bytes), and a host selection longer than [`MAX_SELECTION`]
//! is refused. Text stops at its first NUL byte (the tools use C strings).
//!
//! The plugin runs only in `vm-agent --session`, in the user's desktop
//! session: the root service has no display.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use protocol::{cmd, Regs};
use serde::Deserialize;

use crate::{Context, HostCallError, Plugin};

/// Largest selection the backdoor channel carries, terminator included
/// (`MAX_SELECTION_BUFFER_LENGTH`, open-vm-tools
/// `lib/include/vmware/guestrpc/tclodefs.h`).
pub const MAX_SELECTION: usize = (1 << 16) - 100;
/// Longest guest text sent to the host: open-vm-tools cuts the guest's
/// selection to one byte less than the buffer (room for the NUL).
pub const MAX_GUEST_TEXT: usize = MAX_SELECTION - 1;
/// GETSELLENGTH: the host has no selection ready.
pub const SEL_NOT_READY: u32 = 0xFFFF_FFFF;
/// GETSELLENGTH: copy/paste is disabled for this VM ("don't exchange").
pub const SEL_DONT_EXCHANGE: u32 = 0xFFFF_FFFE;

#[cfg(feature = "x11")]
/// How often clipboard-master's X11 thread looks for selection events.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);
/// After each change event the desktop clipboard is read once more this much
/// later: clipboard-master's X11 loop pauses for its interval after an
/// event and drops events from that pause, so a second copy made right
/// after the first would otherwise go unnoticed.
const RECHECK_AFTER: Duration = Duration::from_millis(1200);
/// A host text whose length did not change is read again in full (one call
/// per 4 bytes) only after this many host polls per 16 pieces: short texts
/// every poll, long ones rarely, so an idle session costs little.
const PIECES_PER_POLL: usize = 16;
/// Longest wait before a same-length host text is read again.
const MAX_REREAD: Duration = Duration::from_secs(60);

/// The `[clipboard]` config section (used by `vm-agent --session`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClipboardConfig {
    /// Share the clipboard with the host at all (the host must allow it too).
    pub enabled: bool,
    /// How often the host's clipboard is checked while the session runs, ms.
    pub host_poll_ms: u64,
    /// How often a host that said "don't exchange" is asked again, ms.
    pub disabled_poll_ms: u64,
}

impl Default for ClipboardConfig {
    fn default() -> Self {
        ClipboardConfig {
            enabled: true,
            host_poll_ms: 500,
            disabled_poll_ms: 10_000,
        }
    }
}

/// Why the desktop clipboard cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClipboardError {
    /// No X display to talk to.
    #[error(
        "DISPLAY is not set: the clipboard needs the user's X11 desktop session \
         (start `vm-agent --session` from it)"
    )]
    NoDisplay,
    /// Only X11 is supported.
    #[error("XDG_SESSION_TYPE is \"{0}\": the clipboard supports X11 sessions only")]
    UnsupportedSession(String),
    /// The X server refused or could not be reached.
    #[error("cannot use the X clipboard on display {display:?}: {reason}")]
    X11 {
        /// `DISPLAY`.
        display: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading or writing the clipboard failed.
    #[error("the desktop clipboard: {0}")]
    Access(String),
    /// The change watcher could not be set up.
    #[error("cannot watch the X clipboard")]
    Watcher(#[source] io::Error),
}

/// The desktop's clipboard, as the plugin uses it.
pub trait DesktopClipboard: std::fmt::Debug {
    /// The clipboard's text; `None` when it holds no text.
    fn get_text(&mut self) -> Result<Option<String>, ClipboardError>;
    /// Replace the clipboard's content with `text`.
    fn set_text(&mut self, text: &str) -> Result<(), ClipboardError>;
}

#[cfg(feature = "x11")]
/// The X11 CLIPBOARD selection, through arboard (which serves our own
/// selection to other programs from a thread of its own).
pub struct X11Clipboard {
    inner: arboard::Clipboard,
}

#[cfg(feature = "x11")]
impl std::fmt::Debug for X11Clipboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Clipboard").finish_non_exhaustive()
    }
}

#[cfg(feature = "x11")]
impl X11Clipboard {
    /// Connect to the X server `DISPLAY` names.
    pub fn open() -> Result<Self, ClipboardError> {
        let display = x11_display()?;
        let inner = arboard::Clipboard::new().map_err(|e| ClipboardError::X11 {
            display,
            reason: e.to_string(),
        })?;
        Ok(X11Clipboard { inner })
    }
}

#[cfg(feature = "x11")]
impl DesktopClipboard for X11Clipboard {
    fn get_text(&mut self) -> Result<Option<String>, ClipboardError> {
        match self.inner.get_text() {
            Ok(t) => Ok(Some(t)),
            Err(arboard::Error::ContentNotAvailable) => Ok(None),
            Err(e) => Err(ClipboardError::Access(e.to_string())),
        }
    }

    fn set_text(&mut self, text: &str) -> Result<(), ClipboardError> {
        self.inner
            .set_text(text)
            .map_err(|e| ClipboardError::Access(e.to_string()))
    }
}

#[cfg(feature = "x11")]
/// `DISPLAY`, checked: set, and the session (if it says) is X11.
fn x11_display() -> Result<String, ClipboardError> {
    match std::env::var("XDG_SESSION_TYPE").as_deref() {
        Ok("x11") | Ok("") | Err(_) => {}
        Ok(other) => return Err(ClipboardError::UnsupportedSession(other.to_owned())),
    }
    std::env::var("DISPLAY")
        .ok()
        .filter(|d| !d.is_empty())
        .ok_or(ClipboardError::NoDisplay)
}

#[cfg(feature = "x11")]
/// clipboard-master's handler: one byte into the socket pair per change.
struct Notify {
    tx: UnixStream,
}

#[cfg(feature = "x11")]
impl clipboard_master::ClipboardHandler for Notify {
    fn on_clipboard_change(&mut self) -> clipboard_master::CallbackResult {
        // Non-blocking: a full socket already says "changed".
        let _ = io::Write::write(&mut &self.tx, &[1]);
        clipboard_master::CallbackResult::Next
    }

    fn on_clipboard_error(&mut self, error: io::Error) -> clipboard_master::CallbackResult {
        log::error!("the X clipboard watcher failed: {error}");
        clipboard_master::CallbackResult::Stop
    }

    fn sleep_interval(&self) -> Duration {
        WATCH_INTERVAL
    }
}

#[cfg(feature = "x11")]
/// The clipboard-master thread; asked to stop when dropped.
struct Watcher {
    _shutdown: clipboard_master::Shutdown,
}

#[cfg(feature = "x11")]
impl Watcher {
    /// Start watching; returns the read end of the change notifications
    /// (end of file once the watcher stopped).
    fn start() -> Result<(Watcher, UnixStream), ClipboardError> {
        let (rx, tx) = UnixStream::pair().map_err(ClipboardError::Watcher)?;
        rx.set_nonblocking(true).map_err(ClipboardError::Watcher)?;
        tx.set_nonblocking(true).map_err(ClipboardError::Watcher)?;
        let mut master =
            clipboard_master::Master::new(Notify { tx }).map_err(ClipboardError::Watcher)?;
        let shutdown = master.shutdown_channel();
        std::thread::Builder::new()
            .name("clipboard-watch".into())
            .spawn(move || {
                if let Err(e) = master.run() {
                    log::error!("the X clipboard watcher stopped: {e}");
                }
                // Dropping `master` closes the write end: the agent sees EOF.
            })
            .map_err(ClipboardError::Watcher)?;
        Ok((
            Watcher {
                _shutdown: shutdown,
            },
            rx,
        ))
    }
}

/// What the host said about copy/paste.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostState {
    Unknown,
    Exchanging,
    Refused,
}

/// The clipboard plugin.
pub struct ClipboardPlugin {
    cfg: ClipboardConfig,
    desktop: Box<dyn DesktopClipboard>,
    changes: UnixStream,
    /// Kept alive as long as the plugin: the X11 watcher (stopped on drop).
    _watcher: Option<Box<dyn std::any::Any>>,
    watching: bool,
    host: HostState,
    /// The text last exchanged, as the desktop holds it.
    last_desktop: Option<String>,
    /// The text last exchanged, as the host holds it.
    last_host: Option<Vec<u8>>,
    /// When the host is polled next; `None` while not connected.
    next_poll: Option<Instant>,
    /// When a host text of unchanged length is read again.
    next_reread: Instant,
    /// When the desktop clipboard is read again after a change event.
    recheck: Option<Instant>,
}

impl std::fmt::Debug for ClipboardPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipboardPlugin")
            .field("cfg", &self.cfg)
            .field("watching", &self.watching)
            .field("host", &self.host)
            .field("next_poll", &self.next_poll)
            .finish_non_exhaustive()
    }
}

impl ClipboardPlugin {
    #[cfg(feature = "x11")]
    /// The plugin on the X11 desktop `DISPLAY` names, with a clipboard-master
    /// thread watching for changes.
    pub fn x11(cfg: ClipboardConfig) -> Result<Self, ClipboardError> {
        let desktop = X11Clipboard::open()?;
        let (watcher, changes) = Watcher::start()?;
        let mut p = ClipboardPlugin::new(cfg, Box::new(desktop), changes);
        p._watcher = Some(Box::new(watcher));
        Ok(p)
    }

    /// The plugin on any desktop clipboard; each byte (or end of file) on
    /// `changes` means the desktop clipboard changed (or will not be watched
    /// any more). Made non-blocking here.
    pub fn new(
        cfg: ClipboardConfig,
        desktop: Box<dyn DesktopClipboard>,
        changes: UnixStream,
    ) -> Self {
        if let Err(e) = changes.set_nonblocking(true) {
            log::warn!("clipboard: cannot make the change socket non-blocking: {e}");
        }
        ClipboardPlugin {
            cfg,
            desktop,
            changes,
            _watcher: None,
            watching: true,
            host: HostState::Unknown,
            last_desktop: None,
            last_host: None,
            next_poll: None,
            next_reread: Instant::now(),
            recheck: None,
        }
    }

    /// False once the desktop clipboard is no longer watched (the X server
    /// went away): a session agent then has nothing left to do.
    pub fn watching(&self) -> bool {
        self.watching
    }

    /// Apply a new config.
    pub fn set_config(&mut self, cfg: ClipboardConfig) {
        self.cfg = cfg;
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.cfg.host_poll_ms.max(10))
    }

    /// GETSELLENGTH: the host's selection length, or why there is none.
    fn host_length(&mut self, ctx: &mut dyn Context) -> Result<u32, HostCallError> {
        let len = ctx.backdoor(Regs::command(cmd::GETSELLENGTH, 0))?.eax;
        if len == SEL_DONT_EXCHANGE {
            if self.host != HostState::Refused {
                log::info!(
                    "clipboard: the host does not allow copy/paste; asking again every {} ms",
                    self.cfg.disabled_poll_ms
                );
            }
            self.host = HostState::Refused;
        } else {
            if self.host == HostState::Refused {
                log::info!("clipboard: the host allows copy/paste again");
                self.last_desktop = None;
                self.last_host = None;
            }
            self.host = HostState::Exchanging;
        }
        Ok(len)
    }

    /// Check the host's selection and put a new one on the desktop.
    fn poll_host(&mut self, ctx: &mut dyn Context, now: Instant) -> Result<(), HostCallError> {
        self.next_poll = Some(now + self.poll_interval());
        let len = self.host_length(ctx)?;
        if len == SEL_DONT_EXCHANGE {
            self.next_poll = Some(now + Duration::from_millis(self.cfg.disabled_poll_ms.max(10)));
            return Ok(());
        }
        if len == SEL_NOT_READY {
            return Ok(());
        }
        let len = len as usize;
        if len > MAX_SELECTION {
            // open-vm-tools refuses such a selection too.
            log::debug!("clipboard: the host's selection of {len} bytes is over the limit");
            return Ok(());
        }
        let same = self.last_host.as_ref().map(Vec::len) == Some(len);
        if same && now < self.next_reread {
            return Ok(());
        }
        // GETNEXTPIECE continues from the GETSELLENGTH just made.
        let mut bytes = Vec::with_capacity(len.next_multiple_of(4));
        for _ in 0..len.div_ceil(4) {
            let w = ctx.backdoor(Regs::command(cmd::GETNEXTPIECE, 0))?.eax;
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        bytes.truncate(len);
        let pieces = len.div_ceil(4).max(1);
        let reread = self.poll_interval() * (pieces.div_ceil(PIECES_PER_POLL) as u32);
        self.next_reread = now + reread.min(MAX_REREAD);
        if let Some(nul) = bytes.iter().position(|&b| b == 0) {
            bytes.truncate(nul);
        }
        if bytes.is_empty() || self.last_host.as_ref() == Some(&bytes) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match self.desktop.set_text(&text) {
            Ok(()) => {
                log::debug!("clipboard: host -> guest, {} bytes", bytes.len());
                self.last_desktop = Some(text);
                self.last_host = Some(bytes);
            }
            Err(e) => log::warn!("clipboard: cannot put the host's text on the desktop: {e}"),
        }
        Ok(())
    }

    /// Send the desktop's text to the host if it is new.
    fn sync_guest(&mut self, ctx: &mut dyn Context) -> Result<(), HostCallError> {
        let text = match self.desktop.get_text() {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(()),
            Err(e) => {
                log::warn!("clipboard: cannot read the desktop clipboard: {e}");
                return Ok(());
            }
        };
        if text.is_empty() || self.last_desktop.as_deref() == Some(text.as_str()) {
            // Nothing, or what was just exchanged (e.g. the host's text we
            // put there): nothing to send.
            return Ok(());
        }
        if self.host_length(ctx)? == SEL_DONT_EXCHANGE {
            return Ok(());
        }
        let out = guest_selection(&text);
        ctx.backdoor(Regs::command(cmd::SETSELLENGTH, out.len() as u32))?;
        for chunk in out.chunks(4) {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            ctx.backdoor(Regs::command(cmd::SETNEXTPIECE, u32::from_le_bytes(w)))?;
        }
        log::debug!(
            "clipboard: guest -> host, {} bytes{}",
            out.len(),
            if out.len() < text.len() {
                format!(" (cut from {})", text.len())
            } else {
                String::new()
            }
        );
        self.last_host = Some(out.to_vec());
        self.last_desktop = Some(text);
        Ok(())
    }

    /// Drain the change socket; false at end of file.
    fn drain(&mut self) -> bool {
        let mut buf = [0u8; 64];
        loop {
            match self.changes.read(&mut buf) {
                Ok(0) => return false,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }

    fn channel_result(&mut self, r: Result<(), HostCallError>) {
        if let Err(e) = r {
            // The session reconnects and calls on_reset.
            log::debug!("clipboard: {e}");
            self.next_poll = None;
        }
    }
}

/// What the guest sends for `text`: up to its first NUL, at most
/// [`MAX_GUEST_TEXT`] bytes, not splitting a character.
pub fn guest_selection(text: &str) -> &[u8] {
    let text = text.split('\0').next().unwrap_or("");
    let mut end = text.len().min(MAX_GUEST_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text.as_bytes()[..end]
}

impl Plugin for ClipboardPlugin {
    fn name(&self) -> &'static str {
        "clipboard"
    }

    fn on_reset(&mut self, ctx: &mut dyn Context) {
        self.host = HostState::Unknown;
        self.last_desktop = None;
        self.last_host = None;
        self.next_poll = None;
        if !self.cfg.enabled {
            return;
        }
        // The host's text first (a host that restarted has none), then the
        // guest's if it is still different.
        let now = Instant::now();
        let r = self.poll_host(ctx, now);
        let r = r.and_then(|()| {
            if self.host == HostState::Refused {
                Ok(())
            } else {
                self.sync_guest(ctx)
            }
        });
        self.channel_result(r);
    }

    fn deadline(&self) -> Option<Instant> {
        let next = match (self.next_poll, self.recheck) {
            (Some(p), Some(r)) => Some(p.min(r)),
            (p, r) => p.or(r),
        };
        next.filter(|_| self.cfg.enabled && self.watching)
    }

    fn on_deadline(&mut self, ctx: &mut dyn Context, now: Instant) {
        if self.recheck.is_some_and(|r| r <= now) {
            self.recheck = None;
            if self.next_poll.is_some() && self.host != HostState::Refused {
                let r = self.sync_guest(ctx);
                self.channel_result(r);
            }
        }
        if self.next_poll.is_some_and(|p| p <= now) {
            let r = self.poll_host(ctx, now);
            self.channel_result(r);
        }
    }

    fn fds(&self) -> Vec<(RawFd, i16)> {
        if self.watching {
            vec![(self.changes.as_raw_fd(), libc::POLLIN)]
        } else {
            Vec::new()
        }
    }

    fn on_ready(&mut self, ctx: &mut dyn Context, _fd: RawFd, now: Instant) {
        if !self.drain() {
            log::error!("clipboard: the X clipboard is no longer watched");
            self.watching = false;
            return;
        }
        if !self.cfg.enabled || self.next_poll.is_none() || self.host == HostState::Refused {
            // Not connected, or the host said "don't exchange": nothing
            // leaves the guest.
            return;
        }
        self.recheck = Some(now + RECHECK_AFTER);
        let r = self.sync_guest(ctx);
        self.channel_result(r);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io::Write;
    use std::rc::Rc;

    use super::*;

    /// A host with the legacy selection semantics (the last text from
    /// either side; GETSELLENGTH rewinds the reader), counting calls.
    #[derive(Debug, Default)]
    struct Host {
        enabled: bool,
        text: Vec<u8>,
        pos: usize,
        incoming: Option<(usize, Vec<u8>)>,
        calls: usize,
    }

    impl Context for Host {
        fn rpci(&mut self, _msg: &[u8]) -> Result<Vec<u8>, HostCallError> {
            unreachable!("the clipboard sends no RPCI")
        }

        fn backdoor(&mut self, regs: Regs) -> Result<Regs, HostCallError> {
            self.calls += 1;
            let mut out = regs;
            out.eax = match regs.ecx as u16 {
                cmd::GETSELLENGTH if !self.enabled => SEL_DONT_EXCHANGE,
                cmd::GETSELLENGTH => {
                    self.pos = 0;
                    self.text.len() as u32
                }
                cmd::GETNEXTPIECE => {
                    let mut w = [0u8; 4];
                    let end = (self.pos + 4).min(self.text.len());
                    w[..end - self.pos].copy_from_slice(&self.text[self.pos..end]);
                    self.pos = end;
                    u32::from_le_bytes(w)
                }
                cmd::SETSELLENGTH => {
                    let n = regs.ebx as usize;
                    self.incoming = (self.enabled && n <= MAX_SELECTION).then(|| (n, Vec::new()));
                    0
                }
                cmd::SETNEXTPIECE => {
                    if let Some((n, buf)) = &mut self.incoming {
                        let k = (*n - buf.len()).min(4);
                        buf.extend_from_slice(&regs.ebx.to_le_bytes()[..k]);
                        if buf.len() == *n {
                            self.text = std::mem::take(buf);
                            self.incoming = None;
                        }
                    }
                    0
                }
                _ => panic!("unexpected command {}", regs.ecx),
            };
            Ok(out)
        }
    }

    #[derive(Debug, Default)]
    struct Desk {
        text: Option<String>,
        sets: usize,
    }

    #[derive(Debug, Clone, Default)]
    struct Shared(Rc<RefCell<Desk>>);

    impl DesktopClipboard for Shared {
        fn get_text(&mut self) -> Result<Option<String>, ClipboardError> {
            Ok(self.0.borrow().text.clone())
        }
        fn set_text(&mut self, text: &str) -> Result<(), ClipboardError> {
            let mut d = self.0.borrow_mut();
            d.text = Some(text.to_owned());
            d.sets += 1;
            Ok(())
        }
    }

    struct Rig {
        plugin: ClipboardPlugin,
        desk: Shared,
        host: Host,
        tx: UnixStream,
        clock: Instant,
    }

    impl Rig {
        fn new(enabled: bool) -> Rig {
            let (rx, tx) = UnixStream::pair().unwrap();
            let desk = Shared::default();
            let mut plugin =
                ClipboardPlugin::new(ClipboardConfig::default(), Box::new(desk.clone()), rx);
            let mut host = Host {
                enabled,
                ..Host::default()
            };
            plugin.on_reset(&mut host);
            Rig {
                plugin,
                desk,
                host,
                tx,
                clock: Instant::now(),
            }
        }

        /// The user copies `text` in the guest: the watcher fires.
        fn guest_copy(&mut self, text: &str) {
            self.desk.0.borrow_mut().text = Some(text.to_owned());
            self.changed();
        }

        /// The watcher fires (also after our own set_text, as X does).
        fn changed(&mut self) {
            (&self.tx).write_all(&[1]).unwrap();
            let fd = self.plugin.fds()[0].0;
            self.plugin.on_ready(&mut self.host, fd, Instant::now());
        }

        /// The host poll is due, past the re-read time.
        fn poll(&mut self) {
            self.clock += MAX_REREAD * 2;
            self.plugin.on_deadline(&mut self.host, self.clock);
        }

        fn host_set(&mut self, text: &str) {
            self.host.text = text.as_bytes().to_vec();
        }

        fn desk_text(&self) -> Option<String> {
            self.desk.0.borrow().text.clone()
        }
    }

    #[test]
    fn both_directions_without_echo() {
        let mut r = Rig::new(true);
        r.guest_copy("héllo\nwörld");
        assert_eq!(r.host.text, "héllo\nwörld".as_bytes());
        // The host keeps the guest's text: polling brings nothing back.
        r.poll();
        assert_eq!(r.desk.0.borrow().sets, 0);

        r.host_set("from the host ✓");
        r.poll();
        assert_eq!(r.desk_text().as_deref(), Some("from the host ✓"));
        assert_eq!(r.desk.0.borrow().sets, 1);
        // X reports our own set_text as a change: it must not go back.
        let before = r.host.calls;
        r.changed();
        assert_eq!(r.host.calls, before, "no backdoor call for our own text");
        r.poll();
        assert_eq!(r.desk.0.borrow().sets, 1);

        // The same text copied again in the guest after the host changed.
        r.guest_copy("héllo\nwörld");
        assert_eq!(r.host.text, "héllo\nwörld".as_bytes());
    }

    #[test]
    fn same_length_host_change_is_seen_on_reread() {
        let mut r = Rig::new(true);
        // 25 pieces: read in full every second poll when the length stays.
        r.host_set(&"a".repeat(100));
        r.poll();
        r.host_set(&"b".repeat(100));
        // A poll within the re-read time asks only the length.
        let before = r.host.calls;
        r.plugin
            .on_deadline(&mut r.host, r.clock + Duration::from_millis(600));
        assert_eq!(r.host.calls, before + 1);
        assert_eq!(r.desk_text(), Some("a".repeat(100)));
        r.poll();
        assert_eq!(r.desk_text(), Some("b".repeat(100)));
    }

    #[test]
    fn a_change_without_event_is_caught_by_the_recheck() {
        let mut r = Rig::new(true);
        r.guest_copy("first");
        assert_eq!(r.host.text, b"first");
        // A second copy whose event the watcher dropped.
        r.desk.0.borrow_mut().text = Some("second".into());
        let due = r.plugin.deadline().unwrap();
        assert!(due <= Instant::now() + RECHECK_AFTER);
        r.plugin
            .on_deadline(&mut r.host, Instant::now() + RECHECK_AFTER);
        assert_eq!(r.host.text, b"second");
    }

    #[test]
    fn limits() {
        let mut r = Rig::new(true);
        // Guest text over the limit is cut at a character boundary.
        let long = format!("{}é", "x".repeat(MAX_GUEST_TEXT - 1));
        r.guest_copy(&long);
        assert_eq!(r.host.text.len(), MAX_GUEST_TEXT - 1);
        assert!(r.host.text.iter().all(|&b| b == b'x'));
        // Exactly at the limit goes whole.
        let at = "y".repeat(MAX_GUEST_TEXT);
        r.guest_copy(&at);
        assert_eq!(r.host.text, at.as_bytes());
        // The host's (cut) copy of a long guest text is not pulled back.
        r.guest_copy(&"z".repeat(MAX_SELECTION + 50));
        r.poll();
        assert_eq!(r.desk_text().unwrap().len(), MAX_SELECTION + 50);
        assert_eq!(r.desk.0.borrow().sets, 0);

        // A host selection of MAX_SELECTION bytes crosses; longer is refused.
        r.host_set(&"h".repeat(MAX_SELECTION));
        r.poll();
        assert_eq!(r.desk_text().unwrap(), "h".repeat(MAX_SELECTION));
        // ...and reading it back from the desktop sends nothing.
        let before = r.host.text.clone();
        r.changed();
        assert_eq!(r.host.text, before);
        r.host_set(&"o".repeat(MAX_SELECTION + 1));
        r.poll();
        assert_eq!(r.desk_text().unwrap(), "h".repeat(MAX_SELECTION));
        // Text stops at a NUL, like the tools' C strings.
        r.guest_copy("before\0after");
        assert_eq!(r.host.text, b"before");
    }

    #[test]
    fn disabled_host_exchanges_nothing_and_backs_off() {
        let mut r = Rig::new(false);
        r.host.text = b"host secret".to_vec();
        r.poll();
        assert_eq!(r.desk_text(), None);
        let before = r.host.calls;
        r.guest_copy("guest secret");
        assert_eq!(r.host.calls, before, "not even asked while refused");
        assert_eq!(r.host.text, b"host secret");
        let next = r.plugin.deadline().unwrap();
        assert!(
            next > Instant::now() + Duration::from_secs(5),
            "slow re-check"
        );
        // The host allows it again: exchange resumes.
        r.host.enabled = true;
        r.poll();
        assert_eq!(r.desk_text().as_deref(), Some("host secret"));
        r.guest_copy("now allowed");
        assert_eq!(r.host.text, b"now allowed");
    }

    #[test]
    fn disabled_in_config_does_nothing() {
        let (rx, tx) = UnixStream::pair().unwrap();
        let desk = Shared::default();
        let cfg = ClipboardConfig {
            enabled: false,
            ..ClipboardConfig::default()
        };
        let mut p = ClipboardPlugin::new(cfg, Box::new(desk.clone()), rx);
        let mut host = Host {
            enabled: true,
            text: b"x".to_vec(),
            ..Host::default()
        };
        p.on_reset(&mut host);
        assert_eq!(p.deadline(), None);
        desk.0.borrow_mut().text = Some("y".into());
        (&tx).write_all(&[1]).unwrap();
        p.on_ready(&mut host, p.fds()[0].0, Instant::now());
        assert_eq!(host.calls, 0);
    }

    #[test]
    fn watcher_gone_is_reported() {
        let mut r = Rig::new(true);
        let fd = r.plugin.fds()[0].0;
        drop(std::mem::replace(&mut r.tx, UnixStream::pair().unwrap().0));
        r.plugin.on_ready(&mut r.host, fd, Instant::now());
        assert!(!r.plugin.watching());
        assert!(r.plugin.fds().is_empty());
        assert_eq!(r.plugin.deadline(), None);
    }
}
