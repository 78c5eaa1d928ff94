//! Pure functions from a [`CustSpec`] to the contents of the files the
//! guest's network stack, host name, hosts file and time zone are read
//! from. Nothing here touches a file system: [`super::apply`] writes.
//!
//! Every value comes from [`CustSpec::parse`], which rejected control
//! characters and anything that is not an address, name or number, so the
//! values are written as they are.

use std::fmt::Write as _;
use std::net::IpAddr;

use protocol::custcfg::{CustSpec, NicSpec};

/// Who reads the network configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetStack {
    /// netplan (`/etc/netplan/*.yaml`, rendered for networkd or NetworkManager).
    Netplan,
    /// NetworkManager keyfiles (`/etc/NetworkManager/system-connections`).
    NetworkManager,
    /// systemd-networkd (`/etc/systemd/network/*.network`).
    Networkd,
    /// Debian's ifupdown (`/etc/network/interfaces`).
    Ifupdown,
}

impl NetStack {
    /// The config name (`network_stack` key).
    pub fn name(self) -> &'static str {
        match self {
            NetStack::Netplan => "netplan",
            NetStack::NetworkManager => "networkmanager",
            NetStack::Networkd => "networkd",
            NetStack::Ifupdown => "ifupdown",
        }
    }

    /// From the config name.
    pub fn from_name(s: &str) -> Option<NetStack> {
        [
            NetStack::Netplan,
            NetStack::NetworkManager,
            NetStack::Networkd,
            NetStack::Ifupdown,
        ]
        .into_iter()
        .find(|n| n.name() == s)
    }
}

/// One file to write, relative to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOut {
    /// Path relative to the root, no leading `/`.
    pub path: String,
    /// What to write.
    pub content: FileContent,
    /// Permission bits.
    pub mode: u32,
}

/// What a [`FileOut`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    /// A regular file with these bytes.
    Text(String),
    /// A symbolic link to this target.
    Symlink(String),
}

fn text(path: &str, content: String, mode: u32) -> FileOut {
    FileOut {
        path: path.to_string(),
        content: FileContent::Text(content),
        mode,
    }
}

const BANNER: &str = "Written by vm-agent guest customization (cust.cfg).";

/// Why the network settings cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// ifupdown names interfaces; no interface has this NIC's MAC.
    #[error("no interface has MAC {mac} ({nic}); ifupdown needs the interface name")]
    NoInterface {
        /// The NIC section.
        nic: String,
        /// Its MAC.
        mac: String,
    },
}

fn id(nic: &NicSpec) -> String {
    nic.name.to_ascii_lowercase()
}

fn addresses(nic: &NicSpec) -> Vec<String> {
    let mut v = Vec::new();
    if !nic.dhcp {
        if let Some((a, p)) = nic.ipv4 {
            v.push(format!("{a}/{p}"));
        }
    }
    v.extend(nic.ipv6.iter().map(|(a, p)| format!("{a}/{p}")));
    v
}

fn gateway4(nic: &NicSpec) -> Option<String> {
    (!nic.dhcp).then(|| nic.gateways4.first().map(ToString::to_string))?
}

fn dns(spec: &CustSpec) -> Vec<String> {
    spec.dns_servers.iter().map(IpAddr::to_string).collect()
}

