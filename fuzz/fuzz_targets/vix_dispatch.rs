//! Arbitrary `Vix_1_Relayed_Command` arguments to vm-agent's guest
//! operations plugin, up to the login check (the PAM helper configured
//! here does not exist, so no operation runs): every request is answered
//! with a well-formed VIX reply, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plugins::guestops::{GuestOps, GuestOpsConfig};
use plugins::{Context, HostCallError, Plugin};

struct NoHost;

impl Context for NoHost {
    fn rpci(&mut self, _: &[u8]) -> Result<Vec<u8>, HostCallError> {
        Err(HostCallError::Channel("none".into()))
    }
    fn backdoor(&mut self, _: protocol::Regs) -> Result<protocol::Regs, HostCallError> {
        Err(HostCallError::Channel("none".into()))
    }
}

fuzz_target!(|args: &[u8]| {
    let mut ops = GuestOps::new(GuestOpsConfig {
        auth_helper: "/nonexistent/vm-agent-auth".into(),
        ..GuestOpsConfig::default()
    });
    let reply = ops
        .on_tclo_deferred(&mut NoHost, protocol::vix::TCLO_RELAYED_COMMAND, args)
        .expect("without a helper every answer is immediate");
    let body = reply.strip_prefix(b"OK ").expect("VIX replies are OK replies");
    protocol::vix::Reply::parse(body, true).expect("well-formed VIX reply");
});
