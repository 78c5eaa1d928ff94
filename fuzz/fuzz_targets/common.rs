// Shared setup: one VM over an in-memory store, built once per process.

use std::sync::{Arc, OnceLock};

use hvsim::device::DeviceFacts;
use hvsim::store::Store;
use hvsim::vm::{Vm, VmInfo, VmLimits};

pub fn vm() -> &'static Arc<Vm> {
    static VM: OnceLock<Arc<Vm>> = OnceLock::new();
    VM.get_or_init(|| {
        let store = Arc::new(Store::in_memory().expect("in-memory store"));
        let info = VmInfo {
            name: "fuzz".into(),
            uuid: [7; 16],
            memory_mb: 1024,
            backdoor_socket: "/nonexistent".into(),
            clipboard: true,
            model: "VMware Virtual Platform".into(),
        };
        let mut limits = VmLimits {
            channels: Default::default(),
            max_guest_vars: 64,
        };
        limits.channels.max_channels = 8;
        let vm = Vm::new(info, limits, store, 1).expect("vm");
        vm.set_var("guestinfo.ovfEnv", &[b'x'; 300])
            .expect("seed var");
        Arc::new(vm)
    })
}

#[allow(dead_code)] // not every target makes backdoor calls
pub fn facts() -> DeviceFacts {
    DeviceFacts {
        uuid: [7; 16],
        memory_mb: 1024,
        mhz: 2000,
        tsc_hz: 2_000_000_000,
        build: 1,
        clock_offset_secs: 0,
        hw_version: 19,
    }
}
