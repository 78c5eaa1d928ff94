//! What guestinfo reads from files: the OS (`/etc/os-release`), uptime
//! (`/proc/uptime`), DNS (`/etc/resolv.conf`) and mounted file systems.
//!
//! The parsers take text so they are testable; the callers read the files.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// The OS as `/etc/os-release` and uname describe it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsInfo {
    /// `ID` ("debian").
    pub id: String,
    /// `VERSION_ID` ("12").
    pub version_id: String,
    /// `PRETTY_NAME` ("Debian GNU/Linux 12 (bookworm)").
    pub pretty_name: String,
    /// `NAME` ("Debian GNU/Linux").
    pub name: String,
    /// Kernel release ("6.1.0-18-amd64").
    pub kernel: String,
    /// True on a 64-bit kernel.
    pub bits64: bool,
}

/// Parse os-release `KEY=value` lines (values optionally quoted).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(v);
        m.insert(k.trim().to_owned(), v.replace("\\\"", "\""));
    }
    m
}

impl OsInfo {
    /// From os-release text and the kernel release.
    pub fn from_os_release(text: &str, kernel: &str, bits64: bool) -> OsInfo {
        let m = parse_os_release(text);
        let get = |k: &str| m.get(k).cloned().unwrap_or_default();
        OsInfo {
            id: get("ID").to_lowercase(),
            version_id: get("VERSION_ID"),
            pretty_name: m.get("PRETTY_NAME").cloned().unwrap_or_else(|| {
                format!("{} {}", get("NAME"), get("VERSION_ID"))
                    .trim()
                    .to_owned()
            }),
            name: get("NAME"),
            kernel: kernel.to_owned(),
            bits64,
        }
    }

    fn major(&self) -> &str {
        self.version_id.split('.').next().unwrap_or("")
    }

    /// The short guest OS name the host keys on, as open-vm-tools derives it
    /// (lib/misc/hostinfoPosix.c): "debian12-64", "ubuntu-64", "rhel9-64",
    /// else "other<kernel major>xlinux-64".
    pub fn short_name(&self) -> String {
        let major = self.major();
        let base = match self.id.as_str() {
            "debian" if !major.is_empty() => format!("debian{major}"),
            "ubuntu" => "ubuntu".to_owned(),
            "rhel" if !major.is_empty() => format!("rhel{major}"),
            "centos" if !major.is_empty() => format!("centos{major}"),
            "ol" | "oracle" if !major.is_empty() => format!("oracleLinux{major}"),
            "rocky" => "rockylinux".to_owned(),
            "almalinux" => "almalinux".to_owned(),
            "fedora" => "fedora".to_owned(),
            "sles" | "sled" if !major.is_empty() => format!("sles{major}"),
            "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "opensuse".to_owned(),
            "photon" => "vmware-photon".to_owned(),
            "amzn" if !major.is_empty() => format!("amazonlinux{major}"),
            "alpine" => "other5xlinux".to_owned(),
            _ => {
                let k = self
                    .kernel
                    .split('.')
                    .next()
                    .and_then(|m| m.parse::<u32>().ok())
                    .unwrap_or(0);
                match k {
                    0..=2 => "otherlinux".to_owned(),
                    3 => "other3xlinux".to_owned(),
                    4 => "other4xlinux".to_owned(),
                    5 => "other5xlinux".to_owned(),
                    _ => "other6xlinux".to_owned(),
                }
            }
        };
        if self.bits64 {
            format!("{base}-64")
        } else {
            base
        }
    }

    /// The full name: `PRETTY_NAME`, or name and version.
    pub fn full_name(&self) -> String {
        self.pretty_name.clone()
    }

    /// The detailed OS record of `SetGuestInfo  11` as open-vm-tools sends it:
    /// its `HostinfoDetailedDataHeader` in memory layout (u32 version 1,
    /// little endian; `char shortName[129]`; `char fullName[513]`; padding
    /// to 648 bytes), then [`OsInfo::detailed`] and a NUL.
    pub fn detailed_record(&self) -> Vec<u8> {
        let mut out = vec![0u8; 648];
        out[..4].copy_from_slice(&1u32.to_le_bytes());
        let put = |out: &mut [u8], at: usize, cap: usize, s: &str| {
            let b = s.as_bytes();
            let n = b.len().min(cap - 1);
            out[at..at + n].copy_from_slice(&b[..n]);
        };
        put(&mut out, 4, 129, &self.short_name());
        put(&mut out, 133, 513, &self.full_name());
        out.extend_from_slice(self.detailed().as_bytes());
        out.push(0);
        out
    }

