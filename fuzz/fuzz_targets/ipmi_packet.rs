//! Hostile datagrams against a VM's BMC: RMCP, IPMI 1.5 and RMCP+ parsing,
//! the presence ping, session-less commands and session setup (Open
//! Session, RAKP 1 and 3, challenge and activate). The BMC never panics,
//! answers never exceed the largest datagram, and the session table never
//! outgrows its limit.
#![no_main]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use hvsim::config::UserConfig;
use hvsim::ipmi::{rmcp, Bmc, SessionPolicy};
use hvsim::store::Store;
use hvsim::users::UserStore;
use libfuzzer_sys::fuzz_target;

fn bmc() -> &'static Mutex<Bmc> {
    static BMC: OnceLock<Mutex<Bmc>> = OnceLock::new();
    BMC.get_or_init(|| {
        let store = Arc::new(Store::in_memory().expect("in-memory store"));
        let users = UserStore::load(
            &[UserConfig {
                name: "admin".into(),
                password: "password".into(),
                role: Some("Administrator".into()),
            }],
            store.clone(),
        )
        .expect("users");
        let addr: SocketAddr = "127.0.0.1:623".parse().unwrap();
        let bmc = Bmc::new(
            common::vm().clone(),
            Arc::new(users),
            store,
            addr,
            SessionPolicy::default(),
        )
        .expect("bmc");
        Mutex::new(bmc)
    })
}

fuzz_target!(|data: &[u8]| {
    let mut bmc = bmc().lock().unwrap_or_else(|p| p.into_inner());
    // Datagrams, each prefixed by a length byte; the peer port varies so
    // that sessions from several consoles interleave.
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        let (pkt, tail) = tail.split_at(n);
        rest = tail;
        let port = 40000 + (n as u16 % 4);
        let peer = SocketAddr::from(([127, 0, 0, 1], port));
        // Mostly well-formed RMCP headers, so the fuzzer reaches the sessions.
        let mut buf = pkt.to_vec();
        if buf.len() >= 4 && buf[0] & 1 == 0 {
            buf[..4].copy_from_slice(&[
                rmcp::RMCP_VERSION,
                0,
                rmcp::RMCP_SEQ_NO_ACK,
                rmcp::CLASS_IPMI,
            ]);
        }
        if let Some(out) = bmc.handle(&buf, peer) {
            assert!(
                out.len() <= rmcp::MAX_PACKET,
                "answer of {} bytes",
                out.len()
            );
        }
        let _ = rmcp::parse(pkt);
    }
});
