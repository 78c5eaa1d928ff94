//! The System Event Log of one BMC: 16-byte records (spec 32.1), kept in
//! the state database so they survive restarts, with entries made from the
//! VM's events (power, reset, guest OS boot and shutdown).

use std::sync::Arc;

use crate::store::{Store, StoreError};
use crate::vm::VmEvent;

/// Most records kept. When full, new events are dropped and the overflow
/// flag is set, as the spec has it; a guest toggling its agent cannot grow
/// the log without bound.
pub const MAX_ENTRIES: usize = 1024;

/// Sensor types used in generated records (spec table 42-3).
pub mod sensor_type {
    /// System ACPI Power State.
    pub const ACPI_POWER: u8 = 0x22;
    /// System Boot / Restart Initiated.
    pub const SYSTEM_BOOT: u8 = 0x1D;
    /// OS Boot.
    pub const OS_BOOT: u8 = 0x1F;
    /// OS Critical Stop.
    pub const OS_STOP: u8 = 0x20;
}

/// Sensor numbers of the BMC's discrete sensors (see `sdr`).
pub mod sensor_number {
    /// ACPI power state.
    pub const ACPI_POWER: u8 = 0x10;
    /// System restart.
    pub const SYSTEM_BOOT: u8 = 0x11;
    /// OS boot.
    pub const OS_BOOT: u8 = 0x12;
    /// OS critical stop.
    pub const OS_STOP: u8 = 0x13;
}

/// The log.
#[derive(Debug)]
pub struct Sel {
    vm: String,
    store: Arc<Store>,
    records: Vec<(u16, [u8; 16])>,
    next_id: u16,
    /// Seconds added to the host clock for SEL time (Set SEL Time).
    pub time_offset: i64,
    /// When the last record was added (SEL time).
    pub last_add: u32,
    /// When the log was last cleared (SEL time).
    pub last_erase: u32,
    /// Events were dropped because the log was full.
    pub overflow: bool,
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Sel {
    /// Load the log of `vm`.
    pub fn load(vm: &str, store: Arc<Store>) -> Result<Sel, StoreError> {
        store.ensure_bmc_schema()?;
        let mut records = Vec::new();
        for (id, r) in store.sel_records(vm)? {
            if let Ok(r) = <[u8; 16]>::try_from(&r[..]) {
                records.push((id, r));
            }
        }
        let next_id = records.iter().map(|r| r.0).max().map_or(1, bump);
        let meta = |k: &str| store.bmc_meta(vm, k);
        Ok(Sel {
            vm: vm.to_string(),
            time_offset: meta("sel_time_offset")?.unwrap_or(0),
            last_add: meta("sel_last_add")?.unwrap_or(0) as u32,
            last_erase: meta("sel_last_erase")?.unwrap_or(0) as u32,
            overflow: false,
            store,
            records,
            next_id,
        })
    }

    /// SEL time now (seconds since 1970, shifted by Set SEL Time).
    pub fn time(&self) -> u32 {
        (now_secs() + self.time_offset).clamp(0, u32::MAX as i64) as u32
    }

    /// Set SEL time; the host clock is never touched.
    pub fn set_time(&mut self, t: u32) -> Result<(), StoreError> {
        let off = t as i64 - now_secs();
        self.store.set_bmc_meta(&self.vm, "sel_time_offset", off)?;
        self.time_offset = off;
        Ok(())
    }

    /// The records in order.
    pub fn records(&self) -> &[(u16, [u8; 16])] {
        &self.records
    }

    /// Add a record; record ID and (for system event records) the
    /// timestamp are the BMC's. Returns the record ID, or `None` when full.
    pub fn add(&mut self, mut r: [u8; 16]) -> Result<Option<u16>, StoreError> {
        if self.records.len() >= MAX_ENTRIES {
            self.overflow = true;
            return Ok(None);
        }
        let id = self.next_id;
        r[..2].copy_from_slice(&id.to_le_bytes());
        let t = self.time();
        if r[2] < 0xE0 {
            r[3..7].copy_from_slice(&t.to_le_bytes());
        }
        self.store.sel_add(&self.vm, id, &r)?;
        self.store
            .set_bmc_meta(&self.vm, "sel_last_add", t as i64)?;
        self.records.push((id, r));
        self.next_id = bump(id);
        self.last_add = t;
        Ok(Some(id))
    }

    /// Delete one record.
    pub fn delete(&mut self, id: u16) -> Result<bool, StoreError> {
        let Some(i) = self.records.iter().position(|r| r.0 == id) else {
            return Ok(false);
        };
        self.store.sel_delete(&self.vm, id)?;
        self.records.remove(i);
        Ok(true)
    }

    /// Erase the log.
    pub fn clear(&mut self) -> Result<(), StoreError> {
        self.store.sel_clear(&self.vm)?;
        let t = self.time();
        self.store
            .set_bmc_meta(&self.vm, "sel_last_erase", t as i64)?;
        self.records.clear();
        self.overflow = false;
        self.last_erase = t;
        Ok(())
    }

    /// The record a VM event is logged as, if any.
    pub fn record_for(ev: &VmEvent) -> Option<[u8; 16]> {
        use sensor_number as n;
        use sensor_type as t;
        // (generator: 0x20 the BMC, 0x41 system software), sensor type,
        // number, event type (0x6F sensor-specific), offset.
        let (gen, st, sn, offset) = match ev {
            VmEvent::PowerOn { .. } => (0x20, t::ACPI_POWER, n::ACPI_POWER, 0x00), // S0/G0 working
            VmEvent::PowerOff { source } if source == "guest" => {
                (0x20, t::ACPI_POWER, n::ACPI_POWER, 0x05) // S5/G2 soft-off
            }
            VmEvent::PowerOff { .. } => (0x20, t::ACPI_POWER, n::ACPI_POWER, 0x0A), // S5 by override
            VmEvent::Reset { source } if source == "guest" => {
                (0x20, t::SYSTEM_BOOT, n::SYSTEM_BOOT, 0x06) // OS initiated warm reset
            }
            VmEvent::Reset { .. } => (0x20, t::SYSTEM_BOOT, n::SYSTEM_BOOT, 0x01), // hard reset
            VmEvent::ToolsStatus { running: true } => {
                (0x41, t::OS_BOOT, n::OS_BOOT, 0x06) // boot completed
            }
            VmEvent::GuestStateChange { state, ok: true } if state == "halt" => {
                (0x41, t::OS_STOP, n::OS_STOP, 0x03) // OS graceful shutdown
            }
            _ => return None,
        };
        Some(system_event(gen, st, sn, 0x6F, [offset, 0xFF, 0xFF]))
    }
}

/// A system event record (type 0x02) without ID and timestamp.
pub fn system_event(
    gen: u16,
    sensor_type: u8,
    sensor: u8,
    event_type: u8,
    data: [u8; 3],
) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[2] = 0x02;
    r[7..9].copy_from_slice(&gen.to_le_bytes());
    r[9] = 0x04; // event message format revision (IPMI 1.5 and later)
    r[10] = sensor_type;
    r[11] = sensor;
    r[12] = event_type;
    r[13..16].copy_from_slice(&data);
    r
}

