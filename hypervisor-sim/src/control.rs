//! The control socket: `hvsim vm ...` and `hvsim exec` talk to a running
//! `hvsim serve` through it. One JSON request per line, one JSON answer per
//! line: `{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}`.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::vm::{self, Vm};

/// Largest request line (a `set-var` may carry a large value).
pub const MAX_REQUEST: u64 = 16 << 20;
/// Default wait for a TCLO reply.
pub const DEFAULT_TCLO_TIMEOUT_MS: u64 = 30_000;

/// A control request.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// All VMs, briefly.
    List,
    /// One VM in full.
    Show {
        /// VM name.
        vm: String,
    },
    /// Set a guestinfo variable.
    SetVar {
        /// VM name.
        vm: String,
        /// `guestinfo.KEY` or `KEY`.
        key: String,
        /// The value.
        value: String,
    },
    /// Read a guestinfo variable.
    GetVar {
        /// VM name.
        vm: String,
        /// `guestinfo.KEY` or `KEY`.
        key: String,
    },
    /// Queue a TCLO command and wait for the guest's reply.
    Tclo {
        /// VM name.
        vm: String,
        /// The command text.
        command: String,
        /// How long to wait.
        timeout_ms: Option<u64>,
    },
    /// Change a VM's power state.
    Power {
        /// VM name.
        vm: String,
        /// on, off, reset, cycle, soft (graceful shutdown), reboot (graceful).
        action: String,
    },
    /// Read (and with `set`, first replace) a VM's clipboard.
    Clipboard {
        /// VM name.
        vm: String,
        /// New host selection.
        set: Option<String>,
    },
    /// Where a VM's backdoor socket is.
    Backdoor {
        /// VM name.
        vm: String,
    },
    /// `hvsim exec`: trace the calling process (pid, checked against the
    /// connection's peer) against a VM; answered once it is seized.
    ExecAttach {
        /// VM name.
        vm: String,
        /// The caller's own pid.
        pid: i32,
        /// Print the tracer's counts on the program's stderr at its exit.
        #[serde(default)]
        stats: bool,
        /// A pty master comes with the request (SCM_RIGHTS): attach it as
        /// the VM's serial console (`hvsim exec --console`).
        #[serde(default)]
        console: bool,
    },
    /// A guest operation (run, ls, upload, ...) through the guest tools'
    /// VIX handler, as `user` with `password`. Descriptors passed with the
    /// request carry file data (see [`crate::guestops::service`]).
    Guest {
        /// VM name.
        vm: String,
        /// Guest user name.
        user: String,
        /// Its password.
        password: crate::guestops::service::Password,
        /// The operation.
        guest: crate::guestops::service::GuestCmd,
    },
    /// `hvsim exec`, after `exec-attach`: handle the vsock calls its seccomp
    /// filter reports on the listener `fd` (a descriptor of process `pid`,
    /// the connection's peer).
    ExecVsock {
        /// VM name.
        vm: String,
        /// The caller's own pid.
        pid: i32,
        /// The listener's descriptor number in the caller.
        fd: i32,
    },
}

/// The VMs a control server answers for.
pub type Inventory = Arc<BTreeMap<String, Arc<Vm>>>;

fn full_key(key: &str) -> String {
    if key.starts_with("guestinfo.") {
        key.to_string()
    } else {
        format!("guestinfo.{key}")
    }
}

fn find<'a>(inv: &'a Inventory, name: &str) -> Result<&'a Arc<Vm>, String> {
    inv.get(name).ok_or_else(|| {
        let names: Vec<&str> = inv.keys().map(String::as_str).collect();
        format!("no VM named {name:?} (VMs: {})", names.join(", "))
    })
}

