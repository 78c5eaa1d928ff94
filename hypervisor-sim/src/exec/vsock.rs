//! vsock for programs under `hvsim exec` (x86_64 Linux), the serve side.
//!
//! A guest on a VMware host reaches the hypervisor over vsock: open-vm-tools'
//! RpcIn connects a stream to CID 0 port 975 and gets TCLO commands pushed
//! on it ([`crate::vsock`]), falling back to polling over the backdoor when
//! the connect fails, and each RPCI channel tries port 976 before the
//! backdoor ([`crate::rpci_vsock`]). Here the machine has no such hypervisor, so the vsock
//! calls of the program are emulated with unix sockets:
//!
//! The seccomp filter `hvsim exec` installs ([`super::launch`]) sends these
//! calls to user notification, on a listener serve takes over (`exec-vsock`
//! control request, `pidfd_getfd`); one thread per session answers them:
//!
//! | call                                   | answer                                           |
//! |----------------------------------------|--------------------------------------------------|
//! | `socket(AF_VSOCK, SOCK_STREAM\|flags, 0)` | a new AF_UNIX stream socket (same NONBLOCK/CLOEXEC), installed in the program as the call's result (`SECCOMP_IOCTL_NOTIF_ADDFD`) |
//! | `socket(AF_VSOCK, SOCK_DGRAM, 0)`       | an AF_UNIX datagram socket: open-vm-tools probes the family with one |
//! | `socket(AF_VSOCK, other type)`          | ESOCKTNOSUPPORT                                  |
//! | `connect(emulated stream, CID 0/1/2 port 975)` | serve connects the program's own socket (same open file description) to the VM's TCLO endpoint; 0 or that connect's errno |
//! | `connect(emulated stream, CID 0/1/2 port 976)` | the same, to the VM's RPCI endpoint |
//! | `connect(emulated, other vsock address)` | ECONNREFUSED                                      |
//! | `bind(emulated, vsock address)`         | 0 (open-vm-tools binds a source port before connecting) |
//! | `connect`/`bind` of anything else       | the kernel's own call (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`) |
//!
//! Emulated sockets are recognized by their inode (the newest
//! [`MAX_EMULATED`] are remembered). Every failure fails safe: the program
//! sees an errno and falls back to the backdoor; serve keeps serving. When
//! the last process of the program exits the listener hangs up and the
//! thread ends. What the program can make serve do is bounded: create
//! unix sockets for it, read a sockaddr from its memory (at most 128 bytes),
//! and connect its sockets to its own VM's endpoints.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// AF_VSOCK (linux/socket.h).
pub const AF_VSOCK: u32 = 40;
/// Emulated sockets remembered per session.
pub const MAX_EMULATED: usize = 1024;
/// `pidfd_open` flag for a thread's pidfd (Linux 6.9), `O_EXCL`.
const PIDFD_THREAD: libc::c_uint = libc::O_EXCL as libc::c_uint;
/// `struct sockaddr_vm`: family, reserved, port, cid, flags, zero.
const SOCKADDR_VM_LEN: usize = 16;
/// Longest sockaddr read from the program.
const MAX_SOCKADDR: usize = 128;

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// A pidfd for task `tid` (a thread's own with PIDFD_THREAD where the kernel
/// has it, else its process's: threads share their descriptor table).
fn pidfd(tid: i32) -> io::Result<OwnedFd> {
    let open = |pid: i32, flags: libc::c_uint| {
        // SAFETY: pidfd_open takes integers and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) } as i32;
        if fd < 0 {
            Err(last_err())
        } else {
            // SAFETY: `fd` was just returned to us and is owned here only.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    open(tid, PIDFD_THREAD).or_else(|_| {
        let tgid = std::fs::read_to_string(format!("/proc/{tid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Tgid:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(tid);
        open(tgid, 0)
    })
}

/// Descriptor `fd` of the task behind `pidfd`, duplicated into serve.
fn getfd(pidfd: &OwnedFd, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes integers and returns a new fd or -1.
    let got = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) } as i32;
    if got < 0 {
        Err(last_err())
    } else {
        // SAFETY: a new fd, owned here only.
        Ok(unsafe { OwnedFd::from_raw_fd(got) })
    }
}

