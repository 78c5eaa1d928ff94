//! hvsim's TOML configuration (DESIGN.md section 3). Every key is optional;
//! the embedded default has one VM, `vm0`. Unknown keys are errors, so a typo
//! does not silently fall back to a default.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/hvsim";
/// Default control socket.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/hvsim/control.sock";
/// First IPMI port; VM number N gets this plus N.
pub const DEFAULT_IPMI_BASE_PORT: u16 = 6230;

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = r#"
[[vm]]
name = "vm0"
"#;

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config {path}: {msg}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where persistent state lives; `--state-dir` wins.
    pub state_dir: Option<PathBuf>,
    /// The control socket for `hvsim vm ...` and `hvsim exec`.
    pub control_socket: Option<PathBuf>,
    /// The VMs.
    #[serde(default)]
    pub vm: Vec<VmConfig>,
    /// CIM provider listeners.
    #[serde(default)]
    pub cim: CimConfig,
    /// WS-Management listener.
    #[serde(default)]
    pub wsman: WsmanConfig,
    /// Redfish listener.
    #[serde(default)]
    pub redfish: RedfishConfig,
    /// NBD listener.
    #[serde(default)]
    pub nbd: NbdConfig,
    /// Users shared by CIM, IPMI and Redfish.
    #[serde(default)]
    pub user: Vec<UserConfig>,
    /// Backdoor endpoint settings.
    #[serde(default)]
    pub backdoor: BackdoorConfig,
    /// The vSphere API (vim25 SOAP).
    #[serde(default)]
    pub vsphere: VsphereConfig,
    /// hvsim's own log.
    #[serde(default)]
    pub log: LogConfig,
    /// The directory the config file is in (relative paths resolve here).
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where the config came from, for messages.
    #[serde(skip)]
    pub origin: PathBuf,
}

/// One VM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// Unique name.
    pub name: String,
    /// BIOS UUID; default derived from the name.
    pub uuid: Option<String>,
    /// SMBIOS product name (DMI `product_name` of programs under `hvsim
    /// exec`); default "VMware Virtual Platform" (ESXi 8 EFI VMs say e.g.
    /// "VMware20,1").
    pub model: Option<String>,
    /// OVF environment file served as `guestinfo.ovfEnv`.
    pub ovf_env: Option<PathBuf>,
    /// The VM's backdoor socket; default `<state_dir>/vms/<name>/backdoor.sock`.
    pub backdoor_socket: Option<PathBuf>,
    /// Initial guestinfo variables (set when absent from the store).
    #[serde(default)]
    pub guestinfo: std::collections::BTreeMap<String, String>,
    /// Memory size in MiB reported by GETMEMSIZE.
    pub memory_mb: Option<u32>,
    /// Seconds added to the real clock in the host time this VM's guest
    /// reads (GETTIMEFULL): a host clock ahead of or behind the guest's,
    /// for time sync tests. The machine's clock is never touched.
    #[serde(default)]
    pub clock_offset_secs: i64,
    /// Allow copy/paste between host and guest (off by default, as on VMware).
    #[serde(default)]
    pub clipboard: bool,
    /// The VM's BMC.
    pub ipmi: Option<IpmiConfig>,
    /// Virtual hardware version (GETHWVERSION), e.g. 19 for vmx-19.
    pub hw_version: Option<u32>,
    /// Disk shrinking allowed (`disk.wiper.enable` answers 1). ESXi
    /// answers 0: shrinking is a Workstation/Fusion feature.
    #[serde(default)]
    pub disk_shrink: bool,
    /// The guest may connect and disconnect the VM's removable devices
    /// (TOGGLEDEVICE), like `isolation.device.connectable.disable = FALSE`.
    /// Off by default, as ESXi's hardened default.
    #[serde(default)]
    pub device_connectable: bool,
    /// Removable devices the guest sees (GETDEVICELISTELEMENT); default an
    /// `ethernet0` NIC (connected) and a `sata0:0` CD-ROM (not connected).
    pub devices: Option<Vec<DeviceConfig>>,
    /// What the guest SDK (`guestlib.info.get`, `guestlib.stat.get`) reports.
    #[serde(default)]
    pub resources: ResourcesConfig,
    /// Initial tools options (`synctime` ...), when not set in the state
    /// database; `hvsim vm set-option` changes them at run time.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// Namespaces of the namespace DB the guest may use (on ESXi they are
    /// created through the vSphere API before a guest can write to them).
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// One removable device of a VM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Name as the guest sees it (`ethernet0`, `sata0:0`, `floppy0`), at
    /// most 31 bytes.
    pub name: String,
    /// Connected at power on.
    #[serde(default)]
    pub connected: bool,
    /// MAC address of an `ethernetN` device (default derived from the
    /// VM's UUID, in VMware's 00:50:56 range); the guest SDK lists it.
    pub mac: Option<String>,
}

