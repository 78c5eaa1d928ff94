//! TCLO and RPCI over vsock: the host pushes commands on a stream instead
//! of the guest polling for them over the backdoor, and answers RPCI
//! messages without a backdoor call.
//!
//! A VMware host listens on vsock CID 0 (the hypervisor), port 975; vmtoolsd
//! tries it before falling back to the backdoor poll, and so does vm-agent.
//! Each command arrives as a DataMap packet ([`protocol::datamap`]); the
//! guest answers every one with a data packet, and after its first answer
//! sends a ping every second as a heartbeat. At idle that is one small write
//! a second instead of ten polls of two backdoor calls each.
//!
//! RPCI goes to port 976 ([`VsockRpci`]): one data packet per message, one
//! back with the `1 `/`0 ` reply, from a privileged source port when the
//! agent may bind one (as vmtoolsd does: hosts trust those more).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use std::os::unix::net::UnixStream;

use protocol::datamap::{
    read_packet, Decoder, Packet, PacketKind, HYPERVISOR_CID, RPCI_VSOCK_PORT, TCLO_VSOCK_PORT,
};

/// How often the guest says it is alive (vmtoolsd's RPCIN_HEARTBEAT_INTERVAL).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Longest a blocking send may stall before the link counts as broken.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest the host may take to answer one RPCI message.
const RPCI_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the link failed.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The socket call failed.
    #[error("{what}: {source}")]
    Io {
        /// Which call.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The host closed the stream.
    #[error("the host closed the vsock TCLO connection")]
    Closed,
    /// The host sent something that is not a packet.
    #[error("bad packet from the host: {0}")]
    Packet(#[from] protocol::datamap::DataMapError),
    /// No answer within the connect timeout.
    #[error("no vsock TCLO endpoint answered within {0:?}")]
    Timeout(Duration),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> VsockError {
    move |source| VsockError::Io { what, source }
}

fn last_os(what: &'static str) -> VsockError {
    VsockError::Io {
        what,
        source: io::Error::last_os_error(),
    }
}

/// The guest end of TCLO over vsock.
#[derive(Debug)]
pub struct VsockTclo {
    stream: UnixStream,
    decoder: Decoder,
    next_ping: Option<Instant>,
}

impl VsockTclo {
    /// Connect to the hypervisor's TCLO port, waiting at most `timeout`.
    pub fn connect(timeout: Duration) -> Result<VsockTclo, VsockError> {
        Ok(VsockTclo {
            stream: UnixStream::from(connect_stream(TCLO_VSOCK_PORT, timeout, false)?),
            decoder: Decoder::new(),
            next_ping: None,
        })
    }

    /// The descriptor to wait on for commands.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// When the next heartbeat is due (none before the first answer).
    pub fn next_ping(&self) -> Option<Instant> {
        self.next_ping
    }

    /// Read what has arrived (without blocking) and return the commands in
    /// it; pings from the host, if any, are ignored.
    pub fn receive(&mut self) -> Result<Vec<Vec<u8>>, VsockError> {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: recv into a buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.stream.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n == 0 {
                return Err(VsockError::Closed);
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(io_err("recv")(e)),
                }
            }
            self.decoder.feed(&buf[..n as usize]);
            if (n as usize) < buf.len() {
                break;
            }
        }
        let mut cmds = Vec::new();
        while let Some(p) = self.decoder.next_packet()? {
            if p.kind == PacketKind::Data {
                cmds.push(p.payload.unwrap_or_default());
            }
        }
        Ok(cmds)
    }

    /// Answer the last command.
    pub fn reply(&mut self, reply: &[u8], now: Instant) -> Result<(), VsockError> {
        self.send(&Packet::data(reply).encode())?;
        if self.next_ping.is_none() {
            self.next_ping = Some(now + HEARTBEAT);
        }
        Ok(())
    }

    /// Send a heartbeat if one is due.
    pub fn heartbeat(&mut self, now: Instant) -> Result<(), VsockError> {
        match self.next_ping {
            Some(at) if at <= now => {
                self.send(&Packet::ping().encode())?;
                self.next_ping = Some(now + HEARTBEAT);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), VsockError> {
        use std::io::Write;
        self.stream.write_all(bytes).map_err(io_err("send"))
    }
}

/// A blocking vsock stream to the hypervisor's `port`, connected within
/// `timeout`, with a send timeout; bound to a privileged source port first
/// when `privileged` and the process may.
fn connect_stream(port: u32, timeout: Duration, privileged: bool) -> Result<OwnedFd, VsockError> {
    // SAFETY: plain socket(2); the descriptor is owned right after.
    let raw = unsafe {
        libc::socket(
            libc::AF_VSOCK,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if raw < 0 {
        return Err(last_os("socket(AF_VSOCK)"));
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    if privileged {
        bind_privileged(&fd);
    }
    let addr = vsock_addr(HYPERVISOR_CID, port);
    // SAFETY: `addr` is a valid sockaddr_vm of the size given.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(VsockError::Io {
                what: "connect to the hypervisor's vsock port",
                source: e,
            });
        }
        wait_connected(&fd, timeout)?;
    }
    set_blocking(&fd)?;
    let tv = libc::timeval {
        tv_sec: SEND_TIMEOUT.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(last_os("setsockopt(SO_SNDTIMEO)"));
    }
    Ok(fd)
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    addr
}

/// Bind the first free port from 1023 down (vmtoolsd's privileged RPCI
/// connection); without the privilege, or none free, stay unbound.
fn bind_privileged(fd: &OwnedFd) {
    for port in (512..=1023).rev() {
        let addr = vsock_addr(libc::VMADDR_CID_ANY, port);
        // SAFETY: `addr` is a valid sockaddr_vm of the size given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_vm).cast(),
                std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EADDRINUSE) {
            return;
        }
    }
}

