//! Guest features of `vm-agent`, each behind the [`Plugin`] trait.
//!
//! Plugins never import the agent: the agent implements [`Context`], through
//! which a plugin sends RPCI messages and learns its configuration. The
//! features themselves (guestinfo, powerops, timesync, clipboard) arrive with
//! the agent work; this crate fixes the seam they plug into.

use std::time::Duration;

/// Why an RPCI call from a plugin failed.
#[derive(Debug)]
pub struct RpciError(pub String);

impl std::fmt::Display for RpciError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RpciError {}

/// What the agent offers a plugin.
pub trait Context {
    /// Send one RPCI message; the host's reply body on "1 ", an error on "0 "
    /// or a channel failure.
    fn rpci(&mut self, msg: &[u8]) -> Result<Vec<u8>, RpciError>;
    /// A value from the plugin's section of the agent config.
    fn config(&self, key: &str) -> Option<String>;
}

/// A guest feature.
pub trait Plugin {
    /// Short name, also the config section.
    fn name(&self) -> &'static str;
    /// TCLO commands this plugin answers (matched on the first word).
    fn tclo_commands(&self) -> &'static [&'static str] {
        &[]
    }
    /// Answer a TCLO command: the reply to send ("OK ..." or "ERROR ...").
    fn on_tclo(&mut self, _ctx: &mut dyn Context, _cmd: &[u8], _args: &[u8]) -> Vec<u8> {
        protocol::rpc::tclo_reply(false, b"Unknown Command")
    }
    /// Called when the channel to the host is (re)established: publish state.
    fn on_reset(&mut self, _ctx: &mut dyn Context) {}
    /// How often [`Plugin::on_timer`] runs, if at all.
    fn interval(&self) -> Option<Duration> {
        None
    }
    /// Periodic work.
    fn on_timer(&mut self, _ctx: &mut dyn Context) {}
}
