//! `cust.cfg`, the customization specification vCenter puts in a package:
//! an INI file (Python configparser syntax) whose keys are addressed as
//! `SECTION|KEY` (cloud-init's `cloudinit/sources/helpers/vmware/imc`).
//!
//! [`Ini`] is the syntax, [`CustSpec`] the meaning: host and domain name,
//! NICs by MAC (DHCP, static IPv4, IPv6), DNS, time zone, root password,
//! custom script, marker. [`CustSpec::parse`] validates every value that
//! ends up in a guest file (no control characters, addresses that parse,
//! names that are names), so the guest side can write them as they are;
//! [`CustSpec::render`] writes the file back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest cust.cfg accepted.
pub const MAX_LEN: usize = 1 << 20;

/// Why a cust.cfg is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustCfgError {
    /// Larger than [`MAX_LEN`].
    #[error("cust.cfg is {0} bytes, more than 1 MiB")]
    TooLarge(usize),
    /// Not UTF-8.
    #[error("cust.cfg is not UTF-8")]
    Utf8,
    /// A line that is neither a section, a key, a comment nor blank.
    #[error("cust.cfg line {0}: {1}")]
    Syntax(usize, &'static str),
    /// A section or key given twice.
    #[error("cust.cfg line {0}: {1} is given twice")]
    Duplicate(usize, String),
    /// A required key is missing.
    #[error("cust.cfg: {0} is missing")]
    Missing(String),
    /// A value that does not mean what its key needs.
    #[error("cust.cfg: {key} = {value:?}: {why}")]
    Value {
        /// `SECTION|KEY`.
        key: String,
        /// The value as given (passwords are never shown).
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// The syntax: sections of `key = value` in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    /// `SECTION|KEY` → value.
    pub values: BTreeMap<String, String>,
}

impl Ini {
    /// Parse configparser syntax: `[SECTION]`, `key = value` or `key: value`,
    /// `#`/`;` comments, indented continuation lines.
    pub fn parse(text: &[u8]) -> Result<Ini, CustCfgError> {
        if text.len() > MAX_LEN {
            return Err(CustCfgError::TooLarge(text.len()));
        }
        let text = std::str::from_utf8(text).map_err(|_| CustCfgError::Utf8)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut ini = Ini::default();
        let mut section: Option<String> = None;
        let mut sections = std::collections::BTreeSet::new();
        let mut last: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() {
                last = None;
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(k) = &last {
                    if let Some(v) = ini.values.get_mut(k) {
                        v.push('\n');
                        v.push_str(trimmed);
                        continue;
                    }
                }
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or(CustCfgError::Syntax(n, "a section header without ]"))?
                    .to_string();
                if !sections.insert(name.clone()) {
                    return Err(CustCfgError::Duplicate(n, format!("section [{name}]")));
                }
                section = Some(name);
                last = None;
                continue;
            }
            let Some(sec) = &section else {
                return Err(CustCfgError::Syntax(n, "a key before the first section"));
            };
            let Some(d) = trimmed.find(['=', ':']) else {
                return Err(CustCfgError::Syntax(n, "neither a section nor key = value"));
            };
            let key = trimmed[..d].trim();
            if key.is_empty() {
                return Err(CustCfgError::Syntax(n, "an empty key"));
            }
            let full = format!("{sec}|{key}");
            let value = trimmed[d + 1..].trim().to_string();
            if ini.values.insert(full.clone(), value).is_some() {
                return Err(CustCfgError::Duplicate(n, full));
            }
            last = Some(full);
        }
        Ok(ini)
    }

    /// A value by `SECTION|KEY`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The values of `PREFIX1`, `PREFIX2`, ... (as cloud-init counts them:
    /// as many as there are keys starting with the prefix).
    fn numbered(&self, prefix: &str) -> Result<Vec<&str>, CustCfgError> {
        let count = self.values.keys().filter(|k| k.starts_with(prefix)).count();
        (1..=count)
            .map(|i| {
                let key = format!("{prefix}{i}");
                self.get(&key).ok_or(CustCfgError::Missing(key))
            })
            .collect()
    }
}

