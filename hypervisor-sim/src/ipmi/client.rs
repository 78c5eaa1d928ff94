//! A small RMCP+ client (suites 3 and 17): what the end-to-end tests use
//! for what ipmitool cannot do (replay a packet, hold sessions open) and
//! what the load tool uses to time requests over one session.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::crypto::{self, Hash};
use super::rmcp;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed or timed out.
    #[error("ipmi client: {0}")]
    Io(#[from] std::io::Error),
    /// The BMC refused a session step with this RMCP+ status.
    #[error("ipmi client: session setup refused with RMCP+ status {0:#04x}")]
    Refused(u8),
    /// The BMC's answer did not parse or verify.
    #[error("ipmi client: bad answer: {0}")]
    BadAnswer(&'static str),
}

/// An established RMCP+ session.
#[derive(Debug)]
pub struct Client {
    sock: UdpSocket,
    hash: Hash,
    mac_len: usize,
    k1: Vec<u8>,
    aes: [u8; 16],
    /// The BMC's session ID.
    pub bmc_id: u32,
    /// Next sequence number sent.
    pub seq: u32,
    rq_seq: u8,
    /// The last packet sent (for replay tests).
    pub last_sent: Vec<u8>,
}

fn recv(sock: &UdpSocket) -> Result<Vec<u8>, ClientError> {
    let mut buf = vec![0u8; 2048];
    let n = sock.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn payload_of(pkt: &[u8]) -> Result<(u8, Vec<u8>), ClientError> {
    match rmcp::parse(pkt) {
        Ok(rmcp::Packet::V20(v)) => Ok((v.payload_type, v.payload.to_vec())),
        _ => Err(ClientError::BadAnswer("not an RMCP+ packet")),
    }
}

impl Client {
    /// Open a session as `user` at `privilege` (4 = Administrator) with
    /// cipher suite 3 or 17.
    pub fn connect(
        bmc: SocketAddr,
        user: &str,
        password: &[u8],
        suite: u8,
        privilege: u8,
    ) -> Result<Client, ClientError> {
        let lo = std::net::IpAddr::from([127, 0, 0, 1]);
        Client::connect_from(lo, bmc, user, password, suite, privilege)
    }

    /// [`Client::connect`] from the local address `local` (another
    /// loopback address is another client to the BMC).
    pub fn connect_from(
        local: std::net::IpAddr,
        bmc: SocketAddr,
        user: &str,
        password: &[u8],
        suite: u8,
        privilege: u8,
    ) -> Result<Client, ClientError> {
        let (hash, auth, integ, mac_len) = match suite {
            3 => (
                Hash::Sha1,
                crypto::RAKP_HMAC_SHA1,
                crypto::INTEGRITY_HMAC_SHA1_96,
                12,
            ),
            _ => (
                Hash::Sha256,
                crypto::RAKP_HMAC_SHA256,
                crypto::INTEGRITY_HMAC_SHA256_128,
                16,
            ),
        };
        let sock = UdpSocket::bind((local, 0))?;
        sock.connect(bmc)?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        let console_id = crypto::random_u32();
        let mut open = vec![0, privilege, 0, 0];
        open.extend_from_slice(&console_id.to_le_bytes());
        open.extend_from_slice(&[0, 0, 0, 8, auth, 0, 0, 0]);
        open.extend_from_slice(&[1, 0, 0, 8, integ, 0, 0, 0]);
        open.extend_from_slice(&[2, 0, 0, 8, crypto::CRYPT_AES_CBC_128, 0, 0, 0]);
        sock.send(&rmcp::emit_v20(
            rmcp::PAYLOAD_OPEN_REQ,
            false,
            0,
            0,
            &open,
            None,
        ))?;
        let (_, r) = payload_of(&recv(&sock)?)?;
        if r.len() < 2 || r[1] != 0 {
            return Err(ClientError::Refused(r.get(1).copied().unwrap_or(0xFF)));
        }
        if r.len() < 12 {
            return Err(ClientError::BadAnswer("short open session response"));
        }
        let bmc_id = u32::from_le_bytes([r[8], r[9], r[10], r[11]]);
        let mut rm = [0u8; 16];
        crypto::random(&mut rm);
        let mut r1 = vec![0, 0, 0, 0];
        r1.extend_from_slice(&bmc_id.to_le_bytes());
        r1.extend_from_slice(&rm);
        r1.extend_from_slice(&[privilege, 0, 0, user.len() as u8]);
        r1.extend_from_slice(user.as_bytes());
        sock.send(&rmcp::emit_v20(rmcp::PAYLOAD_RAKP1, false, 0, 0, &r1, None))?;
        let (_, r2) = payload_of(&recv(&sock)?)?;
        if r2.len() < 2 || r2[1] != 0 {
            return Err(ClientError::Refused(r2.get(1).copied().unwrap_or(0xFF)));
        }
        if r2.len() < 40 {
            return Err(ClientError::BadAnswer("short RAKP 2"));
        }
        let rc = &r2[8..24];
        let guid = &r2[24..40];
        let want = crypto::hmac(
            hash,
            password,
            &[
                &console_id.to_le_bytes(),
                &bmc_id.to_le_bytes(),
                &rm,
                rc,
                guid,
                &[privilege, user.len() as u8],
                user.as_bytes(),
            ],
        );
        if !crypto::ct_eq(&r2[40..], &want) {
            return Err(ClientError::BadAnswer("RAKP 2 HMAC (wrong password?)"));
        }
        let code = crypto::hmac(
            hash,
            password,
            &[
                rc,
                &console_id.to_le_bytes(),
                &[privilege, user.len() as u8],
                user.as_bytes(),
            ],
        );
        let mut r3 = vec![0, 0, 0, 0];
        r3.extend_from_slice(&bmc_id.to_le_bytes());
        r3.extend_from_slice(&code);
        sock.send(&rmcp::emit_v20(rmcp::PAYLOAD_RAKP3, false, 0, 0, &r3, None))?;
        let (_, r4) = payload_of(&recv(&sock)?)?;
        if r4.len() < 2 || r4[1] != 0 {
            return Err(ClientError::Refused(r4.get(1).copied().unwrap_or(0xFF)));
        }
        let sik = crypto::hmac(
            hash,
            password,
            &[&rm, rc, &[privilege, user.len() as u8], user.as_bytes()],
        );
        let k1 = crypto::hmac(hash, &sik, &[&[1u8; 20]]);
        let k2 = crypto::hmac(hash, &sik, &[&[2u8; 20]]);
        let mut aes = [0u8; 16];
        aes.copy_from_slice(&k2[..16]);
        let mut c = Client {
            sock,
            hash,
            mac_len,
            k1,
            aes,
            bmc_id,
            seq: 1,
            rq_seq: 0,
            last_sent: Vec::new(),
        };
        let (cc, _) = c.request(0x06, 0x3B, &[privilege])?;
        if cc != 0 {
            return Err(ClientError::BadAnswer(
                "Set Session Privilege Level refused",
            ));
        }
        Ok(c)
    }

    /// Seal a request into a packet (advancing the sequence number).
    pub fn packet(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Vec<u8> {
        self.rq_seq = (self.rq_seq + 1) & 0x3F;
        let msg = rmcp::emit_request(netfn, cmd, self.rq_seq, data);
        let mut iv = [0u8; 16];
        crypto::random(&mut iv);
        let body = crypto::aes_encrypt(&self.aes, &iv, &msg);
        let (h, k1, n) = (self.hash, self.k1.clone(), self.mac_len);
        let mac = move |b: &[u8]| crypto::hmac(h, &k1, &[b])[..n].to_vec();
        let p = rmcp::emit_v20(
            rmcp::PAYLOAD_IPMI,
            true,
            self.bmc_id,
            self.seq,
            &body,
            Some(&mac),
        );
        self.seq = self.seq.wrapping_add(1);
        p
    }

    /// Send raw bytes to the BMC.
    pub fn send_raw(&self, pkt: &[u8]) -> Result<(), ClientError> {
        self.sock.send(pkt)?;
        Ok(())
    }

    /// Wait up to `timeout` for a response; `Ok(None)` on timeout.
    pub fn recv_response(&self, timeout: Duration) -> Result<Option<(u8, Vec<u8>)>, ClientError> {
        self.sock.set_read_timeout(Some(timeout))?;
        let pkt = match recv(&self.sock) {
            Ok(p) => p,
            Err(ClientError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let rmcp::Packet::V20(v) =
            rmcp::parse(&pkt).map_err(|_| ClientError::BadAnswer("unparsable"))?
        else {
            return Err(ClientError::BadAnswer("not RMCP+"));
        };
        let (covered, code) = v
            .integrity(self.mac_len)
            .ok_or(ClientError::BadAnswer("trailer"))?;
        let mac = crypto::hmac(self.hash, &self.k1, &[covered]);
        if !crypto::ct_eq(code, &mac[..self.mac_len]) {
            return Err(ClientError::BadAnswer("integrity code"));
        }
        let plain =
            crypto::aes_decrypt(&self.aes, v.payload).ok_or(ClientError::BadAnswer("decrypt"))?;
        let r = rmcp::parse_response(&plain).map_err(|_| ClientError::BadAnswer("message"))?;
        Ok(Some((r.cc, r.data.to_vec())))
    }

    /// One request and its response (completion code, data).
    pub fn request(
        &mut self,
        netfn: u8,
        cmd: u8,
        data: &[u8],
    ) -> Result<(u8, Vec<u8>), ClientError> {
        let p = self.packet(netfn, cmd, data);
        self.sock.send(&p)?;
        self.last_sent = p;
        self.recv_response(Duration::from_secs(2))?
            .ok_or_else(|| ClientError::Io(std::io::ErrorKind::TimedOut.into()))
    }

    /// Close the session.
    pub fn close(mut self) -> Result<(), ClientError> {
        let id = self.bmc_id.to_le_bytes();
        self.request(0x06, 0x3C, &id).map(|_| ())
    }
}
