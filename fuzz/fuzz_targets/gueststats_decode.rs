//! Guest memory statistics (`SetGuestInfo  8`) from a guest: decoding never
//! panics or over-allocates, and whatever decodes re-encodes to bytes that
//! decode to the same report.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::gueststats::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = decode(data) {
        let again = decode(&encode(&report)).expect("re-encoded report decodes");
        assert_eq!(again, report);
    }
});
