//! Guest NIC information, the XDR format of open-vm-tools'
//! `lib/guestRpc/nicinfo.x` (`GuestNicProto`, version 3).
//!
//! vmtoolsd sends it as the RPCI message `"SetGuestInfo  10 "` (key
//! INFO_IPADDRESS_V3; 9 with at most 64 IPs per NIC for older hosts) followed
//! by the raw XDR bytes. Bounds are the format's own (16 NICs, 2048 IPs per
//! NIC, 100 routes, ...), enforced on decode before anything is allocated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::xdr::XdrError;
use crate::xdr::{Reader, Writer};

/// NICs in one report.
pub const MAX_NICS: usize = 16;
/// IP addresses per NIC.
pub const MAX_IPS: usize = 2048;
/// IP addresses per NIC when sent under key 9 (INFO_IPADDRESS_V2).
pub const MAX_IPS_V2_KEY: usize = 64;
/// Routes in one report.
pub const MAX_ROUTES: usize = 100;
/// MAC address string length ("00:50:56:aa:bb:cc" plus NUL).
pub const MAC_LEN: usize = 18;
/// Bytes of one address.
pub const MAX_ADDR_LEN: usize = 255;
/// DNS name length.
pub const MAX_DNS_NAME: usize = 255;
/// DNS servers.
pub const MAX_DNS_SERVERS: usize = 16;
/// DNS search suffixes.
pub const MAX_DNS_SUFFIXES: usize = 10;
/// DHCP settings text.
pub const MAX_DHCP_SETTINGS: usize = 16384;

/// `NicInfoVersion`.
pub const NIC_INFO_V2: u32 = 2;
/// `NicInfoVersion`.
pub const NIC_INFO_V3: u32 = 3;

/// `InetAddressType` values.
pub mod inet_type {
    /// Unknown.
    pub const UNKNOWN: u32 = 0;
    /// IPv4, 4 bytes.
    pub const IPV4: u32 = 1;
    /// IPv6, 16 bytes.
    pub const IPV6: u32 = 2;
    /// IPv4 with zone index.
    pub const IPV4Z: u32 = 3;
    /// IPv6 with zone index.
    pub const IPV6Z: u32 = 4;
    /// A DNS name.
    pub const DNS: u32 = 16;
}

/// `IpAddressOrigin` values.
pub mod origin {
    /// Other.
    pub const OTHER: u32 = 1;
    /// Configured by hand.
    pub const MANUAL: u32 = 2;
    /// From DHCP.
    pub const DHCP: u32 = 4;
    /// Link-layer (SLAAC, link-local).
    pub const LINKLAYER: u32 = 5;
    /// Random (privacy addresses).
    pub const RANDOM: u32 = 6;
}

/// `IpAddressStatus` values.
pub mod status {
    /// Preferred.
    pub const PREFERRED: u32 = 1;
    /// Deprecated.
    pub const DEPRECATED: u32 = 2;
    /// Invalid.
    pub const INVALID: u32 = 3;
    /// Inaccessible.
    pub const INACCESSIBLE: u32 = 4;
    /// Unknown.
    pub const UNKNOWN: u32 = 5;
    /// Tentative (DAD in progress).
    pub const TENTATIVE: u32 = 6;
    /// Duplicate.
    pub const DUPLICATE: u32 = 7;
    /// Optimistic.
    pub const OPTIMISTIC: u32 = 8;
}

/// `InetCidrRouteType` values.
pub mod route_type {
    /// Other.
    pub const OTHER: u32 = 1;
    /// Reject.
    pub const REJECT: u32 = 2;
    /// Local (directly connected).
    pub const LOCAL: u32 = 3;
    /// Remote (via a gateway).
    pub const REMOTE: u32 = 4;
}

/// `TypedIpAddress`: an address and its type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypedAddr {
    /// An [`inet_type`] value.
    pub kind: u32,
    /// The address bytes (network order).
    pub addr: Vec<u8>,
}

impl From<IpAddr> for TypedAddr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => TypedAddr {
                kind: inet_type::IPV4,
                addr: a.octets().to_vec(),
            },
            IpAddr::V6(a) => TypedAddr {
                kind: inet_type::IPV6,
                addr: a.octets().to_vec(),
            },
        }
    }
}

