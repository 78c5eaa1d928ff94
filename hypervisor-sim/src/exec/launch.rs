//! The `hvsim exec` process (x86_64 Linux): it asks `hvsim serve` to trace
//! it, then becomes the program. The program is thus the caller's own child:
//! its exit status, signals sent to it and its terminal need no forwarding.
//!
//! Order matters: the tracer must be attached before the seccomp filter is
//! installed (without a tracer, `SECCOMP_RET_TRACE` fails the syscall with
//! ENOSYS), and both before `execve`, so the program's first instruction
//! already runs traced.

use std::convert::Infallible;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::ExecError;
use crate::control::{self, ControlError};

/// Find `program` the way execvp would: as given when it has a slash, else
/// the first executable file of that name on PATH.
pub fn resolve(program: &OsStr) -> Result<PathBuf, ExecError> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join(program);
        if let Ok(c) = CString::new(p.as_os_str().as_bytes()) {
            // SAFETY: `c` is a valid NUL-terminated path.
            if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(ExecError::NotFound {
        program: program.to_os_string(),
    })
}

// Classic BPF for the seccomp filter (linux/filter.h, linux/seccomp.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Trap (SECCOMP_RET_TRACE) mmap/mprotect/pkey_mprotect with PROT_EXEC in
/// their third argument; allow everything else. Offsets are those of
/// `struct seccomp_data`: nr at 0, arch at 4, args[2] (low half) at 32.
fn exec_mapping_filter() -> Vec<libc::sock_filter> {
    vec![
        stmt(BPF_LD_W_ABS, 4),
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, 8),
        stmt(BPF_LD_W_ABS, 0),
        jump(BPF_JEQ_K, libc::SYS_mmap as u32, 3, 0),
        jump(BPF_JEQ_K, libc::SYS_mprotect as u32, 2, 0),
        jump(BPF_JEQ_K, libc::SYS_pkey_mprotect as u32, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        stmt(BPF_LD_W_ABS, 32),
        jump(BPF_JSET_K, libc::PROT_EXEC as u32, 0, 1),
        stmt(BPF_RET_K, SECCOMP_RET_TRACE),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]
}

/// The pid of the process at the other end of a unix socket.
fn peer_pid(s: &UnixStream) -> Option<i32> {
    // SAFETY: ucred is plain data; getsockopt writes at most `len` bytes
    // into it and the fd is open while `s` is borrowed.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        );
        (rc == 0 && cred.pid > 0).then_some(cred.pid)
    }
}

/// Ask the `hvsim serve` behind `control` to trace this process for VM
/// `vm`, then exec `program` with `args`. Returns only on failure.
pub fn run(
    control: &Path,
    vm: &str,
    program: &OsString,
    args: &[OsString],
) -> Result<Infallible, ExecError> {
    let path = resolve(program)?;
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| ExecError::BadArgument)?;
    let mut cargs = vec![CString::new(program.as_bytes()).map_err(|_| ExecError::BadArgument)?];
    for a in args {
        cargs.push(CString::new(a.as_bytes()).map_err(|_| ExecError::BadArgument)?);
    }
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let filter = exec_mapping_filter();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };

    let control_err = |source| ExecError::Control {
        vm: vm.to_string(),
        source,
    };
    let stream = UnixStream::connect(control).map_err(|source| {
        control_err(ControlError::Connect {
            path: control.to_path_buf(),
            source,
        })
    })?;
    // Yama (ptrace_scope 1) lets only an ancestor trace a process unless it
    // names its tracer; without Yama this fails with EINVAL and is not needed.
    if let Some(serve) = peer_pid(&stream) {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_PTRACER, serve as libc::c_ulong, 0, 0, 0) };
    }
    let stats = std::env::var_os("HVSIM_EXEC_STATS").is_some_and(|v| v == "1");
    let req = json!({
        "op": "exec-attach",
        "vm": vm,
        "pid": std::process::id(),
        "stats": stats,
    });
    // serve answers once its tracer thread has seized this process.
    control::request_on(stream, control, &req).map_err(control_err)?;

    // SAFETY: plain syscalls on valid arguments. Rust ignores SIGPIPE in
    // its own binaries, and an ignored disposition survives exec: restore the
    // default the program would have had. Root has CAP_SYS_ADMIN and needs no
    // NO_NEW_PRIVS for the filter (which would stop setuid programs from
    // gaining privilege); others do.
    let err = unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
            && (libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0)
        {
            return Err(ExecError::Seccomp(std::io::Error::last_os_error()));
        }
        libc::execv(cpath.as_ptr(), argv.as_ptr());
        std::io::Error::last_os_error()
    };
    Err(ExecError::Exec {
        program: path,
        source: err,
    })
}
