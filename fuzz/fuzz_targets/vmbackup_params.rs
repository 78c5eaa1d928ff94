//! `vmbackup.startWithOpts` arguments from the host (XDR GuestQuiesceParams)
//! as the guest decodes them: never panics, stays within the format's
//! bounds, and what decodes encodes back to an equivalent value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::vmbackup::{QuiesceParams, DISK_UUIDS_MAX, SCRIPT_ARG_MAX};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = QuiesceParams::decode(data) {
        assert!(p.script_arg.len() <= SCRIPT_ARG_MAX);
        assert!(p.disk_uuids.len() <= DISK_UUIDS_MAX);
        let again = QuiesceParams::decode(&p.encode()).expect("re-decode");
        assert_eq!(again, p);
    }
});