impl TypedAddr {
    /// The address as an [`IpAddr`], when it is one.
    pub fn to_ip(&self) -> Option<IpAddr> {
        match (self.kind, self.addr.len()) {
            (inet_type::IPV4 | inet_type::IPV4Z, 4) => {
                let b: [u8; 4] = self.addr[..].try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(b)))
            }
            (inet_type::IPV6 | inet_type::IPV6Z, 16) => {
                let b: [u8; 16] = self.addr[..].try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            }
            _ => None,
        }
    }
}

/// `IpAddressEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpEntry {
    /// The address.
    pub addr: TypedAddr,
    /// Prefix length.
    pub prefix: u32,
    /// An [`origin`] value.
    pub origin: Option<u32>,
    /// A [`status`] value.
    pub status: Option<u32>,
}

/// `DnsConfigInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsConfig {
    /// Host name.
    pub host_name: Option<String>,
    /// Domain name.
    pub domain_name: Option<String>,
    /// Name servers.
    pub servers: Vec<TypedAddr>,
    /// Search suffixes.
    pub search: Vec<String>,
}

/// `WinsConfigInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WinsConfig {
    /// Primary server.
    pub primary: TypedAddr,
    /// Secondary server.
    pub secondary: TypedAddr,
}

/// `DhcpConfigInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DhcpConfig {
    /// DHCP on.
    pub enabled: bool,
    /// Free-form settings.
    pub settings: String,
}

/// `InetCidrRouteEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// Destination network.
    pub dest: TypedAddr,
    /// Destination prefix length.
    pub prefix: u32,
    /// Gateway.
    pub next_hop: Option<TypedAddr>,
    /// Index into [`NicInfoV3::nics`].
    pub if_index: u32,
    /// A [`route_type`] value.
    pub kind: u32,
    /// Metric; `u32::MAX` for unused.
    pub metric: u32,
}

/// `GuestNicV3`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestNicV3 {
    /// "00:50:56:aa:bb:cc".
    pub mac: String,
    /// Addresses.
    pub ips: Vec<IpEntry>,
    /// Per-NIC DNS.
    pub dns: Option<DnsConfig>,
    /// Per-NIC WINS.
    pub wins: Option<WinsConfig>,
    /// DHCPv4.
    pub dhcp_v4: Option<DhcpConfig>,
    /// DHCPv6.
    pub dhcp_v6: Option<DhcpConfig>,
}

/// `NicInfoV3`: the whole report.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NicInfoV3 {
    /// NICs.
    pub nics: Vec<GuestNicV3>,
    /// Routes.
    pub routes: Vec<Route>,
    /// Global DNS.
    pub dns: Option<DnsConfig>,
    /// Global WINS.
    pub wins: Option<WinsConfig>,
    /// Global DHCPv4.
    pub dhcp_v4: Option<DhcpConfig>,
    /// Global DHCPv6.
    pub dhcp_v6: Option<DhcpConfig>,
}

fn put_addr(w: &mut Writer, a: &TypedAddr) {
    w.u32(a.kind);
    w.opaque(&a.addr);
}

fn put_dns(w: &mut Writer, d: &DnsConfig) {
    w.optional(d.host_name.as_ref(), |w, s| w.string(s));
    w.optional(d.domain_name.as_ref(), |w, s| w.string(s));
    w.array(&d.servers, put_addr);
    w.array(&d.search, |w, s| w.string(s));
}

fn put_wins(w: &mut Writer, x: &WinsConfig) {
    put_addr(w, &x.primary);
    put_addr(w, &x.secondary);
}

fn put_dhcp(w: &mut Writer, d: &DhcpConfig) {
    w.bool(d.enabled);
    w.string(&d.settings);
}

