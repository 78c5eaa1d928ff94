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
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
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
const SECCOMP_RET_USER_NOTIF: u32 = libc::SECCOMP_RET_USER_NOTIF;
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

/// [`exec_mapping_filter`], and also send to user notification (serve's
/// [`super::vsock`]) `socket` calls for AF_VSOCK (first argument, low half
/// at offset 16) and every `connect` and `bind` (the family is in memory,
/// out of the filter's reach). Jump offsets count from the next instruction.
fn vsock_filter() -> Vec<libc::sock_filter> {
    let af_vsock = super::vsock::AF_VSOCK;
    vec![
        /* 0 */ stmt(BPF_LD_W_ABS, 4),
        /* 1 */ jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, 7), // else 9
        /* 2 */ stmt(BPF_LD_W_ABS, 0),
        /* 3 */ jump(BPF_JEQ_K, libc::SYS_mmap as u32, 6, 0), // 10
        /* 4 */ jump(BPF_JEQ_K, libc::SYS_mprotect as u32, 5, 0), // 10
        /* 5 */ jump(BPF_JEQ_K, libc::SYS_pkey_mprotect as u32, 4, 0), // 10
        /* 6 */ jump(BPF_JEQ_K, libc::SYS_socket as u32, 7, 0), // 14
        /* 7 */ jump(BPF_JEQ_K, libc::SYS_connect as u32, 8, 0), // 16
        /* 8 */ jump(BPF_JEQ_K, libc::SYS_bind as u32, 7, 0), // 16
        /* 9 */ stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        /* 10 */ stmt(BPF_LD_W_ABS, 32),
        /* 11 */ jump(BPF_JSET_K, libc::PROT_EXEC as u32, 0, 1),
        /* 12 */ stmt(BPF_RET_K, SECCOMP_RET_TRACE),
        /* 13 */ stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        /* 14 */ stmt(BPF_LD_W_ABS, 16),
        /* 15 */ jump(BPF_JEQ_K, af_vsock, 0, 1),
        /* 16 */ stmt(BPF_RET_K, SECCOMP_RET_USER_NOTIF),
        /* 17 */ stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]
}

/// Install `filter`; with `listener`, as one that reports to a new user
/// notification listener, whose descriptor is returned. Root has
/// CAP_SYS_ADMIN and needs no NO_NEW_PRIVS for a filter (which would stop
/// setuid programs from gaining privilege); others do.
fn install(filter: &[libc::sock_filter], listener: bool) -> std::io::Result<Option<i32>> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let flags = if listener {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };
    let set = || {
        // SAFETY: seccomp(SET_MODE_FILTER) reads the program `prog` points
        // to, which lives until the call returns.
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        }
    };
    let mut rc = set();
    if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EACCES) {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        rc = set();
    }
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(listener.then_some(rc as i32))
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

/// A new pty: (master, slave), both close-on-exec, 80x24.
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let err = std::io::Error::last_os_error;
    // SAFETY: posix_openpt returns a new fd or -1; ownership moves into
    // OwnedFd at once. grantpt/unlockpt/ptsname_r act on that fd; the name
    // buffer is NUL-terminated by ptsname_r on success.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(err());
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(err());
        }
        let mut name = [0 as libc::c_char; 128];
        let rc = libc::ptsname_r(m, name.as_mut_ptr(), name.len());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(err());
        }
        let slave = OwnedFd::from_raw_fd(s);
        let ws = libc::winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        libc::ioctl(s, libc::TIOCSWINSZ, &ws);
        Ok((master, slave))
    }
}

/// The caller's stdin/stdout/stderr, kept aside (close-on-exec) while the
/// pty slave takes their place, so a failure can still be reported there.
struct SavedStdio([Option<OwnedFd>; 3]);

