//! Memory statistics for the host (`SetGuestInfo  8`), the report vmtoolsd's
//! guestInfo plugin sends every `stats-interval` (20 s): the legacy header
//! and the stat list of [`protocol::gueststats`].
//!
//! vmtoolsd publishes these on Linux (perfMonLinux.c, the released entries of
//! its query table), and so does this module, in the same order and units:
//! huge page size, physical usable memory, MemFree, Active(file), SwapFree,
//! HugePages_Total, page-in and page-out rates (pgpgin/pgpgout per second
//! since the previous report), page size, memory needed and its 5%
//! reservation, MemAvailable, SReclaimable, Buffers, Cached and MemTotal.
//!
//! Each report reads /proc/meminfo and /proc/vmstat, through descriptors
//! kept open, into one reused buffer. "Physical usable" memory is the sum of
//! the zones' present pages in /proc/zoneinfo, as vmtoolsd computes it, but
//! read only at the first report and again when MemTotal changes (memory
//! hotplug), not every time (falling back to MemTotal, as vmtoolsd does,
//! when zoneinfo is missing). vmtoolsd also reads /proc/stat (context switch
//! rate, run queue), /proc/diskstats (disk queues) and /proc/uptime (its
//! clock) every time; those CPU and disk stats are not memory information
//! and are not sent, and the rates here use the monotonic clock.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use protocol::gueststats::{id, legacy_flag, unit, GuestStats, Stat, VERSION};

/// The /proc/meminfo fields the report uses, in KiB (HugePages_Total in pages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// MemTotal.
    pub total: Option<u64>,
    /// MemFree.
    pub free: Option<u64>,
    /// MemAvailable (kernel 3.14 and later).
    pub available: Option<u64>,
    /// Buffers.
    pub buffers: Option<u64>,
    /// Cached.
    pub cached: Option<u64>,
    /// Active(file).
    pub active_file: Option<u64>,
    /// SwapFree.
    pub swap_free: Option<u64>,
    /// SReclaimable.
    pub slab_reclaimable: Option<u64>,
    /// HugePages_Total.
    pub huge_pages_total: Option<u64>,
    /// Hugepagesize.
    pub huge_page_size: Option<u64>,
}

/// Parse /proc/meminfo ("Key:   value kB" lines).
pub fn parse_meminfo(text: &[u8]) -> MemInfo {
    let mut m = MemInfo::default();
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let slot = match &line[..colon] {
            b"MemTotal" => &mut m.total,
            b"MemFree" => &mut m.free,
            b"MemAvailable" => &mut m.available,
            b"Buffers" => &mut m.buffers,
            b"Cached" => &mut m.cached,
            b"Active(file)" => &mut m.active_file,
            b"SwapFree" => &mut m.swap_free,
            b"SReclaimable" => &mut m.slab_reclaimable,
            b"HugePages_Total" => &mut m.huge_pages_total,
            b"Hugepagesize" => &mut m.huge_page_size,
            _ => continue,
        };
        *slot = first_number(&line[colon + 1..]);
    }
    m
}

/// pgpgin and pgpgout from /proc/vmstat ("name value" lines).
pub fn parse_vmstat(text: &[u8]) -> (Option<u64>, Option<u64>) {
    let (mut pgin, mut pgout) = (None, None);
    for line in text.split(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"pgpgin ") {
            pgin = first_number(rest);
        } else if let Some(rest) = line.strip_prefix(b"pgpgout ") {
            pgout = first_number(rest);
        }
        if pgin.is_some() && pgout.is_some() {
            break;
        }
    }
    (pgin, pgout)
}

/// The sum of the zones' present pages in /proc/zoneinfo.
pub fn parse_zoneinfo_present(text: &[u8]) -> Option<u64> {
    let mut sum: Option<u64> = None;
    for line in text.split(|&b| b == b'\n') {
        let line = line.trim_ascii_start();
        if let Some(rest) = line.strip_prefix(b"present") {
            if rest.first().is_some_and(u8::is_ascii_whitespace) {
                let n = first_number(rest)?;
                sum = Some(sum.unwrap_or(0).saturating_add(n));
            }
        }
    }
    sum
}

