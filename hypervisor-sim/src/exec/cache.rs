//! CPUID sites per program file, kept by `hvsim serve` for as long as it
//! runs: each file (a program, ld.so, libc, ...) is disassembled once, however
//! many traced processes map it; later processes only write UD2 at the known
//! offsets.
//!
//! A file is known by [`FileKey`]: a file rewritten in place gets a new ctime
//! (which no user can set back, unlike mtime), one replaced by rename a new
//! inode. The tracer still checks the CPUID bytes in the process's memory
//! before it writes UD2, so a stale entry can at worst leave a CPUID
//! unpatched, never corrupt code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::patch::Site;

/// Files remembered at most; past this the cache starts over (a guest that
/// maps endless distinct files costs disassembly, not memory).
pub const MAX_FILES: usize = 4096;

/// One version of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// st_dev.
    pub dev: u64,
    /// st_ino.
    pub ino: u64,
    /// st_size.
    pub size: u64,
    /// st_mtime, st_mtime_nsec.
    pub mtime: (i64, i64),
    /// st_ctime, st_ctime_nsec.
    pub ctime: (i64, i64),
}

/// A file's CPUID sites, `addr` being the file offset, sorted by it; `None`
/// when the file has no usable section table (the tracer then sweeps the
/// mapped memory instead).
pub type FileSites = Option<Arc<[Site]>>;

/// The cache, shared by every `hvsim exec` session of one `hvsim serve`.
#[derive(Debug, Default)]
pub struct SiteCache {
    files: Mutex<HashMap<FileKey, FileSites>>,
}

impl SiteCache {
    /// What is known about `key`.
    pub fn get(&self, key: &FileKey) -> Option<FileSites> {
        self.lock().get(key).cloned()
    }

    /// Remember `sites` for `key`.
    pub fn insert(&self, key: FileKey, sites: FileSites) {
        let mut m = self.lock();
        if m.len() >= MAX_FILES {
            m.clear();
        }
        m.insert(key, sites);
    }

    /// Number of files known.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no file is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileKey, FileSites>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sites of `sites` (sorted by file offset) that lie entirely inside the
/// file range `file`, each moved to the address where `file.start` is mapped.
pub fn sites_in(sites: &[Site], file: std::ops::Range<u64>, at: u64) -> Vec<Site> {
    let first = sites.partition_point(|s| s.addr < file.start);
    sites[first..]
        .iter()
        .take_while(|s| s.addr < file.end)
        .filter(|s| s.addr + u64::from(s.len) <= file.end)
        .map(|s| Site {
            addr: at + (s.addr - file.start),
            len: s.len,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> FileKey {
        FileKey {
            dev: 1,
            ino,
            size: 10,
            mtime: (1, 2),
            ctime: (3, 4),
        }
    }

    #[test]
    fn remembers_and_starts_over_when_full() {
        let c = SiteCache::default();
        assert_eq!(c.get(&key(1)), None);
        c.insert(key(1), None);
        assert_eq!(c.get(&key(1)), Some(None));
        for i in 2..=MAX_FILES as u64 {
            c.insert(key(i), None);
        }
        assert_eq!(c.len(), MAX_FILES);
        c.insert(key(0), None);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn sites_move_to_the_mapping() {
        let s = |addr, len| Site { addr, len };
        let all = [
            s(0x10, 2),
            s(0x1000, 2),
            s(0x1ffe, 2),
            s(0x1fff, 2),
            s(0x3000, 3),
        ];
        assert_eq!(
            sites_in(&all, 0x1000..0x2000, 0x7000_0000),
            vec![s(0x7000_0000, 2), s(0x7000_0ffe, 2)]
        );
        assert!(sites_in(&all, 0x4000..0x5000, 0).is_empty());
    }
}
