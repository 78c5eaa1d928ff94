//! The socket transport: each backdoor instruction becomes one register frame
//! (protocol::frame) to a simulator's backdoor socket, answered by one reply.
//!
//! Every call is exactly one round trip: one send of the request (header and
//! HB data gathered together) and one read of the reply (header and HB data
//! scattered), in the common case. No allocation happens on the success path;
//! only a refused frame's explanation is allocated.

use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use protocol::frame::{Op, Reply, Request, HEADER_LEN};
use protocol::guest::{Backdoor, TransportError};
use protocol::Regs;

/// Longest refusal explanation accepted from an endpoint; real ones are a line.
const MAX_REASON: u32 = 4096;

/// The backdoor over a unix stream socket to a simulator (`hvsim serve`).
#[derive(Debug)]
pub struct UnixBackdoor {
    stream: UnixStream,
    /// Reply header, reused across calls.
    reply: [u8; HEADER_LEN],
    /// Set when an error left the stream mid-frame: later calls fail at once
    /// instead of reading another frame's bytes as a header.
    broken: bool,
}

impl UnixBackdoor {
    /// Connect to the backdoor socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        UnixStream::connect(path).map(Self::from_stream)
    }

    /// Use an already connected stream.
    pub fn from_stream(stream: UnixStream) -> Self {
        UnixBackdoor {
            stream,
            reply: [0; HEADER_LEN],
            broken: false,
        }
    }

    /// Send one request (header plus `out`), read the reply header and, for
    /// HB in, the reply bytes into `data`; a successful reply carries 0 or
    /// `data.len()` bytes.
    fn round_trip(
        &mut self,
        req: Request,
        out: &[u8],
        data: &mut [u8],
    ) -> Result<Regs, TransportError> {
        if self.broken {
            return Err(TransportError::Io(io::Error::new(
                io::ErrorKind::NotConnected,
                "backdoor connection unusable after an earlier error",
            )));
        }
        // Assume the worst until the frame is fully consumed.
        self.broken = true;
        let header = req.encode();
        write_all_vectored(&mut self.stream, &header, out)?;
        let got = read_header_and_data(&mut self.stream, &mut self.reply, data)?;

        let limit = (data.len() as u64).max(u64::from(MAX_REASON));
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let reply = Reply::decode(&self.reply, limit)
            .map_err(|e| TransportError::Protocol(format!("bad reply header: {e}")))?;
        let len = reply.len as usize;
        if !reply.ok {
            if reply.len > MAX_REASON {
                return Err(TransportError::Protocol(format!(
                    "refusal of {len} bytes exceeds {MAX_REASON}"
                )));
            }
            // The reason may already sit at the start of `data`.
            if got > len {
                return Err(TransportError::Protocol(format!(
                    "endpoint sent {got} bytes after a refusal of {len}"
                )));
            }
            let mut reason = data[..got].to_vec();
            reason.resize(len, 0);
            self.stream.read_exact(&mut reason[got..])?;
            return Err(TransportError::Refused(
                String::from_utf8_lossy(&reason).into_owned(),
            ));
        }
        // A successful `in` or HB out carries nothing; HB in carries either
        // nothing (the host failed the transfer) or exactly the bytes asked for.
        if len != 0 && len != data.len() {
            return Err(TransportError::Protocol(format!(
                "reply carries {len} bytes, expected 0 or {}",
                data.len()
            )));
        }
        if got > len {
            return Err(TransportError::Protocol(format!(
                "endpoint sent {got} bytes after a reply of {len}"
            )));
        }
        self.stream.read_exact(&mut data[got..len])?;
        self.broken = false;
        Ok(reply.regs)
    }
}