/// One NIC of the specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// The section name (`NIC1`).
    pub name: String,
    /// MAC address, lower case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// `PRIMARY = yes`.
    pub primary: bool,
    /// Address by DHCP (`BOOTPROTO = dhcp`); else static.
    pub dhcp: bool,
    /// Static IPv4 address and prefix length.
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// IPv4 gateways, first is the default route.
    pub gateways4: Vec<Ipv4Addr>,
    /// Static IPv6 addresses and prefix lengths.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// IPv6 gateways.
    pub gateways6: Vec<Ipv6Addr>,
}

/// What a cust.cfg asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustSpec {
    /// Host name (one label).
    pub hostname: Option<String>,
    /// DNS domain of the host.
    pub domain: Option<String>,
    /// NICs in `NIC-CONFIG|NICS` order.
    pub nics: Vec<NicSpec>,
    /// `DNS|DNSFROMDHCP = yes`.
    pub dns_from_dhcp: bool,
    /// DNS servers.
    pub dns_servers: Vec<IpAddr>,
    /// DNS search domains.
    pub dns_suffixes: Vec<String>,
    /// Time zone name (`Europe/Berlin`).
    pub time_zone: Option<String>,
    /// Hardware clock in UTC (`DATETIME|UTC`).
    pub utc: Option<bool>,
    /// Root password in clear (decoded from `PASSWORD|-PASS`).
    pub root_password: Option<String>,
    /// Expire the root password (`PASSWORD|RESET = yes`).
    pub reset_password: bool,
    /// File name of the custom script in the package.
    pub custom_script: Option<String>,
    /// `MISC|MARKER-ID`: customizations with the same marker run once.
    pub marker_id: Option<String>,
}

fn bad(key: &str, value: &str, why: &'static str) -> CustCfgError {
    CustCfgError::Value {
        key: key.to_string(),
        value: value.to_string(),
        why,
    }
}

fn yes_no(ini: &Ini, key: &str) -> Result<Option<bool>, CustCfgError> {
    match ini.get(key) {
        None => Ok(None),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "yes" | "true" => Ok(Some(true)),
            "no" | "false" => Ok(Some(false)),
            _ => Err(bad(key, v, "expected yes or no")),
        },
    }
}

/// A host name label (RFC 1123).
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS name of labels.
pub fn valid_domain(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty() && s.len() <= 253 && s.split('.').all(valid_label)
}

/// A time zone name as in the tz database (`Area/City`, `UTC`): letters,
/// digits, `_`, `-`, `+` and `/`, no empty or dot component.
pub fn valid_time_zone(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
        })
}

/// A MAC address, normalized to lower case with colons.
pub fn parse_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6
        || !parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(parts.join(":").to_ascii_lowercase())
}

/// Prefix length of a contiguous dotted netmask.
pub fn netmask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let p = m.leading_ones();
    (m.checked_shl(p).unwrap_or(0) == 0).then_some(p as u8)
}

/// The dotted netmask of a prefix length.
pub fn prefix_netmask(prefix: u8) -> Ipv4Addr {
    let p = u32::from(prefix.min(32));
    Ipv4Addr::from(u32::MAX.checked_shl(32 - p).unwrap_or(0))
}

/// Decode standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut pad = false;
    for b in s.bytes().filter(|b| !b.is_ascii_whitespace()) {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad = true;
                continue;
            }
            _ => return None,
        };
        if pad {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (bits < 6).then_some(out)
}

/// Encode standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn ip_list<T: std::str::FromStr>(key: &str, v: &str) -> Result<Vec<T>, CustCfgError> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad(key, v, "not an IP address")))
        .collect()
}

