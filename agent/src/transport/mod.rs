//! Backdoor transports and how one is chosen.
//!
//! * [`PortIo`](port::PortIo) (x86_64 Linux): the real instructions, for a
//!   guest on a VMware hypervisor (or under `hvsim exec`, which traps them).
//! * [`UnixBackdoor`]: register frames to a simulator's backdoor socket.
//! * [`TraceBackdoor`]: wraps either and logs every call to stderr.
//!
//! Selection ([`connect`]): an explicit `--backdoor` wins; `auto` then means
//! `VM_BACKDOOR` if set, else port I/O when CPUID names VMware, else a clear
//! error saying what was found and what to set.

use std::cell::OnceCell;
use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use protocol::guest::{Backdoor, TransportError};
use protocol::Regs;

use crate::cpuid;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub mod port;
pub mod unix;

pub use unix::UnixBackdoor;

/// Environment variable naming the transport when no flag does.
pub const BACKDOOR_ENV: &str = "VM_BACKDOOR";
/// Environment variable that, set to `1`, makes programs trace backdoor calls.
pub const TRACE_ENV: &str = "VM_BACKDOOR_TRACE";

/// Whether [`TRACE_ENV`] asks for tracing: set, not empty and not `0`.
pub fn trace_enabled() -> bool {
    std::env::var_os(TRACE_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Which transport to use, as written on the command line or in `VM_BACKDOOR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackdoorSpec {
    /// `VM_BACKDOOR` if set, else port I/O on a VMware hypervisor.
    Auto,
    /// Port I/O, whatever CPUID says (probed safely unless CPUID names VMware).
    Port,
    /// A simulator's backdoor socket.
    Unix(PathBuf),
}

/// Why a transport name did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Not one of the accepted forms.
    #[error("invalid backdoor \"{0}\": expected auto, port or unix:PATH")]
    Unknown(String),
    /// `unix:` with nothing after it.
    #[error("invalid backdoor \"unix:\": the socket path is missing (unix:PATH)")]
    MissingPath,
}

impl BackdoorSpec {
    /// Parse `auto`, `port` or `unix:PATH`; the path may be any bytes.
    pub fn parse(s: &OsStr) -> Result<Self, SpecError> {
        let b = s.as_bytes();
        match b {
            b"auto" => Ok(BackdoorSpec::Auto),
            b"port" => Ok(BackdoorSpec::Port),
            _ => match b.strip_prefix(b"unix:") {
                Some(b"") => Err(SpecError::MissingPath),
                Some(path) => Ok(BackdoorSpec::Unix(PathBuf::from(OsStr::from_bytes(path)))),
                None => Err(SpecError::Unknown(s.to_string_lossy().into_owned())),
            },
        }
    }
}

impl FromStr for BackdoorSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        BackdoorSpec::parse(OsStr::new(s))
    }
}

impl fmt::Display for BackdoorSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackdoorSpec::Auto => f.write_str("auto"),
            BackdoorSpec::Port => f.write_str("port"),
            BackdoorSpec::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why no transport could be set up.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// `VM_BACKDOOR` holds something unusable.
    #[error("{BACKDOOR_ENV} is set to something unusable")]
    BadEnv(#[source] SpecError),
    /// `auto` found neither VMware nor `VM_BACKDOOR`.
    #[error(
        "not running on a VMware hypervisor ({}) and {BACKDOOR_ENV} is not set; \
         set {BACKDOOR_ENV}=unix:PATH to use a simulator's backdoor socket",
        describe_cpuid(.signature.as_deref())
    )]
    NotVmware {
        /// The CPUID hypervisor signature, if a hypervisor is present.
        signature: Option<String>,
    },
    /// Port I/O was asked for on a platform without it.
    #[error("port I/O is only available on x86_64 Linux")]
    PortUnavailable,
    /// Port I/O was forced, and the probe showed no backdoor answers.
    #[error("{}", no_backdoor(.outcome, .signature.as_deref()))]
    NoBackdoor {
        /// What the probe saw.
        outcome: ProbeOutcome,
        /// The CPUID hypervisor signature, if a hypervisor is present.
        signature: Option<String>,
    },
    /// The probe process could not be run.
    #[error("cannot run the port I/O probe")]
    Probe(#[source] io::Error),
    /// The simulator's socket did not accept the connection.
    #[error("cannot connect to the backdoor socket {} (is `hvsim serve` running?)", .path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// How a failed port I/O probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The `in` instruction faulted: no I/O privilege and no hypervisor trap.
    Faulted,
    /// The probe hung and was stopped by its alarm.
    TimedOut,
    /// The port answered, but GETVERSION did not echo the backdoor magic.
    WrongAnswer,
    /// The probe died of another signal.
    Signal(i32),
    /// The probe exited with an unexpected status.
    Exit(i32),
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Faulted => f.write_str("port I/O faulted (SIGSEGV)"),
            ProbeOutcome::TimedOut => f.write_str("port I/O hung"),
            ProbeOutcome::WrongAnswer => {
                f.write_str("port 0x5658 answered GETVERSION without the backdoor magic")
            }
            ProbeOutcome::Signal(sig) => write!(f, "the port I/O probe died of signal {sig}"),
            ProbeOutcome::Exit(code) => write!(f, "the port I/O probe exited with status {code}"),
        }
    }
}

/// Why a forced port I/O found no backdoor, and what to do. A fault means
/// the `in` needed I/O privilege this process lacks and no VMware
/// hypervisor took it first (VMware answers its backdoor port at any
/// privilege level).
fn no_backdoor(outcome: &ProbeOutcome, signature: Option<&str>) -> String {
    let cpuid = describe_cpuid(signature);
    if *outcome != ProbeOutcome::Faulted {
        return format!(
            "{outcome}: no VMware backdoor here ({cpuid}); \
             use unix:PATH to reach a simulator's backdoor socket"
        );
    }
    // SAFETY: geteuid has no preconditions.
    let who = match unsafe { libc::geteuid() } {
        0 => "root, but without iopl/ioperm".to_owned(),
        uid => format!("uid {uid}, not root"),
    };
    format!(
        "{outcome}: this process has no I/O privilege for port 0x5658 ({who}) \
         and no VMware hypervisor trapped the access ({cpuid}). On VMware the \
         backdoor needs no privilege, so this is not a VMware VM, or its \
         backdoor is restricted to privileged code: run the program under \
         `hvsim exec`, or use unix:PATH to reach a simulator's backdoor socket"
    )
}

fn describe_cpuid(signature: Option<&str>) -> String {
    match signature {
        Some(sig) => format!("CPUID hypervisor signature is \"{sig}\""),
        None if cfg!(target_arch = "x86_64") => "no hypervisor".to_owned(),
        None => "not an x86_64 CPU".to_owned(),
    }
}

/// What `VM_BACKDOOR` asks for: `None` when unset, empty or `auto`.
pub fn env_choice(env: Option<&OsStr>) -> Result<Option<BackdoorSpec>, SelectError> {
    match env.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) => match BackdoorSpec::parse(value).map_err(SelectError::BadEnv)? {
            BackdoorSpec::Auto => Ok(None),
            spec => Ok(Some(spec)),
        },
    }
}

/// Decide what `auto` means, from the CPUID hypervisor signature and the value
/// of `VM_BACKDOOR`: the variable wins when set (see [`env_choice`]);
/// otherwise port I/O when CPUID names VMware, else an error that says what
/// was found and what to set. Never answers [`BackdoorSpec::Auto`].
///
/// Pure, so the policy is testable without touching the environment.
pub fn resolve_auto(
    signature: Option<&str>,
    env: Option<&OsStr>,
) -> Result<BackdoorSpec, SelectError> {
    if let Some(spec) = env_choice(env)? {
        return Ok(spec);
    }
    if signature == Some(cpuid::VMWARE_SIGNATURE) {
        Ok(BackdoorSpec::Port)
    } else {
        Err(SelectError::NotVmware {
            signature: signature.map(str::to_owned),
        })
    }
}

/// Set up the transport `spec` names (for `auto`, consulting `VM_BACKDOOR`
/// and CPUID as [`resolve_auto`] describes).
pub fn connect(spec: &BackdoorSpec) -> Result<Box<dyn Backdoor + Send>, SelectError> {
    // CPUID is read at most once and only when the choice depends on it: in a
    // VM it exits to the hypervisor, which is slow when nested or trapped.
    let sig_cell = OnceCell::new();
    let signature = || sig_cell.get_or_init(cpuid::hypervisor_signature).clone();
    let spec = match spec {
        BackdoorSpec::Auto => {
            let env = std::env::var_os(BACKDOOR_ENV);
            match env_choice(env.as_deref())? {
                Some(spec) => spec,
                None => resolve_auto(signature().as_deref(), None)?,
            }
        }
        other => other.clone(),
    };
    match spec {
        BackdoorSpec::Port => connect_port(signature()),
        BackdoorSpec::Unix(path) => match UnixBackdoor::connect(&path) {
            Ok(bd) => Ok(Box::new(bd)),
            Err(source) => Err(SelectError::Connect { path, source }),
        },
        // resolve_auto answers port or unix only; stay total all the same.
        BackdoorSpec::Auto => Err(SelectError::NotVmware {
            signature: signature(),
        }),
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn connect_port(signature: Option<String>) -> Result<Box<dyn Backdoor + Send>, SelectError> {
    if signature.as_deref() != Some(cpuid::VMWARE_SIGNATURE) {
        let start = Instant::now();
        let (before, result) = probe::run();
        if trace_enabled() {
            // The probe's GETVERSION is a backdoor call too, made in a child
            // (it may fault): traced like the others, from here.
            let took = start.elapsed();
            let _ = match &result {
                Ok(after) => writeln!(
                    io::stderr(),
                    "backdoor in 0B {before:?} -> {after:?} ({took:?}, probe in a child process)"
                ),
                Err(probe::Failure::Outcome(o)) => writeln!(
                    io::stderr(),
                    "backdoor in 0B {before:?} -> error: {o} ({took:?}, probe in a child process)"
                ),
                Err(probe::Failure::Spawn(e)) => writeln!(
                    io::stderr(),
                    "backdoor in 0B {before:?} -> error: no probe process: {e} ({took:?})"
                ),
            };
        }
        result.map_err(|e| match e {
            probe::Failure::Spawn(e) => SelectError::Probe(e),
            probe::Failure::Outcome(outcome) => SelectError::NoBackdoor { outcome, signature },
        })?;
    }
    Ok(Box::new(port::PortIo::new()))
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn connect_port(_signature: Option<String>) -> Result<Box<dyn Backdoor + Send>, SelectError> {
    Err(SelectError::PortUnavailable)
}

/// Executing a backdoor call without a VMware hypervisor kills the process,
/// so a forced `port` on anything else first tries it in a throwaway child.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod probe {
    use std::io::{self, Read};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use protocol::guest::Backdoor;
    use protocol::{cmd, Regs, BDOOR_MAGIC};

    use super::port::PortIo;
    use super::ProbeOutcome;

    /// The child's verdicts.
    const EXIT_ANSWERED: i32 = 0;
    const EXIT_WRONG_ANSWER: i32 = 2;
    /// A backdoor answers in microseconds; a hang means something else is there.
    const TIMEOUT_SECS: u32 = 2;

    pub(super) enum Failure {
        Spawn(io::Error),
        Outcome(ProbeOutcome),
    }

    /// The probe's call.
    fn request() -> Regs {
        Regs::command(cmd::GETVERSION, 0)
    }

    /// Run GETVERSION in a forked child: the registers it sent, and the
    /// registers that came back when the backdoor magic did.
    pub(super) fn run() -> (Regs, Result<Regs, Failure>) {
        (request(), run_child())
    }

    fn run_child() -> Result<Regs, Failure> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Failure::Spawn(io::Error::last_os_error()));
        }
        // SAFETY: both are fresh descriptors owned by nothing else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // The child below runs only async-signal-safe code (raw syscalls and
        // the asm of `PortIo::call`, no allocation, no locks), as required
        // after forking a possibly multi-threaded process, and leaves with _exit.
        // SAFETY: fork() itself is sound to call at any time (see above).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Failure::Spawn(io::Error::last_os_error()));
        }
        if pid == 0 {
            child(wr.as_raw_fd());
        }
        drop(wr);
        let mut status = 0;
        loop {
            // SAFETY: `pid` is our own child and `status` a valid out pointer.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r == pid {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(Failure::Spawn(err));
            }
        }
        let outcome = if libc::WIFEXITED(status) {
            match libc::WEXITSTATUS(status) {
                EXIT_ANSWERED => {
                    let mut b = [0u8; 28];
                    let got = std::fs::File::from(rd).read(&mut b).unwrap_or(0);
                    let mut a = [0u32; 7];
                    for (i, v) in a.iter_mut().enumerate() {
                        *v = u32::from_ne_bytes(b[i * 4..i * 4 + 4].try_into().unwrap_or_default());
                    }
                    return Ok(if got == b.len() {
                        Regs::from_array(a)
                    } else {
                        request()
                    });
                }
                EXIT_WRONG_ANSWER => ProbeOutcome::WrongAnswer,
                code => ProbeOutcome::Exit(code),
            }
        } else if libc::WIFSIGNALED(status) {
            match libc::WTERMSIG(status) {
                libc::SIGSEGV | libc::SIGBUS => ProbeOutcome::Faulted,
                libc::SIGALRM => ProbeOutcome::TimedOut,
                sig => ProbeOutcome::Signal(sig),
            }
        } else {
            ProbeOutcome::Exit(-1)
        };
        Err(Failure::Outcome(outcome))
    }

    fn child(answer_fd: i32) -> ! {
        // No core dump for the expected fault (dumpable 0 also stops pipe core
        // handlers), default fault handling (the parent's handlers, e.g.
        // Rust's stack-overflow one, are not wanted here), and an unblocked
        // SIGALRM so the alarm can end a hang.
        // SAFETY: each call is a plain async-signal-safe syscall wrapper with valid arguments.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
            libc::signal(libc::SIGALRM, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGALRM);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::alarm(TIMEOUT_SECS);
        }
        let answer = PortIo::new().call(request());
        let code = match answer {
            Ok(r) if r.ebx == BDOOR_MAGIC => {
                let a = [r.eax, r.ebx, r.ecx, r.edx, r.esi, r.edi, r.ebp];
                // SAFETY: write from a stack array of 28 bytes to our pipe.
                unsafe { libc::write(answer_fd, a.as_ptr().cast(), 28) };
                EXIT_ANSWERED
            }
            _ => EXIT_WRONG_ANSWER,
        };
        // SAFETY: _exit ends the child at once, without running the parent's
        // atexit handlers or flushing its inherited stdio buffers twice.
        unsafe { libc::_exit(code) }
    }
}

/// A transport decorator that logs every backdoor call, its registers before
/// and after, and how long it took; to stderr unless given another writer.
#[derive(Debug)]
pub struct TraceBackdoor<B, W: Write = io::Stderr> {
    inner: B,
    out: W,
}

impl<B> TraceBackdoor<B> {
    /// Trace the calls made through `inner` to stderr.
    pub fn new(inner: B) -> Self {
        TraceBackdoor::with_writer(inner, io::stderr())
    }
}

impl<B, W: Write> TraceBackdoor<B, W> {
    /// Trace the calls made through `inner` to `out`, one line each.
    pub fn with_writer(inner: B, out: W) -> Self {
        TraceBackdoor { inner, out }
    }

    /// The wrapped transport and the writer.
    pub fn into_parts(self) -> (B, W) {
        (self.inner, self.out)
    }

    fn trace(
        &mut self,
        op: &str,
        bytes: usize,
        before: &Regs,
        after: &Result<Regs, TransportError>,
        took: Duration,
    ) {
        // Tracing must never fail a call: write errors are ignored.
        let _ = match after {
            Ok(regs) => writeln!(
                self.out,
                "backdoor {op} {bytes}B {before:?} -> {regs:?} ({took:?})"
            ),
            Err(e) => writeln!(
                self.out,
                "backdoor {op} {bytes}B {before:?} -> error: {e} ({took:?})"
            ),
        };
    }
}

impl<B: Backdoor, W: Write> Backdoor for TraceBackdoor<B, W> {
    fn call(&mut self, regs: Regs) -> Result<Regs, TransportError> {
        let start = Instant::now();
        let out = self.inner.call(regs);
        self.trace("in", 0, &regs, &out, start.elapsed());
        out
    }

    fn hb_out(&mut self, regs: Regs, data: &[u8]) -> Result<Regs, TransportError> {
        let start = Instant::now();
        let out = self.inner.hb_out(regs, data);
        self.trace("outsb", data.len(), &regs, &out, start.elapsed());
        out
    }

    fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> Result<Regs, TransportError> {
        let start = Instant::now();
        let out = self.inner.hb_in(regs, buf);
        self.trace("insb", buf.len(), &regs, &out, start.elapsed());
        out
    }
}

/// Every transport is a `Backdoor` that can move to another thread.
const _: () = {
    const fn is_transport<T: Backdoor + Send>() {}
    is_transport::<UnixBackdoor>();
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    is_transport::<port::PortIo>();
    is_transport::<TraceBackdoor<UnixBackdoor>>();
    is_transport::<TraceBackdoor<Box<dyn Backdoor + Send>, Vec<u8>>>();
    is_transport::<Box<dyn Backdoor + Send>>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<&OsStr> {
        Some(OsStr::new(s))
    }

    #[test]
    fn spec_parsing() {
        assert_eq!("auto".parse(), Ok(BackdoorSpec::Auto));
        assert_eq!("port".parse(), Ok(BackdoorSpec::Port));
        assert_eq!(
            "unix:/run/hvsim/vm0.sock".parse(),
            Ok(BackdoorSpec::Unix("/run/hvsim/vm0.sock".into()))
        );
        assert_eq!("unix:rel".parse(), Ok(BackdoorSpec::Unix("rel".into())));
        assert_eq!("unix:".parse::<BackdoorSpec>(), Err(SpecError::MissingPath));
        for bad in ["", "Auto", "ports", "unix", "tcp:1", " port"] {
            let err = bad.parse::<BackdoorSpec>().unwrap_err();
            assert_eq!(err, SpecError::Unknown(bad.to_owned()));
            assert!(
                err.to_string().contains("expected auto, port or unix:PATH"),
                "{err}"
            );
        }
        // Any bytes make a path.
        let raw = OsStr::from_bytes(b"unix:/tmp/\xff.sock");
        assert_eq!(
            BackdoorSpec::parse(raw),
            Ok(BackdoorSpec::Unix(PathBuf::from(OsStr::from_bytes(
                b"/tmp/\xff.sock"
            ))))
        );
        for spec in ["auto", "port", "unix:/a b"] {
            assert_eq!(spec.parse::<BackdoorSpec>().unwrap().to_string(), spec);
        }
    }

    #[test]
    fn auto_without_vmware_or_env_says_what_to_do() {
        let err = resolve_auto(Some("KVMKVMKVM"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not running on a VMware hypervisor (CPUID hypervisor signature is \"KVMKVMKVM\") \
             and VM_BACKDOOR is not set; set VM_BACKDOOR=unix:PATH to use a simulator's backdoor socket"
        );
        let err = resolve_auto(None, os("")).unwrap_err();
        #[cfg(target_arch = "x86_64")]
        assert!(err.to_string().contains("(no hypervisor)"), "{err}");
        assert!(matches!(err, SelectError::NotVmware { signature: None }));
    }

    #[test]
    fn auto_policy() {
        let vmware = Some(cpuid::VMWARE_SIGNATURE);
        assert_eq!(resolve_auto(vmware, None).unwrap(), BackdoorSpec::Port);
        // VM_BACKDOOR wins over CPUID.
        assert_eq!(
            resolve_auto(vmware, os("unix:/s")).unwrap(),
            BackdoorSpec::Unix("/s".into())
        );
        assert_eq!(
            resolve_auto(Some("KVMKVMKVM"), os("unix:/s")).unwrap(),
            BackdoorSpec::Unix("/s".into())
        );
        assert_eq!(resolve_auto(None, os("port")).unwrap(), BackdoorSpec::Port);
        // Empty or auto: as if unset.
        assert_eq!(resolve_auto(vmware, os("")).unwrap(), BackdoorSpec::Port);
        assert_eq!(
            resolve_auto(vmware, os("auto")).unwrap(),
            BackdoorSpec::Port
        );
        assert!(resolve_auto(Some("KVMKVMKVM"), os("auto")).is_err());
        // A bad value is an error even on VMware: the user asked for something.
        let err = resolve_auto(vmware, os("socket")).unwrap_err();
        assert!(
            matches!(err, SelectError::BadEnv(SpecError::Unknown(_))),
            "{err:?}"
        );
    }

    /// The real selection on this machine, reading (never writing) the
    /// environment: without VM_BACKDOOR, a non-VMware machine gets the clear
    /// error.
    #[test]
    fn connect_auto_here() {
        if std::env::var_os(BACKDOOR_ENV).is_some() || cpuid::is_vmware() {
            return;
        }
        match connect(&BackdoorSpec::Auto) {
            Err(err @ SelectError::NotVmware { .. }) => {
                assert!(
                    err.to_string().contains("set VM_BACKDOOR=unix:PATH"),
                    "{err}"
                );
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("auto selected a transport on a non-VMware machine"),
        }
    }

    /// Forcing port I/O off VMware faults in the probe child, not here.
    #[test]
    fn forced_port_off_vmware_fails_cleanly() {
        if cpuid::is_vmware() {
            return;
        }
        let err = match connect(&BackdoorSpec::Port) {
            Err(err) => err,
            Ok(_) => panic!("a backdoor answered on a non-VMware machine"),
        };
        let text = err.to_string();
        if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
            assert!(
                matches!(
                    err,
                    SelectError::NoBackdoor {
                        outcome: ProbeOutcome::Faulted,
                        ..
                    }
                ),
                "{text}"
            );
            // What is missing and what to do.
            assert!(
                text.starts_with(
                    "port I/O faulted (SIGSEGV): this process has no I/O privilege for port 0x5658 ("
                ),
                "{text}"
            );
            assert!(
                text.contains("hvsim exec") && text.contains("unix:PATH"),
                "{text}"
            );
        } else {
            assert!(matches!(err, SelectError::PortUnavailable), "{text}");
        }
    }

    #[test]
    fn connect_names_the_missing_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        let err = match connect(&BackdoorSpec::Unix(path.clone())) {
            Err(err) => err,
            Ok(_) => panic!("connected to nothing"),
        };
        assert!(matches!(&err, SelectError::Connect { path: p, .. } if *p == path));
        assert_eq!(
            err.to_string(),
            format!(
                "cannot connect to the backdoor socket {} (is `hvsim serve` running?)",
                path.display()
            )
        );
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("No such file"), "{source}");
    }

    #[test]
    fn trace_passes_everything_through() {
        #[derive(Debug)]
        struct Echo;
        impl Backdoor for Echo {
            fn call(&mut self, regs: Regs) -> Result<Regs, TransportError> {
                Ok(Regs { eax: 1, ..regs })
            }
            fn hb_out(&mut self, regs: Regs, data: &[u8]) -> Result<Regs, TransportError> {
                Ok(Regs {
                    ecx: data.len() as u32,
                    ..regs
                })
            }
            fn hb_in(&mut self, _: Regs, buf: &mut [u8]) -> Result<Regs, TransportError> {
                buf.fill(7);
                Err(TransportError::Protocol("test".into()))
            }
        }
        let mut t = TraceBackdoor::with_writer(Echo, Vec::new());
        assert_eq!(t.call(Regs::default()).unwrap().eax, 1);
        assert_eq!(t.hb_out(Regs::default(), b"abc").unwrap().ecx, 3);
        let mut buf = [0u8; 2];
        assert!(t.hb_in(Regs::default(), &mut buf).is_err());
        assert_eq!(buf, [7, 7]);
        let (_, log) = t.into_parts();
        let log = String::from_utf8(log).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 3, "{log}");
        assert!(
            lines[0].starts_with("backdoor in 0B Regs { eax: 0x00000000"),
            "{log}"
        );
        assert!(lines[0].contains("-> Regs { eax: 0x00000001"), "{log}");
        assert!(lines[1].starts_with("backdoor outsb 3B "), "{log}");
        assert!(
            lines[2].contains("-> error: backdoor endpoint protocol error: test"),
            "{log}"
        );
    }
}
