//! TCLO-over-vsock packets from a hostile peer, fed in arbitrary pieces:
//! the decoder never panics, never allocates past its bound, and every
//! packet it accepts encodes back to bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::datamap::{read_map, DataMap, Decoder, Packet};

fuzz_target!(|data: &[u8]| {
    let _ = DataMap::deserialize(data);
    // The blocking reader of the RPCI endpoint.
    if let Ok(Some(m)) = read_map(&mut &data[..]) {
        let _ = Packet::from_map(&m);
    }
    let split = data.first().map_or(1, |b| usize::from(*b % 16) + 1);
    let mut d = Decoder::new();
    for chunk in data.chunks(split) {
        d.feed(chunk);
        loop {
            match d.next_packet() {
                Ok(Some(p)) => {
                    let wire = p.encode();
                    assert_eq!(Packet::decode(&wire[4..]).as_ref(), Ok(&p));
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