impl NicSpec {
    fn parse(ini: &Ini, name: &str) -> Result<NicSpec, CustCfgError> {
        let key = |k: &str| format!("{name}|{k}");
        let mac_key = key("MACADDR");
        let mac_text = ini
            .get(&mac_key)
            .ok_or_else(|| CustCfgError::Missing(mac_key.clone()))?;
        let mac =
            parse_mac(mac_text).ok_or_else(|| bad(&mac_key, mac_text, "not a MAC address"))?;
        let proto_key = key("BOOTPROTO");
        let dhcp = match ini.get(&proto_key).map(str::to_ascii_lowercase).as_deref() {
            None | Some("dhcp") => true,
            Some("static") => false,
            Some(_) => {
                return Err(bad(
                    &proto_key,
                    ini.get(&proto_key).unwrap_or(""),
                    "expected dhcp or static",
                ))
            }
        };
        let mut nic = NicSpec {
            name: name.to_string(),
            mac,
            primary: yes_no(ini, &key("PRIMARY"))?.unwrap_or(false),
            dhcp,
            ipv4: None,
            gateways4: Vec::new(),
            ipv6: Vec::new(),
            gateways6: Vec::new(),
        };
        if !dhcp {
            let ip_key = key("IPADDR");
            if let Some(ip) = ini.get(&ip_key) {
                let addr: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| bad(&ip_key, ip, "not an IPv4 address"))?;
                let mask_key = key("NETMASK");
                let prefix = match ini.get(&mask_key) {
                    None => 24,
                    Some(m) => m
                        .parse::<Ipv4Addr>()
                        .ok()
                        .and_then(netmask_prefix)
                        .ok_or_else(|| bad(&mask_key, m, "not a contiguous netmask"))?,
                };
                nic.ipv4 = Some((addr, prefix));
            }
            if let Some(g) = ini.get(&key("GATEWAY")) {
                nic.gateways4 = ip_list(&key("GATEWAY"), g)?;
            }
        }
        let v6 = ini.numbered(&key("IPv6ADDR|"))?;
        for (i, a) in v6.iter().enumerate() {
            let akey = key(&format!("IPv6ADDR|{}", i + 1));
            let addr: Ipv6Addr = a
                .parse()
                .map_err(|_| bad(&akey, a, "not an IPv6 address"))?;
            let mkey = key(&format!("IPv6NETMASK|{}", i + 1));
            let prefix = match ini.get(&mkey) {
                None => 64,
                Some(m) => match m.parse::<u8>() {
                    Ok(p) if p <= 128 => p,
                    _ => return Err(bad(&mkey, m, "not a prefix length 0-128")),
                },
            };
            nic.ipv6.push((addr, prefix));
            let gkey = key(&format!("IPv6GATEWAY|{}", i + 1));
            if let Some(g) = ini.get(&gkey) {
                for gw in ip_list::<Ipv6Addr>(&gkey, g)? {
                    if !nic.gateways6.contains(&gw) {
                        nic.gateways6.push(gw);
                    }
                }
            }
        }
        Ok(nic)
    }
}

fn no_control(key: &str, v: &str) -> Result<(), CustCfgError> {
    if v.chars().any(char::is_control) {
        return Err(bad(key, v, "contains control characters"));
    }
    Ok(())
}

impl CustSpec {
    /// Parse and validate a cust.cfg.
    pub fn parse(text: &[u8]) -> Result<CustSpec, CustCfgError> {
        let ini = Ini::parse(text)?;
        CustSpec::from_ini(&ini)
    }