/// The timestamp of a record (seconds since 1970, SEL time), for record
/// types that carry one (system event and timestamped OEM records, below 0xE0).
pub fn timestamp(r: &[u8; 16]) -> Option<u32> {
    (r[2] < 0xE0).then(|| u32::from_le_bytes([r[3], r[4], r[5], r[6]]))
}

/// A short description of a record, for people (the web console): the
/// events [`Sel::record_for`] makes by name, anything else by its sensor
/// type, number and event data in hex.
pub fn describe(r: &[u8; 16]) -> String {
    use sensor_type as t;
    if r[2] != 0x02 {
        return format!("record type {:#04x}", r[2]);
    }
    let deassert = r[12] & 0x80 != 0;
    let what = match (r[10], r[13] & 0x0F) {
        (t::ACPI_POWER, 0x00) => Some("System ACPI power state: S0/G0 working"),
        (t::ACPI_POWER, 0x05) => Some("System ACPI power state: S5/G2 soft-off"),
        (t::ACPI_POWER, 0x0A) => Some("System ACPI power state: S5 entered by override"),
        (t::SYSTEM_BOOT, 0x01) => Some("System restart: hard reset"),
        (t::SYSTEM_BOOT, 0x06) => Some("System restart: OS initiated warm reset"),
        (t::OS_BOOT, 0x06) => Some("OS boot: boot completed"),
        (t::OS_STOP, 0x03) => Some("OS stop: graceful shutdown"),
        _ => None,
    };
    let text = match what {
        Some(w) => w.to_string(),
        None => format!(
            "sensor type {:#04x} #{:#04x}, event type {:#04x}, data {:02x} {:02x} {:02x}",
            r[10],
            r[11],
            r[12] & 0x7F,
            r[13],
            r[14],
            r[15]
        ),
    };
    if deassert {
        format!("{text} (deasserted)")
    } else {
        text
    }
}

/// Record IDs 0x0000 and 0xFFFF are reserved (first/last in Get SEL Entry).
fn bump(id: u16) -> u16 {
    match id.wrapping_add(1) {
        0 | 0xFFFF => 1,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_persist_and_clear() {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(d.path()).unwrap());
        let mut s = Sel::load("vm0", store.clone()).unwrap();
        let r = Sel::record_for(&VmEvent::PowerOn {
            source: "ipmi".into(),
        })
        .unwrap();
        assert_eq!(s.add(r).unwrap(), Some(1));
        assert_eq!(s.add(r).unwrap(), Some(2));
        s.set_time(1_000_000).unwrap();
        let s2 = Sel::load("vm0", store.clone()).unwrap();
        assert_eq!(s2.records().len(), 2);
        assert!(s2.time() >= 1_000_000 && s2.time() < 1_000_100);
        let mut s2 = s2;
        assert_eq!(
            describe(&s2.records()[0].1),
            "System ACPI power state: S0/G0 working"
        );
        assert!(timestamp(&s2.records()[0].1).is_some());
        s2.clear().unwrap();
        assert_eq!(Sel::load("vm0", store).unwrap().records().len(), 0);
    }
}
