//! guestinfo: tell the host who this guest is: hostname, OS, uptime, NICs
//! with their addresses, routes and DNS (NIC info V3, XDR), file systems.
//!
//! Unlike vmtoolsd, which gathers everything every 30 s (open-vm-tools #577),
//! this plugin listens: rtnetlink link/address/route events and hostname
//! changes schedule a republish after a short debounce, and only what changed
//! is sent. A periodic pass (30 s by default) remains as a fallback and
//! carries the uptime. Memory statistics ([`crate::memstats`]) go on their
//! own interval (20 s, vmtoolsd's `stats-interval`), and at once on reset.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use protocol::guestinfo_key as key;
use protocol::nicinfo::{self, DnsConfig, GuestNicV3, IpEntry, NicInfoV3, TypedAddr};
use serde::Deserialize;

use crate::glob;
use crate::memstats::MemStats;
use crate::netlink::{self, ifa_flag, rtn, Dump, NetlinkSocket};
use crate::osinfo::{self, OsInfo, Resolv};
use crate::{Context, HostCallError, Plugin};

/// Where the kernel exposes (and signals changes of) the hostname.
const HOSTNAME_FILE: &str = "/proc/sys/kernel/hostname";

/// The `[guestinfo]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestInfoConfig {
    /// Report anything at all.
    pub enabled: bool,
    /// Periodic full pass, seconds (vmtoolsd: 30).
    pub poll_interval_secs: u64,
    /// Memory statistics every this many seconds; 0: never (vmtoolsd's
    /// `guestinfo.stats-interval`, 20).
    pub stats_interval_secs: u64,
    /// Quiet time after a network or hostname event before publishing, ms.
    pub debounce_ms: u64,
    /// Interfaces never reported (shell patterns).
    pub exclude_nics: Vec<String>,
    /// Interfaces reported first, in pattern order.
    pub primary_nics: Vec<String>,
    /// Interfaces reported last.
    pub low_priority_nics: Vec<String>,
    /// NICs reported at most (the host's limit is 16).
    pub max_nics: usize,
    /// Send `SetGuestDiskInfo`.
    pub report_disks: bool,
    /// Follow rtnetlink and hostname events (else only the periodic pass).
    pub events: bool,
    /// The os-release file.
    pub os_release: PathBuf,
    /// The resolver config.
    pub resolv_conf: PathBuf,
}

impl Default for GuestInfoConfig {
    fn default() -> Self {
        GuestInfoConfig {
            enabled: true,
            poll_interval_secs: 30,
            stats_interval_secs: 20,
            debounce_ms: 200,
            // open-vm-tools' default exclude-nics (container and bridge NICs).
            exclude_nics: ["docker*", "veth*", "virbr*", "antrea-*", "cali*"]
                .map(String::from)
                .to_vec(),
            primary_nics: Vec::new(),
            low_priority_nics: Vec::new(),
            max_nics: nicinfo::MAX_NICS,
            report_disks: true,
            events: true,
            os_release: "/etc/os-release".into(),
            resolv_conf: "/etc/resolv.conf".into(),
        }
    }
}

/// Map kernel address flags to nicinfo's origin (how the address came to be).
pub fn origin_of(addr: &IpAddr, flags: u32) -> u32 {
    match addr {
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => nicinfo::origin::LINKLAYER,
        _ if flags & ifa_flag::TEMPORARY != 0 => nicinfo::origin::RANDOM,
        _ if flags & ifa_flag::PERMANENT != 0 => nicinfo::origin::MANUAL,
        IpAddr::V4(_) => nicinfo::origin::DHCP,
        // A dynamic, non-temporary IPv6 address: SLAAC from the link.
        IpAddr::V6(_) => nicinfo::origin::LINKLAYER,
    }
}

