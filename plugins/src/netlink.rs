//! Just enough rtnetlink for guestinfo: dump links, addresses and routes, and
//! a socket subscribed to their change events.
//!
//! The parsers are pure functions over bytes (fuzzed in `fuzz/`); the socket
//! is a thin wrapper over `AF_NETLINK`/`NETLINK_ROUTE`. Layouts and numbers:
//! linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h, linux/if_link.h.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Message types (linux/rtnetlink.h).
pub mod msg {
    /// `NLMSG_ERROR`: an error or an acknowledgement.
    pub const ERROR: u16 = 2;
    /// `NLMSG_DONE`: the end of a dump.
    pub const DONE: u16 = 3;
    /// `RTM_NEWLINK`.
    pub const NEWLINK: u16 = 16;
    /// `RTM_DELLINK`.
    pub const DELLINK: u16 = 17;
    /// `RTM_GETLINK`.
    pub const GETLINK: u16 = 18;
    /// `RTM_NEWADDR`.
    pub const NEWADDR: u16 = 20;
    /// `RTM_DELADDR`.
    pub const DELADDR: u16 = 21;
    /// `RTM_GETADDR`.
    pub const GETADDR: u16 = 22;
    /// `RTM_NEWROUTE`.
    pub const NEWROUTE: u16 = 24;
    /// `RTM_DELROUTE`.
    pub const DELROUTE: u16 = 25;
    /// `RTM_GETROUTE`.
    pub const GETROUTE: u16 = 26;
}

/// Multicast groups (the legacy `RTMGRP_*` bit masks).
pub mod group {
    /// `RTMGRP_LINK`.
    pub const LINK: u32 = 0x1;
    /// `RTMGRP_IPV4_IFADDR`.
    pub const IPV4_IFADDR: u32 = 0x10;
    /// `RTMGRP_IPV4_ROUTE`.
    pub const IPV4_ROUTE: u32 = 0x40;
    /// `RTMGRP_IPV6_IFADDR`.
    pub const IPV6_IFADDR: u32 = 0x100;
    /// `RTMGRP_IPV6_ROUTE`.
    pub const IPV6_ROUTE: u32 = 0x400;
    /// Everything guestinfo reports on.
    pub const GUESTINFO: u32 = LINK | IPV4_IFADDR | IPV4_ROUTE | IPV6_IFADDR | IPV6_ROUTE;
}

/// Address flags (`IFA_F_*`, linux/if_addr.h).
pub mod ifa_flag {
    /// A temporary (privacy) IPv6 address.
    pub const TEMPORARY: u32 = 0x01;
    /// Optimistic duplicate address detection.
    pub const OPTIMISTIC: u32 = 0x04;
    /// Duplicate address detection failed.
    pub const DADFAILED: u32 = 0x08;
    /// Past its preferred lifetime.
    pub const DEPRECATED: u32 = 0x20;
    /// Duplicate address detection still running.
    pub const TENTATIVE: u32 = 0x40;
    /// Configured without a lifetime (static).
    pub const PERMANENT: u32 = 0x80;
}

/// Route types (`RTN_*`).
pub mod rtn {
    /// A gateway or direct route.
    pub const UNICAST: u8 = 1;
    /// A local address.
    pub const LOCAL: u8 = 2;
    /// Silently dropped.
    pub const BLACKHOLE: u8 = 6;
    /// Unreachable.
    pub const UNREACHABLE: u8 = 7;
    /// Administratively prohibited.
    pub const PROHIBIT: u8 = 8;
}

/// `RT_TABLE_MAIN`.
pub const RT_TABLE_MAIN: u32 = 254;
/// `ARPHRD_LOOPBACK`.
pub const ARPHRD_LOOPBACK: u16 = 772;

const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const IFADDRMSG: usize = 8;
const RTMSG: usize = 12;

/// Why netlink bytes did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetlinkParseError {
    /// A header or attribute runs past the buffer.
    #[error("truncated netlink message")]
    Truncated,
    /// The kernel answered a request with an error.
    #[error("netlink request failed with errno {0}")]
    Errno(i32),
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Split a datagram into its netlink messages: (type, payload after the header).
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Result<(u16, &[u8]), NetlinkParseError>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (Some(len), Some(ty)) = (u32_at(rest, 0), u16_at(rest, 4)) else {
            rest = &[];
            return Some(Err(NetlinkParseError::Truncated));
        };
        let len = len as usize;
        if len < NLMSG_HDR || len > rest.len() {
            rest = &[];
            return Some(Err(NetlinkParseError::Truncated));
        }
        let payload = &rest[NLMSG_HDR..len];
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok((ty, payload)))
    })
}

