//! Sensors and the SDR repository: simulated temperature, fan and voltage
//! sensors with thresholds (full sensor records, spec 43.1) and discrete
//! sensors for ACPI power state, system restart, OS boot and OS critical
//! stop (compact records, spec 43.2), read from the VM model.

use super::sel::{sensor_number as num, sensor_type};
use crate::vm::{Power, Vm};

/// What a sensor is.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A threshold sensor: reading = (m * raw) * 10^r_exp in `unit`.
    Threshold {
        /// Sensor type (0x01 temperature, 0x02 voltage, 0x04 fan).
        sensor_type: u8,
        /// Base unit (1 degrees C, 4 volts, 18 RPM).
        unit: u8,
        /// Multiplier M.
        m: u8,
        /// Result exponent R (signed 4 bits).
        r_exp: i8,
        /// Raw thresholds LNC, LCR, LNR, UNC, UCR, UNR (0 = absent).
        thresholds: [u8; 6],
        /// Reads as unavailable while the VM is off.
        needs_power: bool,
        /// Raw reading with the VM on and off.
        on: u8,
        /// Raw reading with the VM off.
        off: u8,
    },
    /// A discrete, sensor-specific (event type 0x6F) sensor.
    Discrete {
        /// Sensor type.
        sensor_type: u8,
        /// Offsets it can assert.
        mask: u16,
    },
}

/// One sensor.
#[derive(Debug, Clone, Copy)]
pub struct Sensor {
    /// Sensor number.
    pub number: u8,
    /// ID string.
    pub name: &'static str,
    /// Entity ID (3 processor, 7 system board, 0x1D fan, 0x14 power module, 0x23 OS).
    pub entity: u8,
    /// Kind and data.
    pub kind: Kind,
}

/// The sensors every BMC has.
pub const SENSORS: &[Sensor] = &[
    Sensor {
        number: 0x01,
        name: "CPU Temp",
        entity: 0x03,
        kind: Kind::Threshold {
            sensor_type: 0x01,
            unit: 1,
            m: 1,
            r_exp: 0,
            thresholds: [0, 0, 0, 85, 95, 105],
            needs_power: true,
            on: 45,
            off: 0,
        },
    },
    Sensor {
        number: 0x02,
        name: "System Temp",
        entity: 0x07,
        kind: Kind::Threshold {
            sensor_type: 0x01,
            unit: 1,
            m: 1,
            r_exp: 0,
            thresholds: [5, 0, 0, 45, 50, 60],
            needs_power: false,
            on: 32,
            off: 24,
        },
    },
    Sensor {
        number: 0x03,
        name: "Fan1",
        entity: 0x1D,
        kind: Kind::Threshold {
            sensor_type: 0x04,
            unit: 18,
            m: 50,
            r_exp: 0,
            thresholds: [20, 10, 6, 0, 0, 0],
            needs_power: true,
            on: 84,
            off: 0,
        },
    },
    Sensor {
        number: 0x04,
        name: "12V",
        entity: 0x14,
        kind: Kind::Threshold {
            sensor_type: 0x02,
            unit: 4,
            m: 6,
            r_exp: -2,
            thresholds: [190, 180, 170, 210, 220, 230],
            needs_power: true,
            on: 200,
            off: 0,
        },
    },
    Sensor {
        number: 0x05,
        name: "3.3V",
        entity: 0x14,
        kind: Kind::Threshold {
            sensor_type: 0x02,
            unit: 4,
            m: 2,
            r_exp: -2,
            thresholds: [157, 149, 140, 173, 181, 190],
            needs_power: true,
            on: 165,
            off: 0,
        },
    },
    Sensor {
        number: num::ACPI_POWER,
        name: "ACPI State",
        entity: 0x07,
        kind: Kind::Discrete {
            sensor_type: sensor_type::ACPI_POWER,
            mask: 0x0421,
        },
    },
    Sensor {
        number: num::SYSTEM_BOOT,
        name: "System Restart",
        entity: 0x07,
        kind: Kind::Discrete {
            sensor_type: sensor_type::SYSTEM_BOOT,
            mask: 0x0043,
        },
    },
    Sensor {
        number: num::OS_BOOT,
        name: "OS Boot",
        entity: 0x23,
        kind: Kind::Discrete {
            sensor_type: sensor_type::OS_BOOT,
            mask: 0x0040,
        },
    },
    Sensor {
        number: num::OS_STOP,
        name: "OS Critical Stop",
        entity: 0x23,
        kind: Kind::Discrete {
            sensor_type: sensor_type::OS_STOP,
            mask: 0x000F,
        },
    },
    Sensor {
        number: super::mgmt::WATCHDOG_SENSOR,
        name: "Watchdog",
        entity: 0x07,
        kind: Kind::Discrete {
            sensor_type: super::mgmt::WATCHDOG_TYPE,
            // Expired, hard reset, power down, power cycle, timer interrupt.
            mask: 0x010F,
        },
    },
];

