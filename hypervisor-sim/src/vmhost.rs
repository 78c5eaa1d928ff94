//! What a VM's host answers besides guest variables and TCLO: tools options
//! (GETGUIOPTIONS, `vmx.set_option`), removable devices
//! (GETDEVICELISTELEMENT, TOGGLEDEVICE), the guest SDK (`guestlib.info.get`,
//! `guestlib.stat.get`), disk shrinking (`disk.wiper.enable`) and the
//! namespace DB's data. Pure: the VM ([`crate::vm`]) persists changes.

use std::collections::BTreeMap;
use std::time::Instant;

use protocol::guestlib::{self, id, Encoding, InfoV3, Stat, StatRequest, Value};
use protocol::gui_option;

use crate::config::{DeviceConfig, ResourcesConfig};
use crate::namespace::Namespace;

/// `RD_Info.name`'s size: names are at most one byte shorter.
pub const DEVICE_NAME_SIZE: usize = 32;
/// `RD_Info`'s size as the guest reads it (name, u32 uid, Bool, padding).
pub const RD_INFO_SIZE: u16 = 40;
/// The option that turns periodic time sync on (`tools.syncTime`).
pub const OPTION_SYNCTIME: &str = "synctime";
/// Reported by ESXi for an unlimited CPU or memory limit.
pub const UNLIMITED: u32 = u32::MAX;

/// A removable device of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Name (`ethernet0`, `sata0:0`).
    pub name: String,
    /// Connected now.
    pub connected: bool,
    /// MAC address (NICs).
    pub mac: Option<[u8; 6]>,
}

/// Resource settings and switches of the guest SDK, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Answer `guestlib.*` at all.
    pub guest_sdk: bool,
    /// Provide the host counters.
    pub host_info: bool,
    /// MHz.
    pub cpu_reservation_mhz: u32,
    /// MHz, [`UNLIMITED`] for none.
    pub cpu_limit_mhz: u32,
    /// Shares.
    pub cpu_shares: u32,
    /// MB.
    pub mem_reservation_mb: u32,
    /// MB, [`UNLIMITED`] for none.
    pub mem_limit_mb: u32,
    /// Shares.
    pub mem_shares: u32,
    /// MB held by the balloon driver.
    pub balloon_mb: u32,
    /// MB swapped by the host.
    pub swapped_mb: u32,
    /// Resource pool path.
    pub resource_pool: String,
}

impl Resources {
    /// From the config, with ESXi's defaults for a VM of `memory_mb`.
    pub fn from_config(c: &ResourcesConfig, memory_mb: u32) -> Resources {
        Resources {
            guest_sdk: c.guest_sdk.unwrap_or(true),
            host_info: c.host_info,
            cpu_reservation_mhz: c.cpu_reservation_mhz.unwrap_or(0),
            cpu_limit_mhz: c.cpu_limit_mhz.unwrap_or(UNLIMITED),
            cpu_shares: c.cpu_shares.unwrap_or(1000),
            mem_reservation_mb: c.mem_reservation_mb.unwrap_or(0),
            mem_limit_mb: c.mem_limit_mb.unwrap_or(UNLIMITED),
            mem_shares: c.mem_shares.unwrap_or_else(|| memory_mb.saturating_mul(10)),
            balloon_mb: c.balloon_mb.unwrap_or(0).min(memory_mb),
            swapped_mb: c.swapped_mb.unwrap_or(0).min(memory_mb),
            resource_pool: c.resource_pool.clone().unwrap_or_else(|| "/".into()),
        }
    }
}

/// The host side of a VM that its config fixes.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// Virtual hardware version.
    pub hw_version: u32,
    /// `disk.wiper.enable` answers 1.
    pub disk_shrink: bool,
    /// The guest may connect and disconnect devices.
    pub device_connectable: bool,
    /// Guest SDK values.
    pub resources: Resources,
    /// Host processor speed (MHz).
    pub host_mhz: u32,
    /// Host product version for `guestlib.stat.get session`.
    pub host_version: String,
    /// Namespaces of the namespace DB.
    pub namespaces: Vec<String>,
}

/// Virtual hardware version of a VM created on ESXi 7.0 U2 and later.
pub const DEFAULT_HW_VERSION: u32 = 19;

