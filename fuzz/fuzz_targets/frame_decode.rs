//! Socket frame headers from a guest (request) and from a host (reply):
//! decoding never panics and a decoded header re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::frame::{Reply, Request, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if data.len() < HEADER_LEN + 4 {
        return;
    }
    let limit = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let h: [u8; HEADER_LEN] = data[4..4 + HEADER_LEN].try_into().unwrap();
    if let Ok(r) = Request::decode(&h, limit) {
        assert!(r.len <= limit);
        assert_eq!(r.encode(), h);
    }
    if let Ok(r) = Reply::decode(&h, limit) {
        assert!(r.len <= limit);
        let again = Reply::decode(&r.encode(), limit).unwrap();
        assert_eq!(again, r);
    }
});