/// Map kernel address flags to nicinfo's status.
pub fn status_of(flags: u32) -> u32 {
    if flags & ifa_flag::DADFAILED != 0 {
        nicinfo::status::DUPLICATE
    } else if flags & ifa_flag::TENTATIVE != 0 {
        nicinfo::status::TENTATIVE
    } else if flags & ifa_flag::OPTIMISTIC != 0 {
        nicinfo::status::OPTIMISTIC
    } else if flags & ifa_flag::DEPRECATED != 0 {
        nicinfo::status::DEPRECATED
    } else {
        nicinfo::status::PREFERRED
    }
}

/// Build NIC info V3 from a netlink dump, applying the exclude, primary and
/// low-priority patterns and the host's limits.
pub fn build_nicinfo(
    dump: &Dump,
    cfg: &GuestInfoConfig,
    resolv: &Resolv,
    hostname: &str,
) -> NicInfoV3 {
    let rank = |name: &str| -> (usize, usize) {
        if let Some(i) = cfg.primary_nics.iter().position(|p| glob::matches(p, name)) {
            (0, i)
        } else if glob::any(&cfg.low_priority_nics, name) {
            (2, 0)
        } else {
            (1, 0)
        }
    };
    let mut links: Vec<&netlink::Link> = dump
        .links
        .iter()
        .filter(|l| {
            l.kind != netlink::ARPHRD_LOOPBACK
                && l.mac.len() == 6
                && l.mac.iter().any(|&b| b != 0)
                && !glob::any(&cfg.exclude_nics, &l.name)
        })
        .collect();
    links.sort_by_key(|l| (rank(&l.name), l.index));
    links.truncate(cfg.max_nics.min(nicinfo::MAX_NICS));

    let mut total_ips = 0;
    let nics: Vec<GuestNicV3> = links
        .iter()
        .map(|l| {
            let ips = dump
                .addrs
                .iter()
                .filter(|a| a.index == l.index)
                .take_while(|_| {
                    total_ips += 1;
                    total_ips <= nicinfo::MAX_IPS
                })
                .map(|a| IpEntry {
                    addr: TypedAddr::from(a.addr),
                    prefix: u32::from(a.prefix),
                    origin: Some(origin_of(&a.addr, a.flags)),
                    status: Some(status_of(a.flags)),
                })
                .collect();
            GuestNicV3 {
                mac: l.mac_string(),
                ips,
                ..GuestNicV3::default()
            }
        })
        .collect();

    let routes = dump
        .routes
        .iter()
        .filter(|r| {
            r.table == netlink::RT_TABLE_MAIN
                && matches!(
                    r.kind,
                    rtn::UNICAST | rtn::BLACKHOLE | rtn::UNREACHABLE | rtn::PROHIBIT
                )
                && !r.dest.is_multicast()
        })
        .filter_map(|r| {
            let nic = links.iter().position(|l| Some(l.index) == r.oif)?;
            Some(nicinfo::Route {
                dest: TypedAddr::from(r.dest),
                prefix: u32::from(r.prefix),
                next_hop: r.gateway.map(TypedAddr::from),
                if_index: nic as u32,
                kind: match r.kind {
                    rtn::UNICAST if r.gateway.is_some() => nicinfo::route_type::REMOTE,
                    rtn::UNICAST => nicinfo::route_type::LOCAL,
                    _ => nicinfo::route_type::REJECT,
                },
                metric: r.metric,
            })
        })
        .take(nicinfo::MAX_ROUTES)
        .collect();

    let (host, domain) = match hostname.split_once('.') {
        Some((h, d)) => (h.to_owned(), Some(d.to_owned())),
        None => (hostname.to_owned(), resolv.domain.clone()),
    };
    let dns = DnsConfig {
        host_name: (!host.is_empty()).then_some(host),
        domain_name: domain.or_else(|| resolv.search.first().cloned()),
        servers: resolv
            .servers
            .iter()
            .take(nicinfo::MAX_DNS_SERVERS)
            .map(|&ip| TypedAddr::from(ip))
            .collect(),
        search: resolv
            .search
            .iter()
            .take(nicinfo::MAX_DNS_SUFFIXES)
            .cloned()
            .collect(),
    };
    NicInfoV3 {
        nics,
        routes,
        dns: Some(dns),
        ..NicInfoV3::default()
    }
}

