//! The channel between the agent and `vm-agent-deploy`, the helper
//! process that runs one deployment ([`super::deploy::run`]).
//!
//! The package readers (CAB/MSZIP, ZIP, gzipped tar), the renderers of the
//! network files and the command runner are needed only while a package is
//! being deployed, so they live in the helper, not in the resident daemon:
//! the daemon starts the helper on `deployPkg.deploy` and relays its state
//! reports to the host, as it relayed the worker thread's before.
//!
//! The helper's standard input is one end of a Unix socket pair; both sides
//! write frames: a 4-byte little-endian length, then that many bytes.
//!
//! * agent → helper, once: the [`Job`] as JSON (package path, the
//!   `[customization]` config, the log level);
//! * helper → agent: the arguments of one `deployPkg.update.state` report
//!   (the agent adds the command name, so the helper can send nothing else);
//! * agent → helper, after each report: [`REPLY_OK`] and the host's reply
//!   body, or [`REPLY_FAILED`] and why the call failed.
//!
//! The helper's exit status says how the deployment ended ([`exit`]); the
//! reports carry the codes the host sees, as before.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use protocol::deploypkg::StateReport;
use serde::{Deserialize, Serialize};

use super::deploy::{self, Outcome, Reporter};
use super::DeployPkgConfig;

/// The helper's program name (installed next to `vm-agent`).
pub const PROGRAM: &str = "vm-agent-deploy";
/// Largest frame either side accepts (reports and replies are short).
pub const MAX_FRAME: usize = 256 << 10;
/// First byte of a reply: the host answered; the body follows.
pub const REPLY_OK: u8 = b'1';
/// First byte of a reply: the call failed; the reason follows.
pub const REPLY_FAILED: u8 = b'0';

/// The helper's exit statuses.
pub mod exit {
    /// Deployed (or handed to cloud-init, or applied before).
    pub const DONE: i32 = 0;
    /// The deployment failed; the failure report was sent.
    pub const FAILED: i32 = 1;
    /// Customization is disabled in agent.toml (code 7 was sent).
    pub const DISABLED: i32 = 2;
    /// The helper was started wrongly (no job on its standard input).
    pub const USAGE: i32 = 64;
}

/// What the agent hands the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The package file.
    pub package: PathBuf,
    /// The `[customization]` config when `deployPkg.deploy` arrived.
    pub config: DeployPkgConfig,
    /// The agent's log filter (its `log_level`, e.g. `info`).
    pub log_level: String,
}

/// Write one frame.
pub fn write_frame(w: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    if body.len() > MAX_FRAME {
        return Err(std::io::Error::other("frame too long"));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf)
}

/// Read one whole frame (blocking); `Ok(None)` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {n} bytes")));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    Ok(Some(body))
}

/// Take the complete frames off the front of `buf` (bytes read so far
/// without blocking); an error when a length is out of bounds.
pub fn take_frames(buf: &mut Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 4 {
        let mut len = [0u8; 4];
        len.copy_from_slice(&buf[at..at + 4]);
        let n = u32::from_le_bytes(len) as usize;
        if n > MAX_FRAME {
            return Err(format!("the helper sent a frame of {n} bytes"));
        }
        if buf.len() - at - 4 < n {
            break;
        }
        out.push(buf[at + 4..at + 4 + n].to_vec());
        at += 4 + n;
    }
    buf.drain(..at);
    Ok(out)
}

/// The helper's side: reports go to the agent, replies come back.
struct ChannelReporter {
    chan: UnixStream,
}

impl Reporter for ChannelReporter {
    fn report(&mut self, r: &StateReport) -> Option<String> {
        if let Err(e) = write_frame(&mut self.chan, r.args().as_bytes()) {
            log::warn!("deployPkg: report {:?} not sent: {e}", r.args());
            return None;
        }
        match read_frame(&mut self.chan) {
            Ok(Some(reply)) => match reply.split_first() {
                Some((&REPLY_OK, body)) => Some(String::from_utf8_lossy(body).into_owned()),
                Some((_, why)) => {
                    log::warn!(
                        "deployPkg: report {:?} failed: {}",
                        r.args(),
                        String::from_utf8_lossy(why)
                    );
                    None
                }
                None => None,
            },
            Ok(None) => {
                log::warn!("deployPkg: the agent closed the channel");
                None
            }
            Err(e) => {
                log::warn!("deployPkg: no reply to report {:?}: {e}", r.args());
                None
            }
        }
    }
}

/// Read the job the agent sent on `chan`.
pub fn read_job(chan: &mut UnixStream) -> Result<Job, String> {
    let frame = read_frame(chan)
        .map_err(|e| format!("cannot read the job: {e}"))?
        .ok_or("no job on the standard input")?;
    serde_json::from_slice(&frame).map_err(|e| format!("bad job: {e}"))
}

/// Run `job` with its reports going over `chan`; the exit status.
pub fn run(job: &Job, chan: UnixStream) -> i32 {
    let mut rep = ChannelReporter { chan };
    let outcome = deploy::run(&job.config, &mut rep, &job.package);
    log::info!("deployPkg: {outcome:?}");
    match outcome {
        Outcome::Disabled => exit::DISABLED,
        Outcome::Failed(..) => exit::FAILED,
        Outcome::CloudInit | Outcome::AlreadyApplied | Outcome::Done { .. } => exit::DONE,
    }
}

/// The helper to run: `configured` when set, else `vm-agent-deploy` next to
/// the running program, else in /usr/bin.
pub fn path(configured: &Path) -> PathBuf {
    if !configured.as_os_str().is_empty() {
        return configured.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(PROGRAM)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| Path::new("/usr/bin").join(PROGRAM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"3").unwrap();
        write_frame(&mut wire, b"").unwrap();
        write_frame(&mut wire, b"4 0 /var/log/x@why").unwrap();
        for cut in 0..wire.len() {
            let mut buf = wire[..cut].to_vec();
            let mut got = take_frames(&mut buf).unwrap();
            buf.extend_from_slice(&wire[cut..]);
            got.extend(take_frames(&mut buf).unwrap());
            assert!(buf.is_empty());
            assert_eq!(
                got,
                vec![b"3".to_vec(), Vec::new(), b"4 0 /var/log/x@why".to_vec()]
            );
        }
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"3");
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), b"");
        assert!(read_frame(&mut r).unwrap().is_some());
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut buf = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        assert!(take_frames(&mut buf).is_err());
        let mut r = &buf[..];
        assert!(read_frame(&mut r).is_err());
        assert!(write_frame(&mut Vec::new(), &vec![0; MAX_FRAME + 1]).is_err());
    }

    #[test]
    fn the_job_survives_json() {
        let job = Job {
            package: "/var/run/vm-agent/pkg/p".into(),
            config: DeployPkgConfig {
                custom_scripts: true,
                ..DeployPkgConfig::default()
            },
            log_level: "debug".into(),
        };
        let (mut a, mut b) = UnixStream::pair().unwrap();
        write_frame(&mut a, &serde_json::to_vec(&job).unwrap()).unwrap();
        assert_eq!(read_job(&mut b).unwrap(), job);
        drop(a);
        assert!(read_job(&mut b).is_err());
    }
}