/// The guest end of RPCI over vsock (port 976).
#[derive(Debug)]
pub struct VsockRpci {
    stream: UnixStream,
}

impl VsockRpci {
    /// Connect to the hypervisor's RPCI port, waiting at most `timeout`.
    pub fn connect(timeout: Duration) -> Result<VsockRpci, VsockError> {
        let fd = connect_stream(RPCI_VSOCK_PORT, timeout, true)?;
        // Any stream socket reads and writes like a unix one.
        let stream = UnixStream::from(fd);
        stream
            .set_read_timeout(Some(RPCI_REPLY_TIMEOUT))
            .map_err(io_err("setsockopt(SO_RCVTIMEO)"))?;
        Ok(VsockRpci { stream })
    }

    /// Send one RPCI message; the host's reply (`1 ...` or `0 ...`).
    pub fn request(&mut self, msg: &[u8]) -> Result<Vec<u8>, VsockError> {
        use std::io::Write;
        self.stream
            .write_all(&Packet::data(msg).encode())
            .map_err(io_err("send"))?;
        match read_packet(&mut self.stream)? {
            None => Err(VsockError::Closed),
            Some(p) => Ok(p.payload.unwrap_or_default()),
        }
    }
}

fn wait_connected(fd: &OwnedFd, timeout: Duration) -> Result<(), VsockError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_err("poll")(e));
        }
        if n == 0 {
            return Err(VsockError::Timeout(timeout));
        }
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into an int of the size given.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(last_os("getsockopt(SO_ERROR)"));
        }
        if err != 0 {
            return Err(VsockError::Io {
                what: "connect to the hypervisor's TCLO port",
                source: io::Error::from_raw_os_error(err),
            });
        }
        return Ok(());
    }
}

fn set_blocking(fd: &OwnedFd) -> Result<(), VsockError> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(last_os("fcntl(F_GETFL)"));
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(last_os("fcntl(F_SETFL)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn pair() -> (VsockTclo, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        let link = VsockTclo {
            stream: a,
            decoder: Decoder::new(),
            next_ping: None,
        };
        (link, b)
    }

    #[test]
    fn commands_in_replies_and_heartbeats_out() {
        use std::io::Write;
        let (mut link, mut host) = pair();
        assert!(link.receive().unwrap().is_empty());
        let mut wire = Packet::data(b"reset").encode();
        wire.extend(Packet::ping().encode());
        wire.extend(Packet::data(b"ping").encode());
        host.write_all(&wire).unwrap();
        assert_eq!(
            link.receive().unwrap(),
            vec![b"reset".to_vec(), b"ping".to_vec()]
        );
        let t0 = Instant::now();
        assert_eq!(
            link.next_ping(),
            None,
            "no heartbeat before the first answer"
        );
        link.reply(b"OK ATR toolbox", t0).unwrap();
        assert_eq!(link.next_ping(), Some(t0 + HEARTBEAT));
        link.heartbeat(t0).unwrap(); // not due yet: nothing sent
        link.heartbeat(t0 + HEARTBEAT).unwrap();
        let got = protocol::datamap::read_packet(&mut host).unwrap().unwrap();
        assert_eq!(got, Packet::data(b"OK ATR toolbox"));
        let got = protocol::datamap::read_packet(&mut host).unwrap().unwrap();
        assert_eq!(got, Packet::ping());
        drop(host);
        assert!(matches!(link.receive(), Err(VsockError::Closed)));
    }

    #[test]
    fn rpci_request_and_reply() {
        use std::io::Write;
        let (guest, mut host) = UnixStream::pair().unwrap();
        let mut link = VsockRpci { stream: guest };
        let t = std::thread::spawn(move || {
            let req = protocol::datamap::read_packet(&mut host).unwrap().unwrap();
            assert_eq!(req, Packet::data(b"info-get guestinfo.x"));
            host.write_all(&Packet::data(b"1 42").encode()).unwrap();
            // Then the host goes away.
        });
        assert_eq!(link.request(b"info-get guestinfo.x").unwrap(), b"1 42");
        t.join().unwrap();
        assert!(matches!(
            link.request(b"x"),
            Err(VsockError::Closed | VsockError::Io { .. })
        ));
    }

    #[test]
    fn garbage_from_the_host_is_an_error() {
        use std::io::Write;
        let (mut link, mut host) = pair();
        host.write_all(&[0x7f, 0, 0, 0]).unwrap();
        assert!(matches!(link.receive(), Err(VsockError::Packet(_))));
    }
}
