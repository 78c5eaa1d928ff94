//! `vm-agent-deploy`: run one guest customization (deployPkg) for vm-agent.
//!
//! vm-agent starts it when the host sends `deployPkg.deploy`, with one end
//! of a socket pair as its standard input: the job (package, config) comes
//! in on it, the state reports go out on it and the host's replies come
//! back (`plugins::deploypkg::helper`). The package readers and the rest
//! of a deployment live here, so the resident daemon does not map them.
//! It is not meant to be run by hand.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use plugins::deploypkg::helper;

fn main() -> ExitCode {
    if std::env::args_os().len() > 1 {
        eprintln!(
            "usage: {} (started by vm-agent with its job on the standard input)",
            helper::PROGRAM
        );
        return ExitCode::from(helper::exit::USAGE as u8);
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets this process's own
    // attribute; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    // The channel is our standard input: a socket, read and written.
    let mut chan = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("{}: no channel on the standard input: {e}", helper::PROGRAM);
            return ExitCode::from(helper::exit::USAGE as u8);
        }
    };
    let job = match helper::read_job(&mut chan) {
        Ok(j) => j,
        Err(e) => {
            eprintln!(
                "{}: {e} (it is started by vm-agent, with its job on the standard input)",
                helper::PROGRAM
            );
            return ExitCode::from(helper::exit::USAGE as u8);
        }
    };
    agent::logger::init(&job.log_level);
    ExitCode::from(helper::run(&job, chan) as u8)
}
