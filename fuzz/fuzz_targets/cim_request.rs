//! CIM-XML requests from the network: the HTTP request reader and the
//! CIM-XML decoder take any bytes, and a decoded request is answered by the
//! provider over a one-VM inventory. Errors are fine; panics, hangs and
//! unbounded memory are not.
#![no_main]

mod common;

use std::collections::BTreeMap;
use std::io::{BufReader, Cursor, Read, Write};
use std::sync::{Arc, OnceLock};

use hvsim::cim::{request, xml, Service};
use hvsim::http::{self, HttpLimits};
use libfuzzer_sys::fuzz_target;

/// Bytes in, writes (100 Continue) discarded.
struct Pipe(Cursor<Vec<u8>>);

impl Read for Pipe {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(b)
    }
}

impl Write for Pipe {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn service() -> &'static Arc<Service> {
    static S: OnceLock<Arc<Service>> = OnceLock::new();
    S.get_or_init(|| {
        let mut inv = BTreeMap::new();
        inv.insert("fuzz".to_string(), common::vm().clone());
        Service::new(Arc::new(inv), "fuzzhost".into())
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = HttpLimits {
        max_body: 64 << 10,
        max_header: 4 << 10,
        ..HttpLimits::default()
    };
    let mut r = BufReader::new(Pipe(Cursor::new(data.to_vec())));
    let peer = "127.0.0.1:1".parse().expect("addr");
    while let Ok(Some((req, keep))) = http::read_request(&mut r, peer, false, &limits) {
        assert!(req.body.len() <= limits.max_body);
        if !keep {
            break;
        }
    }
    if let Ok(req) = request::parse(data, xml::XmlLimits::default()) {
        let out = service().answer(&req, None, "localhost");
        assert!(out.starts_with("<?xml"));
    }
});
