//! Control-socket requests: bad JSON or bad arguments get an error, never a
//! panic.
#![no_main]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut inv = BTreeMap::new();
    inv.insert("fuzz".to_string(), common::vm().clone());
    let inv = Arc::new(inv);
    if let Ok(req) = serde_json::from_slice::<hvsim::control::Request>(data) {
        // TCLO would wait for a guest that does not exist here.
        if matches!(req, hvsim::control::Request::Tclo { .. }) {
            return;
        }
        let _ = hvsim::control::handle(&inv, req);
    }
});
