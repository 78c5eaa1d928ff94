//! The command line shared by `vm-agent` and `vm-agent-session`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::daemon::VERSION_LINE;
use crate::transport::BackdoorSpec;

/// `--help` text.
pub const USAGE: &str =
    "usage: vm-agent [--session] [--config FILE] [--backdoor auto|port|unix:PATH]

The VMware guest tools daemon: answers the host's commands (TCLO), reports
hostname, OS, NICs and disks, runs power operations, syncs time.

  --session         run as the agent of the user's X11 desktop session
                    (started by its autostart): shares the clipboard with
                    the host; opens no TCLO channel and publishes nothing
  --config FILE     config file (default /etc/vm-agent/agent.toml; optional)
  --backdoor SPEC   auto (VM_BACKDOOR, else port I/O on VMware), port, unix:PATH
  --version         print the version

Signals: SIGHUP reloads the config, SIGTERM/SIGINT stop.
Logging: RUST_LOG (else agent.log_level in the config).";

/// Parsed arguments.
#[derive(Debug)]
pub struct Args {
    /// `--session`.
    pub session: bool,
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--backdoor SPEC`.
    pub backdoor: Option<BackdoorSpec>,
}

/// Parse the arguments (without the program name); `None` when `--help`
/// or `--version` was answered.
pub fn parse_args(mut args: impl Iterator<Item = OsString>) -> anyhow::Result<Option<Args>> {
    let mut out = Args {
        session: false,
        config: None,
        backdoor: None,
    };
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--session") => out.session = true,
            Some("--config") => {
                let v = args.next().context("--config needs a FILE")?;
                out.config = Some(PathBuf::from(v));
            }
            Some("--backdoor") => {
                let v = args
                    .next()
                    .context("--backdoor needs auto, port or unix:PATH")?;
                out.backdoor = Some(BackdoorSpec::parse(&v)?);
            }
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return Ok(None);
            }
            Some("-V" | "--version") => {
                println!("{VERSION_LINE}");
                return Ok(None);
            }
            _ => anyhow::bail!("unexpected argument {a:?}\n{USAGE}"),
        }
    }
    Ok(Some(out))
}