    /// The `key='value'` details string of the detailed OS record.
    pub fn detailed(&self) -> String {
        let q = |s: &str| s.replace('\'', "");
        format!(
            "prettyName='{}' familyName='Linux' distroName='{}' distroVersion='{}' \
             kernelVersion='{}' bitness='{}'",
            q(&self.pretty_name),
            q(&self.name),
            q(&self.version_id),
            q(&self.kernel),
            if self.bits64 { 64 } else { 32 }
        )
    }
}

/// Uptime in hundredths of a second from `/proc/uptime`.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some((secs * 100.0) as u64)
}

/// DNS settings from `/etc/resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolv {
    /// `nameserver` lines, in order.
    pub servers: Vec<IpAddr>,
    /// `search` domains (or the `domain`).
    pub search: Vec<String>,
    /// `domain`.
    pub domain: Option<String>,
}

/// Parse resolv.conf; the last `search`/`domain` line wins, as in glibc.
pub fn parse_resolv(text: &str) -> Resolv {
    let mut r = Resolv::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // A zone index ("fe80::1%eth0") is not part of the address.
                if let Some(ip) = words
                    .next()
                    .and_then(|w| w.split('%').next())
                    .and_then(|w| w.parse().ok())
                {
                    r.servers.push(ip);
                }
            }
            Some("search") => r.search = words.map(str::to_owned).collect(),
            Some("domain") => {
                r.domain = words.next().map(str::to_owned);
                r.search = r.domain.iter().cloned().collect();
            }
            _ => {}
        }
    }
    r
}

/// A mounted file system worth reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device ("/dev/sda1").
    pub device: String,
    /// Mount point.
    pub path: String,
    /// File system type.
    pub fs: String,
}

/// Block-device file systems from `/proc/self/mounts` (no pseudo file
/// systems, no duplicates of one mount point).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(dev), Some(path), Some(fs)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if !dev.starts_with('/') || matches!(fs, "squashfs" | "iso9660" | "overlay") {
            continue;
        }
        // /proc/mounts escapes spaces and tabs as octal.
        let path = path
            .replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\134", "\\");
        if out.iter().any(|m| m.path == path) {
            continue;
        }
        out.push(Mount {
            device: dev.to_owned(),
            path,
            fs: fs.to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
"#;

    #[test]
    fn os_names() {
        let os = OsInfo::from_os_release(DEBIAN, "6.1.0-18-amd64", true);
        assert_eq!(os.short_name(), "debian12-64");
        assert_eq!(os.full_name(), "Debian GNU/Linux 12 (bookworm)");
        assert!(os.detailed().contains("distroVersion='12'"));
        let ubuntu = OsInfo::from_os_release("ID=ubuntu\nVERSION_ID=\"24.04\"\n", "6.8.0", true);
        assert_eq!(ubuntu.short_name(), "ubuntu-64");
        assert_eq!(ubuntu.full_name(), "24.04");
        let rhel = OsInfo::from_os_release("ID=\"rhel\"\nVERSION_ID=\"9.3\"\n", "5.14", true);
        assert_eq!(rhel.short_name(), "rhel9-64");
        let other = OsInfo::from_os_release("ID=gentoo\n", "6.18.44", false);
        assert_eq!(other.short_name(), "other6xlinux");
    }

    #[test]
    fn uptime() {
        assert_eq!(parse_uptime("12345.67 890.12\n"), Some(1_234_567));
        assert_eq!(parse_uptime("x"), None);
        assert_eq!(parse_uptime("-1 0"), None);
    }

    #[test]
    fn resolv() {
        let r = parse_resolv(
            "# comment\nnameserver 198.51.100.53\nnameserver 2001:db8::53\n\
             nameserver fe80::1%eth0\nsearch example.org corp.example.org\nnameserver bogus\n",
        );
        assert_eq!(
            r.servers,
            vec![
                "198.51.100.53".parse::<IpAddr>().unwrap(),
                "2001:db8::53".parse().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert_eq!(r.search, vec!["example.org", "corp.example.org"]);
    }

    #[test]
    fn mounts() {
        let m = parse_mounts(
            "proc /proc proc rw 0 0\n/dev/sda1 / ext4 rw 0 0\n/dev/sda2 /my\\040data xfs rw 0 0\n\
             /dev/sda1 / ext4 rw 0 0\n/dev/loop0 /snap/x squashfs ro 0 0\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].path, "/my data");
        assert_eq!(m[1].fs, "xfs");
    }
}
