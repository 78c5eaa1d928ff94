//! RPCI: the guest asks, the host answers "1 ..." or "0 ...".
//!
//! One [`Rpci`] is one open RPCI channel; send as many messages over it as
//! needed (opening a channel costs a round trip, and real hosts allow only a
//! bounded number of them).

use std::fmt;

use protocol::guest::{Backdoor, ChannelError, GuestChannel};
use protocol::proto;
use protocol::rpc::{self, FramingError};

pub use protocol::guest::RpciReply;

/// The transport an RPCI channel runs over.
pub type BoxedBackdoor = Box<dyn Backdoor + Send>;

/// Why an RPCI exchange failed; the texts follow open-vm-tools' so scripts
/// and people recognise them.
#[derive(Debug, thiserror::Error)]
pub enum RpciError {
    /// The host (or the transport) did not open a channel.
    #[error("unable to open the communication channel")]
    Open(#[source] ChannelError),
    /// The message did not reach the host.
    #[error("unable to send the RPCI command")]
    Send(#[source] ChannelError),
    /// The host's answer did not arrive.
    #[error("unable to receive the result of the RPCI command")]
    Receive(#[source] ChannelError),
    /// The answer starts with neither "1 " nor "0 ".
    #[error("invalid format for the result of the RPCI command: \"{reply}\"")]
    Format {
        /// The start of the answer, escaped for printing.
        reply: String,
    },
    /// Closing the channel failed (the exchange itself completed).
    #[error("unable to close the communication channel")]
    Close(#[source] ChannelError),
}

impl RpciError {
    /// True when the transport itself failed, so the channel is gone and
    /// later messages on it would fail the same way.
    pub fn is_transport(&self) -> bool {
        match self {
            RpciError::Open(e)
            | RpciError::Send(e)
            | RpciError::Receive(e)
            | RpciError::Close(e) => {
                matches!(e, ChannelError::Transport(_))
            }
            RpciError::Format { .. } => false,
        }
    }
}

/// How much of a malformed answer an error quotes.
const QUOTED_REPLY: usize = 64;

fn format_error(reply: &[u8], _: FramingError) -> RpciError {
    let cut = reply.len().min(QUOTED_REPLY);
    let mut quoted = reply[..cut].escape_ascii().to_string();
    if cut < reply.len() {
        quoted.push_str("...");
    }
    RpciError::Format { reply: quoted }
}

/// An open RPCI channel.
pub struct Rpci {
    channel: GuestChannel<BoxedBackdoor>,
    /// RPCI over vsock, used instead of the channel while it works.
    vsock: Option<crate::vsock::VsockRpci>,
    vsock_reply: Vec<u8>,
}

impl fmt::Debug for Rpci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The transport is a trait object without Debug; the channel id is
        // what identifies this channel to the host.
        f.debug_struct("Rpci")
            .field("channel", &self.channel.id())
            .finish_non_exhaustive()
    }
}

impl Rpci {
    /// Open an RPCI channel over `backdoor`.
    pub fn open(backdoor: BoxedBackdoor) -> Result<Self, RpciError> {
        let channel = GuestChannel::open(backdoor, proto::RPCI).map_err(RpciError::Open)?;
        Ok(Rpci {
            channel,
            vsock: None,
            vsock_reply: Vec::new(),
        })
    }

    /// Allow (the default) or forbid the high-bandwidth port; forbidden, all
    /// data moves 4 bytes per low-bandwidth call.
    pub fn set_high_bandwidth(&mut self, allowed: bool) {
        self.channel.set_high_bandwidth(allowed);
    }

    /// Send `msg` as it is and return the host's parsed answer, borrowed from
    /// the channel's receive buffer (no copy).
    pub fn send_borrowed(&mut self, msg: &[u8]) -> Result<rpc::Rpci<'_>, RpciError> {
        if let Some(v) = self.vsock.as_mut() {
            match v.request(msg) {
                Ok(reply) => {
                    self.vsock_reply = reply;
                    let reply = &self.vsock_reply;
                    return rpc::parse_rpci_reply(reply).map_err(|e| format_error(reply, e));
                }
                Err(e) => {
                    // As vmtoolsd: fall back to the backdoor channel.
                    log::warn!("RPCI over vsock failed ({e}); using the backdoor");
                    self.vsock = None;
                }
            }
        }
        self.channel.send(msg).map_err(RpciError::Send)?;
        let reply = self.channel.receive().map_err(RpciError::Receive)?;
        rpc::parse_rpci_reply(reply).map_err(|e| format_error(reply, e))
    }

    /// Send `msg` as it is and return the host's parsed answer.
    pub fn send(&mut self, msg: &[u8]) -> Result<RpciReply, RpciError> {
        let reply = self.send_borrowed(msg)?;
        Ok(RpciReply {
            ok: reply.ok,
            body: reply.body.to_vec(),
        })
    }

    /// Send messages over vsock from now on (while that works), keeping
    /// the backdoor channel open for the fallback and plain calls.
    pub fn use_vsock(&mut self, link: crate::vsock::VsockRpci) {
        self.vsock = Some(link);
    }

    /// Whether messages go over vsock.
    pub fn over_vsock(&self) -> bool {
        self.vsock.is_some()
    }

    /// The transport, for plain backdoor calls between messages.
    pub fn backdoor(&mut self) -> &mut BoxedBackdoor {
        self.channel.backdoor()
    }

    /// Close the channel (dropping it also closes it, ignoring errors).
    pub fn close(self) -> Result<(), RpciError> {
        self.channel.close().map_err(RpciError::Close)
    }
}

#[cfg(test)]
mod tests {
    use protocol::host::HostLimits;

