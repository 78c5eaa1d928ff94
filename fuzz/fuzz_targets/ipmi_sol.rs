//! Hostile Serial-over-LAN payloads (decrypted RMCP+ payload type 1): the
//! parser accepts exactly the packets it can re-emit, and a SOL activation
//! fed any sequence of them never panics and answers with a bare 4-byte
//! acknowledgement.
#![no_main]

use std::time::{Duration, Instant};

use hvsim::ipmi::sol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = sol::Config::default();
    let mut act = sol::Activation::new(1, None);
    let mut now = Instant::now();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let n = (n as usize).min(tail.len());
        let (pkt, tail) = tail.split_at(n);
        rest = tail;
        now += Duration::from_millis(n as u64 * 7);
        match sol::parse(pkt) {
            Ok(p) => {
                assert!(p.seq <= 0x0F && p.ack <= 0x0F);
                assert_eq!(sol::emit(p.seq, p.ack, p.accepted, p.op, p.data), pkt);
                if let Some(ack) = act.inbound(&p, None, now) {
                    assert_eq!(ack.len(), 4);
                    assert_eq!(ack[0], 0);
                }
            }
            Err(_) => assert!(pkt.len() < 4 || pkt.len() > sol::MAX_PAYLOAD || pkt[0] > 0x0F || pkt[1] > 0x0F),
        }
        assert!(act.poll(None, &cfg, now).is_none());
    }
});