impl HostSettings {
    /// ESXi's defaults for a VM of `memory_mb`.
    pub fn defaults(memory_mb: u32) -> HostSettings {
        HostSettings {
            hw_version: DEFAULT_HW_VERSION,
            disk_shrink: false,
            device_connectable: false,
            resources: Resources::from_config(&ResourcesConfig::default(), memory_mb),
            host_mhz: 2400,
            host_version: format!("VMware ESXi 8.0.3 build-{}", crate::serve::BUILD_NUMBER),
            namespaces: Vec::new(),
        }
    }
}

/// The default MAC of a VM's `ethernetN`: VMware's 00:50:56 range, the
/// rest from the VM's UUID and N.
pub fn default_mac(uuid: &[u8; 16], n: u8) -> [u8; 6] {
    [
        0x00,
        0x50,
        0x56,
        uuid[13] & 0x3f,
        uuid[14],
        uuid[15].wrapping_add(n),
    ]
}

/// The VM's devices from its config (or the defaults).
pub fn devices(config: Option<&[DeviceConfig]>, uuid: &[u8; 16]) -> Vec<Device> {
    let defaults = [
        DeviceConfig {
            name: "ethernet0".into(),
            connected: true,
            mac: None,
        },
        DeviceConfig {
            name: "sata0:0".into(),
            connected: false,
            mac: None,
        },
    ];
    let list = config.unwrap_or(&defaults);
    let mut nic = 0u8;
    list.iter()
        .map(|d| {
            let mac = d
                .mac
                .as_deref()
                .and_then(crate::config::parse_mac)
                .or_else(|| {
                    d.name.starts_with("ethernet").then(|| {
                        let m = default_mac(uuid, nic);
                        nic = nic.wrapping_add(1);
                        m
                    })
                });
            Device {
                name: d.name.clone(),
                connected: d.connected,
                mac,
            }
        })
        .collect()
}

/// Format a MAC address as the guest sees it.
pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether `key` may name a tools option.
pub fn valid_option_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Whether an option value means "on" (`1`, `TRUE`, `true`).
pub fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// The run-time host state of a VM.
#[derive(Debug, Clone)]
pub struct HostState {
    /// Fixed settings.
    pub settings: HostSettings,
    /// Removable devices and their connection state.
    pub devices: Vec<Device>,
    /// Tools options (`synctime` ...).
    pub options: BTreeMap<String, String>,
    /// Guest SDK session id; new with every power on and reset.
    pub session_id: u64,
    /// The namespace DB (configured namespaces only).
    pub namespaces: BTreeMap<String, Namespace>,
}

/// A new random, non-zero session id.
pub fn new_session_id() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b = (t.as_nanos() as u64).to_le_bytes();
    }
    u64::from_le_bytes(b).max(1)
}

impl HostState {
    /// A fresh state with these settings and devices.
    pub fn new(settings: HostSettings, devices: Vec<Device>) -> HostState {
        HostState {
            settings,
            devices,
            options: BTreeMap::new(),
            session_id: new_session_id(),
            namespaces: BTreeMap::new(),
        }
    }

    /// The option bits GETGUIOPTIONS reports.
    pub fn gui_options(&self, clipboard: bool) -> u32 {
        let mut bits = 0;
        if clipboard {
            bits |= gui_option::EXCHANGE_SELECTIONS;
        }
        if self.options.get(OPTION_SYNCTIME).is_some_and(|v| truthy(v)) {
            bits |= gui_option::SYNC_TIME;
        }
        bits
    }

    /// GETDEVICELISTELEMENT: the word at `offset` of device `id`'s
    /// `RD_Info`, None past the last device or the structure.
    pub fn device_word(&self, id: u16, offset: u16) -> Option<u32> {
        let d = self.devices.get(usize::from(id))?;
        if offset >= RD_INFO_SIZE || offset & 3 != 0 {
            return None;
        }
        let mut info = [0u8; RD_INFO_SIZE as usize];
        let name = d.name.as_bytes();
        let n = name.len().min(DEVICE_NAME_SIZE - 1);
        info[..n].copy_from_slice(&name[..n]);
        info[32..36].copy_from_slice(&u32::from(id).to_le_bytes());
        info[36] = u8::from(d.connected);
        let o = usize::from(offset);
        Some(u32::from_le_bytes([
            info[o],
            info[o + 1],
            info[o + 2],
            info[o + 3],
        ]))
    }

    /// TOGGLEDEVICE: connect or disconnect device `id`; false when the
    /// host does not allow it or there is no such device.
    pub fn toggle_device(&mut self, id: u16, connect: bool) -> bool {
        if !self.settings.device_connectable {
            return false;
        }
        match self.devices.get_mut(usize::from(id)) {
            Some(d) => {
                d.connected = connect;
                true
            }
            None => false,
        }
    }

