//! rtnetlink datagrams: the dump parser never panics or loops, and the
//! guestinfo report built from whatever parsed encodes and decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plugins::guestinfo::{build_nicinfo, GuestInfoConfig};
use plugins::netlink::Dump;
use plugins::osinfo::Resolv;
use protocol::nicinfo;

fuzz_target!(|data: &[u8]| {
    let mut dump = Dump::default();
    let _ = dump.absorb(data);
    let info = build_nicinfo(&dump, &GuestInfoConfig::default(), &Resolv::default(), "h");
    assert!(info.nics.len() <= nicinfo::MAX_NICS);
    let again = nicinfo::decode(&nicinfo::encode(&info)).expect("our report decodes");
    assert_eq!(again, info);
});
