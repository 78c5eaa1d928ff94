//! Just enough ELF to find a file's executable sections: the ranges of the
//! file (by offset) that hold instructions, so CPUID sites are found by
//! disassembling code, never data that happens to contain `0F A2`.
//!
//! The file belongs to the guest program and is untrusted: every offset and
//! size is checked against the bytes actually given, and the number of
//! sections is bounded.

use std::ops::Range;

/// ELF64 file header size.
pub const EHDR_LEN: usize = 64;
/// ELF64 section header size.
const SHDR_LEN: usize = 64;
/// Section flag: the section holds executable instructions.
const SHF_EXECINSTR: u64 = 0x4;
/// Section type: occupies no file space (.bss).
const SHT_NOBITS: u32 = 8;
/// More sections than any real program has; a header claiming more is refused.
pub const MAX_SECTIONS: u16 = 4096;

/// Why an ELF file's section table could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// No ELF magic, or not 64-bit little-endian.
    #[error("not a 64-bit little-endian ELF file")]
    NotElf64,
    /// The file has no section headers (stripped with sstrip, or a core).
    #[error("no section headers")]
    NoSections,
    /// A header field is out of range.
    #[error("bad section header table: {0}")]
    Bad(&'static str),
}

/// Where the section header table is, from the file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionTable {
    /// File offset of the table.
    pub offset: u64,
    /// Number of entries.
    pub count: u16,
}

impl SectionTable {
    /// Bytes the table occupies.
    pub fn len(&self) -> usize {
        usize::from(self.count) * SHDR_LEN
    }

    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parse the file header (the first [`EHDR_LEN`] bytes or more).
pub fn section_table(ehdr: &[u8]) -> Result<SectionTable, ElfError> {
    if ehdr.len() < EHDR_LEN || &ehdr[..4] != b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 {
        return Err(ElfError::NotElf64);
    }
    let offset = u64_at(ehdr, 0x28);
    let entsize = u16_at(ehdr, 0x3A);
    let count = u16_at(ehdr, 0x3C);
    if offset == 0 || count == 0 {
        return Err(ElfError::NoSections);
    }
    if usize::from(entsize) != SHDR_LEN {
        return Err(ElfError::Bad("section header size is not 64"));
    }
    if count > MAX_SECTIONS {
        return Err(ElfError::Bad("too many sections"));
    }
    Ok(SectionTable { offset, count })
}

/// The file ranges of the executable sections listed in `table` (the bytes
/// of the section header table, [`SectionTable::len`] long), sorted.
pub fn exec_sections(table: &[u8]) -> Result<Vec<Range<u64>>, ElfError> {
    let headers = table.chunks_exact(SHDR_LEN);
    if !headers.remainder().is_empty() || headers.len() > usize::from(MAX_SECTIONS) {
        return Err(ElfError::Bad("truncated section header table"));
    }
    let mut out = Vec::new();
    for sh in headers {
        let kind = u32_at(sh, 4);
        let flags = u64_at(sh, 8);
        let offset = u64_at(sh, 0x18);
        let size = u64_at(sh, 0x20);
        if flags & SHF_EXECINSTR == 0 || kind == SHT_NOBITS || size == 0 {
            continue;
        }
        let end = offset
            .checked_add(size)
            .ok_or(ElfError::Bad("section end overflows"))?;
        out.push(offset..end);
    }
    out.sort_by_key(|r| r.start);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shdr(kind: u32, flags: u64, offset: u64, size: u64) -> [u8; SHDR_LEN] {
        let mut s = [0u8; SHDR_LEN];
        s[4..8].copy_from_slice(&kind.to_le_bytes());
        s[8..16].copy_from_slice(&flags.to_le_bytes());
        s[0x18..0x20].copy_from_slice(&offset.to_le_bytes());
        s[0x20..0x28].copy_from_slice(&size.to_le_bytes());
        s
    }

    #[test]
    fn picks_executable_progbits_only() {
        let mut t = Vec::new();
        t.extend(shdr(0, 0, 0, 0)); // null section
        t.extend(shdr(1, 0x6, 0x2000, 0x500)); // .text AX
        t.extend(shdr(1, 0x2, 0x3000, 0x100)); // .rodata A
        t.extend(shdr(1, 0x6, 0x1000, 0x20)); // .init AX
        t.extend(shdr(SHT_NOBITS, 0x7, 0x4000, 0x100)); // odd NOBITS AX
        assert_eq!(
            exec_sections(&t).unwrap(),
            vec![0x1000..0x1020, 0x2000..0x2500]
        );
    }

    #[test]
    fn real_binary_has_text() {
        let exe = std::fs::read("/proc/self/exe").unwrap();
        let st = section_table(&exe).unwrap();
        let at = st.offset as usize;
        let secs = exec_sections(&exe[at..at + st.len()]).unwrap();
        assert!(!secs.is_empty());
        assert!(secs.iter().all(|r| r.end as usize <= exe.len()));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(section_table(b"\x7fELF"), Err(ElfError::NotElf64));
        let mut h = [0u8; EHDR_LEN];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert_eq!(section_table(&h), Err(ElfError::NoSections));
        h[0x28] = 0x40;
        h[0x3C] = 1;
        assert!(matches!(section_table(&h), Err(ElfError::Bad(_))));
        assert!(exec_sections(&[0u8; 65]).is_err());
        let t = shdr(1, 0x4, u64::MAX, 2);
        assert!(exec_sections(&t).is_err());
    }
}
