//! Guest features of `vm-agent`, each behind the [`Plugin`] trait.
//!
//! Plugins never import the agent: the agent implements [`Context`], through
//! which a plugin sends RPCI messages and makes plain backdoor calls. The
//! agent owns the event loop: it asks each plugin for its next deadline and
//! the file descriptors it waits on, and calls back when one is due or ready.
//!
//! * [`guestinfo`]: hostname, OS, uptime, NICs (XDR), disks; event-driven.
//! * [`memstats`]: memory statistics (`SetGuestInfo  8`), for guestinfo.
//! * [`powerops`]: `OS_Halt`, `OS_Reboot`, ... with scripts and status reports.
//! * [`timesync`]: the guest clock from the host's (`GETTIMEFULL_WITH_LAG`).
//! * [`vmbackup`]: quiesced snapshots (freeze/thaw, scripts); [`vmbackup::io_frozen`]
//!   tells other plugins when file systems are frozen.
//! * [`clipboard`]: copy/paste of text with the host (desktop session only).
//! * [`guestops`]: guest operations (VIX over TCLO: run programs, move
//!   files; the HGFS server for transfers), as PAM-checked users.
//! * [`capabilities`]: what the guest can do and which tools it runs.
//! * [`appinfo`]: the running applications (`guestinfo.appInfo`).
//! * [`deploypkg`]: guest customization (deployPkg: vCenter's packages, cust.cfg).
//! * [`netlink`], [`osinfo`], [`glob`]: the pieces guestinfo is built from.

#![warn(missing_docs)]

use std::os::fd::RawFd;
use std::time::Instant;

use protocol::Regs;

pub mod appinfo;
pub mod capabilities;
pub mod clipboard;
pub mod deploypkg;
pub mod glob;
pub mod guestinfo;
pub mod guestops;
pub mod memstats;
pub mod netlink;
pub mod osinfo;
pub mod powerops;
pub mod timesync;
pub mod vmbackup;

/// Why a call from a plugin to the host failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostCallError {
    /// The host answered "0 ..." (the reason given).
    #[error("the host refused: {0}")]
    Refused(String),
    /// The channel to the host is down; the agent reconnects and calls
    /// [`Plugin::on_reset`] again, so the plugin need not retry.
    #[error("no channel to the host: {0}")]
    Channel(String),
}

/// What the agent offers a plugin.
pub trait Context {
    /// Send one RPCI message; the host's reply body on "1 ", an error on "0 "
    /// or a channel failure.
    fn rpci(&mut self, msg: &[u8]) -> Result<Vec<u8>, HostCallError>;
    /// One low-bandwidth backdoor call (e.g. GETTIMEFULL_WITH_LAG).
    fn backdoor(&mut self, regs: Regs) -> Result<Regs, HostCallError>;
}

/// Something the agent tells every plugin about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostEvent {
    /// The VM resumed from suspend (TCLO `OS_Resume`).
    Resumed,
    /// The guest's file systems were frozen for a quiesced snapshot:
    /// guest operations answer busy until [`HostEvent::Thawed`].
    Frozen,
    /// The file systems were thawed.
    Thawed,
}

/// A guest feature.
pub trait Plugin {
    /// Short name, also its section in the agent config.
    fn name(&self) -> &'static str;
    /// TCLO commands this plugin answers (matched on the first word).
    fn tclo_commands(&self) -> &'static [&'static str] {
        &[]
    }
    /// Answer a TCLO command: the reply to send ("OK ..." or "ERROR ...").
    fn on_tclo(&mut self, _ctx: &mut dyn Context, _cmd: &str, _args: &[u8]) -> Vec<u8> {
        protocol::rpc::tclo_reply(false, b"Unknown Command")
    }
    /// Answer a TCLO command now (`Some`) or later (`None`): then the agent
    /// sends no other TCLO reply and takes no other command until
    /// [`Plugin::take_reply`] hands the reply over, while it keeps serving
    /// deadlines and descriptors (a login check runs in a helper process).
    fn on_tclo_deferred(
        &mut self,
        ctx: &mut dyn Context,
        cmd: &str,
        args: &[u8],
    ) -> Option<Vec<u8>> {
        Some(self.on_tclo(ctx, cmd, args))
    }
    /// The reply [`Plugin::on_tclo_deferred`] promised, once it is ready
    /// (asked after every deadline and descriptor event).
    fn take_reply(&mut self) -> Option<Vec<u8>> {
        None
    }
    /// `Set_Option KEY VALUE` from the host: `Some(true)` when this plugin
    /// took the option, `Some(false)` when it knows it but the value is
    /// invalid, `None` when the option is not its own.
    fn set_option(&mut self, _ctx: &mut dyn Context, _key: &str, _value: &str) -> Option<bool> {
        None
    }
    /// The RPCI messages announcing this plugin's capabilities, sent on
    /// `Capabilities_Register`.
    fn capabilities(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
    /// The channel to the host is (re)established, or the host reset it:
    /// forget what was sent and publish everything again.
    fn on_reset(&mut self, _ctx: &mut dyn Context) {}
    /// The agent is stopping (SIGTERM): withdraw what should not outlive it.
    fn on_shutdown(&mut self, _ctx: &mut dyn Context) {}
    /// Something happened that every plugin may care about.
    fn on_event(&mut self, _ctx: &mut dyn Context, _event: HostEvent) {}
    /// When [`Plugin::on_deadline`] should run next, if at all.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// Called once the deadline passed.
    fn on_deadline(&mut self, _ctx: &mut dyn Context, _now: Instant) {}
    /// File descriptors the agent should wait on for this plugin, with the
    /// poll(2) events of interest (`POLLIN`, or `POLLPRI` for sysctl files).
    fn fds(&self) -> Vec<(RawFd, i16)> {
        Vec::new()
    }
    /// One of [`Plugin::fds`] is readable (or signalled an error or priority event).
    fn on_ready(&mut self, _ctx: &mut dyn Context, _fd: RawFd, _now: Instant) {}
}
