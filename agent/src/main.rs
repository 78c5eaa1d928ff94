//! `vm-agent`: the guest tools daemon.
//!
//! ```text
//! vm-agent [--config FILE] [--backdoor auto|port|unix:PATH]
//! vm-agent --session [--config FILE] [--backdoor auto|port|unix:PATH]
//! ```

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use agent::config::{AgentConfig, DEFAULT_PATH};
use agent::daemon::{Daemon, VERSION_LINE};
use agent::transport::BackdoorSpec;
use anyhow::Context as _;

const USAGE: &str = "usage: vm-agent [--session] [--config FILE] [--backdoor auto|port|unix:PATH]

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

#[derive(Debug)]
struct Args {
    session: bool,
    config: Option<PathBuf>,
    backdoor: Option<BackdoorSpec>,
}

fn parse_args(mut args: impl Iterator<Item = OsString>) -> anyhow::Result<Option<Args>> {
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

fn run() -> anyhow::Result<()> {
    let Some(args) = parse_args(std::env::args_os().skip(1))? else {
        return Ok(());
    };
    let (path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_PATH), false),
    };
    let cfg = AgentConfig::load(&path, required)?;
    agent::logger::init(&cfg.agent.log_level);
    let exists = path.exists();
    if !exists {
        log::info!("no config file at {}; using defaults", path.display());
    }
    if args.session {
        return session(cfg, exists.then_some(path), args.backdoor);
    }
    Daemon::new(cfg, exists.then_some(path), args.backdoor).run()?;
    Ok(())
}

#[cfg(feature = "session")]
fn session(
    cfg: AgentConfig,
    path: Option<PathBuf>,
    backdoor: Option<BackdoorSpec>,
) -> anyhow::Result<()> {
    use agent::session::{nothing_to_do, Session};
    let spec = Session::spec(&cfg, backdoor.as_ref());
    if let Some(why) = nothing_to_do(&spec) {
        log::info!("{why}; the session agent has nothing to do");
        return Ok(());
    }
    // clipboard-master picks its backend from XDG_SESSION_TYPE, which a
    // plain X session (startx, Xvfb) may not set. Still one thread here.
    if std::env::var_os("XDG_SESSION_TYPE").is_none() && std::env::var_os("DISPLAY").is_some() {
        std::env::set_var("XDG_SESSION_TYPE", "x11");
    }
    Session::new(cfg, path, backdoor)?.run()?;
    Ok(())
}

#[cfg(not(feature = "session"))]
fn session(_: AgentConfig, _: Option<PathBuf>, _: Option<BackdoorSpec>) -> anyhow::Result<()> {
    anyhow::bail!("this vm-agent was built without session support (cargo feature `session`)")
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vm-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
