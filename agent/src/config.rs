//! The `vm-agent` config file (TOML, `/etc/vm-agent/agent.toml`).
//!
//! Every key is optional; unknown keys are errors, so a typo never falls back
//! to a default silently. `packaging/agent.toml` lists every key with its
//! default.

use std::path::{Path, PathBuf};

use plugins::appinfo::AppInfoConfig;
use plugins::capabilities::TOOLS_VERSION_UNMANAGED;
use plugins::clipboard::ClipboardConfig;
use plugins::deploypkg::DeployPkgConfig;
use plugins::guestinfo::GuestInfoConfig;
use plugins::guestops::GuestOpsConfig;
use plugins::powerops::PowerOpsConfig;
use plugins::timesync::TimeSyncConfig;
use plugins::vmbackup::VmBackupConfig;
use serde::Deserialize;

use crate::transport::BackdoorSpec;

/// Where the config lives unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/vm-agent/agent.toml";

/// The `[agent]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct General {
    /// `auto`, `port` or `unix:PATH` (`--backdoor` wins).
    pub backdoor: String,
    /// Log filter when `RUST_LOG` is unset (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
    /// Longest pause between two TCLO polls when idle, ms (vmtoolsd: 100).
    pub poll_max_ms: u64,
    /// Pause between attempts to reach the host, ms.
    pub reconnect_ms: u64,
    /// Take host commands over vsock (pushed) when the host offers it,
    /// before falling back to polling over the backdoor (port I/O only).
    pub vsock: bool,
    /// Tools version reported in `tools.set.versiontype` (default: "unmanaged").
    pub tools_version: u32,
}

impl Default for General {
    fn default() -> Self {
        General {
            backdoor: "auto".into(),
            log_level: "info".into(),
            poll_max_ms: 100,
            reconnect_ms: 200,
            vsock: true,
            tools_version: TOOLS_VERSION_UNMANAGED,
        }
    }
}

/// The whole config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// `[agent]`.
    pub agent: General,
    /// `[guestinfo]`.
    pub guestinfo: GuestInfoConfig,
    /// `[powerops]`.
    pub powerops: PowerOpsConfig,
    /// `[timesync]`.
    pub timesync: TimeSyncConfig,
    /// `[appinfo]`.
    pub appinfo: AppInfoConfig,
    /// `[guestops]`.
    pub guestops: GuestOpsConfig,
    /// `[clipboard]` (read by `vm-agent --session` only).
    pub clipboard: ClipboardConfig,
    /// `[vmbackup]`.
    pub vmbackup: VmBackupConfig,
    /// `[customization]`: guest customization (deployPkg).
    pub customization: DeployPkgConfig,
}

/// Why the config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid config file {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation, with the line.
        message: String,
    },
    /// `[guestops]` names an unknown operation.
    #[error("invalid config file {}", .path.display())]
    GuestOps {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: plugins::guestops::GuestOpsConfigError,
    },
    /// `agent.backdoor` does not parse.
    #[error("invalid config file {}: agent.backdoor", .path.display())]
    Backdoor {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::transport::SpecError,
    },
}

impl AgentConfig {
    /// Parse config text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        let cfg: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        cfg.guestops
            .validate()
            .map_err(|source| ConfigError::GuestOps {
                path: path.to_owned(),
                source,
            })?;
        cfg.backdoor_spec()
            .map_err(|source| ConfigError::Backdoor {
                path: path.to_owned(),
                source,
            })?;
        Ok(cfg)
    }

    /// Read `path`; when `required` is false a missing file means defaults.
    pub fn load(path: &Path, required: bool) -> Result<AgentConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => AgentConfig::parse(&text, path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(AgentConfig::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The transport the config names.
    pub fn backdoor_spec(&self) -> Result<BackdoorSpec, crate::transport::SpecError> {
        self.agent.backdoor.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let p = Path::new("agent.toml");
        assert_eq!(AgentConfig::parse("", p).unwrap(), AgentConfig::default());
        let cfg = AgentConfig::parse(
            "[agent]\nbackdoor = \"unix:/s\"\n[guestinfo]\nexclude_nics = [\"eth9\"]\n\
             [powerops]\nhalt_command = \"true\"\n[timesync]\nenabled = false\n",
            p,
        )
        .unwrap();
        assert_eq!(
            cfg.backdoor_spec().unwrap(),
            BackdoorSpec::Unix("/s".into())
        );
        assert_eq!(cfg.guestinfo.exclude_nics, ["eth9"]);
        assert_eq!(cfg.guestinfo.max_nics, 16);
        assert_eq!(cfg.powerops.halt_command, "true");
        assert!(!cfg.timesync.enabled);
    }

    #[test]
    fn errors_say_where() {
        let p = Path::new("/etc/vm-agent/agent.toml");
        let e = AgentConfig::parse("[guestinfo]\nexclude_nic = []\n", p).unwrap_err();
        let t = e.to_string();
        assert!(
            t.starts_with("invalid config file /etc/vm-agent/agent.toml: "),
            "{t}"
        );
        assert!(t.contains("exclude_nic"), "{t}");
        let e = AgentConfig::parse("[guestops]\ndisabled = [\"StartProgram\"]\n", p).unwrap_err();
        assert!(matches!(e, ConfigError::GuestOps { .. }), "{e}");
        let e = AgentConfig::parse("[agent]\nbackdoor = \"tcp:1\"\n", p).unwrap_err();
        assert!(matches!(e, ConfigError::Backdoor { .. }), "{e}");
        let missing = Path::new("/nonexistent/agent.toml");
        assert_eq!(
            AgentConfig::load(missing, false).unwrap(),
            AgentConfig::default()
        );
        assert!(AgentConfig::load(missing, true).is_err());
    }

    /// The shipped sample parses and states the defaults.
    #[test]
    fn sample_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agent.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| r.contains(" = ") || r.starts_with('['))
                    .unwrap_or(l)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            AgentConfig::parse(&uncommented, &path).unwrap(),
            AgentConfig::default()
        );
    }
}
