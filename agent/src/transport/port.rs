//! Real port I/O: the backdoor instructions themselves, executed with inline
//! asm. In a VMware guest the hypervisor traps them and answers; anywhere else
//! they fault (SIGSEGV: user space has no I/O privilege), which is why
//! [`super::connect`] checks CPUID or probes in a child process first.
//!
//! rbx and rbp cannot be inline-asm operands on x86_64 (LLVM reserves them), so
//! each block passes their values in scratch registers and `xchg`es them in
//! around the instruction and back out after it. Nothing between the swaps
//! touches the stack or relies on rbp as a frame pointer.

use std::arch::asm;

use protocol::guest::{Backdoor, TransportError};
use protocol::Regs;

/// The backdoor over real `in` / `rep outsb` / `rep insb` instructions.
///
/// Constructing one is safe, but its calls kill the process with SIGSEGV unless
/// a VMware backdoor answers on ports 0x5658/0x5659; get one through
/// [`super::connect`], which checks first.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortIo {
    _private: (),
}

impl PortIo {
    /// A port I/O transport. See the type's documentation for when its calls fault.
    pub const fn new() -> Self {
        PortIo { _private: () }
    }
}

/// Registers as the asm blocks see them: 64-bit, upper halves zero on the way in.
fn wide(v: u32) -> u64 {
    u64::from(v)
}

/// Keep the low 32 bits of a register the instruction left behind.
fn narrow(v: u64) -> u32 {
    v as u32
}

impl Backdoor for PortIo {
    fn call(&mut self, regs: Regs) -> Result<Regs, TransportError> {
        let (mut rax, mut rbx, mut rcx, mut rdx) =
            (wide(regs.eax), wide(regs.ebx), wide(regs.ecx), wide(regs.edx));
        let (mut rsi, mut rdi, mut rbp) = (wide(regs.esi), wide(regs.edi), wide(regs.ebp));
        // SAFETY: `in eax, dx` reads a port into eax; under a VMware hypervisor
        // the backdoor trap also rewrites the general registers, all of which
        // are declared as outputs here, and it touches no guest memory, hence
        // `nomem`. rbx and rbp are swapped with compiler-chosen scratch
        // registers (never rbx/rbp/rsp themselves) and swapped back, so both
        // hold their original values when the block ends. No push: `nostack`.
        // Flags are not promised to survive the trap, so no `preserves_flags`.
        unsafe {
            asm!(
                "xchg {bx}, rbx",
                "xchg {bp}, rbp",
                "in eax, dx",
                "xchg {bp}, rbp",
                "xchg {bx}, rbx",
                bx = inout(reg) rbx,
                bp = inout(reg) rbp,
                inout("rax") rax,
                inout("rcx") rcx,
                inout("rdx") rdx,
                inout("rsi") rsi,
                inout("rdi") rdi,
                options(nomem, nostack),
            );
        }
        Ok(Regs {
            eax: narrow(rax),
            ebx: narrow(rbx),
            ecx: narrow(rcx),
            edx: narrow(rdx),
            esi: narrow(rsi),
            edi: narrow(rdi),
            ebp: narrow(rbp),
        })
    }

    fn hb_out(&mut self, regs: Regs, data: &[u8]) -> Result<Regs, TransportError> {
        let (mut rax, mut rbx, mut rdx) = (wide(regs.eax), wide(regs.ebx), wide(regs.edx));
        let (mut rdi, mut rbp) = (wide(regs.edi), wide(regs.ebp));
        let mut rsi = data.as_ptr() as u64;
        let mut rcx = data.len() as u64;
        // SAFETY: `rep outsb` reads rcx bytes starting at rsi, which are
        // exactly the bytes of `data` (a live shared borrow), so the block only
        // reads memory we may read: `readonly`. The hypervisor's trap answers
        // in the general registers, all declared as outputs. `cld` makes the
        // copy run upwards (the ABI already guarantees DF = 0; this restates the
        // instruction sequence open-vm-tools uses) and leaves DF clear as the
        // ABI requires on exit. rbx/rbp are swapped in and out as in `call`;
        // no push: `nostack`.
        unsafe {
            asm!(
                "xchg {bx}, rbx",
                "xchg {bp}, rbp",
                "cld",
                "rep outsb",
                "xchg {bp}, rbp",
                "xchg {bx}, rbx",
                bx = inout(reg) rbx,
                bp = inout(reg) rbp,
                inout("rax") rax,
                inout("rcx") rcx,
                inout("rdx") rdx,
                inout("rsi") rsi,
                inout("rdi") rdi,
                options(readonly, nostack),
            );
        }
        Ok(Regs {
            eax: narrow(rax),
            ebx: narrow(rbx),
            ecx: narrow(rcx),
            edx: narrow(rdx),
            esi: narrow(rsi),
            edi: narrow(rdi),
            ebp: narrow(rbp),
        })
    }

    fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> Result<Regs, TransportError> {
        let (mut rax, mut rbx, mut rdx) = (wide(regs.eax), wide(regs.ebx), wide(regs.edx));
        let (mut rsi, mut rbp) = (wide(regs.esi), wide(regs.ebp));
        let mut rdi = buf.as_mut_ptr() as u64;
        let mut rcx = buf.len() as u64;
        // SAFETY: `rep insb` writes rcx bytes starting at rdi, which are
        // exactly the bytes of `buf` (a live exclusive borrow of initialised
        // `u8`s, for which any value is valid), so it writes nothing else; it
        // writes memory, hence neither `nomem` nor `readonly`. Registers, DF
        // and the rbx/rbp swap are handled as in `hb_out`; no push: `nostack`.
        unsafe {
            asm!(
                "xchg {bx}, rbx",
                "xchg {bp}, rbp",
                "cld",
                "rep insb",
                "xchg {bp}, rbp",
                "xchg {bx}, rbx",
                bx = inout(reg) rbx,
                bp = inout(reg) rbp,
                inout("rax") rax,
                inout("rcx") rcx,
                inout("rdx") rdx,
                inout("rsi") rsi,
                inout("rdi") rdi,
                options(nostack),
            );
        }
        Ok(Regs {
            eax: narrow(rax),
            ebx: narrow(rbx),
            ecx: narrow(rcx),
            edx: narrow(rdx),
            esi: narrow(rsi),
            edi: narrow(rdi),
            ebp: narrow(rbp),
        })
    }
}
