//! deployPkg package headers from the host: parsing never panics, and a
//! header that parses encodes back to its own 512 bytes' meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::deploypkg::Header;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::parse(data) {
        let range = h.payload_range(data.len() as u64).expect("checked by parse");
        assert!(range.end <= data.len());
        let bytes = h.encode().expect("a parsed command fits");
        let mut again = bytes.to_vec();
        again.extend_from_slice(&data[bytes.len()..]);
        assert_eq!(Header::parse(&again).expect("re-encoded header parses"), h);
    }
});