/// Resource settings the guest SDK reports (all optional; ESXi's defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesConfig {
    /// Answer the guest SDK at all (default true).
    pub guest_sdk: Option<bool>,
    /// Include host counters (`tools.guestlib.enableHostInfo`, default false).
    #[serde(default)]
    pub host_info: bool,
    /// CPU reservation in MHz (default 0).
    pub cpu_reservation_mhz: Option<u32>,
    /// CPU limit in MHz (default unlimited).
    pub cpu_limit_mhz: Option<u32>,
    /// CPU shares (default 1000, "normal" for one vCPU).
    pub cpu_shares: Option<u32>,
    /// Memory reservation in MB (default 0).
    pub mem_reservation_mb: Option<u32>,
    /// Memory limit in MB (default unlimited).
    pub mem_limit_mb: Option<u32>,
    /// Memory shares (default 10 per MB, "normal").
    pub mem_shares: Option<u32>,
    /// Memory the balloon driver holds, MB (default 0).
    pub balloon_mb: Option<u32>,
    /// Memory swapped by the host, MB (default 0).
    pub swapped_mb: Option<u32>,
    /// Resource pool path (default "/").
    pub resource_pool: Option<String>,
}

/// A VM's IPMI BMC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpmiConfig {
    /// UDP listen address.
    pub listen: Option<String>,
    /// Accept cipher suite 0 (no authentication, integrity or encryption).
    #[serde(default)]
    pub allow_cipher_suite_0: bool,
    /// Accept IPMI 1.5 sessions with authentication type none.
    #[serde(default)]
    pub allow_auth_none: bool,
    /// Most sessions at once (default 16).
    pub max_sessions: Option<usize>,
    /// Seconds an idle session lives (default 60).
    pub session_timeout: Option<u64>,
}

/// CIM listeners.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CimConfig {
    /// CIM-XML over HTTP.
    pub http: Option<String>,
    /// CIM-XML over HTTPS.
    pub https: Option<String>,
    /// `false` starts no CIM listener.
    pub enabled: Option<bool>,
    /// PEM certificate for HTTPS (with `key`); default: a self-signed one
    /// generated on first start under `<state_dir>/cim/`.
    pub certificate: Option<PathBuf>,
    /// PEM private key for `certificate`.
    pub key: Option<PathBuf>,
    /// Accept plain HTTP from loopback peers only, like sfcb's
    /// `httpLocalOnly` (default true).
    pub http_local_only: Option<bool>,
    /// Largest request body in bytes (default 1 MiB).
    pub max_request: Option<usize>,
    /// Authentication model (`password`: Basic against `[[user]]`).
    pub auth_model: Option<String>,
    /// Seconds an idle keep-alive connection stays open (default 60).
    pub keepalive_timeout: Option<u64>,
    /// Requests per keep-alive connection (default 0: unlimited).
    pub keepalive_max_requests: Option<u64>,
    /// Log level of CIM and WS-Management: debug, info (default), warning, error.
    pub log_level: Option<String>,
    /// TLS protocols of the CIM and WS-Management HTTPS listeners
    /// (default `tlsv1.2`; `tlsv1.2,tlsv1.3`).
    pub ssl_protocols: Option<String>,
}

/// WS-Management listener (DSP0226 over the CIM provider).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WsmanConfig {
    /// HTTPS listen address, served at `/wsman` ("" = off).
    pub listen: Option<String>,
    /// `false` starts no WS-Management listener.
    pub enabled: Option<bool>,
}

