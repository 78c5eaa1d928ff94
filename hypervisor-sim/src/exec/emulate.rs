//! Emulating the backdoor instructions of a trapped guest: decode the
//! instruction at RIP, perform it against the VM's device, compute the new
//! registers (and memory, for the string forms). Pure: the device and the
//! guest's memory come in through traits, so this is tested without ptrace.
//!
//! Register semantics follow the hardware and VMware's backdoor: results are
//! 32-bit values; a register the backdoor changed is written zero-extended
//! (as a 32-bit `mov` would), a register it left alone keeps all 64 bits, so a
//! pointer that merely passes through a call survives. `in al/ax` change only
//! the low 8/16 bits of rax.

use std::io;

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use protocol::{Regs, BDOORHB_PORT, BDOOR_PORT};

/// The general registers the backdoor reads and writes, plus RIP and RFLAGS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    /// rax.
    pub rax: u64,
    /// rbx.
    pub rbx: u64,
    /// rcx.
    pub rcx: u64,
    /// rdx.
    pub rdx: u64,
    /// rsi.
    pub rsi: u64,
    /// rdi.
    pub rdi: u64,
    /// rbp.
    pub rbp: u64,
    /// Instruction pointer.
    pub rip: u64,
    /// Flags (DF is bit 10).
    pub rflags: u64,
}

/// RFLAGS direction flag.
const DF: u64 = 1 << 10;
/// Largest string transfer emulated in one instruction (a guest asking for
/// more is refused the same way the device refuses an oversized message).
pub const MAX_STRING: u64 = 64 << 20;

impl Cpu {
    /// The backdoor's view: the low 32 bits of each register.
    pub fn regs(&self) -> Regs {
        Regs {
            eax: self.rax as u32,
            ebx: self.rbx as u32,
            ecx: self.rcx as u32,
            edx: self.rdx as u32,
            esi: self.rsi as u32,
            edi: self.rdi as u32,
            ebp: self.rbp as u32,
        }
    }

    /// Write back what the backdoor changed (see the module doc).
    fn apply(&mut self, before: Regs, after: Regs) {
        fn put(r: &mut u64, old: u32, new: u32) {
            if old != new {
                *r = u64::from(new);
            }
        }
        put(&mut self.rax, before.eax, after.eax);
        put(&mut self.rbx, before.ebx, after.ebx);
        put(&mut self.rcx, before.ecx, after.ecx);
        put(&mut self.rdx, before.edx, after.edx);
        put(&mut self.rsi, before.esi, after.esi);
        put(&mut self.rdi, before.edi, after.edi);
        put(&mut self.rbp, before.ebp, after.ebp);
    }
}

/// Where the port number comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// `dx`.
    Dx,
    /// An 8-bit immediate (never a backdoor port, which needs 16 bits).
    Imm(u8),
}

/// A decoded port I/O instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoInsn {
    /// `in al/ax/eax, port`: `width` is 1, 2 or 4.
    In {
        /// Operand size in bytes.
        width: u8,
        /// Port source.
        port: Port,
    },
    /// `out port, al/ax/eax`.
    Out {
        /// Operand size in bytes.
        width: u8,
        /// Port source.
        port: Port,
    },
    /// `[rep] insb` with 64-bit addressing.
    InsB {
        /// REP prefix: rcx bytes, else one.
        rep: bool,
    },
    /// `[rep] outsb` with 64-bit addressing.
    OutsB {
        /// REP prefix: rcx bytes, else one.
        rep: bool,
    },
}

/// An instruction and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// What it does.
    pub insn: IoInsn,
    /// Its length in bytes (RIP advances by this).
    pub len: u8,
}

fn width_of(r: Register) -> Option<u8> {
    match r {
        Register::AL => Some(1),
        Register::AX => Some(2),
        Register::EAX => Some(4),
        _ => None,
    }
}

fn port_of(ins: &Instruction, op: u32) -> Option<Port> {
    match ins.op_kind(op) {
        OpKind::Immediate8 => Some(Port::Imm(ins.immediate8())),
        OpKind::Register if ins.op_register(op) == Register::DX => Some(Port::Dx),
        _ => None,
    }
}

