//! What CPUID answers under `hvsim exec`: the hypervisor leaves as a VMware
//! host reports them, every other leaf from the real CPU.
//!
//! Source of the facts: open-vm-tools `lib/include/backdoor_def.h` and the
//! VMware hypervisor CPUID interface (leaf 0x4000_0000 signature and max leaf,
//! 0x4000_0010 timing information; ecx bits 0/1 there would announce VMCALL /
//! VMMCALL backdoor support, left clear so clients use port I/O).

/// Leaf 1 ecx bit 31: a hypervisor is present.
pub const HYPERVISOR_PRESENT: u32 = 1 << 31;
/// First hypervisor leaf: max leaf in eax, signature in ebx, ecx, edx.
pub const LEAF_SIGNATURE: u32 = 0x4000_0000;
/// VMware timing leaf: TSC kHz in eax, bus (APIC) kHz in ebx.
pub const LEAF_TIMING: u32 = 0x4000_0010;
/// The last leaf of the hypervisor range.
const LEAF_HV_LAST: u32 = 0x4000_00FF;
/// The signature, as ESXi reports it.
pub const SIGNATURE: &[u8; 12] = b"VMwareVMware";
/// APIC bus frequency ESXi reports, kHz (1 GHz, as GETHZ reports in Hz).
pub const BUS_KHZ: u32 = 1_000_000;

/// The four result registers.
pub type Answer = [u32; 4];

/// Answer `leaf`/`subleaf`: hypervisor leaves from here, the rest from
/// `real` (the CPU's own answer) with the hypervisor-present bit set.
pub fn answer(leaf: u32, subleaf: u32, tsc_khz: u32, real: impl Fn(u32, u32) -> Answer) -> Answer {
    match leaf {
        LEAF_SIGNATURE => {
            let w = |i: usize| {
                u32::from_le_bytes([
                    SIGNATURE[i],
                    SIGNATURE[i + 1],
                    SIGNATURE[i + 2],
                    SIGNATURE[i + 3],
                ])
            };
            [LEAF_TIMING, w(0), w(4), w(8)]
        }
        LEAF_TIMING => [tsc_khz, BUS_KHZ, 0, 0],
        l if (LEAF_SIGNATURE..=LEAF_HV_LAST).contains(&l) => [0; 4],
        1 => {
            let mut a = real(leaf, subleaf);
            a[2] |= HYPERVISOR_PRESENT;
            a
        }
        _ => real(leaf, subleaf),
    }
}

/// The CPU's own answer.
#[cfg(target_arch = "x86_64")]
pub fn real(leaf: u32, subleaf: u32) -> Answer {
    // `__cpuid_count` is safe on current toolchains, unsafe on older ones.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86_64 CPU and only writes the four
    // registers the intrinsic returns; any leaf is allowed.
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, subleaf) };
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// TSC frequency in kHz, consistent with what GETHZ reports (processor MHz
/// from /proc/cpuinfo), 2 GHz when unknown.
pub fn tsc_khz() -> u32 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(2_000_000, |m| (m.round() as u32).saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(leaf: u32, _: u32) -> Answer {
        [leaf, 1, 2, 3]
    }

    #[test]
    fn hypervisor_leaves_say_vmware() {
        let a = answer(LEAF_SIGNATURE, 0, 2_400_000, fake);
        assert_eq!(a[0], LEAF_TIMING);
        let mut sig = Vec::new();
        for w in &a[1..] {
            sig.extend_from_slice(&w.to_le_bytes());
        }
        assert_eq!(sig, SIGNATURE);
        assert_eq!(
            answer(LEAF_TIMING, 0, 2_400_000, fake),
            [2_400_000, BUS_KHZ, 0, 0]
        );
        assert_eq!(answer(0x4000_0001, 0, 1, fake), [0; 4]);
        assert_eq!(answer(0x4000_00FF, 0, 1, fake), [0; 4]);
    }

    #[test]
    fn other_leaves_pass_through_with_hypervisor_bit() {
        assert_eq!(answer(0, 0, 1, fake), [0, 1, 2, 3]);
        assert_eq!(answer(1, 0, 1, fake)[2], 2 | HYPERVISOR_PRESENT);
        assert_eq!(answer(0x4000_0100, 0, 1, fake), [0x4000_0100, 1, 2, 3]);
    }
}