/// Redfish listener.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RedfishConfig {
    /// HTTPS listen address.
    pub listen: Option<String>,
    /// Serve Redfish at all (default true).
    pub enabled: Option<bool>,
    /// PEM certificate; default: generated in the state directory.
    pub certificate: Option<PathBuf>,
    /// PEM private key for `certificate`.
    pub key: Option<PathBuf>,
    /// Directory `file://` virtual media images must be under.
    pub media_dir: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for `https://` images.
    pub media_ca: Option<PathBuf>,
    /// Allow `http://` images (default false).
    pub allow_http: Option<bool>,
    /// Seconds without NBD traffic before a medium is ejected (default 1800).
    pub inactivity_timeout: Option<u64>,
    /// Seconds a Redfish session lives unused (default 1800).
    pub session_timeout: Option<u64>,
    /// Proxy-mode virtual media slots per VM (`Slot_0`..; default 2, at
    /// most 16, 0 for none).
    pub proxy_slots: Option<u8>,
}

/// The vSphere API listener.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VsphereConfig {
    /// HTTPS listen address (`/sdk`); `""` turns the API off.
    pub listen: Option<String>,
    /// PEM certificate; default: generated in the state directory.
    pub certificate: Option<PathBuf>,
    /// PEM private key for `certificate`.
    pub key: Option<PathBuf>,
    /// Seconds a session lives unused (default 1800).
    pub session_timeout: Option<u64>,
}

/// NBD listener.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NbdConfig {
    /// TCP listen address.
    pub listen: Option<String>,
}

/// A user of the host services.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login.
    pub name: String,
    /// Password.
    pub password: String,
    /// Administrator, Operator or ReadOnly.
    pub role: Option<String>,
}

/// hvsim's own log: stderr (the journal under systemd) unless `file` is
/// set; a file rotates by size.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Log file (relative to the config's directory); default stderr.
    pub file: Option<PathBuf>,
    /// Rotate the file when it would grow past this many bytes (default
    /// 16 MiB, at least 4096).
    pub max_size: Option<u64>,
    /// Rotated files kept: FILE.1 ... FILE.KEEP (default 4).
    pub keep: Option<u32>,
}

/// Backdoor endpoint limits (defaults are a real host's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackdoorConfig {
    /// Channels per VM.
    #[serde(default = "default_max_channels")]
    pub max_channels: usize,
    /// Largest guest-to-host message in bytes.
    #[serde(default = "default_max_in")]
    pub max_message: usize,
    /// Offer the high-bandwidth port.
    #[serde(default = "default_true")]
    pub high_bandwidth: bool,
    /// Guest variables a VM may hold.
    #[serde(default = "default_max_vars")]
    pub max_guest_vars: usize,
}

fn default_max_channels() -> usize {
    protocol::GUESTMSG_MAX_CHANNEL
}
fn default_max_in() -> usize {
    protocol::GUESTMSG_MAX_IN_SIZE
}
fn default_true() -> bool {
    true
}
fn default_max_vars() -> usize {
    4096
}

impl Default for BackdoorConfig {
    fn default() -> Self {
        BackdoorConfig {
            max_channels: default_max_channels(),
            max_message: default_max_in(),
            high_bandwidth: true,
            max_guest_vars: default_max_vars(),
        }
    }
}

