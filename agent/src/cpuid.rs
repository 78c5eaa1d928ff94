//! The CPUID hypervisor signature: how a guest learns, without touching any
//! I/O port, whether it runs on a VMware hypervisor.
//!
//! Leaf 1 ecx bit 31 says a hypervisor is present; leaf 0x4000_0000 then names
//! it in ebx, ecx, edx (12 bytes: "VMwareVMware", "KVMKVMKVM\0\0\0", ...).

/// The signature VMware hypervisors report in leaf 0x4000_0000.
pub const VMWARE_SIGNATURE: &str = "VMwareVMware";

/// Leaf 1 ecx bit 31: "hypervisor present" (reserved as zero on bare metal).
const HYPERVISOR_PRESENT: u32 = 1 << 31;
/// First leaf of the hypervisor range: the vendor signature.
const HYPERVISOR_LEAF: u32 = 0x4000_0000;

/// The hypervisor's CPUID signature, trailing NULs removed and unprintable
/// bytes escaped; `None` when no hypervisor is present or the CPU is not x86_64.
pub fn hypervisor_signature() -> Option<String> {
    raw_signature().map(|raw| describe_raw(&raw))
}

/// True when CPUID names a VMware hypervisor.
pub fn is_vmware() -> bool {
    hypervisor_signature().as_deref() == Some(VMWARE_SIGNATURE)
}

/// Turn the 12 signature bytes into printable text.
fn describe_raw(raw: &[u8; 12]) -> String {
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    raw[..end].escape_ascii().to_string()
}

#[cfg(target_arch = "x86_64")]
fn raw_signature() -> Option<[u8; 12]> {
    use core::arch::x86_64::__cpuid;

    // `__cpuid` is a safe function on current toolchains and an unsafe one on
    // older ones (before 1.87); the block keeps both compiling.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU, leaf 1 is always valid, and the
    // instruction only writes the four registers the intrinsic returns.
    let leaf1 = unsafe { __cpuid(1) };
    if leaf1.ecx & HYPERVISOR_PRESENT == 0 {
        return None;
    }
    #[allow(unused_unsafe)]
    // SAFETY: as above; leaf 0x4000_0000 is defined whenever the hypervisor
    // bit is set (and an unknown leaf merely returns other values, never faults).
    let leaf = unsafe { __cpuid(HYPERVISOR_LEAF) };
    let mut raw = [0u8; 12];
    raw[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    raw[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
    raw[8..12].copy_from_slice(&leaf.edx.to_le_bytes());
    Some(raw)
}

#[cfg(not(target_arch = "x86_64"))]
fn raw_signature() -> Option<[u8; 12]> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_trimmed_and_escaped() {
        assert_eq!(describe_raw(b"VMwareVMware"), VMWARE_SIGNATURE);
        assert_eq!(describe_raw(b"KVMKVMKVM\0\0\0"), "KVMKVMKVM");
        assert_eq!(describe_raw(b"Microsoft Hv"), "Microsoft Hv");
        assert_eq!(
            describe_raw(b"ab\0\x01\"\0\0\0\0\0\0\0"),
            "ab\\x00\\x01\\\""
        );
        assert_eq!(describe_raw(&[0; 12]), "");
    }

    #[test]
    fn reading_cpuid_never_fails() {
        // Whatever this machine is, the answer is consistent.
        assert_eq!(
            is_vmware(),
            hypervisor_signature().as_deref() == Some(VMWARE_SIGNATURE)
        );
    }
}
