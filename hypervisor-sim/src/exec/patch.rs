//! Finding CPUID instructions by disassembly, and the bytes that replace them.
//!
//! These CPUs offer no CPUID faulting (`arch_prctl(ARCH_SET_CPUID)` fails), so
//! a traced program's CPUID would answer from the real CPU ("KVMKVMKVM"). The
//! tracer instead rewrites each CPUID (`0F A2`) into UD2 (`0F 0B`, the same
//! length), which raises SIGILL; the tracer answers the leaf and steps past.
//! Sites come from a linear sweep of executable sections with a real decoder,
//! so `0F A2` inside another instruction's immediate or displacement is never
//! touched.

use iced_x86::{Code, Decoder, DecoderOptions};

/// The CPUID opcode.
pub const CPUID: [u8; 2] = [0x0F, 0xA2];
/// UD2, what a CPUID site becomes.
pub const UD2: [u8; 2] = [0x0F, 0x0B];

/// One CPUID instruction in a program's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    /// Address of the instruction's first byte (where RIP points on SIGILL).
    pub addr: u64,
    /// Instruction length (2, or more with redundant prefixes).
    pub len: u8,
}

impl Site {
    /// Where the two opcode bytes are (after any prefixes).
    pub fn opcode_addr(&self) -> u64 {
        self.addr + u64::from(self.len) - 2
    }
}

/// Every CPUID instruction in `code`, which sits at address `base`, found by
/// decoding it from its first byte on. Undecodable bytes are skipped one at a
/// time; the x86 decoder resynchronises within a few instructions.
pub fn find_cpuid(code: &[u8], base: u64) -> Vec<Site> {
    let mut sites = Vec::new();
    let mut dec = Decoder::with_ip(64, code, base, DecoderOptions::NONE);
    let mut ins = iced_x86::Instruction::default();
    while dec.can_decode() {
        dec.decode_out(&mut ins);
        if ins.code() == Code::Cpuid {
            let len = ins.len();
            let end = (ins.ip() - base) as usize + len;
            // The last two bytes are the opcode; prefixes come before.
            if len >= 2 && code[end - 2..end] == CPUID {
                sites.push(Site {
                    addr: ins.ip(),
                    len: len as u8,
                });
            }
        }
    }
    sites
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_real_cpuid_only() {
        let code = [
            0x31, 0xC0, // xor eax, eax
            0x0F, 0xA2, // cpuid            <- site at 0x1002
            0xB8, 0x0F, 0xA2, 0x00, 0x00, // mov eax, 0xA20F (bytes inside an immediate)
            0x48, 0x8B, 0x05, 0x0F, 0xA2, 0x00, 0x00, // mov rax, [rip+0xA20F]
            0x66, 0x0F, 0xA2, // cpuid with a redundant prefix <- site at 0x1010
            0xC3, // ret
        ];
        let sites = find_cpuid(&code, 0x1000);
        assert_eq!(
            sites,
            vec![
                Site {
                    addr: 0x1002,
                    len: 2
                },
                Site {
                    addr: 0x1010,
                    len: 3
                }
            ]
        );
        assert_eq!(sites[1].opcode_addr(), 0x1011);
    }

    #[test]
    fn patched_code_has_no_sites() {
        let code = [0x0F, 0x0B, 0x90, 0x0F];
        assert!(find_cpuid(&code, 0).is_empty());
        assert!(find_cpuid(&[], 0).is_empty());
    }
}
