//! NBD bytes from an untrusted client: the request header, option header and
//! INFO/GO payload parsers take any bytes. Errors are fine; panics are not,
//! and whatever parses re-encodes to the same bytes.
#![no_main]

use hvsim::nbd::wire::{self, REQUEST_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(h) = data.get(..REQUEST_LEN) {
        let h: &[u8; REQUEST_LEN] = h.try_into().expect("28 bytes");
        if let Ok(r) = wire::parse_request(h) {
            let mut back = [0u8; REQUEST_LEN];
            back[0..4].copy_from_slice(&wire::REQUEST_MAGIC.to_be_bytes());
            back[4..6].copy_from_slice(&r.flags.to_be_bytes());
            back[6..8].copy_from_slice(&r.kind.to_be_bytes());
            back[8..16].copy_from_slice(&r.handle.to_be_bytes());
            back[16..24].copy_from_slice(&r.offset.to_be_bytes());
            back[24..28].copy_from_slice(&r.length.to_be_bytes());
            assert_eq!(&back, h);
        }
    }
    if let Some(h) = data.get(..16) {
        let h: &[u8; 16] = h.try_into().expect("16 bytes");
        if let Ok((opt, len)) = wire::parse_option_header(h) {
            assert_eq!(&h[8..12], &opt.to_be_bytes());
            assert_eq!(&h[12..16], &len.to_be_bytes());
        }
    }
    // An INFO/GO payload as the server reads it: bounded by MAX_OPTION.
    let d = &data[..data.len().min(wire::MAX_OPTION)];
    if let Ok(r) = wire::parse_info_request(d) {
        let mut back = (r.name.len() as u32).to_be_bytes().to_vec();
        back.extend_from_slice(r.name.as_bytes());
        back.extend_from_slice(&(r.infos.len() as u16).to_be_bytes());
        for i in &r.infos {
            back.extend_from_slice(&i.to_be_bytes());
        }
        assert_eq!(back, d);
    }
});
