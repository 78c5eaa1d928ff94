//! Arbitrary HGFS packets to the guest's HGFS server (the one behind VIX
//! opcode 84 and TCLO `f`), rooted in a scratch directory: every packet
//! gets a reply or an empty answer, nothing panics, and the bounds hold.
//!
//! The input is a sequence of packets, each prefixed by its u16 length;
//! a session is created first so later packets reach the file ops.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use plugins::guestops::hgfs_server::{HgfsServer, MAX_SESSIONS};
use protocol::hgfs::{self, op, Packet};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("scratch directory");
    std::fs::write(dir.path().join("file"), b"some bytes").expect("seed file");
    let mut server = HgfsServer::with_root(dir.path().to_owned());
    let now = Instant::now();
    let create = hgfs::build_request(op::CREATE_SESSION_V4, 1, 0, &[0; 16]).expect("request");
    let reply = server.dispatch(&create, 0, now);
    let session = Packet::parse(&reply).expect("session reply").header.session_id;
    let mut rest = data;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut packet = rest[2..2 + n].to_vec();
        rest = &rest[2 + n..];
        // Point well-formed headers at the live session half of the time.
        if packet.len() >= hgfs::HEADER_LEN && packet[0] & 1 == 0 {
            packet[36..44].copy_from_slice(&session.to_le_bytes());
        }
        let reply = server.dispatch(&packet, 0, now);
        assert!(reply.len() <= hgfs::LARGE_PACKET_MAX);
        if !reply.is_empty() {
            Packet::parse(&reply).expect("replies parse");
        }
    }
    let _ = MAX_SESSIONS;
});
