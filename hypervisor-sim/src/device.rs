//! The backdoor device: what the host does when the guest executes the
//! backdoor instruction. Pure: registers in, registers out; time comes from a
//! [`Clock`] and messages go to the VM's sink.

use protocol::host::{ChannelTable, HbIn, MessageSink};
use protocol::regs::lo;
use protocol::{cmd, vmx_type, Regs, BDOOR_MAGIC, BDOOR_UNKNOWN, BDOOR_VERSION};

/// Host time for GETTIMEFULL.
pub trait Clock {
    /// Seconds and microseconds since the Unix epoch.
    fn now(&self) -> (u64, u32);
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> (u64, u32) {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (d.as_secs(), d.subsec_micros())
    }
}

/// Fixed facts the device reports.
#[derive(Debug, Clone, Copy)]
pub struct DeviceFacts {
    /// BIOS UUID (GETUUID).
    pub uuid: [u8; 16],
    /// Memory size in MiB (GETMEMSIZE).
    pub memory_mb: u32,
    /// Processor speed in MHz (GETMHZ).
    pub mhz: u32,
    /// TSC frequency in Hz (GETHZ).
    pub tsc_hz: u64,
    /// Host build number (GETBUILDNUM).
    pub build: u32,
    /// Seconds added to the clock's time in GETTIMEFULL(_WITH_LAG).
    pub clock_offset_secs: i64,
    /// Virtual hardware version (GETHWVERSION).
    pub hw_version: u32,
}

/// Largest lag the host admits to in GETTIMEFULL, µs (ESX reports a bound here).
const MAX_TIME_LAG_US: u32 = 1_000_000;
/// APIC timer frequency reported by GETHZ: 1 GHz bus, as ESXi's virtual APIC.
const APIC_HZ: u32 = 1_000_000_000;

/// Handle `in eax, dx` on the LB port.
pub fn lb_call(
    facts: &DeviceFacts,
    clock: &dyn Clock,
    channels: &mut ChannelTable,
    sink: &mut dyn MessageSink,
    owner: u64,
    regs: Regs,
) -> Regs {
    let mut out = regs;
    if regs.eax != BDOOR_MAGIC || lo(regs.edx) != protocol::BDOOR_PORT {
        out.eax = BDOOR_UNKNOWN;
        return out;
    }
    match lo(regs.ecx) {
        cmd::GETVERSION => {
            out.eax = BDOOR_VERSION;
            out.ebx = BDOOR_MAGIC;
            out.ecx = vmx_type::SCALABLE_SERVER;
        }
        cmd::GETMHZ => {
            out.eax = facts.mhz;
            out.ebx = BDOOR_MAGIC;
        }
        cmd::GETUUID => {
            let w = |i: usize| {
                u32::from_le_bytes(facts.uuid[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]))
            };
            out.eax = w(0);
            out.ebx = w(1);
            out.ecx = w(2);
            out.edx = w(3);
        }
        cmd::GETMEMSIZE => out.eax = facts.memory_mb,
        cmd::GETHZ => {
            out.eax = facts.tsc_hz as u32;
            out.ebx = (facts.tsc_hz >> 32) as u32;
            out.ecx = APIC_HZ;
        }
        cmd::GETTIMEFULL | cmd::GETTIMEFULL_WITH_LAG => {
            let (secs, us) = clock.now();
            let secs = secs.saturating_add_signed(facts.clock_offset_secs);
            out.eax = BDOOR_MAGIC;
            out.esi = (secs >> 32) as u32;
            out.edx = secs as u32;
            out.ebx = us;
            out.ecx = MAX_TIME_LAG_US;
            if lo(regs.ecx) == cmd::GETTIMEFULL_WITH_LAG {
                // The simulated guest never lags behind host time.
                out.edi = 0;
            }
        }
        cmd::GETTIME => {
            let (secs, us) = clock.now();
            let secs = secs.saturating_add_signed(facts.clock_offset_secs);
            out.eax = u32::try_from(secs).unwrap_or(u32::MAX);
            out.ebx = us;
            out.ecx = MAX_TIME_LAG_US;
        }
        cmd::GETHWVERSION => out.eax = facts.hw_version,
        cmd::GETBUILDNUM => out.eax = facts.build,
        cmd::MESSAGE => return channels.message(regs, owner, sink),
        _ => out.eax = BDOOR_UNKNOWN,
    }
    out
}