/// Write `header` then `data` with as few syscalls as the kernel allows: one
/// gathering send for everything a unix socket accepts at once (all of it,
/// normally), then the rest.
fn write_all_vectored(stream: &mut UnixStream, header: &[u8], data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return stream.write_all(header);
    }
    let n = loop {
        match send_two(stream, header, data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if n < header.len() {
        stream.write_all(&header[n..])?;
        stream.write_all(data)
    } else {
        stream.write_all(&data[n - header.len()..])
    }
}

/// One sendmsg of two buffers. Unlike writev (what `write_vectored` does), it
/// can pass MSG_NOSIGNAL, so a vanished endpoint is an EPIPE error here rather
/// than a SIGPIPE that kills a host program which has not ignored it (std's
/// own socket writes use the same flag).
fn send_two(stream: &UnixStream, a: &[u8], b: &[u8]) -> io::Result<usize> {
    let mut iov = [
        libc::iovec {
            iov_base: a.as_ptr() as *mut libc::c_void,
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        },
    ];
    // SAFETY: msghdr is plain data; all-zero is a valid "no name, no control
    // data" header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: the fd is open for the duration of the borrow of `stream`; the
    // iovecs point into `a` and `b`, live shared slices that sendmsg only
    // reads (the `*mut` is the C type's, not a write).
    let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Read a full reply header, letting the same readv fill the start of `data`
/// with whatever follows it. Returns how many bytes of `data` were filled.
/// The endpoint never sends ahead of a request, so nothing of a later frame
/// can be read here.
fn read_header_and_data(
    stream: &mut UnixStream,
    header: &mut [u8; HEADER_LEN],
    data: &mut [u8],
) -> io::Result<usize> {
    if data.is_empty() {
        stream.read_exact(header)?;
        return Ok(0);
    }
    let n = loop {
        let mut bufs = [IoSliceMut::new(header), IoSliceMut::new(data)];
        match stream.read_vectored(&mut bufs) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if n < HEADER_LEN {
        stream.read_exact(&mut header[n..])?;
        Ok(0)
    } else {
        Ok(n - HEADER_LEN)
    }
}

impl Backdoor for UnixBackdoor {
    fn call(&mut self, regs: Regs) -> Result<Regs, TransportError> {
        let req = Request {
            op: Op::In,
            regs,
            len: 0,
        };
        self.round_trip(req, &[], &mut [])
    }

    fn hb_out(&mut self, regs: Regs, data: &[u8]) -> Result<Regs, TransportError> {
        let len = frame_len(data.len())?;
        let req = Request {
            op: Op::HbOut,
            regs,
            len,
        };
        self.round_trip(req, data, &mut [])
    }

    fn hb_in(&mut self, regs: Regs, buf: &mut [u8]) -> Result<Regs, TransportError> {
        let len = frame_len(buf.len())?;
        let req = Request {
            op: Op::HbIn,
            regs,
            len,
        };
        self.round_trip(req, &[], buf)
    }
}

fn frame_len(len: usize) -> Result<u32, TransportError> {
    u32::try_from(len)
        .map_err(|_| TransportError::Protocol(format!("{len} bytes do not fit in one frame")))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use protocol::frame::FRAME_VERSION;

    use super::*;
    use crate::test_host::{read_request, spawn, write_reply};

    fn regs(seed: u32) -> Regs {
        Regs::from_array([
            seed,
            seed + 1,
            seed + 2,
            seed + 3,
            seed + 4,
            seed + 5,
            seed + 6,
        ])
    }

    /// Bytes that differ at every offset, so a misplaced chunk shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn call_moves_registers_both_ways() {
        let server = spawn(|mut s| {
            for seed in [1, 100] {
                let (req, data) = read_request(&mut s).unwrap();
                assert_eq!((req.op, req.regs, req.len), (Op::In, regs(seed), 0));
                assert!(data.is_empty());
                write_reply(&mut s, true, regs(seed + 1000), &[]);
            }
        });
        let mut bd = UnixBackdoor::connect(&server.path).unwrap();
        assert_eq!(bd.call(regs(1)).unwrap(), regs(1001));
        assert_eq!(bd.call(regs(100)).unwrap(), regs(1100));
        server.join();
    }

    #[test]
    fn hb_out_sends_header_and_data() {
        // 4 MiB exceeds a unix socket's buffer: the writev is partial.
        let sizes = [1usize, 5, 4 << 20];
        let server = spawn(move |mut s| {
            for len in sizes {
                let (req, data) = read_request(&mut s).unwrap();
                assert_eq!(
                    (req.op, req.regs, req.len as usize),
                    (Op::HbOut, regs(7), len)
                );
                assert!(data == pattern(len), "data of {len} bytes differs");
                write_reply(&mut s, true, regs(8), &[]);
            }
        });
        let mut bd = UnixBackdoor::connect(&server.path).unwrap();
        for len in sizes {
            assert_eq!(bd.hb_out(regs(7), &pattern(len)).unwrap(), regs(8));
        }
        server.join();
    }

    #[test]
    fn hb_in_fills_the_buffer() {
        let sizes = [3usize, 4 << 20];
        let server = spawn(move |mut s| {
            for len in sizes {
                let (req, _) = read_request(&mut s).unwrap();
                assert_eq!(
                    (req.op, req.regs, req.len as usize),
                    (Op::HbIn, regs(9), len)
                );
                write_reply(&mut s, true, regs(10), &pattern(len));
            }
            // A failed transfer: registers only, no bytes.
            let (req, _) = read_request(&mut s).unwrap();
            assert_eq!(req.len, 16);
            write_reply(&mut s, true, regs(11), &[]);
        });
        let mut bd = UnixBackdoor::connect(&server.path).unwrap();
        for len in sizes {
            let mut buf = vec![0u8; len];
            assert_eq!(bd.hb_in(regs(9), &mut buf).unwrap(), regs(10));
            assert!(buf == pattern(len), "buffer of {len} bytes differs");
        }
        let mut buf = [0xAAu8; 16];
        assert_eq!(bd.hb_in(regs(9), &mut buf).unwrap(), regs(11));
        assert_eq!(buf, [0xAA; 16]);
        server.join();
    }

    #[test]
    fn replies_split_across_writes() {
        let server = spawn(|mut s| {
            let (req, _) = read_request(&mut s).unwrap();
            let reply = Reply {
                ok: true,
                regs: regs(2),
                len: req.len,
            }
            .encode();
            let data = pattern(req.len as usize);
            for part in [&reply[..5], &reply[5..], &data[..10], &data[10..]] {
                s.write_all(part).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut bd = UnixBackdoor::connect(&server.path).unwrap();
        let mut buf = vec![0u8; 64];
        assert_eq!(bd.hb_in(regs(1), &mut buf).unwrap(), regs(2));
        assert_eq!(buf, pattern(64));
        server.join();
    }

    #[test]
    fn refusals_carry_their_reason() {
        let server = spawn(|mut s| {
            read_request(&mut s).unwrap();
            write_reply(&mut s, false, Regs::default(), b"unknown frame op");
        });
        let mut bd = UnixBackdoor::connect(&server.path).unwrap();
        match bd.call(regs(1)) {
            Err(TransportError::Refused(reason)) => assert_eq!(reason, "unknown frame op"),
            other => panic!("{other:?}"),
        }
        // The endpoint hangs up after a refusal; the transport knows.
        assert!(matches!(bd.call(regs(1)), Err(TransportError::Io(_))));
        server.join();

        // During an HB in, the reason lands in the readv's data part first,
        // and may be longer than the buffer.
        let server = spawn(|mut s| {
            read_request(&mut s).unwrap();
            write_reply(&mut s, false, Regs::default(), b"channel 3 has no message");
        });
        let mut bd = UnixBackdoor::connect(&server.path).unwrap();
        let mut buf = [0u8; 4];
        match bd.hb_in(regs(1), &mut buf) {
            Err(TransportError::Refused(reason)) => assert_eq!(reason, "channel 3 has no message"),
            other => panic!("{other:?}"),
        }
        server.join();
    }

    /// Garbage from the endpoint becomes an error, never a panic or a huge
    /// allocation, and the transport refuses to go on after it.
    #[test]
    fn garbage_replies_are_errors() {
        let ok = |len: u32| Reply {
            ok: true,
            regs: Regs::default(),
            len,
        };
        let mut bad_kind = ok(0).encode();
        bad_kind[0] = 9;
        let mut bad_version = ok(0).encode();
        bad_version[1] = FRAME_VERSION + 1;
        let refused_huge = Reply {
            ok: false,
            regs: Regs::default(),
            len: u32::MAX,
        };
        let cases: Vec<(&str, Vec<u8>, usize)> = vec![
            ("bad kind", bad_kind.to_vec(), 0),
            ("bad version", bad_version.to_vec(), 0),
            ("bytes after an in", ok(4).encode().to_vec(), 0),
            ("huge length", ok(u32::MAX).encode().to_vec(), 0),
            ("huge refusal", refused_huge.encode().to_vec(), 0),
            ("short hb in", ok(3).encode().to_vec(), 8),
            ("long hb in", ok(9).encode().to_vec(), 8),
            ("truncated header", ok(0).encode()[..20].to_vec(), 0),
            ("truncated data", [&ok(8).encode()[..], b"abc"].concat(), 8),
        ];
        for (what, bytes, buf_len) in cases {
            let server = spawn(move |mut s| {
                read_request(&mut s).unwrap();
                s.write_all(&bytes).unwrap();
                // Hang up: a transport waiting for more must see EOF.
            });
            let mut bd = UnixBackdoor::connect(&server.path).unwrap();
            let mut buf = vec![0u8; buf_len];
            let res = if buf_len == 0 {
                bd.call(regs(1))
            } else {
                bd.hb_in(regs(1), &mut buf)
            };
            match res {
                Err(TransportError::Protocol(_) | TransportError::Io(_)) => {}
                other => panic!("{what}: {other:?}"),
            }
            assert!(bd.call(regs(1)).is_err(), "{what}: usable after garbage");
            server.join();
        }
    }
}
