//! capabilities and version: who the guest tools are, sent on
//! `Capabilities_Register` (open-vm-tools: `tools.set.versiontype`).

use crate::Plugin;

/// `TOOLS_VERSION_UNMANAGED`: tools the host must not try to upgrade (what
/// distribution-built open-vm-tools report; vSphere shows "guest managed").
pub const TOOLS_VERSION_UNMANAGED: u32 = 0x7FFF_FFFF;
/// `VMX_TOOLS_TYPE_OPEN_VM_TOOLS`: tools installed by the guest OS.
pub const TOOLS_TYPE_OPEN_VM_TOOLS: u32 = 4;

/// Version reporting.
#[derive(Debug, Clone)]
pub struct Capabilities {
    version: u32,
    kind: u32,
}

impl Capabilities {
    /// Report `version` (encoded as VMware tools versions are) and `kind`.
    pub fn new(version: u32, kind: u32) -> Capabilities {
        Capabilities { version, kind }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::new(TOOLS_VERSION_UNMANAGED, TOOLS_TYPE_OPEN_VM_TOOLS)
    }
}

impl Plugin for Capabilities {
    fn name(&self) -> &'static str {
        "capabilities"
    }

    fn capabilities(&self) -> Vec<Vec<u8>> {
        vec![format!("tools.set.versiontype {} {}", self.version, self.kind).into_bytes()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versiontype() {
        assert_eq!(
            Capabilities::default().capabilities(),
            vec![b"tools.set.versiontype 2147483647 4".to_vec()]
        );
    }
}