/// A threshold sensor's value in real units: `m * raw * 10^r_exp`, exactly
/// the decimal the sensor's resolution (`m * 10^r_exp`) allows, so 12V reads
/// 11.4, not 11.400000000000002 (`m * raw` is an integer, divided by an exact
/// power of ten: IEEE division rounds once, to the nearest double).
pub fn to_units(m: u8, r_exp: i8, raw: u8) -> f64 {
    let n = m as f64 * raw as f64;
    if r_exp >= 0 {
        n * 10f64.powi(r_exp as i32)
    } else {
        n / 10f64.powi(-(r_exp as i32))
    }
}

/// Decimal places a sensor's resolution needs (what `ipmitool sensor`
/// would print exactly).
pub fn decimals(r_exp: i8) -> usize {
    (-(r_exp as i32)).max(0) as usize
}

/// The one threshold model IPMI and Redfish both serve: a threshold sensor's
/// reading and thresholds in real units (absent thresholds `None`), from
/// the same records the SDR repository and Get Sensor Thresholds answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// ID string.
    pub name: &'static str,
    /// Sensor number.
    pub number: u8,
    /// Sensor type (0x01 temperature, 0x02 voltage, 0x04 fan).
    pub sensor_type: u8,
    /// The reading, `None` while unavailable (VM off).
    pub value: Option<f64>,
    /// LNC, LCR, LNR, UNC, UCR, UNR.
    pub thresholds: [Option<f64>; 6],
    /// Decimal places of the resolution.
    pub decimals: usize,
}

/// Every threshold sensor of `vm`, converted.
pub fn readings(vm: &Vm) -> Vec<Reading> {
    let on = vm.power_state() == Power::On;
    SENSORS
        .iter()
        .filter_map(|s| match s.kind {
            Kind::Threshold {
                sensor_type,
                m,
                r_exp,
                thresholds,
                needs_power,
                on: von,
                off: voff,
                ..
            } => {
                let raw = if on { von } else { voff };
                Some(Reading {
                    name: s.name,
                    number: s.number,
                    sensor_type,
                    value: (!needs_power || on).then(|| to_units(m, r_exp, raw)),
                    thresholds: thresholds.map(|t| (t != 0).then(|| to_units(m, r_exp, t))),
                    decimals: decimals(r_exp),
                })
            }
            Kind::Discrete { .. } => None,
        })
        .collect()
}

/// The sensor numbered `n`.
pub fn sensor(n: u8) -> Option<&'static Sensor> {
    SENSORS.iter().find(|s| s.number == n)
}

/// The SDR record of sensor index `i` (record ID `i + 1`).
pub fn record(i: usize) -> Option<Vec<u8>> {
    let s = SENSORS.get(i)?;
    let id = (i + 1) as u16;
    let name = s.name.as_bytes();
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&id.to_le_bytes());
    r.push(0x51); // SDR version 1.5 (the format 2.0 uses)
    match s.kind {
        Kind::Threshold {
            sensor_type,
            unit,
            m,
            r_exp,
            thresholds,
            ..
        } => {
            r.extend_from_slice(&[0x01, 0]); // full sensor record, length below
            r.extend_from_slice(&[0x20, 0x00, s.number, s.entity, 0x01]);
            r.push(0x7F); // initialisation: scanning, events, thresholds, hysteresis, type
            r.push(0x54); // auto re-arm, hysteresis readable, thresholds readable
            r.extend_from_slice(&[sensor_type, 0x01]); // threshold-based
            let readable = readable_mask(&thresholds);
            r.extend_from_slice(&[0, 0, 0, 0]); // no threshold events asserted
            r.extend_from_slice(&[readable, 0]); // readable, not settable
            r.extend_from_slice(&[0x00, unit, 0x00, 0x00]); // unsigned, linear
            r.extend_from_slice(&[m, 0, 0, 0, 0]);
            r.push(((r_exp as u8) & 0x0F) << 4); // R exp, B exp 0
            r.push(0x00); // no nominal/normal readings given
            r.extend_from_slice(&[0, 0, 0, 0xFF, 0x00]);
            // UNR, UCR, UNC, LNR, LCR, LNC
            let [lnc, lcr, lnr, unc, ucr, unr] = thresholds;
            r.extend_from_slice(&[unr, ucr, unc, lnr, lcr, lnc]);
            r.extend_from_slice(&[1, 1, 0, 0, 0]); // hysteresis, reserved, OEM
        }
        Kind::Discrete { sensor_type, mask } => {
            r.extend_from_slice(&[0x02, 0]); // compact sensor record
            r.extend_from_slice(&[0x20, 0x00, s.number, s.entity, 0x01]);
            r.push(0x63); // scanning, events, type initialised
            r.push(0x40); // auto re-arm, no thresholds
            r.extend_from_slice(&[sensor_type, 0x6F]);
            let m = mask.to_le_bytes();
            r.extend_from_slice(&[m[0], m[1], 0, 0, m[0], m[1]]);
            r.extend_from_slice(&[0xC0, 0, 0]); // no numeric reading
            r.extend_from_slice(&[0x01, 0x00, 0, 0, 0, 0, 0, 0]);
        }
    }
    r.push(0xC0 | name.len() as u8); // 8-bit ASCII
    r.extend_from_slice(name);
    let len = (r.len() - 5) as u8;
    r[4] = len;
    Some(r)
}