/// Encode a report as a `GuestNicProto` of version 3.
pub fn encode(info: &NicInfoV3) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(NIC_INFO_V3);
    w.bool(true);
    w.array(&info.nics, |w, n| {
        w.string(&n.mac);
        w.array(&n.ips, |w, ip| {
            put_addr(w, &ip.addr);
            w.u32(ip.prefix);
            w.optional(ip.origin.as_ref(), |w, v| w.u32(*v));
            w.optional(ip.status.as_ref(), |w, v| w.u32(*v));
        });
        w.optional(n.dns.as_ref(), put_dns);
        w.optional(n.wins.as_ref(), put_wins);
        w.optional(n.dhcp_v4.as_ref(), put_dhcp);
        w.optional(n.dhcp_v6.as_ref(), put_dhcp);
    });
    w.array(&info.routes, |w, r| {
        put_addr(w, &r.dest);
        w.u32(r.prefix);
        w.optional(r.next_hop.as_ref(), put_addr);
        w.u32(r.if_index);
        w.u32(r.kind);
        w.u32(r.metric);
    });
    w.optional(info.dns.as_ref(), put_dns);
    w.optional(info.wins.as_ref(), put_wins);
    w.optional(info.dhcp_v4.as_ref(), put_dhcp);
    w.optional(info.dhcp_v6.as_ref(), put_dhcp);
    w.into_bytes()
}

fn get_addr(r: &mut Reader<'_>) -> Result<TypedAddr, XdrError> {
    Ok(TypedAddr {
        kind: r.u32()?,
        addr: r.opaque("address", MAX_ADDR_LEN)?,
    })
}

fn get_dns(r: &mut Reader<'_>) -> Result<DnsConfig, XdrError> {
    Ok(DnsConfig {
        host_name: r.optional("dns host name", |r| r.string("dns host name", MAX_DNS_NAME))?,
        domain_name: r.optional("dns domain", |r| r.string("dns domain", MAX_DNS_NAME))?,
        servers: r.array("dns servers", MAX_DNS_SERVERS, get_addr)?,
        search: r.array("dns search", MAX_DNS_SUFFIXES, |r| {
            r.string("dns search suffix", MAX_DNS_NAME)
        })?,
    })
}

fn get_wins(r: &mut Reader<'_>) -> Result<WinsConfig, XdrError> {
    Ok(WinsConfig {
        primary: get_addr(r)?,
        secondary: get_addr(r)?,
    })
}

fn get_dhcp(r: &mut Reader<'_>) -> Result<DhcpConfig, XdrError> {
    Ok(DhcpConfig {
        enabled: r.bool("dhcp enabled")?,
        settings: r.string("dhcp settings", MAX_DHCP_SETTINGS)?,
    })
}

/// Decode a `GuestNicProto`. Only version 3 is accepted (vmtoolsd has sent
/// it since 2009); version 2 gets a clear error.
pub fn decode(bytes: &[u8]) -> Result<NicInfoV3, XdrError> {
    let mut r = Reader::new(bytes);
    match r.u32()? {
        NIC_INFO_V3 => {}
        value => {
            return Err(XdrError::BadValue {
                what: "NIC info version (only 3 is decoded)",
                value,
            })
        }
    }
    if !r.bool("nicInfoV3 pointer")? {
        return Ok(NicInfoV3::default());
    }
    let nics = r.array("nics", MAX_NICS, |r| {
        Ok(GuestNicV3 {
            mac: r.string("mac address", MAC_LEN)?,
            ips: r.array("ips", MAX_IPS, |r| {
                Ok(IpEntry {
                    addr: get_addr(r)?,
                    prefix: r.u32()?,
                    origin: r.optional("ip origin", |r| r.u32())?,
                    status: r.optional("ip status", |r| r.u32())?,
                })
            })?,
            dns: r.optional("nic dns", get_dns)?,
            wins: r.optional("nic wins", get_wins)?,
            dhcp_v4: r.optional("nic dhcpv4", get_dhcp)?,
            dhcp_v6: r.optional("nic dhcpv6", get_dhcp)?,
        })
    })?;
    let routes = r.array("routes", MAX_ROUTES, |r| {
        Ok(Route {
            dest: get_addr(r)?,
            prefix: r.u32()?,
            next_hop: r.optional("route next hop", get_addr)?,
            if_index: r.u32()?,
            kind: r.u32()?,
            metric: r.u32()?,
        })
    })?;
    Ok(NicInfoV3 {
        nics,
        routes,
        dns: r.optional("dns", get_dns)?,
        wins: r.optional("wins", get_wins)?,
        dhcp_v4: r.optional("dhcpv4", get_dhcp)?,
        dhcp_v6: r.optional("dhcpv6", get_dhcp)?,
    })
}