/// The network files for `stack`. `ifname` maps a MAC to the interface
/// name (needed by ifupdown only).
pub fn network(
    stack: NetStack,
    spec: &CustSpec,
    ifname: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<FileOut>, RenderError> {
    Ok(match stack {
        NetStack::Netplan => vec![netplan(spec)],
        NetStack::Networkd => spec.nics.iter().map(|n| networkd(spec, n)).collect(),
        NetStack::NetworkManager => spec.nics.iter().map(|n| keyfile(spec, n)).collect(),
        NetStack::Ifupdown => ifupdown(spec, ifname)?,
    })
}

fn yaml_list(o: &mut String, indent: &str, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(o, "{indent}{key}:");
    for i in items {
        let _ = writeln!(o, "{indent}  - \"{i}\"");
    }
}

/// `/etc/netplan/99-vm-agent.yaml`: one ethernet per NIC, matched by MAC.
pub fn netplan(spec: &CustSpec) -> FileOut {
    let mut o = format!("# {BANNER}\nnetwork:\n  version: 2\n  ethernets:\n");
    for n in &spec.nics {
        let _ = writeln!(
            o,
            "    {}:\n      match:\n        macaddress: \"{}\"\n      dhcp4: {}\n      dhcp6: false",
            id(n),
            n.mac,
            n.dhcp
        );
        if n.dhcp && !spec.dns_from_dhcp && !spec.dns_servers.is_empty() {
            o.push_str("      dhcp4-overrides:\n        use-dns: false\n");
        }
        yaml_list(&mut o, "      ", "addresses", &addresses(n));
        let mut routes = Vec::new();
        if let Some(g) = gateway4(n) {
            routes.push(("0.0.0.0/0", g));
        }
        if let Some(g) = n.gateways6.first() {
            routes.push(("::/0", g.to_string()));
        }
        if !routes.is_empty() {
            o.push_str("      routes:\n");
            for (to, via) in routes {
                let _ = writeln!(o, "        - to: \"{to}\"\n          via: \"{via}\"");
            }
        }
        if !spec.dns_servers.is_empty() || !spec.dns_suffixes.is_empty() {
            o.push_str("      nameservers:\n");
            yaml_list(&mut o, "        ", "addresses", &dns(spec));
            yaml_list(&mut o, "        ", "search", &spec.dns_suffixes);
        }
    }
    text("etc/netplan/99-vm-agent.yaml", o, 0o600)
}

/// `/etc/systemd/network/10-vm-agent-NICn.network`.
pub fn networkd(spec: &CustSpec, n: &NicSpec) -> FileOut {
    let mut o = format!("# {BANNER}\n[Match]\nMACAddress={}\n\n[Network]\n", n.mac);
    let _ = writeln!(o, "DHCP={}", if n.dhcp { "ipv4" } else { "no" });
    for a in addresses(n) {
        let _ = writeln!(o, "Address={a}");
    }
    if let Some(g) = gateway4(n) {
        let _ = writeln!(o, "Gateway={g}");
    }
    if let Some(g) = n.gateways6.first() {
        let _ = writeln!(o, "Gateway={g}");
    }
    for d in dns(spec) {
        let _ = writeln!(o, "DNS={d}");
    }
    if !spec.dns_suffixes.is_empty() {
        let _ = writeln!(o, "Domains={}", spec.dns_suffixes.join(" "));
    }
    if n.dhcp && !spec.dns_from_dhcp && !spec.dns_servers.is_empty() {
        o.push_str("\n[DHCPv4]\nUseDNS=no\n");
    }
    text(
        &format!("etc/systemd/network/10-vm-agent-{}.network", id(n)),
        o,
        0o644,
    )
}

/// A stable UUID for a connection: FNV-1a of the MAC, as a version-4 shape.
fn stable_uuid(seed: &str) -> String {
    let h = |basis: u64| {
        seed.bytes().fold(basis, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&h(0xcbf2_9ce4_8422_2325).to_be_bytes());
    b[8..].copy_from_slice(&h(0x8422_2325_cbf2_9ce4).to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x: String = b.iter().map(|v| format!("{v:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// `/etc/NetworkManager/system-connections/vm-agent-NICn.nmconnection`.
pub fn keyfile(spec: &CustSpec, n: &NicSpec) -> FileOut {
    let name = format!("vm-agent-{}", id(n));
    let mut o = format!(
        "# {BANNER}\n[connection]\nid={name}\nuuid={}\ntype=ethernet\nautoconnect=true\nautoconnect-priority=100\n\n[ethernet]\nmac-address={}\n\n[ipv4]\n",
        stable_uuid(&n.mac),
        n.mac.to_ascii_uppercase()
    );
    let v4: Vec<String> = spec
        .dns_servers
        .iter()
        .filter(|a| a.is_ipv4())
        .map(ToString::to_string)
        .collect();
    let v6: Vec<String> = spec
        .dns_servers
        .iter()
        .filter(|a| a.is_ipv6())
        .map(ToString::to_string)
        .collect();
    match (n.dhcp, n.ipv4) {
        (false, Some((a, p))) => {
            let _ = write!(o, "method=manual\naddress1={a}/{p}");
            if let Some(g) = gateway4(n) {
                let _ = write!(o, ",{g}");
            }
            o.push('\n');
        }
        (false, None) => o.push_str("method=disabled\n"),
        (true, _) => {
            o.push_str("method=auto\n");
            if !spec.dns_from_dhcp && !spec.dns_servers.is_empty() {
                o.push_str("ignore-auto-dns=true\n");
            }
        }
    }
    let list = |v: &[String]| format!("{};", v.join(";"));
    if !v4.is_empty() {
        let _ = writeln!(o, "dns={}", list(&v4));
    }
    if !spec.dns_suffixes.is_empty() {
        let _ = writeln!(o, "dns-search={}", list(&spec.dns_suffixes));
    }
    o.push_str("\n[ipv6]\n");
    if n.ipv6.is_empty() {
        o.push_str("method=ignore\n");
    } else {
        o.push_str("method=manual\n");
        for (i, (a, p)) in n.ipv6.iter().enumerate() {
            let _ = write!(o, "address{}={a}/{p}", i + 1);
            if i == 0 {
                if let Some(g) = n.gateways6.first() {
                    let _ = write!(o, ",{g}");
                }
            }
            o.push('\n');
        }
        if !v6.is_empty() {
            let _ = writeln!(o, "dns={}", list(&v6));
        }
    }
    text(
        &format!("etc/NetworkManager/system-connections/{name}.nmconnection"),
        o,
        0o600,
    )
}

/// `/etc/network/interfaces` (replaced whole, as vCenter's engine does) and
/// `/etc/resolv.conf`.
pub fn ifupdown(
    spec: &CustSpec,
    ifname: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<FileOut>, RenderError> {
    let mut o = format!("# {BANNER}\nauto lo\niface lo inet loopback\n");
    for n in &spec.nics {
        let dev = ifname(&n.mac).ok_or_else(|| RenderError::NoInterface {
            nic: n.name.clone(),
            mac: n.mac.clone(),
        })?;
        let _ = writeln!(o, "\n# {} {}\nauto {dev}", n.name, n.mac);
        match (n.dhcp, n.ipv4) {
            (true, _) => {
                let _ = writeln!(o, "iface {dev} inet dhcp");
            }
            (false, Some((a, p))) => {
                let _ = writeln!(o, "iface {dev} inet static\n    address {a}/{p}");
                if let Some(g) = gateway4(n) {
                    let _ = writeln!(o, "    gateway {g}");
                }
            }
            (false, None) => {
                let _ = writeln!(o, "iface {dev} inet manual");
            }
        }
        if !spec.dns_servers.is_empty() {
            let _ = writeln!(o, "    dns-nameservers {}", dns(spec).join(" "));
        }
        if !spec.dns_suffixes.is_empty() {
            let _ = writeln!(o, "    dns-search {}", spec.dns_suffixes.join(" "));
        }
        for (i, (a, p)) in n.ipv6.iter().enumerate() {
            let _ = writeln!(o, "iface {dev} inet6 static\n    address {a}/{p}");
            if i == 0 {
                if let Some(g) = n.gateways6.first() {
                    let _ = writeln!(o, "    gateway {g}");
                }
            }
        }
    }
    let mut files = vec![text("etc/network/interfaces", o, 0o644)];
    if !spec.dns_servers.is_empty() || !spec.dns_suffixes.is_empty() {
        files.push(resolv_conf(spec));
    }
    Ok(files)
}

/// `/etc/resolv.conf` with the specification's servers and search list.
pub fn resolv_conf(spec: &CustSpec) -> FileOut {
    let mut o = format!("# {BANNER}\n");
    if !spec.dns_suffixes.is_empty() {
        let _ = writeln!(o, "search {}", spec.dns_suffixes.join(" "));
    }
    for d in dns(spec) {
        let _ = writeln!(o, "nameserver {d}");
    }
    text("etc/resolv.conf", o, 0o644)
}

/// `/etc/hostname`.
pub fn hostname(host: &str) -> FileOut {
    text("etc/hostname", format!("{host}\n"), 0o644)
}

/// `/etc/hosts` with the host's names on 127.0.1.1 (Debian's convention):
/// other lines are kept, an older 127.0.1.1 line is replaced.
pub fn hosts(old: &str, host: &str, fqdn: &str) -> FileOut {
    let names = if fqdn == host {
        host.to_string()
    } else {
        format!("{fqdn} {host}")
    };
    let ours = format!("127.0.1.1\t{names}");
    let mut out = Vec::new();
    let mut placed = false;
    for line in old.lines() {
        let first = line.split_whitespace().next();
        if first == Some("127.0.1.1") {
            if !placed {
                out.push(ours.clone());
                placed = true;
            }
            continue;
        }
        out.push(line.to_string());
        if !placed && first == Some("127.0.0.1") {
            out.push(ours.clone());
            placed = true;
        }
    }
    if !placed {
        if !old
            .lines()
            .any(|l| l.split_whitespace().next() == Some("127.0.0.1"))
        {
            out.insert(0, "127.0.0.1\tlocalhost".to_string());
            out.insert(1, ours);
        } else {
            out.push(ours);
        }
    }
    let mut t = out.join("\n");
    t.push('\n');
    text("etc/hosts", t, 0o644)
}

/// `/etc/localtime` (a link into the zone database) and `/etc/timezone`.
pub fn time_zone(tz: &str) -> Vec<FileOut> {
    vec![
        FileOut {
            path: "etc/localtime".into(),
            content: FileContent::Symlink(format!("/usr/share/zoneinfo/{tz}")),
            mode: 0o777,
        },
        text("etc/timezone", format!("{tz}\n"), 0o644),
    ]
}

/// `/etc/adjtime` saying whether the hardware clock keeps UTC; the drift
/// lines of an existing file are kept.
pub fn adjtime(old: Option<&str>, utc: bool) -> FileOut {
    let mode = if utc { "UTC" } else { "LOCAL" };
    let mut lines: Vec<String> = old
        .unwrap_or("")
        .lines()
        .take(2)
        .map(str::to_string)
        .collect();
    if lines.len() < 2 {
        lines = vec!["0.0 0 0.0".into(), "0".into()];
    }
    lines.push(mode.into());
    text("etc/adjtime", format!("{}\n", lines.join("\n")), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CustSpec {
        CustSpec::parse(
            b"[NETWORK]\nHOSTNAME = web1\nDOMAINNAME = example.test\n[NIC-CONFIG]\nNICS = NIC1,NIC2\n\
[NIC1]\nMACADDR = 00:50:56:AA:00:01\nBOOTPROTO = static\nIPADDR = 192.0.2.10\nNETMASK = 255.255.255.0\nGATEWAY = 192.0.2.1\n\
IPv6ADDR|1 = 2001:db8::10\nIPv6NETMASK|1 = 64\nIPv6GATEWAY|1 = 2001:db8::1\n\
[NIC2]\nMACADDR = 00:50:56:aa:00:02\nBOOTPROTO = dhcp\n\
[DNS]\nNAMESERVER|1 = 192.0.2.53\nNAMESERVER|2 = 2001:db8::53\nSUFFIX|1 = example.test\n",
        )
        .unwrap()
    }

    fn body(f: &FileOut) -> &str {
        match &f.content {
            FileContent::Text(t) => t,
            FileContent::Symlink(t) => t,
        }
    }

    #[test]
    fn networkd_files_per_nic() {
        let f = network(NetStack::Networkd, &spec(), &|_| None).unwrap();
        assert_eq!(f[0].path, "etc/systemd/network/10-vm-agent-nic1.network");
        let t = body(&f[0]);
        for want in [
            "MACAddress=00:50:56:aa:00:01",
            "DHCP=no",
            "Address=192.0.2.10/24",
            "Address=2001:db8::10/64",
            "Gateway=192.0.2.1",
            "Gateway=2001:db8::1",
            "DNS=192.0.2.53",
            "DNS=2001:db8::53",
            "Domains=example.test",
        ] {
            assert!(t.contains(want), "{want} in {t}");
        }
        let t = body(&f[1]);
        assert!(t.contains("DHCP=ipv4") && t.contains("UseDNS=no"), "{t}");
    }

    #[test]
    fn keyfile_and_ifupdown() {
        let f = network(NetStack::NetworkManager, &spec(), &|_| None).unwrap();
        let t = body(&f[0]);
        assert!(t.contains("mac-address=00:50:56:AA:00:01"), "{t}");
        assert!(t.contains("address1=192.0.2.10/24,192.0.2.1"), "{t}");
        assert!(t.contains("dns=192.0.2.53;"), "{t}");
        assert!(t.contains("address1=2001:db8::10/64,2001:db8::1"), "{t}");
        assert_eq!(f[0].mode, 0o600);
        let e = network(NetStack::Ifupdown, &spec(), &|_| None).unwrap_err();
        assert!(e.to_string().contains("00:50:56:aa:00:01"), "{e}");
        let f = network(NetStack::Ifupdown, &spec(), &|m| {
            Some(if m.ends_with('1') { "ens192" } else { "ens224" }.into())
        })
        .unwrap();
        let t = body(&f[0]);
        assert!(
            t.contains(
                "iface ens192 inet static\n    address 192.0.2.10/24\n    gateway 192.0.2.1"
            ),
            "{t}"
        );
        assert!(t.contains("iface ens224 inet dhcp"), "{t}");
        assert!(
            body(&f[1]).contains("nameserver 192.0.2.53\n"),
            "{}",
            body(&f[1])
        );
    }

    #[test]
    fn hosts_keeps_other_lines() {
        let old = "127.0.0.1\tlocalhost\n127.0.1.1\told.example old\n::1 localhost ip6-localhost\n";
        let t = hosts(old, "web1", "web1.example.test");
        assert_eq!(
            body(&t),
            "127.0.0.1\tlocalhost\n127.0.1.1\tweb1.example.test web1\n::1 localhost ip6-localhost\n"
        );
        let t = hosts("", "web1", "web1");
        assert_eq!(body(&t), "127.0.0.1\tlocalhost\n127.0.1.1\tweb1\n");
        assert_eq!(body(&adjtime(None, true)), "0.0 0 0.0\n0\nUTC\n");
        assert_eq!(
            body(&adjtime(Some("1.5 100 2.0\n100\nUTC\n"), false)),
            "1.5 100 2.0\n100\nLOCAL\n"
        );
    }
}