/// Handle `rep insb` of `count` bytes on the HB port.
pub fn hb_in(channels: &mut ChannelTable, regs: Regs, count: usize) -> (Regs, Option<HbIn>) {
    if regs.eax != BDOOR_MAGIC || lo(regs.edx) != protocol::BDOORHB_PORT {
        let mut out = regs;
        out.eax = BDOOR_UNKNOWN;
        return (out, None);
    }
    channels.hb_in(regs, count)
}

/// Handle `rep outsb` of `data` on the HB port.
pub fn hb_out(
    channels: &mut ChannelTable,
    sink: &mut dyn MessageSink,
    regs: Regs,
    data: &[u8],
) -> Regs {
    if regs.eax != BDOOR_MAGIC || lo(regs.edx) != protocol::BDOORHB_PORT {
        let mut out = regs;
        out.eax = BDOOR_UNKNOWN;
        return out;
    }
    channels.hb_out(regs, data, sink)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::host::{HostLimits, NullSink};

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> (u64, u32) {
            (0x1_2345_6789, 42)
        }
    }

    fn facts() -> DeviceFacts {
        DeviceFacts {
            uuid: *b"\x56\x4d\x12\x34\x56\x78\x9a\xbc\xde\xf0\x12\x34\x56\x78\x9a\xbc",
            memory_mb: 2048,
            mhz: 2400,
            tsc_hz: 2_400_000_000,
            build: 24_585_383,
            clock_offset_secs: 0,
            hw_version: 19,
        }
    }

    fn call(cmd: u16) -> Regs {
        let mut t = ChannelTable::new(HostLimits::default(), 1);
        lb_call(
            &facts(),
            &Fixed,
            &mut t,
            &mut NullSink,
            1,
            Regs::command(cmd, 0),
        )
    }

    #[test]
    fn getversion_like_esx() {
        let r = call(cmd::GETVERSION);
        assert_eq!((r.eax, r.ebx, r.ecx), (6, BDOOR_MAGIC, 2));
    }

    #[test]
    fn getuuid_bytes_in_order() {
        let r = call(cmd::GETUUID);
        assert_eq!(
            (r.eax, r.ebx, r.ecx, r.edx),
            (0x3412_4d56, 0xbc9a_7856, 0x3412_f0de, 0xbc9a_7856)
        );
    }

    #[test]
    fn gettimefull_with_lag() {
        let r = call(cmd::GETTIMEFULL_WITH_LAG);
        assert_eq!(
            (r.eax, r.esi, r.edx, r.ebx, r.edi),
            (BDOOR_MAGIC, 1, 0x2345_6789, 42, 0)
        );
        assert_eq!(call(cmd::GETMEMSIZE).eax, 2048);
        let hz = call(cmd::GETHZ);
        assert_eq!((hz.ebx as u64) << 32 | hz.eax as u64, 2_400_000_000);
    }

    #[test]
    fn gettime_and_hwversion() {
        let r = call(cmd::GETTIME);
        assert_eq!((r.eax, r.ebx), (u32::MAX, 42), "past 2106: all ones");
        assert_eq!(call(cmd::GETHWVERSION).eax, 19);
    }

    #[test]
    fn clock_offset_moves_host_time() {
        let mut t = ChannelTable::new(HostLimits::default(), 1);
        let f = DeviceFacts {
            clock_offset_secs: -3600,
            ..facts()
        };
        let r = lb_call(
            &f,
            &Fixed,
            &mut t,
            &mut NullSink,
            1,
            Regs::command(cmd::GETTIMEFULL, 0),
        );
        let secs = (u64::from(r.esi) << 32) | u64::from(r.edx);
        assert_eq!((secs, r.ebx), (0x1_2345_6789 - 3600, 42));
    }

    #[test]
    fn unknown_command_and_bad_magic() {
        let r = call(0x7777);
        assert_eq!(r.eax, BDOOR_UNKNOWN);
        assert_eq!(r.ebx, 0, "other registers untouched");
        let mut t = ChannelTable::new(HostLimits::default(), 1);
        let mut bad = Regs::command(cmd::GETVERSION, 0);
        bad.eax = 0x1234;
        assert_eq!(
            lb_call(&facts(), &Fixed, &mut t, &mut NullSink, 1, bad).eax,
            BDOOR_UNKNOWN
        );
    }
}
