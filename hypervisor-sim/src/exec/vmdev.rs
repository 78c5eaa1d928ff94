//! The VM's backdoor device as the emulator reaches it: a direct call into
//! the [`Vm`] (the tracer runs inside `hvsim serve`), one channel owner per
//! traced process so a process's channels close when it exits or execs,
//! as the socket frontend closes them with a connection.

use std::io;
use std::sync::Arc;

use protocol::Regs;

use super::emulate::Device;
use crate::device::{self, DeviceFacts, SystemClock};
use crate::vm::Vm;

/// One traced process's view of its VM's device.
#[derive(Debug)]
pub struct VmDevice {
    vm: Arc<Vm>,
    facts: DeviceFacts,
    owner: u64,
}

impl VmDevice {
    /// A device handle with a fresh channel owner.
    pub fn new(vm: Arc<Vm>, facts: DeviceFacts) -> Self {
        VmDevice {
            vm,
            facts,
            owner: crate::socket::new_owner(),
        }
    }
}

impl Drop for VmDevice {
    fn drop(&mut self) {
        let owner = self.owner;
        let n = self
            .vm
            .with_channels(|t, sink| t.close_owned_by(owner, sink));
        if n > 0 {
            log::debug!(
                "{}: closed {n} channel(s) of a departed traced process",
                self.vm.info.name
            );
        }
    }
}

impl Device for VmDevice {
    fn call(&mut self, regs: Regs) -> io::Result<Regs> {
        Ok(self.vm.lb_call(&self.facts, &SystemClock, self.owner, regs))
    }

    fn hb_out(&mut self, regs: Regs, data: &[u8]) -> io::Result<Regs> {
        self.vm.count_call();
        Ok(self
            .vm
            .with_channels(|t, sink| device::hb_out(t, sink, regs, data)))
    }

    fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> io::Result<(Regs, bool)> {
        self.vm.count_call();
        let (out, data) = self
            .vm
            .with_channels(|t, _| device::hb_in(t, regs, buf.len()));
        match data {
            // The device hands over exactly what was asked for, or nothing.
            Some(d) if d.len() == buf.len() && !buf.is_empty() => {
                let (a, b) = d.slices();
                buf[..a.len()].copy_from_slice(a);
                buf[a.len()..].copy_from_slice(b);
                Ok((out, true))
            }
            _ => Ok((out, false)),
        }
    }
}
