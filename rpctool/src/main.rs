//! vm-rpctool: send one RPCI message to the host and print the answer.
//!
//! A drop-in for open-vm-tools' vmware-rpctool: the answer of a "1 " reply goes
//! to stdout and the exit status is 0; the answer of a "0 " reply goes to
//! stderr and the exit status is 1. Arguments are parsed by hand so the tool
//! starts fast: scripts and cloud-init call it many times in a row.

use std::ffi::OsString;
use std::io::{self, BufRead, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use agent::rpci::Rpci;
use agent::transport::{self, BackdoorSpec, TraceBackdoor};

const USAGE: &str = "\
Usage: vm-rpctool [OPTIONS] [--] MESSAGE
       vm-rpctool [OPTIONS] --batch < MESSAGES

Send MESSAGE to the host as one RPCI command and print the answer: on success
to stdout (exit status 0), on failure to stderr (exit status 1).

Options:
  --backdoor auto|port|unix:PATH
                how to reach the host; auto (the default) uses VM_BACKDOOR
                when set, else port I/O on a VMware hypervisor
  --batch       send each line of stdin as one message, over one channel;
                exit status 1 if any failed
  --no-hb       never use the high-bandwidth port (4 bytes per call)
  -h, --help    print this help
  --            end of options, for a message that starts with '-'

Environment:
  VM_BACKDOOR=unix:PATH   reach a simulator's backdoor socket (hvsim serve)
  VM_BACKDOOR=port        force port I/O
  VM_BACKDOOR_TRACE=1     log every backdoor call to stderr

Examples:
  vm-rpctool 'info-get guestinfo.ovfEnv'
  vm-rpctool --backdoor unix:/run/hvsim/vm0.sock 'info-set guestinfo.role web'
";

/// What to send.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// One message, exactly the bytes of the argument.
    One(Vec<u8>),
    /// One message per line of stdin.
    Batch,
}

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    backdoor: BackdoorSpec,
    high_bandwidth: bool,
    mode: Mode,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run(Options),
    Help,
}

/// A command line that makes no sense.
#[derive(Debug, PartialEq, Eq)]
enum UsageError {
    /// Nothing at all: show the usage, as vmware-rpctool does.
    NoArguments,
    /// Something wrong; the text says what.
    Invalid(String),
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, UsageError> {
    let mut args = args.into_iter().peekable();
    if args.peek().is_none() {
        return Err(UsageError::NoArguments);
    }
    let mut backdoor = BackdoorSpec::Auto;
    let mut high_bandwidth = true;
    let mut batch = false;
    let mut message = None;
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        match bytes {
            b"-h" | b"--help" => return Ok(Command::Help),
            b"--batch" => batch = true,
            b"--no-hb" => high_bandwidth = false,
            b"--backdoor" => {
                let value = args.next().ok_or_else(|| {
                    UsageError::Invalid("--backdoor needs a value: auto, port or unix:PATH".into())
                })?;
                backdoor = parse_backdoor(&value)?;
            }
            b"--" => {
                message = args.next();
                break;
            }
            _ if bytes.starts_with(b"--backdoor=") => {
                let value = std::ffi::OsStr::from_bytes(&bytes[b"--backdoor=".len()..]);
                backdoor = parse_backdoor(value)?;
            }
            [b'-', _, ..] => {
                return Err(UsageError::Invalid(format!(
                    "unknown option '{}' (put -- before a message that starts with '-')",
                    arg.to_string_lossy()
                )))
            }
            _ => {
                message = Some(arg);
                break;
            }
        }
    }
    if let Some(extra) = args.next() {
        return Err(UsageError::Invalid(format!(
            "unexpected argument '{}': quote the message so it is one argument",
            extra.to_string_lossy()
        )));
    }
    let mode = match (batch, message) {
        (true, None) => Mode::Batch,
        (true, Some(_)) => {
            return Err(UsageError::Invalid(
                "--batch reads messages from stdin; give no MESSAGE".into(),
            ))
        }
        (false, Some(msg)) => Mode::One(msg.into_encoded_bytes()),
        (false, None) => return Err(UsageError::Invalid("no message given".into())),
    };
    Ok(Command::Run(Options {
        backdoor,
        high_bandwidth,
        mode,
    }))
}

