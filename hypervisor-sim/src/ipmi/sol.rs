//! Serial over LAN (IPMI 2.0 section 15): RMCP+ payload type 1 carrying the
//! VM's console ([`crate::console`]) to and from the remote console.
//!
//! Each SOL packet starts with four bytes: packet sequence number (1-15;
//! 0 for a packet that only acknowledges), the acknowledged (or NACKed)
//! packet's sequence number (0 for none), the count of characters accepted
//! from that packet, and an operation (console to BMC) or status (BMC to
//! console) byte; character data follows. The BMC keeps one outbound
//! packet in flight, resends it after the retry interval up to the retry
//! count, and acknowledges each inbound packet once (a repeated packet,
//! whose acknowledgement was lost, is acknowledged again without feeding
//! its characters twice).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::console::Console;

/// Largest SOL payload (header and characters) the BMC accepts and sends;
/// Activate Payload reports it as both inbound and outbound payload size.
pub const MAX_PAYLOAD: usize = 256;
/// Characters in one outbound packet.
pub const MAX_CHARS: usize = MAX_PAYLOAD - 4;

/// Operation bits of a packet from the remote console (spec table 15-2).
pub mod op {
    /// The acknowledged packet is NACKed.
    pub const NACK: u8 = 0x40;
    /// Assert Ring / Wake-on-Ring.
    pub const RING: u8 = 0x20;
    /// Generate a break.
    pub const BREAK: u8 = 0x10;
    /// Deassert CTS: pause the system's output.
    pub const CTS_PAUSE: u8 = 0x08;
    /// Drop DCD/DSR.
    pub const DROP_DCD: u8 = 0x04;
    /// Flush inbound (console to system) characters.
    pub const FLUSH_IN: u8 = 0x02;
    /// Flush outbound (system to console) characters.
    pub const FLUSH_OUT: u8 = 0x01;
}

/// Status bits of a packet from the BMC (spec table 15-3).
pub mod status {
    /// The acknowledged packet is NACKed.
    pub const NACK: u8 = 0x40;
    /// Character transfer is unavailable (no console attached).
    pub const UNAVAILABLE: u8 = 0x20;
    /// SOL is being deactivated.
    pub const DEACTIVATING: u8 = 0x10;
    /// Characters were dropped.
    pub const OVERRUN: u8 = 0x08;
    /// A break was detected.
    pub const BREAK: u8 = 0x04;
}

/// One SOL packet, as parsed from a decrypted payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Packet sequence number (0: acknowledgement only).
    pub seq: u8,
    /// Sequence number acknowledged or NACKed (0: none).
    pub ack: u8,
    /// Characters accepted from the acknowledged packet.
    pub accepted: u8,
    /// Operation (to the BMC) or status (from it).
    pub op: u8,
    /// Character data.
    pub data: &'a [u8],
}

/// Why a SOL payload was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SolError {
    /// Shorter than the 4-byte header.
    #[error("SOL payload of {0} bytes is shorter than its header")]
    Truncated(usize),
    /// Larger than the payload size the BMC announced.
    #[error("SOL payload of {0} bytes exceeds {MAX_PAYLOAD}")]
    TooLong(usize),
    /// A sequence number outside 0-15.
    #[error("SOL sequence number {0:#04x} out of range")]
    BadSequence(u8),
}

/// Parse a decrypted SOL payload.
pub fn parse(b: &[u8]) -> Result<Packet<'_>, SolError> {
    if b.len() < 4 {
        return Err(SolError::Truncated(b.len()));
    }
    if b.len() > MAX_PAYLOAD {
        return Err(SolError::TooLong(b.len()));
    }
    for &s in &b[..2] {
        if s > 0x0F {
            return Err(SolError::BadSequence(s));
        }
    }
    Ok(Packet {
        seq: b[0],
        ack: b[1],
        accepted: b[2],
        op: b[3],
        data: &b[4..],
    })
}

/// A SOL payload.
pub fn emit(seq: u8, ack: u8, accepted: u8, status: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![seq & 0x0F, ack & 0x0F, accepted, status];
    v.extend_from_slice(data);
    v
}

/// SOL configuration parameters (spec table 25-4) that shape the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// SOL payload enabled.
    pub enabled: bool,
    /// Parameter 2: force encryption (bit 7), force authentication (bit 6),
    /// privilege level needed to activate (bits 3:0).
    pub auth: u8,
    /// Character accumulate interval, 5 ms units (1-255).
    pub accumulate: u8,
    /// Character send threshold (1-255).
    pub threshold: u8,
    /// Retries of an unacknowledged packet (0-7).
    pub retry_count: u8,
    /// Retry interval, 10 ms units (0: at once).
    pub retry_interval: u8,
    /// Non-volatile bit rate code.
    pub rate_nv: u8,
    /// Volatile bit rate code.
    pub rate_v: u8,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            auth: 0x02, // user privilege, no forced authentication/encryption
            accumulate: 12,
            threshold: 96,
            retry_count: 7,
            retry_interval: 50,
            rate_nv: 0x0A, // 115.2 kbit/s
            rate_v: 0x0A,
        }
    }
}

