//! What `hvsim exec` reads from a traced program, which is untrusted: ELF
//! headers and section tables of the files it maps, and the code bytes it
//! disassembles for CPUID sites and backdoor instructions. None may panic,
//! and every section range found lies inside the given bytes' claims.
#![no_main]

use hvsim::exec::{elf, emulate, patch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = elf::section_table(data) {
        let start = usize::try_from(t.offset).unwrap_or(usize::MAX);
        if let Some(table) = start
            .checked_add(t.len())
            .and_then(|end| data.get(start..end))
        {
            if let Ok(secs) = elf::exec_sections(table) {
                assert!(secs.iter().all(|r| r.start <= r.end));
            }
        }
    }
    let _ = elf::exec_sections(data);
    for s in patch::find_cpuid(data, 0x1000) {
        let at = (s.opcode_addr() - 0x1000) as usize;
        assert_eq!(data[at..at + 2], patch::CPUID);
    }
    let _ = emulate::decode(data);
});