fn parse_backdoor(value: &std::ffi::OsStr) -> Result<BackdoorSpec, UsageError> {
    BackdoorSpec::parse(value).map_err(|e| UsageError::Invalid(format!("--backdoor: {e}")))
}

/// Report a failure of the tool itself (not of a message) on stderr.
fn complain(what: &str) {
    // Nothing useful is left to do if stderr is gone.
    let _ = writeln!(io::stderr().lock(), "vm-rpctool: {what}");
}

/// Write `body` and a newline (the output format of vmware-rpctool) into a
/// buffered writer.
fn print_line(out: &mut impl Write, body: &[u8]) -> io::Result<()> {
    out.write_all(body)?;
    out.write_all(b"\n")
}

/// Write `body` and a newline to an unbuffered stream in one write, so a
/// reader never sees the line in pieces.
fn print_line_now(mut out: impl Write, body: &[u8]) -> io::Result<()> {
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend_from_slice(body);
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

fn open_channel(opts: &Options) -> Result<Rpci, String> {
    let backdoor = transport::connect(&opts.backdoor).map_err(|e| agent::error_chain(&e))?;
    let backdoor = if transport::trace_enabled() {
        Box::new(TraceBackdoor::new(backdoor))
    } else {
        backdoor
    };
    let mut rpci = Rpci::open(backdoor).map_err(|e| agent::error_chain(&e))?;
    rpci.set_high_bandwidth(opts.high_bandwidth);
    Ok(rpci)
}

/// Send one message; the exit status says how it went.
fn run_one(mut rpci: Rpci, msg: &[u8]) -> ExitCode {
    let reply = match rpci.send_borrowed(msg) {
        Ok(reply) => reply,
        Err(e) => {
            complain(&agent::error_chain(&e));
            return ExitCode::FAILURE;
        }
    };
    let (ok, written) = if reply.ok {
        (true, print_line_now(io::stdout().lock(), reply.body))
    } else {
        (false, print_line_now(io::stderr().lock(), reply.body))
    };
    // The answer is in; a failed close changes nothing for the caller, and the
    // host drops the channel anyway when this process's connection goes.
    let _ = rpci.close();
    match written {
        Err(e) => {
            complain(&format!("cannot write the answer: {e}"));
            ExitCode::FAILURE
        }
        Ok(()) if ok => ExitCode::SUCCESS,
        Ok(()) => ExitCode::FAILURE,
    }
}

/// Send each line of stdin over one channel.
fn run_batch(mut rpci: Rpci) -> ExitCode {
    let mut input = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut line = Vec::new();
    let mut failed = false;
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let _ = out.flush();
                complain(&format!("cannot read stdin: {e}"));
                return ExitCode::FAILURE;
            }
        }
        let msg = line.strip_suffix(b"\n").unwrap_or(&line);
        let msg = msg.strip_suffix(b"\r").unwrap_or(msg);
        let written = match rpci.send_borrowed(msg) {
            Ok(reply) if reply.ok => print_line(&mut out, reply.body),
            other => {
                failed = true;
                // Keep stdout and stderr in order for a reader of both.
                let flushed = out.flush();
                match other {
                    Ok(reply) => {
                        flushed.and_then(|()| print_line_now(io::stderr().lock(), reply.body))
                    }
                    Err(e) => {
                        complain(&agent::error_chain(&e));
                        // A transport failure loses the channel: later
                        // lines would fail the same way.
                        if e.is_transport() {
                            return ExitCode::FAILURE;
                        }
                        flushed
                    }
                }
            }
        };
        if let Err(e) = written {
            complain(&format!("cannot write the answer: {e}"));
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = out.flush() {
        complain(&format!("cannot write the answer: {e}"));
        return ExitCode::FAILURE;
    }
    let _ = rpci.close();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            let _ = io::stdout().lock().write_all(USAGE.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(UsageError::NoArguments) => {
            let _ = io::stderr().lock().write_all(USAGE.as_bytes());
            return ExitCode::FAILURE;
        }
        Err(UsageError::Invalid(why)) => {
            complain(&format!(
                "{why}\nTry 'vm-rpctool --help' for more information."
            ));
            return ExitCode::FAILURE;
        }
    };
    let rpci = match open_channel(&opts) {
        Ok(rpci) => rpci,
        Err(why) => {
            complain(&why);
            return ExitCode::FAILURE;
        }
    };
    match opts.mode {
        Mode::One(ref msg) => run_one(rpci, msg),
        Mode::Batch => run_batch(rpci),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        parse_args(args.iter().map(OsString::from))
    }

    fn run(
        backdoor: BackdoorSpec,
        high_bandwidth: bool,
        mode: Mode,
    ) -> Result<Command, UsageError> {
        Ok(Command::Run(Options {
            backdoor,
            high_bandwidth,
            mode,
        }))
    }

    #[test]
    fn one_message_as_given() {
        assert_eq!(
            parse(&["info-get guestinfo.x"]),
            run(
                BackdoorSpec::Auto,
                true,
                Mode::One(b"info-get guestinfo.x".to_vec())
            )
        );
        assert_eq!(
            parse(&["log"]),
            run(BackdoorSpec::Auto, true, Mode::One(b"log".to_vec()))
        );
        assert_eq!(
            parse(&[""]),
            run(BackdoorSpec::Auto, true, Mode::One(Vec::new()))
        );
    }

    #[test]
    fn options() {
        assert_eq!(
            parse(&["--backdoor", "unix:/tmp/s", "--no-hb", "m"]),
            run(
                BackdoorSpec::Unix("/tmp/s".into()),
                false,
                Mode::One(b"m".to_vec())
            )
        );
        assert_eq!(
            parse(&["--backdoor=port", "--batch"]),
            run(BackdoorSpec::Port, true, Mode::Batch)
        );
        assert_eq!(
            parse(&["--", "-h"]),
            run(BackdoorSpec::Auto, true, Mode::One(b"-h".to_vec()))
        );
        assert_eq!(
            parse(&["-"]),
            run(BackdoorSpec::Auto, true, Mode::One(b"-".to_vec()))
        );
        assert_eq!(parse(&["--no-hb", "-h"]), Ok(Command::Help));
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["--backdoor"][..],
            &["--backdoor", "tcp:1"],
            &["--backdoor=unix:"],
            &["-x", "m"],
            &["a", "b"],
            &["--batch", "m"],
            &["--"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        assert_eq!(parse(&[]), Err(UsageError::NoArguments));
        let Err(UsageError::Invalid(why)) = parse(&["--frob"]) else {
            panic!("--frob accepted");
        };
        assert!(why.contains("--frob") && why.contains("--"), "{why}");
    }

    #[test]
    fn chains_name_each_cause_once() {
        let io = io::Error::new(io::ErrorKind::BrokenPipe, "broken pipe");
        let err = agent::rpci::RpciError::Send(protocol::guest::ChannelError::Transport(
            protocol::guest::TransportError::Io(io),
        ));
        assert_eq!(
            agent::error_chain(&err),
            "unable to send the RPCI command: backdoor transport i/o: broken pipe"
        );
        let err = transport::SelectError::Connect {
            path: "/x".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        let text = agent::error_chain(&err);
        assert!(
            text.starts_with("cannot connect to the backdoor socket /x"),
            "{text}"
        );
        assert!(
            text.ends_with("(is `hvsim serve` running?): entity not found"),
            "{text}"
        );
    }
}