/// Take the seccomp listener `fd` of process `pid` (the caller of the
/// control request) and answer its notifications from a new thread.
/// `endpoints`: the VM's vsock endpoints, hypervisor port → unix socket
/// (`port | PRIVILEGED` for connections from a privileged source port).
pub fn start(vm: &str, pid: i32, fd: i32, endpoints: HashMap<u32, PathBuf>) -> Result<(), String> {
    let pfd = pidfd(pid).map_err(|e| format!("exec-vsock: process {pid}: {e}"))?;
    let listener = getfd(&pfd, fd)
        .map_err(|e| format!("exec-vsock: cannot take descriptor {fd} of process {pid}: {e}"))?;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd()))
        .map_err(|e| format!("exec-vsock: {e}"))?;
    if link.as_os_str().as_bytes() != b"anon_inode:seccomp notify" {
        return Err(format!(
            "exec-vsock: descriptor {fd} of process {pid} is not a seccomp listener ({})",
            link.display()
        ));
    }
    let mut n = Notifier {
        vm: vm.to_string(),
        listener,
        endpoints,
        emulated: HashSet::new(),
        order: VecDeque::new(),
        bound: HashMap::new(),
    };
    std::thread::Builder::new()
        .name(format!("exec-vsock-{pid}"))
        .spawn(move || {
            n.run();
            log::debug!("exec session {pid}: vsock listener closed");
        })
        .map_err(|e| format!("exec-vsock: cannot start its thread: {e}"))?;
    Ok(())
}

/// How a notification is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Run the call as the kernel would.
    Continue,
    /// Return this value.
    Value(i64),
    /// Fail with this errno.
    Errno(i32),
    /// Already answered (ADDFD with SEND), or the call is gone.
    Done,
}

struct Notifier {
    vm: String,
    listener: OwnedFd,
    /// Hypervisor vsock port → the VM's unix socket for it.
    endpoints: HashMap<u32, PathBuf>,
    /// (device, inode) of the sockets made here.
    emulated: HashSet<(u64, u64)>,
    order: VecDeque<(u64, u64)>,
    /// Source ports the emulated sockets were bound to.
    bound: HashMap<(u64, u64), u32>,
}

/// Endpoint key bit: the endpoint of `port | PRIVILEGED` takes connections
/// from a privileged source port (below 1024: root in the guest), where a
/// VMware host accepts privileged RPCI (the namespace DB).
pub const PRIVILEGED: u32 = 0x8000_0000;

/// Below this, binding a vsock source port needs CAP_NET_BIND_SERVICE.
const PRIVILEGED_PORTS: u32 = 1024;

/// Whether process `pid` may bind a privileged vsock port: as the kernel's
/// `capable(CAP_NET_BIND_SERVICE)`, the capability in its CapEff and the
/// process in the initial user namespace (a user namespace's root is not
/// the guest's root).
fn may_bind_privileged(pid: u32) -> bool {
    const CAP_NET_BIND_SERVICE: u32 = 10;
    let userns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/user")).ok();
    let init = userns("1").or_else(|| userns("self"));
    if init.is_none() || userns(&pid.to_string()) != init {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_BIND_SERVICE) != 0)
}

/// Device and inode of an open file.
fn file_id(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    // SAFETY: all-zero is a valid stat; fstat writes it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(last_err());
    }
    Ok((st.st_dev, st.st_ino))
}

fn sock_type(fd: &OwnedFd) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid out pointers of the right size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        Err(last_err())
    } else {
        Ok(v)
    }
}