/// A readable name for an [`origin`] value.
pub fn origin_name(v: u32) -> &'static str {
    match v {
        origin::OTHER => "other",
        origin::MANUAL => "manual",
        origin::DHCP => "dhcp",
        origin::LINKLAYER => "linklayer",
        origin::RANDOM => "random",
        _ => "unknown",
    }
}

/// A readable name for a [`status`] value.
pub fn status_name(v: u32) -> &'static str {
    match v {
        status::PREFERRED => "preferred",
        status::DEPRECATED => "deprecated",
        status::INVALID => "invalid",
        status::INACCESSIBLE => "inaccessible",
        status::TENTATIVE => "tentative",
        status::DUPLICATE => "duplicate",
        status::OPTIMISTIC => "optimistic",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_nic() -> NicInfoV3 {
        NicInfoV3 {
            nics: vec![GuestNicV3 {
                mac: "00:50:56:aa:bb:cc".into(),
                ips: vec![IpEntry {
                    addr: "198.51.100.2".parse::<IpAddr>().unwrap().into(),
                    prefix: 24,
                    origin: Some(origin::MANUAL),
                    status: Some(status::PREFERRED),
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn golden_bytes_both_ways() {
        let mut g: Vec<u8> = Vec::new();
        let mut u = |v: u32| g.extend_from_slice(&v.to_be_bytes());
        u(3); // version
        u(1); // pointer present
        u(1); // one NIC
        u(17); // MAC length
        let mut g2 = std::mem::take(&mut g);
        g2.extend_from_slice(b"00:50:56:aa:bb:cc\0\0\0");
        let mut u = |v: u32| g2.extend_from_slice(&v.to_be_bytes());
        u(1); // one IP
        u(1); // IPv4
        u(4); // 4 address bytes
        let mut g3 = std::mem::take(&mut g2);
        g3.extend_from_slice(&[198, 51, 100, 2]);
        for v in [24, 1, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0] {
            // prefix, origin present+manual, status present+preferred,
            // no NIC dns/wins/dhcp4/dhcp6, no routes, no global dns/wins/dhcp4/dhcp6
            g3.extend_from_slice(&u32::to_be_bytes(v));
        }
        assert_eq!(encode(&one_nic()), g3);
        assert_eq!(decode(&g3).unwrap(), one_nic());
    }

    #[test]
    fn full_report_round_trips() {
        let mut info = one_nic();
        info.nics[0].ips.push(IpEntry {
            addr: "2001:db8::2".parse::<IpAddr>().unwrap().into(),
            prefix: 64,
            origin: None,
            status: None,
        });
        info.nics[0].dhcp_v4 = Some(DhcpConfig {
            enabled: true,
            settings: "x".into(),
        });
        info.routes.push(Route {
            dest: "0.0.0.0".parse::<IpAddr>().unwrap().into(),
            prefix: 0,
            next_hop: Some("198.51.100.1".parse::<IpAddr>().unwrap().into()),
            if_index: 0,
            kind: route_type::REMOTE,
            metric: 100,
        });
        info.dns = Some(DnsConfig {
            host_name: Some("web-01".into()),
            domain_name: Some("example.test".into()),
            servers: vec!["192.0.2.53".parse::<IpAddr>().unwrap().into()],
            search: vec!["example.test".into()],
        });
        let b = encode(&info);
        assert_eq!(b.len() % 4, 0);
        assert_eq!(decode(&b).unwrap(), info);
        assert_eq!(
            decode(&b).unwrap().nics[0].ips[1]
                .addr
                .to_ip()
                .unwrap()
                .to_string(),
            "2001:db8::2"
        );
    }

    #[test]
    fn hostile_input_is_refused_without_allocating() {
        // 2^32-1 NICs announced in 12 bytes.
        let b = [0, 0, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode(&b),
            Err(XdrError::TooLong { what: "nics", .. })
        ));
        // 16 NICs announced, no bytes for them.
        let b = [0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 16];
        assert!(matches!(decode(&b), Err(XdrError::Truncated(_))));
        assert!(matches!(
            decode(&[0, 0, 0, 2]),
            Err(XdrError::BadValue { .. })
        ));
        assert!(matches!(decode(&[0, 0]), Err(XdrError::Truncated(0))));
        let full = encode(&one_nic());
        for cut in 0..full.len() {
            assert!(decode(&full[..cut]).is_err(), "cut at {cut}");
        }
    }
}
