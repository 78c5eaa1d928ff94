//! Platform Event Filtering (IPMI 2.0 sections 17 and 30): the PEF
//! configuration parameters, the event filter table matched against each
//! new SEL record, and the alert policy table (stored; this BMC sends no
//! alerts, so its capabilities do not offer the alert action). Pure: the BMC
//! applies the [`Verdict`] to the VM.

use super::cc;

/// Event filter table entries.
pub const FILTERS: usize = 16;
/// Alert policy table entries.
pub const POLICIES: usize = 16;
/// Alert strings (string 0 is the volatile one).
pub const STRINGS: usize = 4;
/// Bytes of one alert string kept (a spec string is up to 16 blocks).
const STRING_BYTES: usize = 48;

/// Event filter action bits (filter byte 2, capabilities and the global
/// action control parameter).
pub mod action {
    /// Alert.
    pub const ALERT: u8 = 0x01;
    /// Power down.
    pub const POWER_DOWN: u8 = 0x02;
    /// Reset.
    pub const RESET: u8 = 0x04;
    /// Power cycle.
    pub const POWER_CYCLE: u8 = 0x08;
}

/// The actions this BMC can carry out on the VM.
pub const SUPPORTED: u8 = action::POWER_DOWN | action::RESET | action::POWER_CYCLE;

/// Completion codes of Set/Get PEF Configuration Parameters.
pub mod setcc {
    /// Parameter not supported.
    pub const NOT_SUPPORTED: u8 = 0x80;
    /// Set in progress held by another session.
    pub const IN_PROGRESS: u8 = 0x81;
    /// Write to a read-only parameter.
    pub const READ_ONLY: u8 = 0x82;
}

/// The PEF configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pef {
    /// Parameter 1: PEF control (bit 0 enable).
    pub control: u8,
    /// Parameter 2: global action control.
    pub global: u8,
    /// Parameter 3: startup delay, seconds.
    pub startup_delay: u8,
    /// Parameter 4: alert startup delay, seconds.
    pub alert_startup_delay: u8,
    /// Parameter 6: the event filter table (20 bytes each).
    pub filters: [[u8; 20]; FILTERS],
    /// Parameter 9: the alert policy table (3 bytes each).
    pub policies: [[u8; 3]; POLICIES],
    /// Parameter 10: use the GUID (bit 0) and the GUID.
    pub guid: [u8; 17],
    /// Parameter 12: alert string keys (2 bytes each).
    pub string_keys: [[u8; 2]; STRINGS],
    /// Parameter 13: alert strings.
    pub strings: [[u8; STRING_BYTES]; STRINGS],
}

impl Default for Pef {
    fn default() -> Pef {
        Pef {
            control: 0,
            global: 0,
            startup_delay: 0,
            alert_startup_delay: 0,
            filters: [[0; 20]; FILTERS],
            policies: [[0; 3]; POLICIES],
            guid: [0; 17],
            string_keys: [[0; 2]; STRINGS],
            strings: [[0; STRING_BYTES]; STRINGS],
        }
    }
}

/// What PEF decided for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Action bits to carry out (only the enabled, supported ones).
    pub actions: u8,
    /// The filters that matched (bit n: filter n + 1).
    pub matched: u16,
}

impl Verdict {
    /// The one power action to take: power down over power cycle over
    /// reset, as the spec orders them.
    pub fn power(&self) -> Option<u8> {
        [action::POWER_DOWN, action::POWER_CYCLE, action::RESET]
            .into_iter()
            .find(|a| self.actions & a != 0)
    }
}

/// Get PEF Capabilities (S/E 0x10) response data.
pub fn capabilities() -> Vec<u8> {
    vec![0x51, SUPPORTED, FILTERS as u8]
}

fn field_ok(want: u8, got: u8) -> bool {
    want == 0xFF || want == got
}

/// One event data byte against an AND mask and the two compare bytes:
/// where compare 1 has a 1, the masked bit must equal compare 2's bit.
fn data_ok(data: u8, and: u8, cmp1: u8, cmp2: u8) -> bool {
    let v = data & and;
    v & cmp1 == cmp2 & cmp1 & and
}

impl Pef {
    /// Whether PEF is enabled.
    pub fn enabled(&self) -> bool {
        self.control & 1 != 0
    }

    /// Match one SEL record (16 bytes) against the enabled filters. Only
    /// system event records (type 0x02) are filtered.
    pub fn evaluate(&self, rec: &[u8; 16]) -> Verdict {
        let mut v = Verdict::default();
        if !self.enabled() || rec[2] != 0x02 {
            return v;
        }
        let (gen1, gen2) = (rec[7], rec[8]);
        let (stype, snum, etype) = (rec[10], rec[11], rec[12] & 0x7F);
        let (d1, d2, d3) = (rec[13], rec[14], rec[15]);
        for (i, f) in self.filters.iter().enumerate() {
            if f[0] & 0x80 == 0 {
                continue;
            }
            let offsets = u16::from_le_bytes([f[9], f[10]]);
            let hit = field_ok(f[4], gen1)
                && field_ok(f[5], gen2)
                && field_ok(f[6], stype)
                && field_ok(f[7], snum)
                && field_ok(f[8], etype)
                && (offsets == 0xFFFF || offsets & (1 << (d1 & 0x0F)) != 0)
                && data_ok(d1, f[11], f[12], f[13])
                && data_ok(d2, f[14], f[15], f[16])
                && data_ok(d3, f[17], f[18], f[19]);
            if hit {
                v.matched |= 1 << i;
                v.actions |= f[1];
            }
        }
        v.actions &= self.global & SUPPORTED;
        v
    }