/// Walk `rtattr`s: (type without the nested/byte-order bits, value).
pub fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(b, 0)? as usize;
        let ty = u16_at(b, 2)? & 0x3FFF;
        if len < 4 || len > b.len() {
            b = &[];
            return None;
        }
        let value = &b[4..len];
        b = b.get(align4(len)..).unwrap_or(&[]);
        Some((ty, value))
    })
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name ("eth0").
    pub name: String,
    /// Hardware address bytes (empty when it has none).
    pub mac: Vec<u8>,
    /// `IFF_*` flags.
    pub flags: u32,
    /// `ARPHRD_*` type.
    pub kind: u16,
}

impl Link {
    /// The MAC as open-vm-tools prints it: lower-case, colon-separated.
    pub fn mac_string(&self) -> String {
        let parts: Vec<String> = self.mac.iter().map(|b| format!("{b:02x}")).collect();
        parts.join(":")
    }
}

/// One interface address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// Interface index.
    pub index: u32,
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// `IFA_F_*` flags (the 32-bit attribute when present).
    pub flags: u32,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `AF_INET` or `AF_INET6`.
    pub family: u8,
    /// Destination (the unspecified address for a default route).
    pub dest: IpAddr,
    /// Destination prefix length.
    pub prefix: u8,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface index, if any.
    pub oif: Option<u32>,
    /// Metric.
    pub metric: u32,
    /// Routing table.
    pub table: u32,
    /// `RTN_*` type.
    pub kind: u8,
}

fn ip_from(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (i32::from(family), b.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?))),
        (libc::AF_INET6, 16) => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?))),
        _ => None,
    }
}

/// Parse an `RTM_NEWLINK` payload.
pub fn parse_link(p: &[u8]) -> Option<Link> {
    if p.len() < IFINFOMSG {
        return None;
    }
    let mut link = Link {
        kind: u16_at(p, 2)?,
        index: u32_at(p, 4)?,
        flags: u32_at(p, 8)?,
        ..Link::default()
    };
    for (ty, v) in attrs(&p[IFINFOMSG..]) {
        match ty {
            // IFLA_ADDRESS
            1 => link.mac = v.to_vec(),
            // IFLA_IFNAME, NUL-terminated
            3 => {
                let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                link.name = String::from_utf8_lossy(&v[..end]).into_owned();
            }
            _ => {}
        }
    }
    Some(link)
}

/// Parse an `RTM_NEWADDR` payload.
pub fn parse_addr(p: &[u8]) -> Option<Addr> {
    if p.len() < IFADDRMSG {
        return None;
    }
    let family = p[0];
    let prefix = p[1];
    let mut flags = u32::from(p[2]);
    let index = u32_at(p, 4)?;
    let (mut address, mut local) = (None, None);
    for (ty, v) in attrs(&p[IFADDRMSG..]) {
        match ty {
            // IFA_ADDRESS
            1 => address = ip_from(family, v),
            // IFA_LOCAL: the address itself on point-to-point links
            2 => local = ip_from(family, v),
            // IFA_FLAGS
            8 => flags = u32_at(v, 0).unwrap_or(flags),
            _ => {}
        }
    }
    Some(Addr {
        index,
        addr: local.or(address)?,
        prefix,
        flags,
    })
}