    /// The guest SDK's fixed statistics now.
    pub fn guestlib_info(&self, memory_mb: u32, booted_at: Instant) -> InfoV3 {
        let r = &self.settings.resources;
        let u32v = |v: u32| Some(Value::U32(v));
        let u64v = |v: u64| Some(Value::U64(v));
        let host = |v: Option<Value>| if r.host_info { v } else { None };
        let host_mem_mb = host_memory_mb();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let mapped = memory_mb.saturating_sub(r.balloon_mb);
        let stats = (1..=guestlib::MAX_STAT_ID)
            .map(|sid| {
                let value = match sid {
                    id::CPU_RESERVATION_MHZ => u32v(r.cpu_reservation_mhz),
                    id::CPU_LIMIT_MHZ => u32v(r.cpu_limit_mhz),
                    id::CPU_SHARES => u32v(r.cpu_shares),
                    id::HOST_MHZ => u32v(self.settings.host_mhz),
                    id::MEM_RESERVATION_MB => u32v(r.mem_reservation_mb),
                    id::MEM_LIMIT_MB => u32v(r.mem_limit_mb),
                    id::MEM_SHARES => u32v(r.mem_shares),
                    id::MEM_MAPPED_MB => u32v(mapped),
                    id::MEM_BALLOONED_MB => u32v(r.balloon_mb),
                    id::MEM_SWAPPED_MB => u32v(r.swapped_mb),
                    id::ELAPSED_MS => u64v(booted_at.elapsed().as_millis() as u64),
                    id::RESOURCE_POOL_PATH => Some(Value::Text(r.resource_pool.clone())),
                    id::MEM_TARGET_SIZE_MB => u64v(u64::from(mapped)),
                    id::HOST_CPU_NUM_CORES => host(u32v(cores)),
                    26 => host(u64v(host_mem_mb)),
                    // Zipped, zip-saved and low-latency swapped memory.
                    31..=33 => u32v(0),
                    34 => u32v(r.swapped_mb),
                    id::MEM_BALLOON_TARGET_MB => u32v(r.balloon_mb),
                    // sched.mem.maxmemctl: 65 % of the guest's memory.
                    id::MEM_BALLOON_MAX_MB => u32v(memory_mb / 100 * 65),
                    id::RESOURCE_POOL_PATH_LONG => {
                        Some(Value::Bytes(r.resource_pool.as_bytes().to_vec()))
                    }
                    id::MEM_SHARES_64 => u64v(u64::from(r.mem_shares)),
                    // Usage counters the simulator does not measure.
                    _ => None,
                };
                Stat { id: sid, value }
            })
            .collect();
        InfoV3 {
            session_id: self.session_id,
            stats,
        }
    }

