//! The socket transport: each backdoor instruction becomes one register frame
//! (protocol::frame) to a simulator's backdoor socket, answered by one reply.
//!
//! Every call is exactly one round trip: one write of the request (header and
//! HB data together, via writev) and reads of the reply. No allocation happens
//! on the success path; only a refused frame's explanation is allocated.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
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
/// writev for everything a unix socket accepts at once (all of it, normally).
fn write_all_vectored(stream: &mut UnixStream, header: &[u8], data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return stream.write_all(header);
    }
    let n = loop {
        match stream.write_vectored(&[IoSlice::new(header), IoSlice::new(data)]) {
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