impl Config {
    /// Pack into one integer for the state database.
    pub fn pack(&self) -> i64 {
        i64::from_le_bytes([
            self.enabled as u8,
            self.auth,
            self.accumulate,
            self.threshold,
            self.retry_count,
            self.retry_interval,
            self.rate_nv,
            1,
        ])
    }

    /// Unpack what [`Config::pack`] made.
    pub fn unpack(v: i64) -> Config {
        let b = v.to_le_bytes();
        Config {
            enabled: b[0] != 0,
            auth: b[1],
            accumulate: b[2].max(1),
            threshold: b[3].max(1),
            retry_count: b[4] & 7,
            retry_interval: b[5],
            rate_nv: b[6],
            rate_v: b[6],
        }
    }

    fn retry_interval(&self) -> Duration {
        Duration::from_millis(self.retry_interval as u64 * 10)
    }

    fn accumulate(&self) -> Duration {
        Duration::from_millis(self.accumulate as u64 * 5)
    }
}

/// An outbound packet awaiting its acknowledgement.
#[derive(Debug)]
struct Pending {
    seq: u8,
    data: Vec<u8>,
    sent: Instant,
    retries: u8,
    /// Partly accepted: the rest goes in a new packet at once.
    resend_rest: bool,
}

/// The active SOL payload instance of one BMC.
#[derive(Debug)]
pub struct Activation {
    /// The session that activated it.
    pub session: u32,
    /// The console being read; kept after it detaches until its last
    /// output is sent.
    console: Option<Arc<Console>>,
    /// Offset of the next output byte to send.
    pos: u64,
    /// Last packet sequence number used.
    seq: u8,
    pending: Option<Pending>,
    /// (sequence number, characters accepted) of the last inbound packet.
    last_in: Option<(u8, u8)>,
    paused: bool,
    waiting_since: Option<Instant>,
    /// Output dropped since the last packet (ring overrun or retries spent).
    overrun: bool,
    /// The VM's one console session, released with the activation.
    claim: Option<crate::console::Claim>,
}

impl Activation {
    /// Activated by `session`; the console's recent output is sent first.
    pub fn new(session: u32, console: Option<&Arc<Console>>) -> Activation {
        Activation {
            session,
            console: console.cloned(),
            pos: console.map_or(0, |c| c.start()),
            seq: 0,
            pending: None,
            last_in: None,
            paused: false,
            waiting_since: None,
            overrun: false,
            claim: None,
        }
    }

    /// Hold the VM's console session (shared with the web console) for as
    /// long as this activation lives.
    pub fn with_claim(mut self, claim: crate::console::Claim) -> Activation {
        self.claim = Some(claim);
        self
    }

    fn next_seq(&mut self) -> u8 {
        self.seq = self.seq % 15 + 1;
        self.seq
    }

    /// Handle a packet from the remote console; returns the acknowledgement
    /// to send, if it needs one.
    pub fn inbound(
        &mut self,
        p: &Packet<'_>,
        console: Option<&Arc<Console>>,
        now: Instant,
    ) -> Option<Vec<u8>> {
        self.follow(console);
        // Keystrokes only go to a console that is still attached.
        let console = console.map(|c| &**c);
        if p.ack != 0 {
            if let Some(pend) = self.pending.as_mut().filter(|x| x.seq == p.ack) {
                let took = (p.accepted as usize).min(pend.data.len());
                pend.data.drain(..took);
                if pend.data.is_empty() {
                    self.pending = None;
                } else if p.op & op::NACK != 0 {
                    // Not now: try the rest again after the retry interval.
                    pend.sent = now;
                    pend.resend_rest = true;
                    pend.retries = pend.retries.saturating_add(1);
                } else {
                    pend.sent = now;
                    pend.resend_rest = true;
                    pend.retries = 0;
                }
            }
        }
        self.paused = p.op & op::CTS_PAUSE != 0;
        if p.op & op::FLUSH_OUT != 0 {
            self.pending = None;
            if let Some(c) = console {
                self.pos = c.end();
            }
        }
        if p.op & op::BREAK != 0 {
            log::info!("sol: break requested (no effect on a pty console)");
        }
        if p.seq == 0 {
            return None;
        }
        if let Some((s, n)) = self.last_in {
            if s == p.seq {
                // Our acknowledgement was lost: acknowledge again.
                return Some(emit(0, p.seq, n, 0, &[]));
            }
        }
        let (accepted, st) = match console {
            None => (0, status::NACK | status::UNAVAILABLE),
            Some(_) if p.data.is_empty() => (0, 0),
            Some(c) => match c.write(p.data) {
                Ok(n) => (n as u8, 0),
                Err(e) => {
                    log::warn!("sol: console write: {e}");
                    (0, status::NACK | status::UNAVAILABLE)
                }
            },
        };
        if st == 0 {
            self.last_in = Some((p.seq, accepted));
        }
        Some(emit(0, p.seq, accepted, st, &[]))
    }

