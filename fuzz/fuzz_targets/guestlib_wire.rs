//! The guest SDK's wire: requests a guest sends (`guestlib.info.get`,
//! `guestlib.stat.get`) never make the host panic, and a version 3 answer
//! from a (hostile) host that vm-toolbox decodes re-encodes to the same.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use protocol::guestlib;

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    if let Ok(info) = guestlib::decode_v3(data) {
        let again = guestlib::decode_v3(&guestlib::encode_v3(&info)).expect("re-encoded decodes");
        assert_eq!(again, info);
        assert_eq!(guestlib::encode_v2(&info).len(), 669);
    }
    let _ = guestlib::parse_info_request(data);
    let _ = guestlib::parse_stat_request(data);
    let vm = common::vm();
    for cmd in [&b"guestlib.info.get "[..], b"guestlib.stat.get "] {
        let mut msg = cmd.to_vec();
        msg.extend_from_slice(data);
        let reply = vm.vsock_rpci(&msg).expect("vm is on");
        assert!(reply.starts_with(b"1 ") || reply.starts_with(b"0 "));
    }
});
