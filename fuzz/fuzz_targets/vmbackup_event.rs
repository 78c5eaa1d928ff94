//! `vmbackup.eventSet` messages from a guest, through the host's RPCI
//! handling with a quiesce operation in progress and without: the host
//! answers "1 " or "0 ", never panics, and keeps a bounded event list.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    let _ = protocol::vmbackup::parse_event(data);
    let vm = common::vm();
    let mut msg = b"vmbackup.eventSet ".to_vec();
    msg.extend_from_slice(data);
    let active = data.first().is_some_and(|b| b & 1 == 1);
    if active {
        assert!(vm.backup_begin());
    }
    let reply = vm.vsock_rpci(&msg).expect("the VM is on");
    assert!(reply.starts_with(b"1 ") || reply.starts_with(b"0 "));
    if !active {
        assert!(reply.starts_with(b"0 "), "no operation takes no events");
    }
    if active {
        let (events, _) = vm.backup_end();
        assert!(events.len() <= 64);
    }
});
