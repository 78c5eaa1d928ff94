//! WS-Management requests from the network: the SOAP envelope reader
//! (bounded XML, namespaces, headers, selectors, durations) takes any
//! bytes, and the handler answers them over a one-VM inventory with the
//! CIM provider behind it. Errors (faults) are fine; panics, hangs and
//! unbounded memory are not.
#![no_main]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use hvsim::cim::{xml, Service};
use hvsim::wsman::{soap, WsmanHandler};
use libfuzzer_sys::fuzz_target;

fn handler() -> &'static WsmanHandler {
    static H: OnceLock<WsmanHandler> = OnceLock::new();
    H.get_or_init(|| {
        let mut inv = BTreeMap::new();
        inv.insert("fuzz".to_string(), common::vm().clone());
        WsmanHandler::new(Service::new(Arc::new(inv), "fuzzhost".into()))
    })
}

fuzz_target!(|data: &[u8]| {
    let parsed = soap::parse(data, xml::XmlLimits::default());
    let (status, body) = handler().answer(data, None, "localhost");
    assert!(body.starts_with("<?xml"));
    assert!(matches!(status, 200 | 400 | 500));
    if parsed.is_err() {
        assert_ne!(status, 200);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = soap::parse_duration(s);
    }
});