/// Decode the instruction in `bytes` (up to 15 bytes at RIP) if it is one of
/// the port I/O forms the backdoor uses; `None` for anything else (including
/// `insw`/`insd` and 32-bit addressing, which no backdoor client uses).
pub fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut dec = Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE);
    let ins = dec.decode();
    if ins.is_invalid() {
        return None;
    }
    let insn = match ins.mnemonic() {
        Mnemonic::In => IoInsn::In {
            width: width_of(ins.op0_register())?,
            port: port_of(&ins, 1)?,
        },
        Mnemonic::Out => IoInsn::Out {
            width: width_of(ins.op1_register())?,
            port: port_of(&ins, 0)?,
        },
        Mnemonic::Insb if ins.op0_kind() == OpKind::MemoryESRDI => IoInsn::InsB {
            rep: ins.has_rep_prefix(),
        },
        Mnemonic::Outsb if ins.op1_kind() == OpKind::MemorySegRSI => IoInsn::OutsB {
            rep: ins.has_rep_prefix(),
        },
        _ => return None,
    };
    Some(Decoded {
        insn,
        len: ins.len() as u8,
    })
}

/// The VM's backdoor device, as the emulator reaches it.
pub trait Device {
    /// `in eax, dx` on the LB port.
    fn call(&mut self, regs: Regs) -> io::Result<Regs>;
    /// `rep outsb` of `data` on the HB port.
    fn hb_out(&mut self, regs: Regs, data: &[u8]) -> io::Result<Regs>;
    /// `rep insb` of `buf.len()` bytes on the HB port; true when the device
    /// filled `buf` (it sends nothing when it fails the transfer).
    fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> io::Result<(Regs, bool)>;
}