/// Answer one request.
pub fn handle(inv: &Inventory, req: Request) -> Result<Value, String> {
    match req {
        Request::List => Ok(Value::Array(
            inv.values()
                .map(|vm| {
                    let v = vm::show_json(vm);
                    json!({
                        "name": v["name"],
                        "uuid": v["uuid"],
                        "power": v["power"],
                        "tools": { "status": v["tools"]["status"], "version": v["tools"]["version"] },
                        "guest": { "hostname": v["guest"]["hostname"] },
                    })
                })
                .collect(),
        )),
        Request::Show { vm } => Ok(vm::show_json(find(inv, &vm)?)),
        Request::SetVar { vm, key, value } => {
            find(inv, &vm)?.set_var(&full_key(&key), value.as_bytes())?;
            Ok(Value::Null)
        }
        Request::GetVar { vm, key } => {
            let key = full_key(&key);
            match find(inv, &vm)?.get_var(&key) {
                Some(v) => Ok(Value::String(String::from_utf8_lossy(&v).into_owned())),
                None => Err(format!("{key} is not set")),
            }
        }
        Request::Tclo {
            vm,
            command,
            timeout_ms,
        } => {
            let vm = find(inv, &vm)?;
            let t = Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_TCLO_TIMEOUT_MS));
            let reply = vm.tclo(command.as_bytes(), t)?;
            Ok(Value::String(String::from_utf8_lossy(&reply).into_owned()))
        }
        Request::Power { vm, action } => {
            let a = match action.as_str() {
                "on" => vm::PowerAction::On,
                "off" => vm::PowerAction::Off,
                "reset" => vm::PowerAction::Reset,
                "cycle" => vm::PowerAction::Cycle,
                "soft" | "shutdown" => vm::PowerAction::SoftOff,
                "reboot" => vm::PowerAction::SoftReboot,
                other => {
                    return Err(format!(
                        "unknown power action {other:?}: use on, off, reset, cycle, soft or reboot"
                    ))
                }
            };
            find(inv, &vm)?
                .power(a, "control")
                .map_err(|e| e.to_string())?;
            Ok(Value::Null)
        }
        Request::Clipboard { vm, set } => {
            let text = find(inv, &vm)?.clipboard(set.as_deref())?;
            Ok(Value::String(String::from_utf8_lossy(&text).into_owned()))
        }
        Request::Backdoor { vm } => Ok(json!({
            "socket": find(inv, &vm)?.info.backdoor_socket,
        })),
        Request::Guest {
            vm,
            user,
            password,
            guest,
        } => crate::guestops::service::handle(find(inv, &vm)?, &user, &password.0, guest, Vec::new()),
        Request::ExecAttach { .. } | Request::ExecVsock { .. } => {
            Err("exec-attach and exec-vsock are served only on the control socket".to_string())
        }
    }
}

/// Serve control connections until the process ends; `exec` takes the
/// `exec-attach` requests of `hvsim exec`.
pub fn spawn(
    inv: Inventory,
    listener: UnixListener,
    exec: Arc<crate::exec::Service>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let inv = inv.clone();
                let exec = exec.clone();
                let _ = std::thread::Builder::new()
                    .name("control-conn".into())
                    .spawn(move || {
                        if let Err(e) = serve_conn(&inv, &exec, conn) {
                            log::debug!("control connection: {e}");
                        }
                    });
            }
        })?;
    Ok(())
}

/// The pid of the process that connected (SO_PEERCRED).
fn peer_pid(conn: &UnixStream) -> Option<i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: ucred is plain data; getsockopt writes at most `len` bytes
    // into it and the fd is open while `conn` is borrowed.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let rc = libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        );
        (rc == 0 && cred.pid > 0).then_some(cred.pid)
    }
}

/// Reads a unix stream with recvmsg, keeping the file descriptors that
/// come along (SCM_RIGHTS); at most [`MAX_PASSED_FDS`] are kept.
struct FdReader {
    sock: UnixStream,
    fds: Vec<std::os::fd::OwnedFd>,
}

/// Most descriptors a control connection may pass with one request
/// (`guest run` passes stdout and stderr).
const MAX_PASSED_FDS: usize = 2;

impl Read for FdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // Room for a few descriptors; extras are closed below.
        let mut cbuf = [0u64; 8];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; it points at `iov` and `cbuf`, which
        // outlive the call, with their true lengths.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
        // SAFETY: a valid socket and msghdr.
        let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: walking the control buffer the kernel filled, with the
        // CMSG_* accessors; SCM_RIGHTS data is an array of fds now ours.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                    let len = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    for i in 0..len / std::mem::size_of::<libc::c_int>() {
                        let fd = OwnedFd::from_raw_fd(data.add(i).read_unaligned());
                        if self.fds.len() < MAX_PASSED_FDS {
                            self.fds.push(fd);
                        }
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        Ok(n as usize)
    }
}