    /// Get PEF Configuration Parameters (S/E 0x13) data for `p` with set
    /// and block selectors; `Err` is the completion code.
    pub fn get(&self, p: u8, set: u8, block: u8) -> Result<Vec<u8>, u8> {
        let entry = |n: usize| -> Result<usize, u8> {
            match set as usize {
                i @ 1.. if i <= n => Ok(i - 1),
                _ => Err(cc::OUT_OF_RANGE),
            }
        };
        Ok(match p {
            1 => vec![self.control],
            2 => vec![self.global],
            3 => vec![self.startup_delay],
            4 => vec![self.alert_startup_delay],
            5 => vec![FILTERS as u8],
            6 => {
                let i = entry(FILTERS)?;
                let mut v = vec![set];
                v.extend_from_slice(&self.filters[i]);
                v
            }
            7 => {
                let i = entry(FILTERS)?;
                vec![set, self.filters[i][0]]
            }
            8 => vec![POLICIES as u8],
            9 => {
                let i = entry(POLICIES)?;
                let mut v = vec![set];
                v.extend_from_slice(&self.policies[i]);
                v
            }
            10 => self.guid.to_vec(),
            11 => vec![STRINGS as u8 - 1],
            12 => {
                let i = string_index(set)?;
                let mut v = vec![set];
                v.extend_from_slice(&self.string_keys[i]);
                v
            }
            13 => {
                let i = string_index(set)?;
                let b = block_range(block)?;
                let mut v = vec![set, block];
                v.extend_from_slice(&self.strings[i][b]);
                v
            }
            _ => return Err(setcc::NOT_SUPPORTED),
        })
    }

    /// Set PEF Configuration Parameters (S/E 0x12) for `p` (not 0, set in
    /// progress, which the caller handles); `Err` is the completion code.
    pub fn set(&mut self, p: u8, d: &[u8]) -> Result<(), u8> {
        let want = match p {
            1..=4 => 1,
            5 | 8 | 11 => return Err(setcc::READ_ONLY),
            6 => 21,
            7 => 2,
            9 => 4,
            10 => 17,
            12 => 3,
            13 => {
                if d.len() < 3 {
                    return Err(cc::BAD_LENGTH);
                }
                d.len()
            }
            _ => return Err(setcc::NOT_SUPPORTED),
        };
        if d.len() != want {
            return Err(cc::BAD_LENGTH);
        }
        let filter = |s: u8| match s {
            1..=16 => Ok(s as usize - 1),
            _ => Err(cc::OUT_OF_RANGE),
        };
        match p {
            1 => self.control = d[0] & 0x0F,
            2 => {
                if d[0] & !0x3F != 0 {
                    return Err(cc::INVALID_FIELD);
                }
                self.global = d[0];
            }
            3 => self.startup_delay = d[0],
            4 => self.alert_startup_delay = d[0],
            6 => {
                let i = filter(d[0])?;
                // Bits 6:5 of the configuration: 00 software configurable,
                // 10 manufacturer pre-configured; others reserved.
                if matches!(d[1] & 0x60, 0x20 | 0x60) || d[2] & 0x80 != 0 {
                    return Err(cc::INVALID_FIELD);
                }
                self.filters[i].copy_from_slice(&d[1..]);
            }
            7 => {
                let i = filter(d[0])?;
                if matches!(d[1] & 0x60, 0x20 | 0x60) {
                    return Err(cc::INVALID_FIELD);
                }
                self.filters[i][0] = d[1];
            }
            9 => {
                let i = match d[0] & 0x7F {
                    s @ 1..=16 => s as usize - 1,
                    _ => return Err(cc::OUT_OF_RANGE),
                };
                self.policies[i].copy_from_slice(&d[1..]);
            }
            10 => self.guid.copy_from_slice(d),
            12 => {
                let i = string_index(d[0] & 0x7F)?;
                self.string_keys[i].copy_from_slice(&d[1..]);
            }
            _ => {
                let i = string_index(d[0] & 0x7F)?;
                let b = block_range(d[1])?;
                let data = &d[2..];
                if data.len() > 16 {
                    return Err(cc::BAD_LENGTH);
                }
                let dst = &mut self.strings[i][b];
                dst.fill(0);
                dst[..data.len()].copy_from_slice(data);
            }
        }
        Ok(())
    }

