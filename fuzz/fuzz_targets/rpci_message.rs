//! Any RPCI message a guest can send, through the real channel path and
//! over vsock: the host always answers "1 " or "0 " and never panics.
#![no_main]

mod common;

use hvsim::device::{self, SystemClock};
use libfuzzer_sys::fuzz_target;
use protocol::regs::{halves, hi};
use protocol::{cmd, msg_type, proto, status, Regs, BDOOR_MAGIC};

fuzz_target!(|msg: &[u8]| {
    if msg.len() > 64 * 1024 {
        return;
    }
    let vm = common::vm();
    let facts = common::facts();
    let owner = hvsim::socket::new_owner();
    let call = |regs: Regs| {
        vm.with_channels(|t, sink| device::lb_call(&facts, &SystemClock, t, sink, owner, regs))
    };
    let mut r = Regs::command(cmd::MESSAGE, proto::RPCI);
    r.ecx = halves(msg_type::OPEN, cmd::MESSAGE);
    let out = call(r);
    if hi(out.ecx) & status::SUCCESS == 0 {
        return;
    }
    let id = hi(out.edx);
    let mut r = Regs::command(cmd::MESSAGE, msg.len() as u32);
    r.ecx = halves(msg_type::SENDSIZE, cmd::MESSAGE);
    r.edx = halves(id, 0x5658);
    assert_ne!(hi(call(r).ecx) & status::SUCCESS, 0);
    let hb = Regs {
        eax: BDOOR_MAGIC,
        ebx: halves(status::SUCCESS, 0),
        ecx: msg.len() as u32,
        edx: halves(id, 0x5659),
        esi: 0,
        edi: 0,
        ebp: 0,
    };
    if !msg.is_empty() {
        let o = vm.with_channels(|t, sink| device::hb_out(t, sink, hb, msg));
        assert_ne!(hi(o.ebx) & status::SUCCESS, 0);
    }
    let mut r = Regs::command(cmd::MESSAGE, 0);
    r.ecx = halves(msg_type::RECVSIZE, cmd::MESSAGE);
    r.edx = halves(id, 0x5658);
    let o = call(r);
    assert_ne!(hi(o.ecx) & status::DORECV, 0, "RPCI always answers");
    let size = o.ebx as usize;
    let (_, data) = vm.with_channels(|t, _| device::hb_in(t, hb, size));
    let data = data.expect("reply bytes");
    let (a, b) = data.slices();
    let reply = [a, b].concat();
    assert!(reply.starts_with(b"1 ") || reply.starts_with(b"0 "));
    vm.with_channels(|t, sink| t.close_owned_by(owner, sink));
    // The same message over vsock takes the same path.
    if let Some(reply) = vm.vsock_rpci(msg) {
        assert!(reply.starts_with(b"1 ") || reply.starts_with(b"0 "));
    }
});
