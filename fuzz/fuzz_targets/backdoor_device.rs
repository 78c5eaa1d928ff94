//! Arbitrary sequences of backdoor instructions from a hostile guest against
//! a VM: the device and the channel state machine never panic, never hand out
//! more bytes than asked, and the guest's channels are all freed afterwards.
#![no_main]

mod common;

use hvsim::device::{self, SystemClock};
use libfuzzer_sys::fuzz_target;
use protocol::{Regs, BDOOR_MAGIC};

fuzz_target!(|data: &[u8]| {
    let vm = common::vm();
    let facts = common::facts();
    let owner = hvsim::socket::new_owner();
    let mut rest = data;
    while rest.len() >= 1 + 7 * 4 {
        let op = rest[0] % 3;
        let mut a = [0u32; 7];
        for (i, v) in a.iter_mut().enumerate() {
            *v = u32::from_le_bytes(rest[1 + i * 4..5 + i * 4].try_into().unwrap());
        }
        rest = &rest[29..];
        let mut regs = Regs::from_array(a);
        // Mostly well-formed calls, so the fuzzer gets past the magic check.
        if a[0] & 1 == 0 {
            regs.eax = BDOOR_MAGIC;
            regs.edx = (regs.edx & 0xFFFF_0000) | if op == 0 { 0x5658 } else { 0x5659 };
            regs.ecx &= 0x000F_00FF;
            regs.edx &= 0x000F_FFFF;
        }
        match op {
            0 => {
                vm.lb_call(&facts, &SystemClock, owner, regs);
            }
            1 => {
                let n = (regs.ecx as usize % 512).min(rest.len());
                let (bytes, tail) = rest.split_at(n);
                rest = tail;
                vm.with_channels(|t, sink| device::hb_out(t, sink, regs, bytes));
            }
            _ => {
                let want = regs.ecx as usize % 4096;
                let (_, got) = vm.with_channels(|t, _| device::hb_in(t, regs, want));
                if let Some(d) = got {
                    let (x, y) = d.slices();
                    assert_eq!(x.len() + y.len(), want);
                }
            }
        }
    }
    vm.with_channels(|t, sink| t.close_owned_by(owner, sink));
    assert_eq!(vm.lock().channels.open_count(), 0);
});
