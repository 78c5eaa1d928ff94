//! `hvsim exec`: the trap frontend. Runs an unmodified guest program under
//! ptrace against a VM of a running `hvsim serve`.
//!
//! The program's `in`/`out`/`rep insb`/`rep outsb` on the backdoor ports fault
//! in user space (no I/O privilege); the tracer emulates them against the VM's
//! backdoor device (one register frame per instruction over the VM's backdoor
//! socket, one connection per traced process), writes the registers and
//! memory back and steps past the instruction. CPUID says "VMwareVMware": each
//! CPUID in the program's executable code is rewritten to UD2 and answered by
//! the tracer. See [`tracer`] for the ptrace side.
//!
//! * [`emulate`]: decoding and emulating the I/O instructions (pure).
//! * [`cpuid`]: the CPUID answers (pure).
//! * [`patch`]: finding CPUID instructions by disassembly (pure).
//! * [`elf`]: executable sections of a program file (pure).
//! * [`client`]: the frame client to the backdoor socket.
//! * [`tracer`]: the ptrace loop (x86_64 Linux only).
//!
//! Threat table: the traced program is the guest and untrusted, but it runs
//! with the user's own privileges; what it can make the tracer do is bounded:
//!
//! | program does                        | bound                                            |
//! |-------------------------------------|--------------------------------------------------|
//! | string I/O with a huge rcx          | refused above [`emulate::MAX_STRING`]; hvsim caps messages |
//! | string I/O on unmapped memory       | the fault is delivered, as a real page fault     |
//! | I/O on other ports, real crashes    | the signal is delivered unchanged                |
//! | crafted ELF section tables          | checked parser ([`elf`]), fuzzed                 |
//! | endless exec mappings               | each is scanned once per mmap/mprotect call      |

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::json;

pub mod client;
pub mod cpuid;
pub mod elf;
pub mod emulate;
pub mod patch;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod tracer;

/// How the traced program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// Why `hvsim exec` could not run the program.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The control socket did not name the VM's backdoor socket.
    #[error("cannot find the backdoor socket of VM {vm:?}: {source}")]
    Control {
        /// The VM.
        vm: String,
        /// What the control request said.
        source: crate::control::ControlError,
    },
    /// The program is not on PATH.
    #[error("{program:?}: command not found (give a path, or check PATH)")]
    NotFound {
        /// As given.
        program: OsString,
    },
    /// An argument holds a NUL byte.
    #[error("an argument contains a NUL byte")]
    BadArgument,
    /// fork or pipe failed.
    #[error("cannot start the program: {0}")]
    Spawn(io::Error),
    /// execve failed in the child.
    #[error("cannot execute {program}: {source}")]
    Exec {
        /// The resolved path.
        program: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The seccomp filter that reports new executable mappings was refused.
    #[error("cannot install the seccomp filter that reports new code mappings: {0} (is seccomp disabled in this kernel or container?)")]
    Seccomp(io::Error),
    /// A ptrace request failed.
    #[error("{what}: {source} (ptrace may be forbidden here: check /proc/sys/kernel/yama/ptrace_scope and the container's seccomp profile)")]
    Ptrace {
        /// The request.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Not x86_64 Linux.
    #[error("hvsim exec needs x86_64 Linux (ptrace and port I/O); use the socket frontend (VM_BACKDOOR=unix:PATH) here")]
    Unsupported,
}

/// Run `program` with `args` against VM `vm` of the `hvsim serve` behind the
/// control socket `control`; returns how the program ended.
pub fn run(
    control: &Path,
    vm: &str,
    program: &OsString,
    args: &[OsString],
) -> Result<Exit, ExecError> {
    let v = crate::control::request(control, &json!({"op": "backdoor", "vm": vm})).map_err(
        |source| ExecError::Control {
            vm: vm.to_string(),
            source,
        },
    )?;
    let socket = PathBuf::from(v["socket"].as_str().unwrap_or_default());
    run_on_socket(&socket, program, args)
}

/// Like [`run`], with the VM's backdoor socket already known.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn run_on_socket(
    socket: &Path,
    program: &OsString,
    args: &[OsString],
) -> Result<Exit, ExecError> {
    tracer::run(socket, program, args)
}

/// Like [`run`], with the VM's backdoor socket already known.
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub fn run_on_socket(
    _socket: &Path,
    _program: &OsString,
    _args: &[OsString],
) -> Result<Exit, ExecError> {
    Err(ExecError::Unsupported)
}

/// End this process the way the program ended: the same exit code, or death
/// by the same signal (without a core dump of hvsim itself), so a shell sees
/// what it would have seen without `hvsim exec`.
pub fn exit_like(e: Exit) -> ! {
    match e {
        Exit::Code(c) => std::process::exit(c),
        Exit::Signal(sig) => {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain syscalls on valid arguments: no core file, default
            // disposition, unblock the signal, send it to this thread.
            unsafe {
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                libc::signal(sig, libc::SIG_DFL);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, sig);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                libc::raise(sig);
            }
            // A signal whose default is not to terminate (or that is ignored
            // by policy): report it the shell's way.
            std::process::exit(128 + sig)
        }
    }
}
