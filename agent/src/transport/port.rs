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
        let (mut rax, mut rbx, mut rcx, mut rdx) = (
            wide(regs.eax),
            wide(regs.ebx),
            wide(regs.ecx),
            wide(regs.edx),
        );
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

/// The asm is checked the way `hvsim exec` will run it: a child executes each
/// instruction without I/O privilege, it faults, and this test, as the child's
/// tracer, checks the registers (and memory) at the instruction, writes the
/// answer back and steps past it. The child then checks what the asm handed
/// back, including rbx and rbp, which the blocks swap by hand.
#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    use super::*;

    /// Registers with high bits set, so truncation and sign extension show.
    const IN: Regs = Regs {
        eax: 0x564D_5868,
        ebx: 0x8111_1111,
        ecx: 0x8222_001E,
        edx: 0x8333_5658,
        esi: 0x8444_4444,
        edi: 0x8555_5555,
        ebp: 0x8666_6666,
    };
    const OUT: Regs = Regs {
        eax: 0x9000_0000,
        ebx: 0x9111_1111,
        ecx: 0x9222_2222,
        edx: 0x9333_3333,
        esi: 0x9444_4444,
        edi: 0x9555_5555,
        ebp: 0x9666_6666,
    };
    const HB_BYTES: &[u8; 15] = b"hello, backdoor";

    /// The 64-bit registers of a stopped tracee.
    fn get_regs(pid: libc::pid_t) -> libc::user_regs_struct {
        // SAFETY: an all-zero user_regs_struct is a valid value (plain integers).
        let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our stopped tracee; `r` is a valid out buffer of the
        // type PTRACE_GETREGS writes.
        let rc = unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut r as *mut _) };
        assert_eq!(rc, 0, "PTRACE_GETREGS: {}", std::io::Error::last_os_error());
        r
    }

    fn set_regs(pid: libc::pid_t, r: &libc::user_regs_struct) {
        // SAFETY: `pid` is our stopped tracee; `r` is a valid register set.
        let rc = unsafe { libc::ptrace(libc::PTRACE_SETREGS, pid, 0, r as *const _) };
        assert_eq!(rc, 0, "PTRACE_SETREGS: {}", std::io::Error::last_os_error());
    }

    fn low32(r: &libc::user_regs_struct) -> Regs {
        Regs {
            eax: r.rax as u32,
            ebx: r.rbx as u32,
            ecx: r.rcx as u32,
            edx: r.rdx as u32,
            esi: r.rsi as u32,
            edi: r.rdi as u32,
            ebp: r.rbp as u32,
        }
    }

    /// Answer with `out`, garbage in the upper halves (the asm must drop it).
    fn answer(r: &mut libc::user_regs_struct, out: Regs) {
        let g = 0xDEAD_0000_0000_0000u64;
        r.rax = g | u64::from(out.eax);
        r.rbx = g | u64::from(out.ebx);
        r.rcx = g | u64::from(out.ecx);
        r.rdx = g | u64::from(out.edx);
        r.rsi = g | u64::from(out.esi);
        r.rdi = g | u64::from(out.edi);
        r.rbp = g | u64::from(out.ebp);
    }

    /// Run `child` in a traced child; `emulate` handles its one faulting
    /// instruction (given the tracee's memory). True when the child exits 0.
    fn traced(
        child: impl FnOnce() -> bool,
        emulate: impl FnOnce(&File, &mut libc::user_regs_struct),
    ) -> bool {
        // SAFETY: the child runs only async-signal-safe code (syscalls, the
        // asm under test, comparisons on preallocated data) and ends in _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: plain syscalls in the child; _exit never returns.
            unsafe {
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
                libc::raise(libc::SIGSTOP);
                libc::_exit(if child() { 0 } else { 1 });
            }
        }
        let wait = || {
            let mut status = 0;
            // SAFETY: `pid` is our child; `status` a valid out pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
            status
        };
        let cont = |sig: i32| {
            // SAFETY: `pid` is our stopped tracee.
            let rc = unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, sig) };
            assert_eq!(rc, 0, "PTRACE_CONT: {}", std::io::Error::last_os_error());
        };
        let status = wait();
        assert!(libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGSTOP);
        cont(0);
        let status = wait();
        assert!(
            libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGSEGV,
            "the instruction did not fault (status {status:#x})"
        );
        let mem = File::options()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .unwrap();
        let mut r = get_regs(pid);
        emulate(&mem, &mut r);
        set_regs(pid, &r);
        // Suppress the SIGSEGV: the instruction was emulated.
        cont(0);
        let status = wait();
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }

    fn opcode(mem: &File, rip: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        mem.read_exact_at(&mut b, rip).unwrap();
        b
    }

    #[test]
    fn call_passes_all_seven_registers() {
        let ok = traced(
            || PortIo::new().call(IN).ok() == Some(OUT),
            |mem, r| {
                assert_eq!(opcode(mem, r.rip, 1), [0xED], "in eax, dx");
                assert_eq!(low32(r), IN);
                for v in [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp] {
                    assert_eq!(v >> 32, 0, "not zero-extended: {v:#x}");
                }
                answer(r, OUT);
                r.rip += 1;
            },
        );
        assert!(ok, "the child saw other registers than the tracer wrote");
    }

    #[test]
    fn hb_out_hands_over_the_buffer() {
        let data = *HB_BYTES;
        let ok = traced(
            || PortIo::new().hb_out(IN, &data).ok() == Some(OUT),
            |mem, r| {
                assert_eq!(opcode(mem, r.rip, 2), [0xF3, 0x6E], "rep outsb");
                let got = low32(r);
                assert_eq!(r.rcx, data.len() as u64);
                let want = Regs {
                    ecx: got.ecx,
                    esi: got.esi,
                    ..IN
                };
                assert_eq!(got, want);
                let mut seen = vec![0u8; r.rcx as usize];
                mem.read_exact_at(&mut seen, r.rsi).unwrap();
                assert_eq!(seen, data);
                answer(r, OUT);
                r.rip += 2;
            },
        );
        assert!(ok, "the child saw other registers than the tracer wrote");
    }

    #[test]
    fn hb_in_fills_the_buffer() {
        let ok = traced(
            || {
                let mut buf = [0u8; 15];
                PortIo::new().hb_in(IN, &mut buf).ok() == Some(OUT) && buf == *HB_BYTES
            },
            |mem, r| {
                assert_eq!(opcode(mem, r.rip, 2), [0xF3, 0x6C], "rep insb");
                let got = low32(r);
                assert_eq!(r.rcx, HB_BYTES.len() as u64);
                let want = Regs {
                    ecx: got.ecx,
                    edi: got.edi,
                    ..IN
                };
                assert_eq!(got, want);
                mem.write_all_at(HB_BYTES, r.rdi).unwrap();
                answer(r, OUT);
                r.rip += 2;
            },
        );
        assert!(
            ok,
            "the child saw other registers or bytes than the tracer wrote"
        );
    }
}
