//! `vm-agent`: the guest tools daemon.
//!
//! ```text
//! vm-agent [--config FILE] [--backdoor auto|port|unix:PATH]
//! vm-agent --session [--config FILE] [--backdoor auto|port|unix:PATH]
//! ```
//!
//! `--session` runs `vm-agent-session`, installed beside it: the desktop
//! session's agent (X11 clipboard) is its own binary so that the root
//! daemon, running in every guest, maps none of the X11 code.

use std::path::PathBuf;
use std::process::ExitCode;

use agent::cli::parse_args;
use agent::config::{AgentConfig, DEFAULT_PATH};
use agent::daemon::Daemon;

fn run() -> anyhow::Result<()> {
    let Some(args) = parse_args(std::env::args_os().skip(1))? else {
        return Ok(());
    };
    if args.session {
        return exec_session();
    }
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
    Daemon::new(cfg, exists.then_some(path), args.backdoor).run()?;
    Ok(())
}

/// Replace this process with `vm-agent-session` from the same directory,
/// with the same arguments less `--session`.
fn exec_session() -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe()?;
    let session = me.with_file_name("vm-agent-session");
    let args = std::env::args_os().skip(1).filter(|a| a != "--session");
    let err = std::process::Command::new(&session).args(args).exec();
    anyhow::bail!(
        "vm-agent --session runs {}, which could not start: {err} (it is part of the vm-agent package)",
        session.display()
    )
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