    /// `guestlib.stat.get`: the reply body, or None for an unknown stat.
    pub fn guestlib_stat(
        &self,
        req: &StatRequest<'_>,
        uuid: &[u8; 16],
        booted_at: Instant,
    ) -> Option<Vec<u8>> {
        let r = &self.settings.resources;
        let nics: Vec<String> = self
            .devices
            .iter()
            .filter_map(|d| d.mac.as_ref().map(format_mac))
            .collect();
        let kb = |mb: u32| -> i64 {
            if mb == UNLIMITED {
                -1
            } else {
                i64::from(mb) * 1024
            }
        };
        let mhz = |v: u32| -> i64 {
            if v == UNLIMITED {
                -1
            } else {
                i64::from(v)
            }
        };
        use MetricValue::{Int, Text};
        let m = |name: &str, kind: &'static str, units: &'static str, value: MetricValue| Metric {
            name: name.to_string(),
            kind,
            units,
            value,
        };
        let metrics = match (req.stat, req.param) {
            ("", "") => {
                let mut names = vec!["session".to_string(), "host".into(), "resources".into()];
                names.extend(nics.iter().map(|m| format!("vnet {m}")));
                return Some(list(req.encoding, &names));
            }
            ("session", "") => vec![
                m("session", "static", "", Int(self.session_id as i64)),
                m(
                    "uptime",
                    "accumulate",
                    "us",
                    Int(booted_at.elapsed().as_micros() as i64),
                ),
                m(
                    "version",
                    "static",
                    "",
                    Text(self.settings.host_version.clone()),
                ),
                m("provider", "static", "", Text(String::new())),
                m("uuid.bios", "static", "", Text(vmware_uuid(uuid))),
            ],
            ("host", "") => {
                let mut v = vec![m(
                    "cpu.processorMHz",
                    "static",
                    "MHz",
                    Int(i64::from(self.settings.host_mhz)),
                )];
                if r.host_info {
                    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                    v.push(m("cpu.cores", "static", "", Int(cores as i64)));
                    v.push(m(
                        "mem.physical",
                        "static",
                        "KB",
                        Int(host_memory_mb() as i64 * 1024),
                    ));
                }
                v
            }
            ("resources", "") => vec![
                m(
                    "vm.cpu.reserved",
                    "static",
                    "MHz",
                    Int(mhz(r.cpu_reservation_mhz)),
                ),
                m("vm.cpu.limit", "static", "MHz", Int(mhz(r.cpu_limit_mhz))),
                m("vm.cpu.shares", "static", "", Int(i64::from(r.cpu_shares))),
                m(
                    "guest.mem.reserved",
                    "static",
                    "KB",
                    Int(kb(r.mem_reservation_mb)),
                ),
                m("guest.mem.limit", "static", "KB", Int(kb(r.mem_limit_mb))),
                m(
                    "guest.mem.shares",
                    "static",
                    "",
                    Int(i64::from(r.mem_shares)),
                ),
                m("guest.mem.swapped", "instant", "KB", Int(kb(r.swapped_mb))),
                m(
                    "guest.mem.ballooned",
                    "instant",
                    "KB",
                    Int(kb(r.balloon_mb)),
                ),
            ],
            ("vnet", mac) if nics.iter().any(|n| n.eq_ignore_ascii_case(mac)) => vec![
                m("num.tx", "accumulate", "packets", Int(0)),
                m("size.tx", "accumulate", "bytes", Int(0)),
                m("num.rx", "accumulate", "packets", Int(0)),
                m("size.rx", "accumulate", "bytes", Int(0)),
                m("reservation", "static", "MBps", Int(0)),
                m("limit", "static", "MBps", Int(-1)),
            ],
            _ => return None,
        };
        Some(render(req.encoding, self.session_id, &metrics))
    }
}

/// A BIOS UUID as VMware prints it: `56 4d 2c 53 43 56 66 8e-7c 05 fd 7e 51 1e 23 f3`.
pub fn vmware_uuid(u: &[u8; 16]) -> String {
    let h = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!("{}-{}", h(&u[..8]), h(&u[8..]))
}

fn host_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[derive(Debug)]
enum MetricValue {
    Int(i64),
    Text(String),
}

