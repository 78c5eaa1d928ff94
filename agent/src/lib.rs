//! Guest runtime of vm-agent: how a guest program reaches the hypervisor.
//!
//! * [`transport`]: backdoor transports (real port I/O, a simulator's unix
//!   socket, a tracing decorator) and the policy that picks one.
//! * [`cpuid`]: the CPUID hypervisor signature that policy relies on.
//! * [`rpci`]: RPCI messages over a GuestRPC channel ("1 ..." / "0 ..." answers).
//! * [`config`]: the `vm-agent` config file.
//! * [`daemon`]: the `vm-agent` event loop: TCLO, plugins, reconnects, signals.
//! * [`session`]: `vm-agent --session`, the desktop session's agent (clipboard).
//! * [`vsock`]: TCLO over vsock, commands pushed by the host.
//! * [`cli`]: the command line of `vm-agent` and `vm-agent-session`.
//! * [`logger`]: the daemon's `log` backend (env_logger's format and filters).

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod cpuid;
pub mod daemon;
pub mod logger;
pub mod rpci;
#[cfg(feature = "session")]
pub mod session;
pub mod transport;
pub mod vsock;

#[cfg(test)]
mod test_host;

/// An error and every cause under it, `: `-separated (a cause already in
/// its parent's text is not repeated): what vm-rpctool prints and the
/// agent logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
