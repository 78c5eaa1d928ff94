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
    fn derived_uuid_is_stable_and_distinct() {
        assert_eq!(uuid_from_name("vm0"), uuid_from_name("vm0"));
        assert_ne!(uuid_from_name("vm0"), uuid_from_name("vm1"));
        let s = format_uuid(&uuid_from_name("vm0"));
        assert_eq!(parse_uuid(&s), Some(uuid_from_name("vm0")));
    }
}