/// The traced program's memory.
pub trait GuestMem {
    /// Read `buf.len()` bytes at `addr`.
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Write `data` at `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> io::Result<()>;
}

/// What became of a trapped instruction.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Emulated: `cpu` holds the new registers, RIP past the instruction.
    Done,
    /// Not a backdoor access (another port): deliver the fault unchanged.
    NotOurs,
    /// The string operand is out of the guest's address space: deliver the
    /// fault unchanged, as a real page fault would be.
    BadMemory,
}

fn is_backdoor(port: u16) -> bool {
    port == BDOOR_PORT || port == BDOORHB_PORT
}

/// Emulate `d` (decoded at `cpu.rip`) against `dev`. Device errors come back
/// as `Err` with registers and memory untouched.
pub fn emulate(
    d: Decoded,
    cpu: &mut Cpu,
    mem: &mut dyn GuestMem,
    dev: &mut dyn Device,
    buf: &mut Vec<u8>,
) -> io::Result<Outcome> {
    let dx = cpu.rdx as u16;
    let port = |p: Port| match p {
        Port::Dx => dx,
        Port::Imm(i) => u16::from(i),
    };
    match d.insn {
        IoInsn::In { width, port: p } => {
            if !is_backdoor(port(p)) {
                return Ok(Outcome::NotOurs);
            }
            let before = cpu.regs();
            let after = dev.call(before)?;
            let rax = cpu.rax;
            cpu.apply(before, after);
            let keep = match width {
                1 => !0xFF,
                2 => !0xFFFF,
                _ => 0,
            };
            if keep != 0 {
                cpu.rax = (rax & keep) | (u64::from(after.eax) & !keep);
            }
        }
        // Writes to the backdoor ports do nothing on a VMware host; no client
        // issues them, but they must not crash the program either.
        IoInsn::Out { port: p, .. } => {
            if !is_backdoor(port(p)) {
                return Ok(Outcome::NotOurs);
            }
        }
        IoInsn::OutsB { rep } | IoInsn::InsB { rep } => {
            if dx != BDOORHB_PORT && dx != BDOOR_PORT {
                return Ok(Outcome::NotOurs);
            }
            let count = if rep { cpu.rcx } else { 1 };
            if count > MAX_STRING {
                return Ok(Outcome::BadMemory);
            }
            let down = cpu.rflags & DF != 0;
            let outs = matches!(d.insn, IoInsn::OutsB { .. });
            let ptr = if outs { cpu.rsi } else { cpu.rdi };
            // With DF set the instruction walks downwards from ptr.
            let low = if down {
                match ptr.checked_sub(count.saturating_sub(1)) {
                    Some(l) => l,
                    None => return Ok(Outcome::BadMemory),
                }
            } else {
                ptr
            };
            let n = count as usize;
            buf.clear();
            buf.resize(n, 0);
            let mut before = cpu.regs();
            before.ecx = count as u32;
            let after = if outs {
                if n > 0 && mem.read(low, buf).is_err() {
                    return Ok(Outcome::BadMemory);
                }
                if down {
                    buf.reverse();
                }
                dev.hb_out(before, buf)?
            } else {
                let (after, filled) = dev.hb_in(before, buf)?;
                if filled && n > 0 {
                    if down {
                        buf.reverse();
                    }
                    if mem.write(low, buf).is_err() {
                        return Ok(Outcome::BadMemory);
                    }
                }
                after
            };
            // The device reports what is left in ecx (0 when all moved).
            let left = u64::from(after.ecx).min(count);
            let moved = count - left;
            let (rsi, rdi, rcx) = (cpu.rsi, cpu.rdi, cpu.rcx);
            cpu.apply(before, after);
            let step = |p: u64| {
                if down {
                    p.wrapping_sub(moved)
                } else {
                    p.wrapping_add(moved)
                }
            };
            if outs {
                cpu.rsi = step(rsi);
            } else {
                cpu.rdi = step(rdi);
            }
            cpu.rcx = if rep { left } else { rcx };
        }
    }
    cpu.rip = cpu.rip.wrapping_add(u64::from(d.len));
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::BDOOR_MAGIC;

    #[test]
    fn decodes_the_backdoor_forms() {
        let d = |b: &[u8]| decode(b).map(|d| (d.insn, d.len));
        assert_eq!(
            d(&[0xED]),
            Some((
                IoInsn::In {
                    width: 4,
                    port: Port::Dx
                },
                1
            ))
        );
        assert_eq!(
            d(&[0xEC]),
            Some((
                IoInsn::In {
                    width: 1,
                    port: Port::Dx
                },
                1
            ))
        );
        assert_eq!(
            d(&[0x66, 0xED]),
            Some((
                IoInsn::In {
                    width: 2,
                    port: Port::Dx
                },
                2
            ))
        );
        assert_eq!(
            d(&[0xE5, 0x58]),
            Some((
                IoInsn::In {
                    width: 4,
                    port: Port::Imm(0x58)
                },
                2
            ))
        );
        assert_eq!(
            d(&[0xEF]),
            Some((
                IoInsn::Out {
                    width: 4,
                    port: Port::Dx
                },
                1
            ))
        );
        assert_eq!(d(&[0xF3, 0x6E]), Some((IoInsn::OutsB { rep: true }, 2)));
        assert_eq!(d(&[0xF3, 0x6C]), Some((IoInsn::InsB { rep: true }, 2)));
        assert_eq!(d(&[0x6C]), Some((IoInsn::InsB { rep: false }, 1)));
        assert_eq!(d(&[0x67, 0xF3, 0x6C]), None, "32-bit addressing");
        assert_eq!(d(&[0xF3, 0x6D]), None, "insd");
        assert_eq!(d(&[0x90]), None);
        assert_eq!(d(&[]), None);
    }

    /// A device that records what it saw and answers like the host's HB.
    #[derive(Default)]
    struct Rec {
        seen: Vec<(Regs, Vec<u8>)>,
        reply: Vec<u8>,
    }

    impl Device for Rec {
        fn call(&mut self, regs: Regs) -> io::Result<Regs> {
            self.seen.push((regs, Vec::new()));
            Ok(Regs {
                eax: 6,
                ebx: BDOOR_MAGIC,
                ecx: 2,
                ..regs
            })
        }
        fn hb_out(&mut self, regs: Regs, data: &[u8]) -> io::Result<Regs> {
            self.seen.push((regs, data.to_vec()));
            Ok(Regs {
                ebx: 0x0001_0000,
                ecx: 0,
                ..regs
            })
        }
        fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> io::Result<(Regs, bool)> {
            self.seen.push((regs, Vec::new()));
            buf.copy_from_slice(&self.reply[..buf.len()]);
            Ok((
                Regs {
                    ebx: 0x0001_0000,
                    ecx: 0,
                    ..regs
                },
                true,
            ))
        }
    }

    struct Mem(Vec<u8>);
    impl GuestMem for Mem {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
            let a = addr as usize;
            let src = self
                .0
                .get(a..a + buf.len())
                .ok_or(io::ErrorKind::InvalidInput)?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn write(&mut self, addr: u64, data: &[u8]) -> io::Result<()> {
            let a = addr as usize;
            self.0
                .get_mut(a..a + data.len())
                .ok_or(io::ErrorKind::InvalidInput)?
                .copy_from_slice(data);
            Ok(())
        }
    }

    fn cpu() -> Cpu {
        Cpu {
            rax: u64::from(BDOOR_MAGIC),
            rbx: 0xFFFF_0000_0000_0000,
            rcx: 10,
            rdx: u64::from(BDOOR_PORT),
            rsi: 0x7FFF_0000_1234_5678,
            rdi: 0,
            rbp: 0x5555_0000_0000_0001,
            rip: 0x1000,
            rflags: 0x202,
        }
    }

    #[test]
    fn in_writes_changed_registers_zero_extended() {
        let mut c = cpu();
        let mut dev = Rec::default();
        let d = decode(&[0xED]).unwrap();
        let r = emulate(d, &mut c, &mut Mem(vec![]), &mut dev, &mut Vec::new()).unwrap();
        assert_eq!(r, Outcome::Done);
        assert_eq!((c.rax, c.rbx, c.rcx), (6, u64::from(BDOOR_MAGIC), 2));
        assert_eq!(c.rsi, 0x7FFF_0000_1234_5678, "untouched pointer kept");
        assert_eq!(c.rbp, 0x5555_0000_0000_0001);
        assert_eq!(c.rip, 0x1001);
        // in al, dx changes only al.
        let mut c = cpu();
        c.rax = 0xAAAA_BBBB_564D_5868;
        emulate(
            decode(&[0xEC]).unwrap(),
            &mut c,
            &mut Mem(vec![]),
            &mut dev,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(c.rax, 0xAAAA_BBBB_564D_5806);
    }

    #[test]
    fn other_ports_are_not_ours() {
        let mut c = cpu();
        c.rdx = 0x80;
        let mut dev = Rec::default();
        let d = decode(&[0xED]).unwrap();
        let r = emulate(d, &mut c, &mut Mem(vec![]), &mut dev, &mut Vec::new()).unwrap();
        assert_eq!(r, Outcome::NotOurs);
        assert_eq!(c, {
            let mut k = cpu();
            k.rdx = 0x80;
            k
        });
        assert!(dev.seen.is_empty());
    }

    #[test]
    fn rep_outsb_both_directions() {
        let mut mem = Mem(b"0123456789abcdef".to_vec());
        let mut dev = Rec::default();
        let d = decode(&[0xF3, 0x6E]).unwrap();
        let mut c = cpu();
        c.rdx = u64::from(BDOORHB_PORT);
        c.rsi = 2;
        c.rcx = 4;
        emulate(d, &mut c, &mut mem, &mut dev, &mut Vec::new()).unwrap();
        assert_eq!(dev.seen[0].1, b"2345");
        assert_eq!(dev.seen[0].0.ecx, 4);
        assert_eq!((c.rsi, c.rcx, c.rbx), (6, 0, 0x0001_0000));
        // DF set: bytes at rsi, rsi-1, ...
        let mut c = cpu();
        c.rdx = u64::from(BDOORHB_PORT);
        c.rflags |= DF;
        c.rsi = 9;
        c.rcx = 3;
        emulate(d, &mut c, &mut mem, &mut dev, &mut Vec::new()).unwrap();
        assert_eq!(dev.seen[1].1, b"987");
        assert_eq!((c.rsi, c.rcx), (6, 0));
    }

    #[test]
    fn rep_insb_fills_memory() {
        let mut mem = Mem(vec![0; 16]);
        let mut dev = Rec {
            reply: b"hello".to_vec(),
            ..Rec::default()
        };
        let d = decode(&[0xF3, 0x6C]).unwrap();
        let mut c = cpu();
        c.rdx = u64::from(BDOORHB_PORT);
        c.rdi = 3;
        c.rcx = 5;
        emulate(d, &mut c, &mut mem, &mut dev, &mut Vec::new()).unwrap();
        assert_eq!(&mem.0[3..8], b"hello");
        assert_eq!((c.rdi, c.rcx, c.rip), (8, 0, 0x1002));
        let mut c = cpu();
        c.rdx = u64::from(BDOORHB_PORT);
        c.rflags |= DF;
        c.rdi = 15;
        c.rcx = 5;
        emulate(d, &mut c, &mut mem, &mut dev, &mut Vec::new()).unwrap();
        assert_eq!(&mem.0[11..16], b"olleh");
        assert_eq!(c.rdi, 10);
    }

    #[test]
    fn unreadable_buffer_is_a_fault() {
        let d = decode(&[0xF3, 0x6E]).unwrap();
        let mut c = cpu();
        c.rdx = u64::from(BDOORHB_PORT);
        c.rsi = 100;
        let mut dev = Rec::default();
        let r = emulate(d, &mut c, &mut Mem(vec![0; 4]), &mut dev, &mut Vec::new()).unwrap();
        assert_eq!(r, Outcome::BadMemory);
        assert!(dev.seen.is_empty());
        assert_eq!(c.rip, 0x1000);
    }
}