impl SavedStdio {
    /// Put `slave` on fds 0, 1 and 2, keeping copies of what was there.
    fn redirect(slave: &OwnedFd) -> std::io::Result<SavedStdio> {
        let mut saved = [None, None, None];
        for (fd, slot) in saved.iter_mut().enumerate() {
            // SAFETY: F_DUPFD_CLOEXEC returns a new fd we own, or -1 (fd not open).
            let d = unsafe { libc::fcntl(fd as i32, libc::F_DUPFD_CLOEXEC, 3) };
            if d >= 0 {
                // SAFETY: `d` is a fresh fd owned by nothing else.
                *slot = Some(unsafe { OwnedFd::from_raw_fd(d) });
            }
        }
        let saved = SavedStdio(saved);
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard fds; `slave` is open.
            if unsafe { libc::dup2(slave.as_raw_fd(), fd) } < 0 {
                let e = std::io::Error::last_os_error();
                saved.restore();
                return Err(e);
            }
        }
        Ok(saved)
    }

    /// Put the caller's fds back.
    fn restore(&self) {
        for (fd, s) in self.0.iter().enumerate() {
            if let Some(s) = s {
                // SAFETY: dup2 of an fd we own onto a standard fd.
                unsafe { libc::dup2(s.as_raw_fd(), fd as i32) };
            }
        }
    }
}

/// The VM's DMI for the program, from the `exec-attach` answer's `dmi`
/// (`uuid`, `model`); a serve that sends none gets the machine's. Without
/// the privilege for a mount namespace the program runs on with the
/// machine's DMI, and a note says so.
fn present_dmi(v: &serde_json::Value) -> Result<(), ExecError> {
    use super::dmi;
    let (Some(uuid), Some(model)) = (
        v["uuid"].as_str().and_then(crate::config::parse_uuid),
        v["model"].as_str(),
    ) else {
        return Ok(());
    };
    match dmi::present(&dmi::files(&uuid, model)) {
        Ok(()) => Ok(()),
        Err(e @ dmi::DmiError::Namespace(_)) => {
            eprintln!("hvsim exec: note: the program sees this machine's DMI, not the VM's: {e}");
            Ok(())
        }
        Err(e) => Err(ExecError::Dmi(e)),
    }
}