    /// Validate parsed syntax.
    pub fn from_ini(ini: &Ini) -> Result<CustSpec, CustCfgError> {
        let mut s = CustSpec::default();
        if let Some(h) = ini.get("NETWORK|HOSTNAME") {
            if !valid_label(h) {
                return Err(bad(
                    "NETWORK|HOSTNAME",
                    h,
                    "not a host name (letters, digits, -)",
                ));
            }
            s.hostname = Some(h.to_string());
        }
        if let Some(d) = ini.get("NETWORK|DOMAINNAME").filter(|d| !d.is_empty()) {
            if !valid_domain(d) {
                return Err(bad("NETWORK|DOMAINNAME", d, "not a domain name"));
            }
            s.domain = Some(d.trim_end_matches('.').to_string());
        }
        if let Some(list) = ini.get("NIC-CONFIG|NICS") {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
                {
                    return Err(bad(
                        "NIC-CONFIG|NICS",
                        list,
                        "NIC names are letters, digits, '-', '_'",
                    ));
                }
                if s.nics.iter().any(|n| n.name == name) {
                    return Err(bad("NIC-CONFIG|NICS", list, "names a NIC twice"));
                }
                let nic = NicSpec::parse(ini, name)?;
                if s.nics.iter().any(|n| n.mac == nic.mac) {
                    return Err(bad(
                        &format!("{name}|MACADDR"),
                        &nic.mac,
                        "two NICs have this MAC",
                    ));
                }
                s.nics.push(nic);
            }
        }
        s.dns_from_dhcp = yes_no(ini, "DNS|DNSFROMDHCP")?.unwrap_or(false);
        for (i, v) in ini.numbered("DNS|NAMESERVER|")?.into_iter().enumerate() {
            let key = format!("DNS|NAMESERVER|{}", i + 1);
            s.dns_servers
                .push(v.parse().map_err(|_| bad(&key, v, "not an IP address"))?);
        }
        for (i, v) in ini.numbered("DNS|SUFFIX|")?.into_iter().enumerate() {
            let key = format!("DNS|SUFFIX|{}", i + 1);
            if !valid_domain(v) {
                return Err(bad(&key, v, "not a domain name"));
            }
            s.dns_suffixes.push(v.trim_end_matches('.').to_string());
        }
        if let Some(tz) = ini.get("DATETIME|TIMEZONE").filter(|t| !t.is_empty()) {
            if !valid_time_zone(tz) {
                return Err(bad("DATETIME|TIMEZONE", tz, "not a time zone name"));
            }
            s.time_zone = Some(tz.to_string());
        }
        s.utc = yes_no(ini, "DATETIME|UTC")?;
        if let Some(p) = ini.get("PASSWORD|-PASS").filter(|p| !p.is_empty()) {
            let hidden = |why| bad("PASSWORD|-PASS", "(hidden)", why);
            let raw = base64_decode(p).ok_or(hidden("not base64"))?;
            let pw = String::from_utf8(raw).map_err(|_| hidden("not UTF-8 once decoded"))?;
            if pw.chars().any(|c| c.is_control() || c == ':') {
                return Err(hidden("contains control characters or ':'"));
            }
            s.root_password = (!pw.is_empty()).then_some(pw);
        }
        s.reset_password = yes_no(ini, "PASSWORD|RESET")?.unwrap_or(false);
        if let Some(n) = ini
            .get("CUSTOM-SCRIPT|SCRIPT-NAME")
            .filter(|n| !n.is_empty())
        {
            if n.contains('/') || n.starts_with('.') || n.chars().any(char::is_control) {
                return Err(bad("CUSTOM-SCRIPT|SCRIPT-NAME", n, "not a plain file name"));
            }
            s.custom_script = Some(n.to_string());
        }
        if let Some(m) = ini.get("MISC|MARKER-ID").filter(|m| !m.is_empty()) {
            if m.len() > 128
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                || m.starts_with('.')
            {
                return Err(bad(
                    "MISC|MARKER-ID",
                    m,
                    "not letters, digits, '-', '_', '.'",
                ));
            }
            s.marker_id = Some(m.to_string());
        }
        for (k, v) in &ini.values {
            if !k.contains("|-") {
                no_control(k, v)?;
            }
        }
        Ok(s)
    }

    /// The FQDN, or the host name alone.
    pub fn fqdn(&self) -> Option<String> {
        let h = self.hostname.as_ref()?;
        Some(match &self.domain {
            Some(d) => format!("{h}.{d}"),
            None => h.clone(),
        })
    }

    /// The cust.cfg text.
    pub fn render(&self) -> String {
        let mut o = String::new();
        o.push_str("[NETWORK]\nNETWORKING = yes\nBOOTPROTO = dhcp\n");
        if let Some(h) = &self.hostname {
            let _ = writeln!(o, "HOSTNAME = {h}");
        }
        if let Some(d) = &self.domain {
            let _ = writeln!(o, "DOMAINNAME = {d}");
        }
        if !self.nics.is_empty() {
            let names: Vec<&str> = self.nics.iter().map(|n| n.name.as_str()).collect();
            let _ = writeln!(o, "\n[NIC-CONFIG]\nNICS = {}", names.join(","));
        }
        for n in &self.nics {
            let _ = writeln!(o, "\n[{}]\nMACADDR = {}\nONBOOT = yes", n.name, n.mac);
            if n.primary {
                o.push_str("PRIMARY = yes\n");
            }
            o.push_str("IPv4_MODE = BACKWARDS_COMPATIBLE\n");
            if n.dhcp {
                o.push_str("BOOTPROTO = dhcp\n");
            } else {
                o.push_str("BOOTPROTO = static\n");
                if let Some((a, p)) = n.ipv4 {
                    let _ = writeln!(o, "IPADDR = {a}\nNETMASK = {}", prefix_netmask(p));
                }
                if !n.gateways4.is_empty() {
                    let g: Vec<String> = n.gateways4.iter().map(ToString::to_string).collect();
                    let _ = writeln!(o, "GATEWAY = {}", g.join(", "));
                }
            }
            for (i, (a, p)) in n.ipv6.iter().enumerate() {
                let _ = writeln!(o, "IPv6ADDR|{} = {a}\nIPv6NETMASK|{} = {p}", i + 1, i + 1);
                // One gateway per address; the last address takes the rest.
                let gws: Vec<String> = if i + 1 == n.ipv6.len() {
                    n.gateways6
                        .iter()
                        .skip(i)
                        .map(ToString::to_string)
                        .collect()
                } else {
                    n.gateways6
                        .get(i)
                        .map(ToString::to_string)
                        .into_iter()
                        .collect()
                };
                let gws = if gws.is_empty() {
                    n.gateways6
                        .first()
                        .map(ToString::to_string)
                        .into_iter()
                        .collect()
                } else {
                    gws
                };
                if !gws.is_empty() {
                    let _ = writeln!(o, "IPv6GATEWAY|{} = {}", i + 1, gws.join(", "));
                }
            }
        }
        let _ = writeln!(
            o,
            "\n[DNS]\nDNSFROMDHCP = {}",
            if self.dns_from_dhcp { "yes" } else { "no" }
        );
        for (i, s) in self.dns_suffixes.iter().enumerate() {
            let _ = writeln!(o, "SUFFIX|{} = {s}", i + 1);
        }
        for (i, s) in self.dns_servers.iter().enumerate() {
            let _ = writeln!(o, "NAMESERVER|{} = {s}", i + 1);
        }
        if self.time_zone.is_some() || self.utc.is_some() {
            o.push_str("\n[DATETIME]\n");
            if let Some(t) = &self.time_zone {
                let _ = writeln!(o, "TIMEZONE = {t}");
            }
            if let Some(u) = self.utc {
                let _ = writeln!(o, "UTC = {}", if u { "yes" } else { "no" });
            }
        }
        if self.root_password.is_some() || self.reset_password {
            o.push_str("\n[PASSWORD]\n");
            if let Some(p) = &self.root_password {
                let _ = writeln!(o, "-PASS = {}", base64_encode(p.as_bytes()));
            }
            let _ = writeln!(
                o,
                "RESET = {}",
                if self.reset_password { "yes" } else { "no" }
            );
        }
        if let Some(s) = &self.custom_script {
            let _ = writeln!(o, "\n[CUSTOM-SCRIPT]\nSCRIPT-NAME = {s}");
        }
        if let Some(m) = &self.marker_id {
            let _ = writeln!(o, "\n[MISC]\nMARKER-ID = {m}");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// cloud-init's sample (tests/data/vmware/cust-static-2nic.cfg), as vCenter writes it.
    const STATIC_2NIC: &str = "[NETWORK]\nNETWORKING = yes\nBOOTPROTO = dhcp\nHOSTNAME   = myhost1\nDOMAINNAME = eng.vmware.com\n\n[NIC-CONFIG]\nNICS = NIC1,NIC2\n\n[NIC1]\nMACADDR = 00:50:56:a6:8c:08\nONBOOT = yes\nIPv4_MODE = BACKWARDS_COMPATIBLE\nBOOTPROTO = static\nIPADDR = 10.20.87.154\nNETMASK = 255.255.252.0\nGATEWAY = 10.20.87.253, 10.20.87.105\nIPv6ADDR|1 = fc00:10:20:87::154\nIPv6NETMASK|1 = 64\nIPv6GATEWAY|1 = fc00:10:20:87::253\n[NIC2]\nMACADDR = 00:50:56:a6:ef:7d\nONBOOT = yes\nIPv4_MODE = BACKWARDS_COMPATIBLE\nBOOTPROTO = static\nIPADDR = 192.168.6.102\nNETMASK = 255.255.0.0\nGATEWAY = 192.168.0.10\n\n[DNS]\nDNSFROMDHCP=no\nSUFFIX|1 = eng.vmware.com\nSUFFIX|2 = proxy.vmware.com\nNAMESERVER|1 = 10.20.145.1\nNAMESERVER|2 = 10.20.145.2\n\n[DATETIME]\nTIMEZONE = Africa/Abidjan\nUTC = yes\n";

    #[test]
    fn vcenter_sample_means_what_cloud_init_reads() {
        let s = CustSpec::parse(STATIC_2NIC.as_bytes()).unwrap();
        assert_eq!(s.fqdn().as_deref(), Some("myhost1.eng.vmware.com"));
        assert_eq!(s.nics.len(), 2);
        let n = &s.nics[0];
        assert_eq!(n.mac, "00:50:56:a6:8c:08");
        assert!(!n.dhcp);
        assert_eq!(n.ipv4, Some(("10.20.87.154".parse().unwrap(), 22)));
        assert_eq!(n.gateways4.len(), 2);
        assert_eq!(n.ipv6, vec![("fc00:10:20:87::154".parse().unwrap(), 64)]);
        assert_eq!(
            n.gateways6,
            vec!["fc00:10:20:87::253".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(s.nics[1].ipv4, Some(("192.168.6.102".parse().unwrap(), 16)));
        assert_eq!(s.dns_suffixes, ["eng.vmware.com", "proxy.vmware.com"]);
        assert_eq!(s.dns_servers.len(), 2);
        assert_eq!(s.time_zone.as_deref(), Some("Africa/Abidjan"));
        assert_eq!(s.utc, Some(true));
        // Rendered and parsed again: the same meaning.
        assert_eq!(CustSpec::parse(s.render().as_bytes()).unwrap(), s);
    }

    #[test]
    fn password_marker_script() {
        let mut s = CustSpec {
            hostname: Some("web-1".into()),
            root_password: Some("s3cret pw!".into()),
            marker_id: Some("m-1".into()),
            custom_script: Some("script01.bat".into()),
            ..CustSpec::default()
        };
        s.nics.push(NicSpec {
            name: "NIC1".into(),
            mac: "00:50:56:00:00:01".into(),
            primary: true,
            dhcp: true,
            ipv4: None,
            gateways4: vec![],
            ipv6: vec![("2001:db8::5".parse().unwrap(), 64)],
            gateways6: vec!["2001:db8::1".parse().unwrap()],
        });
        let text = s.render();
        assert!(text.contains("-PASS = czNjcmV0IHB3IQ=="), "{text}");
        assert_eq!(CustSpec::parse(text.as_bytes()).unwrap(), s);
        assert_eq!(base64_decode("czNjcmV0IHB3IQ").unwrap(), b"s3cret pw!");
        assert_eq!(base64_decode("a*"), None);
    }

    #[test]
    fn bad_values_say_which_key() {
        let cases = [
            ("[NETWORK]\nHOSTNAME = a b\n", "NETWORK|HOSTNAME"),
            ("[NETWORK]\nHOSTNAME = x\nHOSTNAME = y\n", "twice"),
            ("[NIC-CONFIG]\nNICS = NIC1\n", "NIC1|MACADDR is missing"),
            ("[NIC-CONFIG]\nNICS = NIC1\n[NIC1]\nMACADDR = zz\n", "not a MAC"),
            ("[NIC-CONFIG]\nNICS = NIC1\n[NIC1]\nMACADDR = 00:50:56:00:00:01\nBOOTPROTO = static\nIPADDR = 1.2.3.4\nNETMASK = 255.0.255.0\n", "netmask"),
            ("[DATETIME]\nTIMEZONE = ../../etc/passwd\n", "time zone"),
            ("[DNS]\nNAMESERVER|2 = 1.1.1.1\n", "NAMESERVER|1 is missing"),
            ("[PASSWORD]\n-PASS = !!\n", "(hidden)"),
            ("[CUSTOM-SCRIPT]\nSCRIPT-NAME = ../x\n", "plain file"),
            ("HOSTNAME = x\n", "before the first section"),
            ("[NETWORK\n", "without ]"),
            ("[MISC]\nMARKER-ID = a/b\n", "MARKER-ID"),
        ];
        for (text, want) in cases {
            let e = CustSpec::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask_prefix("255.255.252.0".parse().unwrap()), Some(22));
        assert_eq!(netmask_prefix("0.0.0.0".parse().unwrap()), Some(0));
        assert_eq!(netmask_prefix("255.255.255.255".parse().unwrap()), Some(32));
        assert_eq!(netmask_prefix("255.0.255.0".parse().unwrap()), None);
        assert_eq!(prefix_netmask(22).to_string(), "255.255.252.0");
        assert_eq!(prefix_netmask(0).to_string(), "0.0.0.0");
    }
}