impl Config {
    /// Parse `text` read from `origin`.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_path_buf(),
            source,
        })?;
        c.origin = origin.to_path_buf();
        c.base_dir = origin
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if c.vm.is_empty() {
            c.vm.push(VmConfig {
                name: "vm0".into(),
                uuid: None,
                model: None,
                ovf_env: None,
                backdoor_socket: None,
                guestinfo: Default::default(),
                memory_mb: None,
                clock_offset_secs: 0,
                clipboard: false,
                ipmi: None,
                hw_version: None,
                disk_shrink: false,
                device_connectable: false,
                devices: None,
                resources: ResourcesConfig::default(),
                options: Default::default(),
                namespaces: Vec::new(),
            });
        }
        c.validate()?;
        Ok(c)
    }

    /// Load a file, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::parse(DEFAULT_CONFIG, Path::new("<embedded default>")),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
                Config::parse(&text, &abs)
            }
        }
    }

    fn invalid(&self, msg: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.clone(),
            msg,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for vm in &self.vm {
            if vm.name.is_empty()
                || vm.name.len() > 64
                || !vm
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || vm.name.starts_with('.')
            {
                return Err(self.invalid(format!(
                    "vm name {:?} must be 1-64 characters of A-Z a-z 0-9 - _ . and not start with '.'",
                    vm.name
                )));
            }
            if !seen.insert(vm.name.as_str()) {
                return Err(self.invalid(format!("vm name {:?} appears twice", vm.name)));
            }
            if let Some(u) = &vm.uuid {
                if parse_uuid(u).is_none() {
                    return Err(self.invalid(format!(
                        "vm {}: uuid {:?} is not of the form 01234567-89ab-cdef-0123-456789abcdef",
                        vm.name, u
                    )));
                }
            }
            for d in vm.devices.iter().flatten() {
                if d.name.is_empty() || d.name.len() > 31 || d.name.contains(char::is_whitespace) {
                    return Err(self.invalid(format!(
                        "vm {}: device name {:?} must be 1-31 bytes without spaces",
                        vm.name, d.name
                    )));
                }
                if let Some(m) = &d.mac {
                    if parse_mac(m).is_none() {
                        return Err(self.invalid(format!(
                            "vm {}: device {}: mac {:?} is not of the form 00:50:56:01:02:03",
                            vm.name, d.name, m
                        )));
                    }
                }
            }
            if vm.devices.as_ref().is_some_and(|d| d.len() > 50) {
                return Err(self.invalid(format!(
                    "vm {}: at most 50 devices (the guest lists 50)",
                    vm.name
                )));
            }
            for ns in &vm.namespaces {
                if !crate::namespace::valid_name(ns) {
                    return Err(self.invalid(format!(
                        "vm {}: namespace {:?} must be 1-{} printable characters without spaces",
                        vm.name,
                        ns,
                        crate::namespace::MAX_NAME
                    )));
                }
            }
            for k in vm.options.keys() {
                if !crate::vmhost::valid_option_key(k) {
                    return Err(self.invalid(format!(
                        "vm {}: option {:?} must be 1-64 characters of A-Z a-z 0-9 . _ -",
                        vm.name, k
                    )));
                }
            }
            if let Some(m) = &vm.model {
                if m.is_empty()
                    || m.len() > 64
                    || !m.chars().all(|c| c.is_ascii_graphic() || c == ' ')
                {
                    return Err(self.invalid(format!(
                        "vm {}: model {:?} must be 1-64 printable ASCII characters",
                        vm.name, m
                    )));
                }
            }
            for k in vm.guestinfo.keys() {
                if !k.starts_with("guestinfo.") {
                    return Err(self.invalid(format!(
                        "vm {}: guestinfo key {:?} must start with \"guestinfo.\"",
                        vm.name, k
                    )));
                }
            }
        }
        if self.cim.certificate.is_some() != self.cim.key.is_some() {
            return Err(self.invalid("cim.certificate and cim.key go together".into()));
        }
        if let Err(e) = crate::wbem::Settings::from_config(self).validate() {
            return Err(self.invalid(format!("[cim]/[wsman]: {e}")));
        }
        let b = &self.backdoor;
        if b.max_channels == 0 || b.max_channels > 0xFFFF {
            return Err(self.invalid("backdoor.max_channels must be 1-65535".into()));
        }
        if b.max_message == 0 || b.max_message > 16 << 20 {
            return Err(self.invalid("backdoor.max_message must be 1 byte to 16 MiB".into()));
        }
        Ok(())
    }

    /// Resolve a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Parse a textual UUID into its 16 bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    for (i, c) in s.chars().enumerate() {
        let dash = matches!(i, 8 | 13 | 18 | 23);
        if dash != (c == '-') {
            return None;
        }
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// Parse a MAC address `aa:bb:cc:dd:ee:ff` (either case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Format 16 bytes as a textual UUID.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// A stable UUID derived from a VM name (FNV-1a based, version 5-like bits),
/// so the default never changes between runs.
pub fn uuid_from_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (half, chunk) in out.chunks_mut(8).enumerate() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (half as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for b in b"hvsim-vm:".iter().chain(name.as_bytes()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        chunk.copy_from_slice(&h.to_be_bytes());
    }
    out[6] = (out[6] & 0x0f) | 0x50;
    out[8] = (out[8] & 0x3f) | 0x80;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_has_vm0() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.vm.len(), 1);
        assert_eq!(c.vm[0].name, "vm0");
    }

    #[test]
    fn full_example_parses() {
        let text = r#"
state_dir = "/var/lib/hvsim"
control_socket = "/run/hvsim/control.sock"
[[vm]]
name = "vm0"
uuid = "564d1234-5678-9abc-def0-123456789abc"
ovf_env = "ovf-env.xml"
guestinfo = { "guestinfo.metadata" = "abc" }
ipmi = { listen = "127.0.0.1:6230" }
[cim]
http = "127.0.0.1:5988"
https = "127.0.0.1:5989"
[redfish]
listen = "127.0.0.1:8000"
[nbd]
listen = "127.0.0.1:10809"
[[user]]
name = "admin"
password = "password"
role = "Administrator"
"#;
        let c = Config::parse(text, Path::new("/etc/hvsim/hvsim.toml")).unwrap();
        assert_eq!(
            c.resolve(c.vm[0].ovf_env.as_deref().unwrap()),
            Path::new("/etc/hvsim/ovf-env.xml")
        );
        assert_eq!(
            format_uuid(&parse_uuid(c.vm[0].uuid.as_deref().unwrap()).unwrap()),
            "564d1234-5678-9abc-def0-123456789abc"
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let e = Config::parse("[[vm]]\nnmae = \"x\"\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("nmae"), "{e}");
        let e = Config::parse("[[vm]]\nname = \"a/b\"\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("must be 1-64"), "{e}");
        let e = Config::parse(
            "[[vm]]\nname = \"a\"\n[[vm]]\nname = \"a\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = Config::parse(
            "[[vm]]\nname = \"a\"\nuuid = \"nope\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("uuid"), "{e}");
    }

    #[test]
    fn host_settings_parse_and_bad_ones_are_errors() {
        let text = r#"
[[vm]]
name = "vm0"
hw_version = 19
options = { synctime = "0" }
devices = [{ name = "ethernet0", connected = true }, { name = "sata0:0" }]
device_connectable = false
disk_shrink = false
namespaces = ["com.vmware.vrops.sdmp"]
[vm.resources]
mem_reservation_mb = 0
mem_limit_mb = 4096
balloon_mb = 0
"#;
        let c = Config::parse(text, Path::new("hvsim.toml")).unwrap();
        let vm = &c.vm[0];
        assert_eq!(vm.hw_version, Some(19));
        assert_eq!(vm.devices.as_ref().map(Vec::len), Some(2));
        assert_eq!(vm.namespaces, ["com.vmware.vrops.sdmp"]);
        assert_eq!(vm.resources.mem_limit_mb, Some(4096));
        for bad in [
            "devices = [{ name = \"a name with spaces\" }]",
            "devices = [{ name = \"ethernet0\", mac = \"00:50:56\" }]",
            "namespaces = [\"\"]",
            "options = { \"bad key\" = \"1\" }",
        ] {
            let t = format!("[[vm]]\nname = \"a\"\n{bad}\n");
            assert!(Config::parse(&t, Path::new("c.toml")).is_err(), "{bad}");
        }
    }

    #[test]
    fn derived_uuid_is_stable_and_distinct() {
        assert_eq!(uuid_from_name("vm0"), uuid_from_name("vm0"));
        assert_ne!(uuid_from_name("vm0"), uuid_from_name("vm1"));
        let s = format_uuid(&uuid_from_name("vm0"));
        assert_eq!(parse_uuid(&s), Some(uuid_from_name("vm0")));
    }
}