    /// Notice a new console (the program was restarted) and read from its
    /// start; let a detached one go once its output is all sent.
    fn follow(&mut self, console: Option<&Arc<Console>>) {
        match console {
            Some(c) if self.console.as_ref().map(|x| x.id) != Some(c.id) => {
                self.console = Some(c.clone());
                self.pos = c.start();
            }
            Some(_) => {}
            None => {
                if self.console.as_ref().is_some_and(|c| c.end() <= self.pos) {
                    self.console = None;
                }
            }
        }
    }

    /// The next packet to send, if any: a retransmission, the rest of a
    /// partly accepted packet, or new output once enough has accumulated.
    pub fn poll(
        &mut self,
        console: Option<&Arc<Console>>,
        cfg: &Config,
        now: Instant,
    ) -> Option<Vec<u8>> {
        self.follow(console);
        if let Some(p) = self.pending.as_mut() {
            let due = now >= p.sent + cfg.retry_interval();
            if p.resend_rest && (p.retries == 0 || due) && p.retries <= cfg.retry_count {
                // The rest of a partly accepted packet goes in a new one.
                self.seq = self.seq % 15 + 1;
                p.seq = self.seq;
                p.sent = now;
                p.resend_rest = false;
                return Some(emit(p.seq, 0, 0, 0, &p.data));
            }
            if !due {
                return None;
            }
            if p.retries >= cfg.retry_count {
                log::warn!(
                    "sol: {} characters dropped: not accepted after {} retries",
                    p.data.len(),
                    p.retries
                );
                self.pending = None;
                self.overrun = true;
            } else {
                // Unacknowledged: the same packet again.
                p.retries += 1;
                p.sent = now;
                return Some(emit(p.seq, 0, 0, 0, &p.data));
            }
        }
        let c = self.console.clone()?;
        if self.paused {
            return None;
        }
        let (from, data) = c.read(self.pos, MAX_CHARS);
        if from > self.pos {
            self.overrun = true;
        }
        if data.is_empty() {
            self.pos = from;
            self.waiting_since = None;
            return None;
        }
        let since = *self.waiting_since.get_or_insert(now);
        if data.len() < cfg.threshold as usize && now < since + cfg.accumulate() {
            return None;
        }
        self.pos = from + data.len() as u64;
        self.waiting_since = None;
        let seq = self.next_seq();
        let st = if std::mem::take(&mut self.overrun) {
            status::OVERRUN
        } else {
            0
        };
        let pkt = emit(seq, 0, 0, st, &data);
        self.pending = Some(Pending {
            seq,
            data,
            sent: now,
            retries: 0,
            resend_rest: false,
        });
        Some(pkt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_header_and_size() {
        assert_eq!(parse(&[1, 2, 3]), Err(SolError::Truncated(3)));
        assert_eq!(parse(&[0x10, 0, 0, 0]), Err(SolError::BadSequence(0x10)));
        assert_eq!(
            parse(&vec![0; MAX_PAYLOAD + 1]),
            Err(SolError::TooLong(MAX_PAYLOAD + 1))
        );
        let p = parse(&[3, 2, 5, op::NACK, b'h', b'i']).unwrap();
        assert_eq!(
            (p.seq, p.ack, p.accepted, p.op, p.data),
            (3, 2, 5, op::NACK, &b"hi"[..])
        );
        assert_eq!(
            emit(3, 2, 5, op::NACK, b"hi"),
            vec![3, 2, 5, 0x40, b'h', b'i']
        );
    }

    #[test]
    fn without_console_input_is_nacked_as_unavailable() {
        let mut a = Activation::new(1, None);
        let now = Instant::now();
        let ack = a
            .inbound(&parse(&[1, 0, 0, 0, b'x']).unwrap(), None, now)
            .unwrap();
        assert_eq!(ack, vec![0, 1, 0, status::NACK | status::UNAVAILABLE]);
        assert!(a.poll(None, &Config::default(), now).is_none());
    }

    #[test]
    fn sequence_numbers_cycle_1_to_15() {
        let mut a = Activation::new(1, None);
        let s: Vec<u8> = (0..16).map(|_| a.next_seq()).collect();
        assert_eq!(s[0], 1);
        assert_eq!(s[14], 15);
        assert_eq!(s[15], 1);
    }

    #[test]
    fn config_packs_and_unpacks() {
        let c = Config {
            enabled: false,
            retry_count: 3,
            ..Config::default()
        };
        assert_eq!(Config::unpack(c.pack()), c);
    }
}