/// The address the host shows as "the" guest IP (`guestinfo.ip`): the first
/// IPv4 address of the first NIC that has one, else the first global IPv6.
pub fn primary_ip(info: &NicInfoV3) -> Option<IpAddr> {
    let all = || {
        info.nics
            .iter()
            .flat_map(|n| &n.ips)
            .filter_map(|e| e.addr.to_ip())
    };
    all()
        .find(|ip| matches!(ip, IpAddr::V4(a) if !a.is_link_local() && !a.is_loopback()))
        .or_else(|| {
            all().find(|ip| matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xe000 == 0x2000))
        })
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One file system's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    /// Mount point.
    pub path: String,
    /// File system type.
    pub fs: String,
    /// Bytes free to unprivileged users.
    pub free: u64,
    /// Total bytes.
    pub size: u64,
    /// Device name without /dev/.
    pub device: String,
}

/// The `SetGuestDiskInfo` message, in open-vm-tools' version 1 JSON layout
/// (names base64-encoded, numbers as strings).
pub fn disk_info_message(disks: &[DiskUsage]) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = disks
        .iter()
        .map(|d| {
            serde_json::json!({
                "name": b64(d.path.as_bytes()),
                "free": d.free.to_string(),
                "size": d.size.to_string(),
                "fs": d.fs,
                "devices": [d.device],
            })
        })
        .collect();
    let body = serde_json::json!({"version": "1", "disks": entries});
    let mut m = b"SetGuestDiskInfo ".to_vec();
    m.extend(body.to_string().into_bytes());
    m
}

fn statvfs(path: &str) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(path).ok()?;
    // SAFETY: statvfs is plain data; all-zero is valid.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