    use super::*;
    use crate::test_host::{serve_host, spawn, Server};
    use crate::transport::UnixBackdoor;

    /// A host answering "info-get KEY" with "1 value of KEY", a long value for
    /// "big", garbage for "garbage", and "0 Unknown command" otherwise.
    fn host(limits: HostLimits) -> Server {
        spawn(move |s| {
            serve_host(s, limits, |msg| {
                if let Some(key) = msg.strip_prefix(b"info-get ") {
                    [b"1 value of ", key].concat()
                } else if msg == b"big" {
                    let mut v = b"1 ".to_vec();
                    v.extend((0..100_000u32).map(|i| b'a' + (i % 26) as u8));
                    v
                } else if msg == b"garbage" {
                    b"\x01what".to_vec()
                } else {
                    b"0 Unknown command".to_vec()
                }
            })
        })
    }

    fn open(server: &Server) -> Rpci {
        Rpci::open(Box::new(UnixBackdoor::connect(&server.path).unwrap())).unwrap()
    }

    #[test]
    fn answers_over_both_bandwidths() {
        for (host_hb, guest_hb) in [(true, true), (true, false), (false, true)] {
            let server = host(HostLimits {
                high_bandwidth: host_hb,
                ..HostLimits::default()
            });
            let mut rpci = open(&server);
            rpci.set_high_bandwidth(guest_hb);
            let reply = rpci.send(b"info-get guestinfo.x").unwrap();
            assert_eq!(
                reply,
                RpciReply {
                    ok: true,
                    body: b"value of guestinfo.x".to_vec()
                }
            );
            let reply = rpci.send(b"frob").unwrap();
            assert!(!reply.ok);
            assert_eq!(reply.body, b"Unknown command");
            let reply = rpci.send_borrowed(b"big").unwrap();
            assert!(reply.ok);
            assert_eq!(reply.body.len(), 100_000);
            assert_eq!(&reply.body[..3], b"abc");
            rpci.close().unwrap();
            server.join();
        }
    }

    #[test]
    fn malformed_answer() {
        let server = host(HostLimits::default());
        let mut rpci = open(&server);
        let err = rpci.send(b"garbage").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid format for the result of the RPCI command: \"\\x01what\""
        );
        assert!(!err.is_transport());
        // The channel is still fine.
        assert!(rpci.send(b"info-get a").unwrap().ok);
        drop(rpci);
        server.join();
    }

    #[test]
    fn lost_transport() {
        let server = spawn(drop);
        let backdoor = Box::new(UnixBackdoor::connect(&server.path).unwrap());
        server.join();
        let err = Rpci::open(backdoor).unwrap_err();
        assert_eq!(err.to_string(), "unable to open the communication channel");
        assert!(err.is_transport());
    }
}