impl Notifier {
    fn run(&mut self) {
        loop {
            let mut p = libc::pollfd {
                fd: self.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut p, 1, -1) };
            if rc < 0 {
                let e = last_err();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                log::error!("{}: exec vsock: poll: {e}", self.vm);
                return;
            }
            if p.revents & libc::POLLIN == 0 {
                // POLLHUP: no process uses the filter any more.
                return;
            }
            // SAFETY: the kernel wants a zeroed seccomp_notif to fill.
            let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
            // SAFETY: RECV writes one seccomp_notif into `n`.
            let rc = unsafe {
                libc::ioctl(
                    self.listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_RECV,
                    &mut n,
                )
            };
            if rc != 0 {
                let e = last_err();
                match e.raw_os_error() {
                    // Interrupted, or the caller died before we took it.
                    Some(libc::EINTR | libc::ENOENT) => continue,
                    _ => {
                        log::error!("{}: exec vsock: receive: {e}", self.vm);
                        return;
                    }
                }
            }
            let reply = self.handle(&n);
            self.respond(n.id, reply);
        }
    }

    fn respond(&self, id: u64, reply: Reply) {
        let (val, error, flags) = match reply {
            Reply::Done => return,
            Reply::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
            Reply::Value(v) => (v, 0, 0),
            Reply::Errno(e) => (0, -e, 0),
        };
        let mut r = libc::seccomp_notif_resp {
            id,
            val,
            error,
            flags,
        };
        // SAFETY: SEND reads one seccomp_notif_resp.
        let rc = unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut r,
            )
        };
        if rc != 0 {
            // ENOENT: the call was interrupted by a signal or its task died.
            log::debug!("{}: exec vsock: answer: {}", self.vm, last_err());
        }
    }

    /// The notification `id` still stands (its task has not gone, nor has
    /// its pid been reused).
    fn valid(&self, id: u64) -> bool {
        let mut id = id;
        // SAFETY: ID_VALID reads one u64.
        unsafe {
            libc::ioctl(
                self.listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
                &mut id,
            ) == 0
        }
    }

    fn handle(&mut self, n: &libc::seccomp_notif) -> Reply {
        let nr = i64::from(n.data.nr);
        if nr == libc::SYS_socket {
            self.socket(n)
        } else if nr == libc::SYS_connect || nr == libc::SYS_bind {
            match self.addressed(n) {
                Ok(r) => r,
                Err(e) => Reply::Errno(errno_of(&e)),
            }
        } else {
            Reply::Continue
        }
    }

    fn remember(&mut self, id: (u64, u64)) {
        if self.emulated.insert(id) {
            self.order.push_back(id);
            if self.order.len() > MAX_EMULATED {
                if let Some(old) = self.order.pop_front() {
                    self.emulated.remove(&old);
                    self.bound.remove(&old);
                }
            }
        }
    }

    /// socket(AF_VSOCK, type, protocol): the filter sends only AF_VSOCK.
    fn socket(&mut self, n: &libc::seccomp_notif) -> Reply {
        let ty = n.data.args[1] as i32;
        let proto = n.data.args[2] as i32;
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        if ty & !(0xf | flags) != 0 {
            return Reply::Errno(libc::EINVAL);
        }
        if proto != 0 && proto != AF_VSOCK as i32 {
            return Reply::Errno(libc::EPROTONOSUPPORT);
        }
        let base = ty & 0xf;
        if base != libc::SOCK_STREAM && base != libc::SOCK_DGRAM {
            return Reply::Errno(libc::ESOCKTNOSUPPORT);
        }
        // SAFETY: socket takes integers and returns a new fd or -1.
        let s = unsafe {
            libc::socket(
                libc::AF_UNIX,
                base | libc::SOCK_CLOEXEC | (ty & libc::SOCK_NONBLOCK),
                0,
            )
        };
        if s < 0 {
            return Reply::Errno(errno_of(&last_err()));
        }
        // SAFETY: a new fd, owned here only.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        match file_id(&s) {
            Ok(id) => self.remember(id),
            Err(e) => return Reply::Errno(errno_of(&e)),
        }
        let newfd_flags = if ty & libc::SOCK_CLOEXEC != 0 {
            libc::O_CLOEXEC as u32
        } else {
            0
        };
        let add = |flags: u32| {
            let mut a = libc::seccomp_notif_addfd {
                id: n.id,
                flags,
                srcfd: s.as_raw_fd() as u32,
                newfd: 0,
                newfd_flags,
            };
            // SAFETY: ADDFD reads one seccomp_notif_addfd; it returns the
            // descriptor number in the target, or -1.
            let rc = unsafe {
                libc::ioctl(
                    self.listener.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_ADDFD,
                    &mut a,
                )
            };
            if rc < 0 {
                Err(last_err())
            } else {
                Ok(rc)
            }
        };
        // SEND installs the descriptor and answers the call with its number
        // in one step (Linux 5.14); before that, install, then answer.
        match add(libc::SECCOMP_ADDFD_FLAG_SEND as u32) {
            Ok(_) => Reply::Done,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => match add(0) {
                Ok(fd) => Reply::Value(i64::from(fd)),
                Err(e) => self.failed(&e),
            },
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&self, e: &io::Error) -> Reply {
        if e.raw_os_error() == Some(libc::ENOENT) {
            Reply::Done
        } else {
            log::debug!("{}: exec vsock: {e}", self.vm);
            Reply::Errno(errno_of(e))
        }
    }

    /// connect(fd, addr, len) or bind(fd, addr, len).
    fn addressed(&mut self, n: &libc::seccomp_notif) -> io::Result<Reply> {
        let fd = n.data.args[0] as i32;
        let ptr = n.data.args[1];
        let len = n.data.args[2] as u32 as usize;
        if !(2..=MAX_SOCKADDR).contains(&len) || ptr == 0 {
            return Ok(Reply::Continue);
        }
        let mut addr = [0u8; SOCKADDR_VM_LEN];
        let want = len.min(SOCKADDR_VM_LEN);
        let local = libc::iovec {
            iov_base: addr.as_mut_ptr().cast(),
            iov_len: want,
        };
        let remote = libc::iovec {
            iov_base: ptr as *mut libc::c_void,
            iov_len: want,
        };
        // SAFETY: reads at most `want` bytes of the task's memory into
        // `addr`, which is that large; the remote side is only read.
        let got = unsafe { libc::process_vm_readv(n.pid as i32, &local, 1, &remote, 1, 0) };
        if got != want as isize {
            // Unreadable: the kernel's own call reports EFAULT.
            return Ok(Reply::Continue);
        }
        if u32::from(u16::from_ne_bytes([addr[0], addr[1]])) != AF_VSOCK {
            return Ok(Reply::Continue);
        }
        let task = pidfd(n.pid as i32)?;
        // The pid is the notification's task: it cannot have been reused.
        if !self.valid(n.id) {
            return Ok(Reply::Done);
        }
        let sock = getfd(&task, fd)?;
        let sock_id = match file_id(&sock) {
            Ok(id) if self.emulated.contains(&id) => id,
            // Not a socket made here: the kernel says what it thinks.
            _ => return Ok(Reply::Continue),
        };
        if len < SOCKADDR_VM_LEN {
            return Ok(Reply::Errno(libc::EINVAL));
        }
        let port = u32::from_ne_bytes([addr[4], addr[5], addr[6], addr[7]]);
        if i64::from(n.data.nr) == libc::SYS_bind {
            // As the kernel: a privileged port needs the capability
            // (open-vm-tools then falls back to an unprivileged one).
            if port < PRIVILEGED_PORTS && !may_bind_privileged(n.pid) {
                return Ok(Reply::Errno(libc::EACCES));
            }
            self.bound.insert(sock_id, port);
            return Ok(Reply::Value(0));
        }
        let privileged = self
            .bound
            .get(&sock_id)
            .is_some_and(|&p| p < PRIVILEGED_PORTS);
        let cid = u32::from_ne_bytes([addr[8], addr[9], addr[10], addr[11]]);
        let stream = sock_type(&sock)? == libc::SOCK_STREAM;
        let served = stream && cid <= 2;
        let endpoint = match self.endpoints.get(&(port | PRIVILEGED)) {
            Some(p) if privileged && port & PRIVILEGED == 0 => Some(p),
            _ => self.endpoints.get(&port),
        };
        let Some(endpoint) = endpoint.filter(|_| served) else {
            log::debug!(
                "{}: exec vsock: process {} connects to vsock {cid}:{port}: refused",
                self.vm,
                n.pid
            );
            return Ok(Reply::Errno(libc::ECONNREFUSED));
        };
        Ok(match connect_unix(&sock, endpoint) {
            Ok(()) => {
                log::debug!(
                    "{}: exec vsock: process {} connected to vsock port {port}",
                    self.vm,
                    n.pid
                );
                Reply::Value(0)
            }
            Err(e) => {
                log::debug!("{}: exec vsock: endpoint of port {port}: {e}", self.vm);
                Reply::Errno(errno_of(&e))
            }
        })
    }
}

/// Connect the unix socket `s` to `path`.
fn connect_unix(s: &OwnedFd, path: &std::path::Path) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut a: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    a.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= a.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (d, &b) in a.sun_path.iter_mut().zip(bytes) {
        *d = b as libc::c_char;
    }
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    loop {
        // SAFETY: `a` is a valid sockaddr_un of at least `len` bytes.
        let rc =
            unsafe { libc::connect(s.as_raw_fd(), (&a as *const libc::sockaddr_un).cast(), len) };
        if rc == 0 {
            return Ok(());
        }
        let e = last_err();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}
