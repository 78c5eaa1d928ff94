//! The cryptography of IPMI sessions: the 1.5 MD5 auth code, RAKP HMACs,
//! the integrity codes and AES-CBC-128 with IPMI's padding.

use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

/// Authentication (RAKP) algorithm: none.
pub const RAKP_NONE: u8 = 0x00;
/// Authentication (RAKP) algorithm: RAKP-HMAC-SHA1.
pub const RAKP_HMAC_SHA1: u8 = 0x01;
/// Authentication (RAKP) algorithm: RAKP-HMAC-SHA256.
pub const RAKP_HMAC_SHA256: u8 = 0x03;
/// Integrity algorithm: none.
pub const INTEGRITY_NONE: u8 = 0x00;
/// Integrity algorithm: HMAC-SHA1-96.
pub const INTEGRITY_HMAC_SHA1_96: u8 = 0x01;
/// Integrity algorithm: HMAC-SHA256-128.
pub const INTEGRITY_HMAC_SHA256_128: u8 = 0x04;
/// Confidentiality algorithm: none.
pub const CRYPT_NONE: u8 = 0x00;
/// Confidentiality algorithm: AES-CBC-128.
pub const CRYPT_AES_CBC_128: u8 = 0x01;

/// A hash the RAKP and integrity HMACs are built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-1 (20-byte MAC).
    Sha1,
    /// SHA-256 (32-byte MAC).
    Sha256,
}

/// HMAC of `data` under `key`.
pub fn hmac(h: Hash, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
    match h {
        Hash::Sha1 => {
            let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).expect("any key length");
            for d in data {
                m.update(d);
            }
            m.finalize().into_bytes().to_vec()
        }
        Hash::Sha256 => {
            let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
            for d in data {
                m.update(d);
            }
            m.finalize().into_bytes().to_vec()
        }
    }
}

/// Compare two MACs in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A password as the fixed 16-byte field IPMI 1.5 uses (zero padded).
pub fn password16(pw: &[u8]) -> [u8; 16] {
    let mut p = [0u8; 16];
    let n = pw.len().min(16);
    p[..n].copy_from_slice(&pw[..n]);
    p
}

/// The IPMI 1.5 MD5 auth code (spec 22.17.1): MD5(password, session ID,
/// message, session sequence, password), the password zero padded to 16.
pub fn md5_auth_code(password: &[u8; 16], session_id: u32, msg: &[u8], seq: u32) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(password);
    h.update(session_id.to_le_bytes());
    h.update(msg);
    h.update(seq.to_le_bytes());
    h.update(password);
    h.finalize().into()
}

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// Encrypt an RMCP+ payload with AES-CBC-128 (spec 13.29): IV first, then the
/// data padded with 1, 2, 3, ... and a pad-length byte to a whole block.
pub fn aes_encrypt(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let pad = (16 - (data.len() + 1) % 16) % 16;
    let mut buf = Vec::with_capacity(16 + data.len() + pad + 1);
    buf.extend_from_slice(data);
    buf.extend((1..=pad as u8).collect::<Vec<_>>());
    buf.push(pad as u8);
    let n = buf.len();
    let ct = Aes128CbcEnc::new(key.into(), iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut buf, n)
        .expect("whole blocks")
        .to_vec();
    let mut out = iv.to_vec();
    out.extend_from_slice(&ct);
    out
}

/// Decrypt an AES-CBC-128 payload; `None` unless the length is whole blocks
/// after the IV and the padding is IPMI's.
pub fn aes_decrypt(key: &[u8; 16], payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() < 32 || payload.len() & 15 != 0 {
        return None;
    }
    let (iv, ct) = payload.split_at(16);
    let mut buf = ct.to_vec();
    let iv: [u8; 16] = iv.try_into().ok()?;
    let pt = Aes128CbcDec::new(key.into(), (&iv).into())
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .ok()?;
    let pad = *pt.last()? as usize;
    if pad > 15 || pad + 1 > pt.len() {
        return None;
    }
    let body = pt.len() - 1 - pad;
    if pt[body..body + pad]
        .iter()
        .enumerate()
        .any(|(i, &b)| b as usize != i + 1)
    {
        return None;
    }
    Some(pt[..body].to_vec())
}

/// Fill `buf` from the operating system's random source.
pub fn random(buf: &mut [u8]) {
    if getrandom::getrandom(buf).is_err() {
        // getrandom(2) does not fail on Linux once the pool is initialised;
        // this keeps a failure from ever yielding predictable zeros.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut h = Md5::new();
        h.update(t.to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        let d = h.finalize();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = d[i % 16];
        }
    }
}

/// A random non-zero 32-bit value (session IDs).
pub fn random_u32() -> u32 {
    loop {
        let mut b = [0u8; 4];
        random(&mut b);
        let v = u32::from_le_bytes(b);
        if v != 0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_roundtrip_all_lengths() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        for n in 0..40 {
            let data: Vec<u8> = (0..n as u8).collect();
            let ct = aes_encrypt(&key, &iv, &data);
            assert_eq!(ct.len() % 16, 0);
            assert_eq!(aes_decrypt(&key, &ct).as_deref(), Some(&data[..]));
        }
        assert!(aes_decrypt(&key, &[0; 31]).is_none());
    }

    #[test]
    fn hmac_known_answer() {
        // RFC 2202 test case 2 and RFC 4231 test case 2.
        let k = b"Jefe";
        let d: &[u8] = b"what do ya want for nothing?";
        let h1 = hmac(Hash::Sha1, k, &[d]);
        assert_eq!(h1[..4], [0xef, 0xfc, 0xdf, 0x6a]);
        let h2 = hmac(Hash::Sha256, k, &[&d[..10], &d[10..]]);
        assert_eq!(h2[..4], [0x5b, 0xdc, 0xc1, 0x46]);
    }
}