fn first_number(b: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(b).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Per-second rate of a kernel counter between two samples; a counter that
/// went back wraps as 32 bits when it was 32-bit sized (as vmtoolsd), else
/// it was reset and there is no rate.
fn rate(prev: Option<u64>, cur: Option<u64>, secs: f64) -> Option<f64> {
    let (prev, cur) = (prev?, cur?);
    if secs <= 0.0 {
        return None;
    }
    let delta = if cur >= prev {
        cur - prev
    } else if prev <= u64::from(u32::MAX) {
        u64::from((cur as u32).wrapping_sub(prev as u32))
    } else {
        return None;
    };
    Some(delta as f64 / secs)
}

/// Build the report from one meminfo sample, the physical usable memory
/// (KiB; MemTotal when unknown, as vmtoolsd falls back) and the paging rates.
pub fn build(
    m: &MemInfo,
    phys_usable: Option<u64>,
    page_size: u64,
    page_in: Option<f64>,
    page_out: Option<f64>,
) -> GuestStats {
    let phys_usable = phys_usable.or(m.total);
    // Memory needed: usable memory less what is available, keeping 5% of
    // physical memory in reserve for surges (GuestInfoDeriveMemNeeded).
    let (needed, reservation) = match phys_usable {
        Some(p) => {
            let reservation = p / 20;
            let avail = m.available.unwrap_or(0).saturating_sub(reservation);
            (p.saturating_sub(avail), reservation)
        }
        None => (0, 0),
    };
    let mut flags = 0;
    if phys_usable.is_some() {
        flags |= legacy_flag::MEMTOTAL;
    }
    if m.huge_pages_total.is_some() {
        flags |= legacy_flag::HUGEPAGESTOTAL;
    }
    GuestStats {
        version: VERSION,
        flags,
        mem_total_kib: phys_usable.unwrap_or(0),
        huge_pages_total: m.huge_pages_total.unwrap_or(0),
        stats: vec![
            Stat::uint(id::HUGE_PAGE_SIZE, unit::KIB, m.huge_page_size),
            Stat::uint(id::MEM_PHYS_USABLE, unit::KIB, phys_usable),
            Stat::uint(id::MEM_FREE, unit::KIB, m.free),
            Stat::uint(id::MEM_ACTIVE_FILE_CACHE, unit::KIB, m.active_file),
            Stat::uint(id::SWAP_SPACE_REMAINING, unit::KIB, m.swap_free),
            Stat::uint(id::HUGE_PAGES_TOTAL, unit::HUGE_PAGES, m.huge_pages_total),
            Stat::rate(id::PAGE_IN_RATE, unit::PAGES_PER_SECOND, page_in),
            Stat::rate(id::PAGE_OUT_RATE, unit::PAGES_PER_SECOND, page_out),
            Stat::uint(id::PHYSICAL_PAGE_SIZE, unit::BYTES, Some(page_size)),
            Stat::uint(id::MEM_NEEDED, unit::KIB, Some(needed)),
            Stat::uint(id::MEM_NEEDED_RESERVATION, unit::KIB, Some(reservation)),
            Stat::uint(id::MEM_AVAILABLE, unit::KIB, m.available),
            Stat::uint(id::MEM_SLAB_RECLAIM, unit::KIB, m.slab_reclaimable),
            Stat::uint(id::MEM_BUFFERS, unit::KIB, m.buffers),
            Stat::uint(id::MEM_CACHED, unit::KIB, m.cached),
            Stat::uint(id::MEM_TOTAL, unit::KIB, m.total),
        ],
    }
}

/// The collector: two open /proc files, a buffer, the previous counters.
#[derive(Debug)]
pub struct MemStats {
    meminfo: Option<File>,
    vmstat: Option<File>,
    buf: Vec<u8>,
    page_size: u64,
    prev: Option<(Instant, Option<u64>, Option<u64>)>,
    /// MemTotal when zoneinfo was last read, and the present memory, KiB.
    present: Option<(Option<u64>, Option<u64>)>,
}

impl Default for MemStats {
    fn default() -> Self {
        MemStats::new()
    }
}

/// Read a whole /proc file from its start into `buf`: `pread` at offset 0
/// into the buffer's spare room, again only when it filled up (procfs
/// seq_files return everything that fits in one call, so a short read is
/// the end). One system call for a small file, no seek, no stat.
fn reread(f: &mut Option<File>, path: &str, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    if f.is_none() {
        *f = File::open(path)
            .map_err(|e| log::warn!("memstats: cannot open {path}: {e}"))
            .ok();
    }
    let Some(file) = f else { return false };
    loop {
        let len = buf.len();
        if buf.capacity() - len < 1024 {
            buf.reserve(buf.capacity().max(4096));
        }
        let room = buf.capacity() - len;
        buf.resize(len + room, 0);
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(n) => {
                buf.truncate(len + n);
                if n < room {
                    return true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => {
                log::warn!("memstats: cannot read {path}: {e}");
                buf.clear();
                *f = None;
                return false;
            }
        }
    }
}

impl MemStats {
    /// A collector; the files open on first use.
    pub fn new() -> MemStats {
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        MemStats {
            meminfo: None,
            vmstat: None,
            buf: Vec::with_capacity(8192),
            page_size: u64::try_from(page_size).unwrap_or(4096),
            prev: None,
            present: None,
        }
    }

    /// Take a sample now: the `SetGuestInfo  8 ` message to send. Rates are
    /// over the time since the previous sample (none on the first).
    pub fn sample(&mut self, now: Instant) -> Vec<u8> {
        let mem = if reread(&mut self.meminfo, "/proc/meminfo", &mut self.buf) {
            parse_meminfo(&self.buf)
        } else {
            MemInfo::default()
        };
        if !matches!(self.present, Some((total, _)) if total == mem.total) {
            let mut zoneinfo = None;
            let kib = if reread(&mut zoneinfo, "/proc/zoneinfo", &mut self.buf) {
                parse_zoneinfo_present(&self.buf).map(|p| p.saturating_mul(self.page_size) / 1024)
            } else {
                None
            };
            self.present = Some((mem.total, kib));
            // The buffer grew for zoneinfo; keep it at the size the two
            // small files need.
            self.buf = Vec::with_capacity(8192);
        }
        let phys_usable = self.present.and_then(|(_, kib)| kib);
        let (pgin, pgout) = if reread(&mut self.vmstat, "/proc/vmstat", &mut self.buf) {
            parse_vmstat(&self.buf)
        } else {
            (None, None)
        };
        let (page_in, page_out) = match self.prev {
            Some((at, pin, pout)) => {
                let secs = now.saturating_duration_since(at).as_secs_f64();
                (rate(pin, pgin, secs), rate(pout, pgout, secs))
            }
            None => (None, None),
        };
        self.prev = Some((now, pgin, pgout));
        let report = build(&mem, phys_usable, self.page_size, page_in, page_out);
        let mut msg = format!("SetGuestInfo  {} ", protocol::guestinfo_key::MEMORY).into_bytes();
        msg.extend_from_slice(&protocol::gueststats::encode(&report));
        msg
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protocol::gueststats::{decode, Value};

    use super::*;

    const MEMINFO: &str = "MemTotal:       16315128 kB\nMemFree:         1234567 kB\n\
        MemAvailable:    9000000 kB\nBuffers:          300000 kB\nCached:          5000000 kB\n\
        SwapCached:            0 kB\nActive:          4000000 kB\nInactive:        6000000 kB\n\
        Active(anon):    1000000 kB\nInactive(anon):   200000 kB\nActive(file):    3000000 kB\n\
        Inactive(file):  5800000 kB\nSwapTotal:       2097148 kB\nSwapFree:        2097148 kB\n\
        SReclaimable:     400000 kB\nHugePages_Total:       0\nHugePages_Free:        0\n\
        Hugepagesize:       2048 kB\n";

    #[test]
    fn meminfo_and_vmstat_fields() {
        let m = parse_meminfo(MEMINFO.as_bytes());
        assert_eq!(m.total, Some(16_315_128));
        assert_eq!(m.free, Some(1_234_567));
        assert_eq!(m.active_file, Some(3_000_000));
        assert_eq!(m.huge_pages_total, Some(0));
        assert_eq!(m.huge_page_size, Some(2048));
        assert_eq!(
            parse_vmstat(b"nr_free_pages 1\npgpgin 100\npgpgout 250\npswpin 0\n"),
            (Some(100), Some(250))
        );
        assert_eq!(parse_vmstat(b"garbage\n"), (None, None));
        let zones = b"Node 0, zone      DMA\n  pages free     3840\n        present  3998\n\
            Node 0, zone   Normal\n        present  782336\n        present_early_pages 5\n";
        assert_eq!(parse_zoneinfo_present(zones), Some(786_334));
        assert_eq!(parse_zoneinfo_present(b"nothing\n"), None);
    }

    #[test]
    fn rates_and_wraps() {
        assert_eq!(rate(Some(100), Some(300), 20.0), Some(10.0));
        assert_eq!(rate(None, Some(300), 20.0), None);
        assert_eq!(rate(Some(u64::from(u32::MAX)), Some(9), 10.0), Some(1.0));
        assert_eq!(rate(Some(1 << 40), Some(5), 10.0), None);
        assert_eq!(rate(Some(1), Some(5), 0.0), None);
    }

    #[test]
    fn report_decodes_to_the_meminfo_values() {
        let m = parse_meminfo(MEMINFO.as_bytes());
        let r = build(&m, None, 4096, Some(0.0), Some(12.5));
        let d = decode(&protocol::gueststats::encode(&r)).unwrap();
        assert_eq!(d, r);
        assert_eq!(d.mem_total_kib, 16_315_128);
        assert_eq!(d.flags, legacy_flag::MEMTOTAL | legacy_flag::HUGEPAGESTOTAL);
        assert_eq!(d.tools_u64(id::MEM_TOTAL), Some(16_315_128));
        assert_eq!(d.tools_u64(id::MEM_AVAILABLE), Some(9_000_000));
        // 16315128 - (9000000 - 815756)
        assert_eq!(d.tools_u64(id::MEM_NEEDED_RESERVATION), Some(815_756));
        assert_eq!(d.tools_u64(id::MEM_NEEDED), Some(8_130_884));
        assert_eq!(
            d.tools_stat(id::PAGE_OUT_RATE).unwrap().value,
            Some(Value::Float(12.5))
        );
        let with_zones = build(&m, Some(16_777_216), 4096, None, None);
        assert_eq!(with_zones.mem_total_kib, 16_777_216);
        assert_eq!(with_zones.tools_u64(id::MEM_PHYS_USABLE), Some(16_777_216));
        assert_eq!(with_zones.tools_u64(id::MEM_TOTAL), Some(16_315_128));
        let ids: Vec<u64> = d.stats.iter().map(|s| s.id).collect();
        assert_eq!(
            ids,
            [11, 6, 4, 3, 9, 12, 7, 8, 10, 5, 13, 25, 34, 26, 27, 60]
        );
    }

    #[test]
    fn samples_this_machine() {
        let mut s = MemStats::new();
        let t0 = Instant::now();
        let first = s.sample(t0);
        let body = first.strip_prefix(b"SetGuestInfo  8 ").unwrap();
        let d = decode(body).unwrap();
        let want = parse_meminfo(&std::fs::read("/proc/meminfo").unwrap()).total;
        assert_eq!(d.tools_u64(id::MEM_TOTAL), want);
        let present = parse_zoneinfo_present(&std::fs::read("/proc/zoneinfo").unwrap())
            .map(|p| p * s.page_size / 1024);
        assert_eq!(d.tools_u64(id::MEM_PHYS_USABLE), present.or(want));
        // No rate on the first sample, one on the next.
        assert!(d.tools_stat(id::PAGE_IN_RATE).unwrap().value.is_none());
        let next = s.sample(t0 + Duration::from_secs(20));
        let d = decode(next.strip_prefix(b"SetGuestInfo  8 ").unwrap()).unwrap();
        assert!(d.tools_stat(id::PAGE_IN_RATE).unwrap().value.is_some());
    }
}
