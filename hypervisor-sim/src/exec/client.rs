//! The tracer's connection to a VM's backdoor socket: one register frame
//! (protocol::frame) per emulated instruction, one connection per traced
//! process so hvsim frees a process's channels when it exits.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use protocol::frame::{Op, Reply, Request, HEADER_LEN};
use protocol::Regs;

use super::emulate::Device;

/// Longest refusal explanation read from hvsim.
const MAX_REASON: u32 = 4096;

/// A frame connection to one VM's backdoor socket.
#[derive(Debug)]
pub struct FrameClient {
    stream: UnixStream,
}

/// Send every byte of `parts` with MSG_NOSIGNAL (a vanished hvsim is an
/// error here, not a SIGPIPE: the tracer must not ignore SIGPIPE, since an
/// ignored disposition would be inherited by the program it runs).
fn send_all(stream: &UnixStream, mut parts: [&[u8]; 2]) -> io::Result<()> {
    while !parts[0].is_empty() || !parts[1].is_empty() {
        let mut iov = [
            libc::iovec {
                iov_base: parts[0].as_ptr() as *mut libc::c_void,
                iov_len: parts[0].len(),
            },
            libc::iovec {
                iov_base: parts[1].as_ptr() as *mut libc::c_void,
                iov_len: parts[1].len(),
            },
        ];
        // SAFETY: msghdr is plain data; all-zero means no name, no control data.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        // SAFETY: the fd is open while `stream` is borrowed; the iovecs point
        // into live shared slices that sendmsg only reads.
        let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut n = n as usize;
        for p in parts.iter_mut() {
            let k = n.min(p.len());
            *p = &p[k..];
            n -= k;
        }
    }
    Ok(())
}

impl FrameClient {
    /// Connect to the backdoor socket at `path`.
    pub fn connect(path: &Path) -> io::Result<Self> {
        Ok(FrameClient {
            stream: UnixStream::connect(path)?,
        })
    }

    fn round_trip(&mut self, req: Request, out: &[u8], inbuf: &mut [u8]) -> io::Result<Reply> {
        send_all(&self.stream, [&req.encode(), out])?;
        let mut h = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut h)?;
        let limit = (inbuf.len() as u32).max(MAX_REASON);
        let reply = Reply::decode(&h, limit)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if !reply.ok {
            let mut why = vec![0u8; reply.len as usize];
            self.stream.read_exact(&mut why)?;
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("hvsim refused the frame: {}", String::from_utf8_lossy(&why)),
            ));
        }
        let n = reply.len as usize;
        if n != 0 && n != inbuf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("reply carries {n} bytes, expected 0 or {}", inbuf.len()),
            ));
        }
        self.stream.read_exact(&mut inbuf[..n])?;
        Ok(reply)
    }
}

impl Device for FrameClient {
    fn call(&mut self, regs: Regs) -> io::Result<Regs> {
        let req = Request {
            op: Op::In,
            regs,
            len: 0,
        };
        Ok(self.round_trip(req, &[], &mut [])?.regs)
    }

    fn hb_out(&mut self, regs: Regs, data: &[u8]) -> io::Result<Regs> {
        let req = Request {
            op: Op::HbOut,
            regs,
            len: data.len() as u32,
        };
        Ok(self.round_trip(req, data, &mut [])?.regs)
    }

    fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> io::Result<(Regs, bool)> {
        let req = Request {
            op: Op::HbIn,
            regs,
            len: buf.len() as u32,
        };
        let r = self.round_trip(req, &[], buf)?;
        Ok((r.regs, r.len as usize == buf.len() && !buf.is_empty()))
    }
}