fn readable_mask(t: &[u8; 6]) -> u8 {
    t.iter()
        .enumerate()
        .filter(|(_, &v)| v != 0)
        .fold(0, |m, (i, _)| m | (1 << i))
}

/// Get Sensor Reading response data for sensor `s` of `vm`.
pub fn reading(s: &Sensor, vm: &Vm) -> Vec<u8> {
    let on = vm.power_state() == Power::On;
    match s.kind {
        Kind::Threshold {
            thresholds,
            needs_power,
            on: von,
            off: voff,
            ..
        } => {
            if needs_power && !on {
                // Reading unavailable, scanning still enabled.
                return vec![0, 0x60, 0xC0];
            }
            let raw = if on { von } else { voff };
            let [lnc, lcr, lnr, unc, ucr, unr] = thresholds;
            let mut st = 0u8;
            let below = |t: u8| t != 0 && raw <= t;
            let above = |t: u8| t != 0 && raw >= t;
            st |= below(lnc) as u8 | (below(lcr) as u8) << 1 | (below(lnr) as u8) << 2;
            st |= (above(unc) as u8) << 3 | (above(ucr) as u8) << 4 | (above(unr) as u8) << 5;
            vec![raw, 0xC0, st | 0xC0]
        }
        Kind::Discrete { sensor_type: t, .. } => {
            let last = vm.lock().data.tools.last_state_change.clone();
            let running = vm.tools_running();
            let bits: u16 = match t {
                sensor_type::ACPI_POWER => {
                    if on {
                        1 << 0
                    } else {
                        1 << 5
                    }
                }
                sensor_type::SYSTEM_BOOT => 0,
                sensor_type::OS_BOOT => (on && running) as u16 * (1 << 6),
                sensor_type::OS_STOP => match last {
                    Some((true, ref st)) if st == "halt" && !on => 1 << 3,
                    _ => 0,
                },
                _ => 0,
            };
            let b = bits.to_le_bytes();
            vec![0, 0xC0, b[0], b[1] | 0x80]
        }
    }
}

/// Get Sensor Thresholds response data.
pub fn thresholds(s: &Sensor) -> Option<Vec<u8>> {
    let Kind::Threshold { thresholds, .. } = s.kind else {
        return None;
    };
    let mut out = vec![readable_mask(&thresholds)];
    out.extend_from_slice(&thresholds);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_consistent() {
        for (i, s) in SENSORS.iter().enumerate() {
            let r = record(i).unwrap();
            assert_eq!(r[4] as usize, r.len() - 5, "length byte of {}", s.name);
            let name_at = if r[3] == 0x01 { 47 } else { 31 };
            assert_eq!(r[name_at] & 0x1F, s.name.len() as u8);
            assert_eq!(&r[name_at + 1..], s.name.as_bytes());
        }
        assert!(record(SENSORS.len()).is_none());
    }

    #[test]
    fn units_are_exact_decimals() {
        assert_eq!(to_units(6, -2, 190).to_string(), "11.4");
        assert_eq!(to_units(2, -2, 157).to_string(), "3.14");
        assert_eq!(to_units(50, 0, 20).to_string(), "1000");
        assert_eq!(to_units(1, 1, 3).to_string(), "30");
        for s in SENSORS {
            if let Kind::Threshold {
                m,
                r_exp,
                thresholds,
                ..
            } = s.kind
            {
                for t in thresholds.into_iter().filter(|&t| t != 0) {
                    let v = to_units(m, r_exp, t);
                    let printed = format!("{v:.*}", decimals(r_exp));
                    assert_eq!(printed.parse::<f64>().unwrap(), v, "{} {t}", s.name);
                }
            }
        }
    }
}