/// Parse an `RTM_NEWROUTE` payload.
pub fn parse_route(p: &[u8]) -> Option<Route> {
    if p.len() < RTMSG {
        return None;
    }
    let family = p[0];
    let unspecified = match i32::from(family) {
        libc::AF_INET => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        libc::AF_INET6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut r = Route {
        family,
        dest: unspecified,
        prefix: p[1],
        gateway: None,
        oif: None,
        metric: 0,
        table: u32::from(p[4]),
        kind: p[7],
    };
    for (ty, v) in attrs(&p[RTMSG..]) {
        match ty {
            // RTA_DST
            1 => r.dest = ip_from(family, v)?,
            // RTA_OIF
            4 => r.oif = u32_at(v, 0),
            // RTA_GATEWAY
            5 => r.gateway = ip_from(family, v),
            // RTA_PRIORITY
            6 => r.metric = u32_at(v, 0).unwrap_or(0),
            // RTA_TABLE
            15 => r.table = u32_at(v, 0).unwrap_or(r.table),
            _ => {}
        }
    }
    Some(r)
}

/// What one dump returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dump {
    /// Interfaces.
    pub links: Vec<Link>,
    /// Addresses, IPv4 and IPv6.
    pub addrs: Vec<Addr>,
    /// Routes, IPv4 and IPv6, all tables.
    pub routes: Vec<Route>,
}

impl Dump {
    /// Add every message of one received datagram; true once `NLMSG_DONE` came.
    pub fn absorb(&mut self, datagram: &[u8]) -> Result<bool, NetlinkParseError> {
        for m in messages(datagram) {
            let (ty, payload) = m?;
            match ty {
                msg::DONE => return Ok(true),
                msg::ERROR => {
                    let errno = u32_at(payload, 0).ok_or(NetlinkParseError::Truncated)? as i32;
                    if errno != 0 {
                        return Err(NetlinkParseError::Errno(-errno));
                    }
                }
                msg::NEWLINK => self.links.extend(parse_link(payload)),
                msg::NEWADDR => self.addrs.extend(parse_addr(payload)),
                msg::NEWROUTE => self.routes.extend(parse_route(payload)),
                _ => {}
            }
        }
        Ok(false)
    }
}

/// Why talking to the kernel over netlink failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket call failed.
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// The kernel's answer did not parse or reported an error.
    #[error(transparent)]
    Parse(#[from] NetlinkParseError),
}

/// A `NETLINK_ROUTE` socket.
#[derive(Debug)]
pub struct NetlinkSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl NetlinkSocket {
    /// Open a socket; with `groups` non-zero it receives those change events
    /// and does not block (for an event loop).
    pub fn open(groups: u32) -> io::Result<NetlinkSocket> {
        let mut ty = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
        if groups != 0 {
            ty |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, ty, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = groups;
        // SAFETY: `sa` is a valid sockaddr_nl and its size is passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // An event socket only drains (a datagram longer than the buffer is
        // truncated and still consumed whole); a dump needs room for the
        // largest batch the kernel sends, which it caps at 32 KiB.
        let size = if groups != 0 { 1024 } else { 32 * 1024 };
        Ok(NetlinkSocket {
            fd,
            seq: 0,
            buf: vec![0; size],
        })
    }

    /// The descriptor, for poll(2).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn recv(&mut self, flags: i32) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is a valid writable buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    flags,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Read and discard every pending event; true when there was at least
    /// one (or the kernel dropped some: `ENOBUFS` means "resync").
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        loop {
            match self.recv(libc::MSG_DONTWAIT) {
                Ok(0) => return any,
                Ok(_) => any = true,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => any = true,
                Err(_) => return any,
            }
        }
    }

    fn request(&mut self, ty: u16, family: u8, into: &mut Dump) -> Result<(), NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        // nlmsghdr + a family-only request body (rtgenmsg padded to the
        // size of the largest header we ask about, which the kernel accepts).
        let body = match ty {
            msg::GETLINK => IFINFOMSG,
            msg::GETADDR => IFADDRMSG,
            _ => RTMSG,
        };
        let len = NLMSG_HDR + body;
        let mut req = vec![0u8; len];
        req[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&ty.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        req[6..8].copy_from_slice(&flags.to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        req[NLMSG_HDR] = family;
        // SAFETY: sockaddr_nl is plain data; zero is the kernel's address.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `req` and `sa` are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error().into());
        }
        loop {
            let n = self.recv(0)?;
            if n == 0 {
                return Ok(());
            }
            let buf = std::mem::take(&mut self.buf);
            let done = into.absorb(&buf[..n]);
            self.buf = buf;
            if done? {
                return Ok(());
            }
        }
    }