#[derive(Debug)]
struct Metric {
    name: String,
    kind: &'static str,
    units: &'static str,
    value: MetricValue,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn list(enc: Encoding, names: &[String]) -> Vec<u8> {
    let mut out = String::new();
    match enc {
        Encoding::Text => names.iter().for_each(|n| {
            out.push_str(n);
            out.push('\n');
        }),
        Encoding::Json => {
            out = serde_json::json!({ "stats": names }).to_string();
            out.push('\n');
        }
        Encoding::Xml => {
            out.push_str("<stats>\n");
            for n in names {
                out.push_str(&format!("<stat>{}</stat>\n", xml_escape(n)));
            }
            out.push_str("</stats>\n");
        }
        Encoding::Yaml => names.iter().for_each(|n| out.push_str(&format!("- {n}\n"))),
    }
    out.into_bytes()
}

fn render(enc: Encoding, session: u64, metrics: &[Metric]) -> Vec<u8> {
    let mut out = String::new();
    let text = |v: &MetricValue| match v {
        MetricValue::Int(i) => i.to_string(),
        MetricValue::Text(t) => t.clone(),
    };
    match enc {
        Encoding::Text => {
            for m in metrics {
                out.push_str(&format!("{} = {}\n", m.name, text(&m.value)));
            }
        }
        Encoding::Yaml => {
            for m in metrics {
                out.push_str(&format!("{}:\n", m.name));
                if !m.kind.is_empty() {
                    out.push_str(&format!("    type: {}\n", m.kind));
                }
                if !m.units.is_empty() {
                    out.push_str(&format!("    units: {}\n", m.units));
                }
                match &m.value {
                    MetricValue::Int(i) => out.push_str(&format!("    value: {i}\n")),
                    MetricValue::Text(t) => out.push_str(&format!(
                        "    value: {}\n",
                        serde_json::Value::from(t.as_str())
                    )),
                }
            }
        }
        Encoding::Xml => {
            out.push_str(&format!("<metrics session=\"{session}\">\n"));
            for m in metrics {
                let mut attrs = format!("name=\"{}\" type=\"{}\"", xml_escape(&m.name), m.kind);
                if !m.units.is_empty() {
                    attrs.push_str(&format!(" units=\"{}\"", m.units));
                }
                out.push_str(&format!(
                    "<metric {attrs}>{}</metric>\n",
                    xml_escape(&text(&m.value))
                ));
            }
            out.push_str("</metrics>\n");
        }
        Encoding::Json => {
            let mut map = serde_json::Map::new();
            for m in metrics {
                let value = match &m.value {
                    MetricValue::Int(i) => serde_json::Value::from(*i),
                    MetricValue::Text(t) => serde_json::Value::from(t.as_str()),
                };
                let mut o = serde_json::json!({ "type": m.kind, "value": value });
                if !m.units.is_empty() {
                    o["units"] = m.units.into();
                }
                map.insert(m.name.clone(), o);
            }
            out = serde_json::json!({ "session": session.to_string(), "metrics": map }).to_string();
            out.push('\n');
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> HostState {
        let uuid = [0x56, 0x4d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
        HostState::new(HostSettings::defaults(2048), devices(None, &uuid))
    }

    #[test]
    fn device_list_reads_like_rd_info() {
        let s = state();
        let name = |id: u16| {
            let mut b = Vec::new();
            for off in (0..32).step_by(4) {
                b.extend_from_slice(&s.device_word(id, off).unwrap().to_le_bytes());
            }
            String::from_utf8(b.split(|&c| c == 0).next().unwrap().to_vec()).unwrap()
        };
        assert_eq!(name(0), "ethernet0");
        assert_eq!(name(1), "sata0:0");
        assert_eq!(s.device_word(0, 36), Some(1), "ethernet0 connected");
        assert_eq!(s.device_word(1, 36), Some(0), "cdrom not connected");
        assert_eq!(s.device_word(2, 0), None);
        assert_eq!(s.device_word(0, 40), None);
    }

    #[test]
    fn toggles_only_when_connectable() {
        let mut s = state();
        assert!(!s.toggle_device(0, false));
        s.settings.device_connectable = true;
        assert!(s.toggle_device(0, false));
        assert_eq!(s.device_word(0, 36), Some(0));
        assert!(!s.toggle_device(9, true));
    }

    #[test]
    fn synctime_bit_follows_the_option() {
        let mut s = state();
        assert_eq!(s.gui_options(false) & gui_option::SYNC_TIME, 0);
        s.options.insert(OPTION_SYNCTIME.into(), "1".into());
        assert_ne!(s.gui_options(false) & gui_option::SYNC_TIME, 0);
    }

    #[test]
    fn guestlib_info_carries_the_config() {
        let s = state();
        let info = s.guestlib_info(2048, Instant::now());
        assert_eq!(info.stats.len(), 38);
        assert_eq!(
            info.get(id::CPU_LIMIT_MHZ),
            Ok(Some(&Value::U32(UNLIMITED)))
        );
        assert_eq!(info.get(id::MEM_SHARES), Ok(Some(&Value::U32(20480))));
        assert_eq!(info.get(id::HOST_CPU_NUM_CORES), Ok(None), "host info off");
        let round = guestlib::decode_v3(&guestlib::encode_v3(&info)).unwrap();
        assert_eq!(round, info);
    }

    #[test]
    fn stat_get_lists_and_renders() {
        let s = state();
        let uuid = [0u8; 16];
        let req = guestlib::parse_stat_request(b"  ").unwrap();
        let l = String::from_utf8(s.guestlib_stat(&req, &uuid, Instant::now()).unwrap()).unwrap();
        assert!(
            l.starts_with("session\nhost\nresources\nvnet 00:50:56:"),
            "{l}"
        );
        let req = guestlib::parse_stat_request(b"text resources ").unwrap();
        let t = String::from_utf8(s.guestlib_stat(&req, &uuid, Instant::now()).unwrap()).unwrap();
        assert!(t.contains("vm.cpu.limit = -1\n"), "{t}");
        let req = guestlib::parse_stat_request(b"json session ").unwrap();
        let j: serde_json::Value =
            serde_json::from_slice(&s.guestlib_stat(&req, &uuid, Instant::now()).unwrap()).unwrap();
        assert_eq!(j["metrics"]["provider"]["value"], "");
        let req = guestlib::parse_stat_request(b"text vscsi scsi0:0").unwrap();
        assert!(s.guestlib_stat(&req, &uuid, Instant::now()).is_none());
    }
}