    /// The configuration as bytes (for the state database).
    pub fn pack(&self) -> Vec<u8> {
        let mut v = vec![
            self.control,
            self.global,
            self.startup_delay,
            self.alert_startup_delay,
        ];
        self.filters.iter().for_each(|f| v.extend_from_slice(f));
        self.policies.iter().for_each(|f| v.extend_from_slice(f));
        v.extend_from_slice(&self.guid);
        self.string_keys.iter().for_each(|f| v.extend_from_slice(f));
        self.strings.iter().for_each(|f| v.extend_from_slice(f));
        v
    }

    /// The configuration from [`Pef::pack`] bytes (defaults when they do
    /// not fit).
    pub fn unpack(b: &[u8]) -> Pef {
        let mut p = Pef::default();
        if b.len() != p.pack().len() {
            return p;
        }
        let (head, mut rest) = b.split_at(4);
        p.control = head[0];
        p.global = head[1];
        p.startup_delay = head[2];
        p.alert_startup_delay = head[3];
        let mut take = |n: usize| {
            let (a, r) = rest.split_at(n);
            rest = r;
            a
        };
        for f in p.filters.iter_mut() {
            f.copy_from_slice(take(20));
        }
        for f in p.policies.iter_mut() {
            f.copy_from_slice(take(3));
        }
        p.guid.copy_from_slice(take(17));
        for f in p.string_keys.iter_mut() {
            f.copy_from_slice(take(2));
        }
        for f in p.strings.iter_mut() {
            f.copy_from_slice(take(STRING_BYTES));
        }
        p
    }
}

fn string_index(set: u8) -> Result<usize, u8> {
    match set as usize {
        i if i < STRINGS => Ok(i),
        _ => Err(cc::OUT_OF_RANGE),
    }
}

fn block_range(block: u8) -> Result<std::ops::Range<usize>, u8> {
    match block as usize {
        b @ 1.. if b * 16 <= STRING_BYTES => Ok((b - 1) * 16..b * 16),
        _ => Err(cc::OUT_OF_RANGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn power_down_on_watchdog() -> Vec<u8> {
        // Filter 1: enabled, software configurable; power down; any
        // generator; sensor type 0x23 (Watchdog 2); any number; sensor
        // specific; offset 1 (hard reset) only; no data compares.
        let mut f = vec![
            1,
            0x80,
            action::POWER_DOWN,
            0,
            0x00,
            0xFF,
            0xFF,
            0x23,
            0xFF,
            0x6F,
        ];
        f.extend_from_slice(&[0x02, 0x00]);
        f.extend_from_slice(&[0; 9]);
        f
    }

    fn record(stype: u8, offset: u8) -> [u8; 16] {
        super::super::sel::system_event(0x20, stype, 0x14, 0x6F, [offset, 0xFF, 0xFF])
    }

    #[test]
    fn filters_match_only_when_enabled() {
        let mut p = Pef::default();
        p.set(6, &power_down_on_watchdog()).unwrap();
        assert_eq!(p.evaluate(&record(0x23, 1)).actions, 0, "PEF off");
        p.set(1, &[1]).unwrap();
        assert_eq!(p.evaluate(&record(0x23, 1)).actions, 0, "action off");
        p.set(2, &[action::POWER_DOWN]).unwrap();
        let v = p.evaluate(&record(0x23, 1));
        assert_eq!((v.actions, v.matched, v.power()), (2, 1, Some(2)));
        assert_eq!(p.evaluate(&record(0x23, 2)).matched, 0, "other offset");
        assert_eq!(p.evaluate(&record(0x22, 1)).matched, 0, "other type");
        p.set(7, &[1, 0x00]).unwrap();
        assert_eq!(p.evaluate(&record(0x23, 1)).matched, 0, "disabled");
    }

    #[test]
    fn parameters_round_trip_and_refuse_bad_data() {
        let mut p = Pef::default();
        p.set(6, &power_down_on_watchdog()).unwrap();
        p.set(9, &[2, 0x18, 0x01, 0x00]).unwrap();
        p.set(13, &[1, 1, b'h', b'i']).unwrap();
        assert_eq!(p.get(6, 1, 0).unwrap(), power_down_on_watchdog());
        assert_eq!(p.get(9, 2, 0).unwrap(), vec![2, 0x18, 0x01, 0x00]);
        assert_eq!(&p.get(13, 1, 1).unwrap()[..4], &[1, 1, b'h', b'i']);
        assert_eq!(Pef::unpack(&p.pack()), p);
        assert_eq!(p.set(5, &[3]), Err(setcc::READ_ONLY));
        assert_eq!(p.set(6, &[1, 2, 3]), Err(cc::BAD_LENGTH));
        assert_eq!(p.set(6, &[17; 21]), Err(cc::OUT_OF_RANGE));
        assert_eq!(p.set(2, &[0x80]), Err(cc::INVALID_FIELD));
        assert_eq!(p.set(99, &[0]), Err(setcc::NOT_SUPPORTED));
        assert_eq!(p.get(6, 0, 0), Err(cc::OUT_OF_RANGE));
        assert_eq!(p.get(13, 1, 9), Err(cc::OUT_OF_RANGE));
        assert_eq!(p.set(13, &[1, 1]), Err(cc::BAD_LENGTH));
    }
}
