//! The register file the backdoor reads and writes.

use std::fmt;

/// The guest registers the backdoor uses, 32 bits each (the backdoor ignores
/// the upper halves of the 64-bit registers).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Regs {
    /// Magic in, primary result out.
    pub eax: u32,
    /// Argument / result ("size" in open-vm-tools).
    pub ebx: u32,
    /// Command in the low half; message subcommand and status in the high half.
    pub ecx: u32,
    /// Port in the low half; channel id in the high half.
    pub edx: u32,
    /// Cookie high (LB), source buffer (HB out) or cookie high (HB in).
    pub esi: u32,
    /// Cookie low (LB, HB out) or destination buffer (HB in).
    pub edi: u32,
    /// Cookie high (HB out) or cookie low (HB in).
    pub ebp: u32,
}

/// High 16 bits of a register.
#[inline]
pub const fn hi(v: u32) -> u16 {
    (v >> 16) as u16
}

/// Low 16 bits of a register.
#[inline]
pub const fn lo(v: u32) -> u16 {
    v as u16
}

/// A register made of two halves.
#[inline]
pub const fn halves(high: u16, low: u16) -> u32 {
    (high as u32) << 16 | low as u32
}

impl Regs {
    /// Registers for a low-bandwidth command with argument `ebx`.
    pub const fn command(cmd: u16, ebx: u32) -> Self {
        Regs {
            eax: crate::BDOOR_MAGIC,
            ebx,
            ecx: cmd as u32,
            edx: crate::BDOOR_PORT as u32,
            esi: 0,
            edi: 0,
            ebp: 0,
        }
    }

    /// The seven registers in frame order.
    pub const fn to_array(self) -> [u32; 7] {
        [
            self.eax, self.ebx, self.ecx, self.edx, self.esi, self.edi, self.ebp,
        ]
    }

    /// Registers from the seven values in frame order.
    pub const fn from_array(a: [u32; 7]) -> Self {
        Regs {
            eax: a[0],
            ebx: a[1],
            ecx: a[2],
            edx: a[3],
            esi: a[4],
            edi: a[5],
            ebp: a[6],
        }
    }
}

impl fmt::Debug for Regs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Regs {{ eax: {:#010x}, ebx: {:#010x}, ecx: {:#010x}, edx: {:#010x}, esi: {:#010x}, edi: {:#010x}, ebp: {:#010x} }}",
            self.eax, self.ebx, self.ecx, self.edx, self.esi, self.edi, self.ebp
        )
    }
}
