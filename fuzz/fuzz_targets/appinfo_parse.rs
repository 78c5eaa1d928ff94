//! Arbitrary `guestinfo.appInfo` values from a hostile guest: the host's
//! parser never panics, and what it accepts survives being written again
//! in the guest's layout and read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::appinfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(a)) = appinfo::parse(data) {
        let (doc, dropped) = appinfo::document(&a.applications, a.update_counter, "t", false);
        if dropped == 0 {
            let again = appinfo::parse(doc.as_bytes())
                .expect("a document we wrote parses")
                .expect("not empty");
            assert_eq!(again.applications, a.applications);
            assert_eq!(again.update_counter, a.update_counter);
        }
    }
});