fn read_text(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn setguestinfo(k: u32, value: &[u8]) -> Vec<u8> {
    // "SetGuestInfo" + delimiter + key + delimiter + value (open-vm-tools
    // SetGuestInfo(): the historical two spaces).
    let mut m = format!("SetGuestInfo  {k} ").into_bytes();
    m.extend_from_slice(value);
    m
}

/// The guestinfo plugin.
#[derive(Debug)]
pub struct GuestInfo {
    cfg: GuestInfoConfig,
    events: Option<NetlinkSocket>,
    hostname_file: Option<File>,
    /// Last message sent per item; cleared on reset.
    sent: BTreeMap<&'static str, Vec<u8>>,
    /// A debounced republish is due then.
    due: Option<Instant>,
    /// The first event of the current burst (bounds the debounce).
    burst_start: Option<Instant>,
    next_periodic: Instant,
    /// Memory statistics are due then (None: off).
    next_stats: Option<Instant>,
    memstats: MemStats,
    broadcast_ip: bool,
    sent_ip: Option<String>,
}

impl GuestInfo {
    /// A plugin with this config; event sources open lazily on reset.
    pub fn new(cfg: GuestInfoConfig) -> GuestInfo {
        let mut g = GuestInfo {
            cfg: GuestInfoConfig::default(),
            events: None,
            hostname_file: None,
            sent: BTreeMap::new(),
            due: None,
            burst_start: None,
            next_periodic: Instant::now(),
            next_stats: None,
            memstats: MemStats::new(),
            broadcast_ip: false,
            sent_ip: None,
        };
        g.set_config(cfg);
        // The first report goes with the first full publish (on_reset).
        g.next_stats = None;
        g
    }

    /// Apply a new config (SIGHUP); the next pass publishes what differs.
    pub fn set_config(&mut self, cfg: GuestInfoConfig) {
        if cfg.events && cfg.enabled {
            if self.events.is_none() {
                self.events = NetlinkSocket::open(netlink::group::GUESTINFO)
                    .map_err(|e| log::warn!("guestinfo: no rtnetlink events ({e}); polling only"))
                    .ok();
            }
            if self.hostname_file.is_none() {
                self.hostname_file = File::open(HOSTNAME_FILE).ok();
            }
        } else {
            self.events = None;
            self.hostname_file = None;
        }
        self.next_periodic = Instant::now() + Duration::from_secs(cfg.poll_interval_secs.max(1));
        if !cfg.enabled || cfg.stats_interval_secs == 0 {
            self.next_stats = None;
        } else if self.next_stats.is_none()
            || cfg.stats_interval_secs != self.cfg.stats_interval_secs
        {
            self.next_stats = Some(Instant::now());
        }
        if self.cfg != cfg {
            self.due = Some(Instant::now());
        }
        self.cfg = cfg;
    }

    fn hostname(&mut self) -> String {
        if let Some(f) = &mut self.hostname_file {
            let mut s = String::new();
            use std::io::Seek;
            if f.seek(std::io::SeekFrom::Start(0)).is_ok() && f.read_to_string(&mut s).is_ok() {
                return s.trim().to_owned();
            }
        }
        read_text(HOSTNAME_FILE.as_ref()).trim().to_owned()
    }

    /// Everything to publish now: (item, RPCI message), and the primary IP.
    fn gather(&mut self, with_uptime: bool) -> (Vec<(&'static str, Vec<u8>)>, Option<IpAddr>) {
        let mut out = Vec::new();
        let hostname = self.hostname();
        out.push(("hostname", setguestinfo(key::DNS_NAME, hostname.as_bytes())));

        let kernel = read_text("/proc/sys/kernel/osrelease".as_ref());
        let mut release = read_text(&self.cfg.os_release);
        if release.is_empty() {
            release = read_text("/usr/lib/os-release".as_ref());
        }
        let os =
            OsInfo::from_os_release(&release, kernel.trim(), cfg!(target_pointer_width = "64"));
        out.push((
            "os_full",
            setguestinfo(key::OS_NAME_FULL, os.full_name().as_bytes()),
        ));
        out.push((
            "os_name",
            setguestinfo(key::OS_NAME, os.short_name().as_bytes()),
        ));
        out.push((
            "os_detailed",
            setguestinfo(key::OS_DETAILED, &os.detailed_record()),
        ));

        let mut primary = None;
        match NetlinkSocket::open(0).and_then(|mut s| s.dump().map_err(std::io::Error::other)) {
            Ok(dump) => {
                let resolv = osinfo::parse_resolv(&read_text(&self.cfg.resolv_conf));
                let info = build_nicinfo(&dump, &self.cfg, &resolv, &hostname);
                primary = primary_ip(&info);
                out.push((
                    "nics",
                    setguestinfo(key::IPADDRESS_V3, &nicinfo::encode(&info)),
                ));
            }
            Err(e) => log::warn!("guestinfo: cannot read the network configuration: {e}"),
        }

        if self.cfg.report_disks {
            let mounts = osinfo::parse_mounts(&read_text("/proc/self/mounts".as_ref()));
            let disks: Vec<DiskUsage> = mounts
                .iter()
                .filter_map(|m| {
                    let (free, size) = statvfs(&m.path)?;
                    Some(DiskUsage {
                        path: m.path.clone(),
                        fs: m.fs.clone(),
                        free,
                        size,
                        device: m.device.trim_start_matches("/dev/").to_owned(),
                    })
                })
                .collect();
            out.push(("disks", disk_info_message(&disks)));
        }

        if with_uptime {
            if let Some(up) = osinfo::parse_uptime(&read_text("/proc/uptime".as_ref())) {
                out.push((
                    "uptime",
                    setguestinfo(key::UPTIME, up.to_string().as_bytes()),
                ));
            }
        }
        (out, primary)
    }

    /// Send what changed since the last publish (everything after a reset).
    pub fn publish(&mut self, ctx: &mut dyn Context, with_uptime: bool) {
        if !self.cfg.enabled {
            return;
        }
        let started = Instant::now();
        let (items, primary) = self.gather(with_uptime);
        let mut sent = 0;
        for (item, msg) in items {
            if item != "uptime" && self.sent.get(item) == Some(&msg) {
                continue;
            }
            match ctx.rpci(&msg) {
                Ok(_) => {}
                Err(HostCallError::Refused(why)) => {
                    // Recorded all the same: resending would be refused again.
                    log::warn!("guestinfo: the host refused the {item} update: {why}");
                }
                Err(e @ HostCallError::Channel(_)) => {
                    log::debug!("guestinfo: {item} not sent: {e}");
                    return;
                }
            }
            sent += 1;
            self.sent.insert(item, msg);
        }
        if self.broadcast_ip {
            self.send_ip(ctx, primary);
        }
        log::debug!(
            "guestinfo: published {sent} changed item(s) in {:?}",
            started.elapsed()
        );
    }

    /// Send a memory statistics report (every one is sent: the values move).
    pub fn send_stats(&mut self, ctx: &mut dyn Context, now: Instant) {
        if !self.cfg.enabled || self.cfg.stats_interval_secs == 0 {
            self.next_stats = None;
            return;
        }
        self.next_stats = Some(now + Duration::from_secs(self.cfg.stats_interval_secs));
        let msg = self.memstats.sample(now);
        match ctx.rpci(&msg) {
            Ok(_) => {}
            Err(HostCallError::Refused(why)) => {
                log::warn!("guestinfo: the host refused the memory statistics: {why}")
            }
            Err(e) => log::debug!("guestinfo: memory statistics not sent: {e}"),
        }
    }

    fn send_ip(&mut self, ctx: &mut dyn Context, primary: Option<IpAddr>) {
        // GUESTINFO_IP_UNKNOWN when no address qualifies.
        let ip = primary.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        if self.sent_ip.as_deref() == Some(ip.as_str()) {
            return;
        }
        let msg = format!("info-set guestinfo.ip {ip}");
        match ctx.rpci(msg.as_bytes()) {
            Ok(_) => self.sent_ip = Some(ip),
            Err(e) => log::warn!("guestinfo: cannot set guestinfo.ip: {e}"),
        }
    }

    fn schedule(&mut self, now: Instant) {
        let debounce = Duration::from_millis(self.cfg.debounce_ms);
        let start = *self.burst_start.get_or_insert(now);
        // Trailing debounce, but never later than 4 quiet periods after the
        // burst began: a flapping link must not postpone reports forever.
        let due = (now + debounce).min(start + debounce * 4);
        self.due = Some(due);
    }
}

impl Plugin for GuestInfo {
    fn name(&self) -> &'static str {
        "guestinfo"
    }

    fn set_option(&mut self, ctx: &mut dyn Context, key: &str, value: &str) -> Option<bool> {
        match key {
            "broadcastIP" => {
                self.broadcast_ip = value == "1";
                if self.broadcast_ip {
                    self.sent_ip = None;
                    let (_, primary) = self.gather(false);
                    self.send_ip(ctx, primary);
                }
                Some(true)
            }
            _ => None,
        }
    }

    fn on_reset(&mut self, ctx: &mut dyn Context) {
        self.sent.clear();
        self.sent_ip = None;
        self.publish(ctx, true);
        self.next_periodic =
            Instant::now() + Duration::from_secs(self.cfg.poll_interval_secs.max(1));
        self.send_stats(ctx, Instant::now());
    }

    fn deadline(&self) -> Option<Instant> {
        if !self.cfg.enabled {
            return None;
        }
        let next = self
            .due
            .map_or(self.next_periodic, |d| d.min(self.next_periodic));
        Some(self.next_stats.map_or(next, |s| s.min(next)))
    }

    fn on_deadline(&mut self, ctx: &mut dyn Context, now: Instant) {
        if self.next_stats.is_some_and(|s| now >= s) {
            self.send_stats(ctx, now);
        }
        if now >= self.next_periodic {
            self.due = None;
            self.burst_start = None;
            self.publish(ctx, true);
            self.next_periodic = now + Duration::from_secs(self.cfg.poll_interval_secs.max(1));
        } else if self.due.is_some_and(|d| now >= d) {
            self.due = None;
            self.burst_start = None;
            self.publish(ctx, false);
        }
    }

    fn fds(&self) -> Vec<(RawFd, i16)> {
        let mut v = Vec::new();
        if let Some(s) = &self.events {
            v.push((s.raw_fd(), libc::POLLIN));
        }
        if let Some(f) = &self.hostname_file {
            // sysctl files signal a change with POLLERR|POLLPRI; POLLIN is
            // always set on them, so it must not be asked for.
            v.push((f.as_raw_fd(), libc::POLLPRI));
        }
        v
    }

    fn on_ready(&mut self, _ctx: &mut dyn Context, fd: RawFd, now: Instant) {
        if let Some(s) = &mut self.events {
            if s.raw_fd() == fd {
                if s.drain() {
                    log::trace!("guestinfo: network change");
                    self.schedule(now);
                }
                return;
            }
        }
        if self.hostname_file.as_ref().map(AsRawFd::as_raw_fd) == Some(fd) {
            log::trace!("guestinfo: hostname change");
            self.schedule(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Addr, Link, Route};

    fn link(index: u32, name: &str, last: u8) -> Link {
        Link {
            index,
            name: name.into(),
            mac: vec![0x00, 0x50, 0x56, 0, 0, last],
            flags: 0,
            kind: 1,
        }
    }

    fn addr(index: u32, a: &str, prefix: u8, flags: u32) -> Addr {
        Addr {
            index,
            addr: a.parse().unwrap(),
            prefix,
            flags,
        }
    }

    #[test]
    fn nics_ordered_filtered_and_limited() {
        let mut dump = Dump::default();
        dump.links.push(Link {
            index: 1,
            name: "lo".into(),
            mac: vec![0; 6],
            flags: 0,
            kind: netlink::ARPHRD_LOOPBACK,
        });
        dump.links.push(link(2, "ens192", 2));
        dump.links.push(link(3, "docker0", 3));
        dump.links.push(link(4, "veth12ab", 4));
        dump.links.push(link(5, "eth9", 5));
        dump.links.push(link(6, "backup0", 6));
        dump.addrs
            .push(addr(2, "198.51.100.7", 24, ifa_flag::PERMANENT));
        dump.addrs
            .push(addr(2, "2001:db8::7", 64, ifa_flag::PERMANENT));
        dump.addrs
            .push(addr(2, "fe80::250:56ff:fe00:2", 64, ifa_flag::PERMANENT));
        dump.addrs
            .push(addr(3, "172.17.0.1", 16, ifa_flag::PERMANENT));
        dump.addrs.push(addr(5, "203.0.113.5", 24, 0));
        dump.routes.push(Route {
            family: libc::AF_INET as u8,
            dest: "0.0.0.0".parse().unwrap(),
            prefix: 0,
            gateway: Some("198.51.100.1".parse().unwrap()),
            oif: Some(2),
            metric: 100,
            table: 254,
            kind: rtn::UNICAST,
        });
        dump.routes.push(Route {
            family: libc::AF_INET as u8,
            dest: "172.17.0.0".parse().unwrap(),
            prefix: 16,
            gateway: None,
            oif: Some(3),
            metric: 0,
            table: 254,
            kind: rtn::UNICAST,
        });
        let cfg = GuestInfoConfig {
            primary_nics: vec!["eth*".into()],
            low_priority_nics: vec!["ens*".into()],
            ..GuestInfoConfig::default()
        };
        let resolv = osinfo::parse_resolv("nameserver 198.51.100.53\nsearch example.org\n");
        let info = build_nicinfo(&dump, &cfg, &resolv, "guest1");
        let macs: Vec<&str> = info.nics.iter().map(|n| n.mac.as_str()).collect();
        assert_eq!(
            macs,
            [
                "00:50:56:00:00:05",
                "00:50:56:00:00:06",
                "00:50:56:00:00:02"
            ]
        );
        let ens = &info.nics[2];
        assert_eq!(ens.ips.len(), 3);
        assert_eq!(ens.ips[0].addr.to_ip().unwrap().to_string(), "198.51.100.7");
        assert_eq!(ens.ips[0].prefix, 24);
        assert_eq!(ens.ips[0].origin, Some(nicinfo::origin::MANUAL));
        assert_eq!(ens.ips[2].origin, Some(nicinfo::origin::LINKLAYER));
        assert_eq!(info.nics[0].ips[0].origin, Some(nicinfo::origin::DHCP));
        // Only the route through a reported NIC, pointing at its position.
        assert_eq!(info.routes.len(), 1);
        assert_eq!(info.routes[0].if_index, 2);
        assert_eq!(info.routes[0].kind, nicinfo::route_type::REMOTE);
        let dns = info.dns.as_ref().unwrap();
        assert_eq!(dns.host_name.as_deref(), Some("guest1"));
        assert_eq!(dns.domain_name.as_deref(), Some("example.org"));
        assert_eq!(dns.servers.len(), 1);
        // Round trip through the codec the host uses.
        assert_eq!(nicinfo::decode(&nicinfo::encode(&info)).unwrap(), info);
        assert_eq!(primary_ip(&info).unwrap().to_string(), "203.0.113.5");

        // The 16-NIC limit.
        let mut many = Dump::default();
        for i in 0..20 {
            many.links
                .push(link(10 + i, &format!("eth{i}"), i as u8 + 1));
        }
        let info = build_nicinfo(&many, &GuestInfoConfig::default(), &Resolv::default(), "h");
        assert_eq!(info.nics.len(), 16);
    }

    #[test]
    fn disk_json_like_open_vm_tools() {
        let m = disk_info_message(&[DiskUsage {
            path: "/".into(),
            fs: "ext4".into(),
            free: 10,
            size: 20,
            device: "sda1".into(),
        }]);
        let text = String::from_utf8(m).unwrap();
        let json = text.strip_prefix("SetGuestDiskInfo ").unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["version"], "1");
        assert_eq!(v["disks"][0]["name"], "Lw==");
        assert_eq!(v["disks"][0]["free"], "10");
        assert_eq!(b64(b"/boot"), "L2Jvb3Q=");
        assert_eq!(b64(b"ab"), "YWI=");
    }

    /// Records RPCI messages; refuses none.
    #[derive(Debug, Default)]
    struct Recorder(Vec<Vec<u8>>);

    impl Context for Recorder {
        fn rpci(&mut self, msg: &[u8]) -> Result<Vec<u8>, HostCallError> {
            self.0.push(msg.to_vec());
            Ok(Vec::new())
        }
        fn backdoor(&mut self, _: protocol::Regs) -> Result<protocol::Regs, HostCallError> {
            Err(HostCallError::Channel("none".into()))
        }
    }

    #[test]
    fn sends_only_what_changed() {
        let mut g = GuestInfo::new(GuestInfoConfig {
            events: false,
            report_disks: false,
            ..GuestInfoConfig::default()
        });
        let mut ctx = Recorder::default();
        g.on_reset(&mut ctx);
        let first = ctx.0.len();
        assert!(first >= 5, "{first}");
        assert!(ctx.0.iter().any(|m| m.starts_with(b"SetGuestInfo  1 ")));
        assert!(ctx.0.iter().any(|m| m.starts_with(b"SetGuestInfo  10 ")));
        assert!(ctx.0.iter().any(|m| m.starts_with(b"SetGuestInfo  8 ")));
        ctx.0.clear();
        g.publish(&mut ctx, false);
        assert!(ctx.0.is_empty(), "{:?}", ctx.0);
        g.set_option(&mut ctx, "broadcastIP", "1");
        assert_eq!(ctx.0.len(), 1);
        assert!(ctx.0[0].starts_with(b"info-set guestinfo.ip "));
    }
}
