//! `vm-agent-session`: the agent of the user's desktop session (X11
//! clipboard), started as `vm-agent --session` by the session's autostart.
//!
//! ```text
//! vm-agent-session [--config FILE] [--backdoor auto|port|unix:PATH]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use agent::cli::parse_args;
use agent::config::{AgentConfig, DEFAULT_PATH};

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
    session(cfg, exists.then_some(path), args.backdoor)
}

#[cfg(feature = "session")]
fn session(
    cfg: AgentConfig,
    path: Option<PathBuf>,
    backdoor: Option<agent::transport::BackdoorSpec>,
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
fn session(
    _: AgentConfig,
    _: Option<PathBuf>,
    _: Option<agent::transport::BackdoorSpec>,
) -> anyhow::Result<()> {
    anyhow::bail!("this vm-agent was built without session support (cargo feature `session`)")
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vm-agent --session: {e:#}");
            ExitCode::FAILURE
        }
    }
}
