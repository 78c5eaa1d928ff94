//! Hostile in-session IPMI commands from an authenticated Administrator
//! (and an Operator): every command parser behind the session layer
//! (App, Chassis, Sensor/Event with PEF, Storage, Transport), the watchdog
//! and PEF run after each. The BMC never panics and replies stay within one
//! IPMI message.
#![no_main]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use hvsim::config::UserConfig;
use hvsim::ipmi::{Bmc, SessionPolicy};
use hvsim::store::Store;
use hvsim::users::UserStore;
use libfuzzer_sys::fuzz_target;

fn bmc() -> &'static Mutex<Bmc> {
    static BMC: OnceLock<Mutex<Bmc>> = OnceLock::new();
    BMC.get_or_init(|| {
        let store = Arc::new(Store::in_memory().expect("in-memory store"));
        let user = |name: &str, role: &str| UserConfig {
            name: name.into(),
            password: "password".into(),
            role: Some(role.into()),
        };
        let users = UserStore::load(
            &[user("admin", "Administrator"), user("oper", "Operator")],
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

const NETFNS: [u8; 5] = [0x00, 0x04, 0x06, 0x0A, 0x0C];

fuzz_target!(|data: &[u8]| {
    let mut bmc = bmc().lock().unwrap_or_else(|p| p.into_inner());
    // Commands: [selector, cmd, len, data...]; the selector picks the
    // network function and the user (admin, or oper when bit 7 is set).
    let mut rest = data;
    while rest.len() >= 3 {
        let (sel, cmd, n) = (rest[0], rest[1], rest[2] as usize);
        let body = &rest[3..];
        let n = n.min(body.len());
        let (d, tail) = body.split_at(n);
        rest = tail;
        let netfn = NETFNS[(sel & 0x7F) as usize % NETFNS.len()];
        let user = if sel & 0x80 != 0 { 3 } else { 2 };
        // Cold/warm reset and close session only end sessions; keep them
        // in so the fuzzer sees that path too.
        if let Some((_, out)) = bmc.command_as(user, netfn, cmd, d) {
            assert!(out.len() <= 256, "reply of {} bytes", out.len());
        }
    }
});