fn serve_conn(inv: &Inventory, exec: &crate::exec::Service, conn: UnixStream) -> io::Result<()> {
    let peer = peer_pid(&conn);
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(FdReader {
        sock: conn,
        fds: Vec::new(),
    });
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut r)
            .take(MAX_REQUEST + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let answer = if line.len() as u64 > MAX_REQUEST {
            json!({"ok": false, "error": format!("request exceeds {MAX_REQUEST} bytes")})
        } else {
            let result = match serde_json::from_slice::<Request>(&line) {
                Ok(Request::ExecAttach {
                    vm,
                    pid,
                    stats,
                    console,
                }) => {
                    let fd = r.get_mut().fds.pop();
                    let offer = json!({"vsock": crate::exec::VSOCK_SUPPORTED});
                    match (console, fd) {
                        (true, None) => {
                            Err("exec-attach: console requested but no pty was passed".to_string())
                        }
                        (true, fd) => exec.attach(&vm, pid, peer, stats, fd).map(|()| offer),
                        (false, _) => exec.attach(&vm, pid, peer, stats, None).map(|()| offer),
                    }
                }
                Ok(Request::Guest {
                    vm,
                    user,
                    password,
                    guest,
                }) => {
                    let fds = std::mem::take(&mut r.get_mut().fds);
                    find(inv, &vm).and_then(|v| {
                        crate::guestops::service::handle(v, &user, &password.0, guest, fds)
                    })
                }
                Ok(Request::ExecVsock { vm, pid, fd }) => {
                    exec.vsock(&vm, pid, peer, fd).map(|()| Value::Null)
                }
                Ok(req) => handle(inv, req),
                Err(e) => Err(format!("bad control request: {e}")),
            };
            match result {
                Ok(v) => json!({"ok": true, "result": v}),
                Err(e) => json!({"ok": false, "error": e}),
            }
        };
        let mut out = serde_json::to_vec(&answer)?;
        out.push(b'\n');
        w.write_all(&out)?;
        if line.len() as u64 > MAX_REQUEST {
            return Ok(());
        }
    }
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No server at the socket.
    #[error("cannot reach hvsim at {path}: {source}; is `hvsim serve` running? (set HVSIM_CONTROL=PATH to name its control socket)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The connection broke.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The server said no.
    #[error("{0}")]
    Server(String),
}

/// The control socket a client should use: `HVSIM_CONTROL`, else the default.
pub fn client_socket(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("HVSIM_CONTROL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(crate::config::DEFAULT_CONTROL_SOCKET),
    }
}

/// Send one request and return the result.
pub fn request(path: &Path, req: &Value) -> Result<Value, ControlError> {
    let s = UnixStream::connect(path).map_err(|source| ControlError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    request_on(s, path, req)
}

/// Send one request on a connection already open to `path`.
pub fn request_on(s: UnixStream, path: &Path, req: &Value) -> Result<Value, ControlError> {
    request_with_fd(s, path, req, None)
}

/// Send one request on a connection already open to `path`, passing the
/// file descriptor `fd` along with it (SCM_RIGHTS) when given.
pub fn request_with_fd(
    s: UnixStream,
    path: &Path,
    req: &Value,
    fd: Option<std::os::fd::BorrowedFd<'_>>,
) -> Result<Value, ControlError> {
    let fds: Vec<_> = fd.into_iter().collect();
    request_with_fds(s, path, req, &fds)
}

/// Send one request on a connection already open to `path`, passing the
/// file descriptors `fds` along with it (SCM_RIGHTS, at most 2).
pub fn request_with_fds(
    mut s: UnixStream,
    path: &Path,
    req: &Value,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<Value, ControlError> {
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut line = serde_json::to_vec(req).map_err(|e| io_err(e.into()))?;
    line.push(b'\n');
    if fds.is_empty() {
        s.write_all(&line).map_err(io_err)?;
    } else {
        send_with_fds(&s, &line, fds).map_err(io_err)?;
    }
    let mut r = BufReader::new(s);
    let mut answer = Vec::new();
    r.read_until(b'\n', &mut answer).map_err(io_err)?;
    let v: Value = serde_json::from_slice(&answer).map_err(|e| io_err(e.into()))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v["result"].clone())
    } else {
        Err(ControlError::Server(
            v["error"].as_str().unwrap_or("unknown error").to_string(),
        ))
    }
}

/// Write all of `data` with `fds` attached to its first byte.
fn send_with_fds(
    s: &UnixStream,
    data: &[u8],
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if fds.len() > MAX_PASSED_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one request",
        ));
    }
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let payload = (std::mem::size_of::<libc::c_int>() * fds.len()) as u32;
    // SAFETY: msghdr is plain data pointing at `iov` and `cbuf`, which
    // outlive the call; the control message is built with the CMSG_*
    // accessors inside `cbuf`, which is large enough for two ints.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(payload) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(payload) as _;
        let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
        for (i, fd) in fds.iter().enumerate() {
            data.add(i).write_unaligned(fd.as_raw_fd());
        }
        libc::sendmsg(s.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut w = s;
    w.write_all(&data[n as usize..])
}
