//! NBD bytes from an untrusted proxy-mode peer (the browser or script that
//! serves an image over a WebSocket; hvsim is the NBD client): the
//! handshake (greeting, option replies, export size) and then transmission
//! replies to a few outstanding READs. Errors are fine; panics, unbounded
//! allocations and data longer than the request are not.
#![no_main]

use hvsim::nbd::client::{self, MAX_EXPORT_SIZE, MAX_READ};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let mut sent = Vec::new();
    let Ok(export) = client::handshake(&mut r, client::into_writer(&mut sent)) else {
        return;
    };
    assert!(export.size <= MAX_EXPORT_SIZE);
    // What we sent: client flags, then GO, then maybe EXPORT_NAME.
    assert!(sent.len() >= 4 + 16);
    // Four READs in flight, of lengths up to MAX_READ.
    let mut pending: Vec<(u64, u32)> = (1..=4u64)
        .map(|h| (h, (h as u32 * 40_000).min(MAX_READ)))
        .collect();
    while !pending.is_empty() {
        let reply = client::read_reply(&mut r, |h| {
            pending.iter().find(|p| p.0 == h).map(|p| p.1)
        });
        let Ok(rep) = reply else {
            return;
        };
        let i = pending
            .iter()
            .position(|p| p.0 == rep.handle)
            .expect("a reply only for an outstanding handle");
        let (_, len) = pending.remove(i);
        if rep.errno == 0 {
            assert_eq!(rep.data.len(), len as usize);
        } else {
            assert!(rep.data.is_empty());
        }
    }
});