    /// Dump all links, addresses and routes (a blocking socket: open with
    /// `groups` 0).
    pub fn dump(&mut self) -> Result<Dump, NetlinkError> {
        let mut d = Dump::default();
        self.request(msg::GETLINK, libc::AF_UNSPEC as u8, &mut d)?;
        self.request(msg::GETADDR, libc::AF_UNSPEC as u8, &mut d)?;
        self.request(msg::GETROUTE, libc::AF_INET as u8, &mut d)?;
        self.request(msg::GETROUTE, libc::AF_INET6 as u8, &mut d)?;
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nlmsg(ty: u16, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDR + payload.len();
        let mut m = Vec::new();
        m.extend((len as u32).to_ne_bytes());
        m.extend(ty.to_ne_bytes());
        m.extend([0u8; 10]);
        m.extend(payload);
        m.resize(align4(len), 0);
        m
    }

    fn attr(ty: u16, v: &[u8]) -> Vec<u8> {
        let len = 4 + v.len();
        let mut a = Vec::new();
        a.extend((len as u16).to_ne_bytes());
        a.extend(ty.to_ne_bytes());
        a.extend(v);
        a.resize(align4(len), 0);
        a
    }

    #[test]
    fn link_addr_route_and_done() {
        let mut link = vec![0u8; IFINFOMSG];
        link[2..4].copy_from_slice(&1u16.to_ne_bytes());
        link[4..8].copy_from_slice(&7u32.to_ne_bytes());
        link.extend(attr(3, b"eth0\0"));
        link.extend(attr(1, &[0, 0x50, 0x56, 1, 2, 3]));
        let mut addr = vec![libc::AF_INET as u8, 24, 0x80, 0, 7, 0, 0, 0];
        addr[4..8].copy_from_slice(&7u32.to_ne_bytes());
        addr.extend(attr(1, &[198, 51, 100, 7]));
        addr.extend(attr(8, &0x80u32.to_ne_bytes()));
        let mut route = vec![libc::AF_INET as u8, 0, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0];
        route.extend(attr(5, &[198, 51, 100, 1]));
        route.extend(attr(4, &7u32.to_ne_bytes()));
        route.extend(attr(6, &100u32.to_ne_bytes()));
        let mut dgram = nlmsg(msg::NEWLINK, &link);
        dgram.extend(nlmsg(msg::NEWADDR, &addr));
        dgram.extend(nlmsg(msg::NEWROUTE, &route));
        dgram.extend(nlmsg(msg::DONE, &[0; 4]));
        let mut d = Dump::default();
        assert_eq!(d.absorb(&dgram), Ok(true));
        assert_eq!(d.links[0].name, "eth0");
        assert_eq!(d.links[0].index, 7);
        assert_eq!(d.links[0].mac_string(), "00:50:56:01:02:03");
        assert_eq!(
            d.addrs[0],
            Addr {
                index: 7,
                addr: "198.51.100.7".parse().unwrap(),
                prefix: 24,
                flags: 0x80
            }
        );
        let r = &d.routes[0];
        assert_eq!(r.dest, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(r.gateway, Some("198.51.100.1".parse().unwrap()));
        assert_eq!((r.oif, r.metric, r.table, r.kind), (Some(7), 100, 254, 1));
    }

    #[test]
    fn truncated_and_errors() {
        let mut d = Dump::default();
        assert_eq!(d.absorb(&[1, 2, 3]), Err(NetlinkParseError::Truncated));
        let mut m = nlmsg(msg::NEWLINK, &[0; 4]);
        m[0] = 200;
        assert_eq!(d.absorb(&m), Err(NetlinkParseError::Truncated));
        let err = nlmsg(msg::ERROR, &(-13i32).to_ne_bytes());
        assert_eq!(d.absorb(&err), Err(NetlinkParseError::Errno(13)));
        // Short payloads and bad attributes are skipped, not fatal.
        assert_eq!(d.absorb(&nlmsg(msg::NEWADDR, &[2, 24])), Ok(false));
        assert!(d.addrs.is_empty());
    }

    /// The real kernel: our own namespace has at least a loopback link.
    #[test]
    fn dump_here() {
        let mut s = NetlinkSocket::open(0).unwrap();
        let d = s.dump().unwrap();
        assert!(d.links.iter().any(|l| l.kind == ARPHRD_LOOPBACK), "{d:?}");
    }
}