/// Ask the `hvsim serve` behind `control` to trace this process for VM
/// `vm`, then exec `program` with `args`. With `console`, the program's
/// stdin, stdout and stderr are the slave of a new pty whose master serve
/// attaches as the VM's serial console. With `dmi`, the program runs in a
/// private mount namespace where `/sys/class/dmi/id` is the VM's
/// ([`super::dmi`]). Returns only on failure.
pub fn run(
    control: &Path,
    vm: &str,
    program: &OsString,
    args: &[OsString],
    console: bool,
    dmi: bool,
) -> Result<Infallible, ExecError> {
    let path = resolve(program)?;
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| ExecError::BadArgument)?;
    let mut cargs = vec![CString::new(program.as_bytes()).map_err(|_| ExecError::BadArgument)?];
    for a in args {
        cargs.push(CString::new(a.as_bytes()).map_err(|_| ExecError::BadArgument)?);
    }
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());

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
    let pty = if console {
        Some(open_pty().map_err(ExecError::Pty)?)
    } else {
        None
    };
    let mut req = json!({
        "op": "exec-attach",
        "vm": vm,
        "pid": std::process::id(),
        "stats": stats,
    });
    if console {
        // Only then: a serve without consoles refuses the unknown field.
        req["console"] = true.into();
    }
    // serve answers once its tracer thread has seized this process (and
    // attached the pty master, which goes along with the request).
    let again = stream.try_clone().map_err(|source| {
        control_err(ControlError::Io {
            path: control.to_path_buf(),
            source,
        })
    })?;
    let master = pty.as_ref().map(|(m, _)| m.as_fd());
    let attached = control::request_with_fd(again, control, &req, master).map_err(control_err)?;
    if dmi && std::env::var_os("HVSIM_EXEC_DMI").is_none_or(|v| v != "0") {
        present_dmi(&attached["dmi"])?;
    }
    // Only the program's side stays open here: when it and its children
    // are gone, serve sees the console close.
    let saved = match pty {
        Some((master, slave)) => {
            drop(master);
            Some(SavedStdio::redirect(&slave).map_err(ExecError::Pty)?)
        }
        None => None,
    };
    let restore = || {
        if let Some(s) = &saved {
            s.restore();
        }
    };

    // vsock emulation: when serve offers it and HVSIM_EXEC_VSOCK is not 0,
    // the filter also reports vsock calls, on a listener serve takes over
    // before the program runs (see super::vsock).
    let vsock =
        attached["vsock"] == true && std::env::var_os("HVSIM_EXEC_VSOCK").is_none_or(|v| v != "0");
    let installed = if vsock {
        // Kernels before 5.0 have no listeners: run without vsock.
        install(&vsock_filter(), true).or_else(|_| install(&exec_mapping_filter(), false))
    } else {
        install(&exec_mapping_filter(), false)
    };
    let listener = match installed {
        Ok(l) => l,
        Err(e) => {
            restore();
            return Err(ExecError::Seccomp(e));
        }
    };
    if let Some(fd) = listener {
        let req = json!({
            "op": "exec-vsock",
            "vm": vm,
            "pid": std::process::id(),
            "fd": fd,
        });
        // Without serve answering the listener, every connect would fail:
        // better not to start the program.
        let handed = control::request_on(stream, control, &req);
        // SAFETY: our own descriptor; serve holds its copy.
        unsafe { libc::close(fd) };
        if let Err(e) = handed {
            restore();
            return Err(control_err(e));
        }
    } else {
        drop(stream);
    }

    // SAFETY: plain syscalls on valid arguments. Rust ignores SIGPIPE in
    // its own binaries, and an ignored disposition survives exec: restore the
    // default the program would have had.
    let err = unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::execv(cpath.as_ptr(), argv.as_ptr());
        std::io::Error::last_os_error()
    };
    restore();
    Err(ExecError::Exec {
        program: path,
        source: err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a filter of the instructions used here over `struct seccomp_data`.
    fn run(f: &[libc::sock_filter], nr: i64, arch: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend_from_slice(&(nr as i32).to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = f[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    let k = i.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                BPF_JEQ_K | BPF_JSET_K => {
                    let hit = if i.code == BPF_JEQ_K {
                        acc == i.k
                    } else {
                        acc & i.k != 0
                    };
                    pc += usize::from(if hit { i.jt } else { i.jf });
                }
                BPF_RET_K => return i.k,
                c => panic!("unexpected instruction {c:#x}"),
            }
        }
    }

    #[test]
    fn vsock_filter_notifies_vsock_sockets_connect_and_bind_and_traps_exec_mappings() {
        let f = vsock_filter();
        let x = AUDIT_ARCH_X86_64;
        let exec = libc::PROT_READ as u64 | libc::PROT_EXEC as u64;
        for f in [&f, &exec_mapping_filter()] {
            assert_eq!(
                run(f, libc::SYS_mmap, x, [0, 4096, exec, 0, 0, 0]),
                SECCOMP_RET_TRACE
            );
            assert_eq!(
                run(f, libc::SYS_mprotect, x, [0, 4096, exec, 0, 0, 0]),
                SECCOMP_RET_TRACE
            );
            assert_eq!(
                run(f, libc::SYS_pkey_mprotect, x, [0, 1, exec, 0, 0, 0]),
                SECCOMP_RET_TRACE
            );
            assert_eq!(
                run(f, libc::SYS_mmap, x, [0, 4096, 3, 0, 0, 0]),
                SECCOMP_RET_ALLOW
            );
            assert_eq!(
                run(f, libc::SYS_read, x, [0, 0, exec, 0, 0, 0]),
                SECCOMP_RET_ALLOW
            );
            assert_eq!(
                run(f, libc::SYS_mmap, 0x4000_0003, [0, 0, exec, 0, 0, 0]),
                SECCOMP_RET_ALLOW
            );
        }
        assert_eq!(
            run(&f, libc::SYS_socket, x, [40, 1, 0, 0, 0, 0]),
            SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(
            run(&f, libc::SYS_socket, x, [2, 1, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&f, libc::SYS_socket, x, [1, 1, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&f, libc::SYS_connect, x, [3, 0, 16, 0, 0, 0]),
            SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(
            run(&f, libc::SYS_bind, x, [3, 0, 16, 0, 0, 0]),
            SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(
            run(&f, libc::SYS_accept, x, [3, 0, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
        // i386 socketcall numbering is not x86_64's: left alone.
        assert_eq!(
            run(&f, libc::SYS_socket, 0x4000_0003, [40, 1, 0, 0, 0, 0]),
            SECCOMP_RET_ALLOW
        );
    }
}
