//! VIX guest operations, both directions, from hostile input:
//!
//! * the guest side's request parser: a `Vix_1_Relayed_Command` payload,
//!   its header validation, every opcode's body decoder, the credential;
//! * the host side's reply parsers: the `"<err> <additional> "` reply in text
//!   and binary form, the results (`<fxi>`, `<proc>`, process-list chunks,
//!   `<ev>`, property lists) and the HGFS reply packets;
//! * hvsim's guest-operations library driven by a guest whose replies are
//!   the fuzzer's: every operation ends (no hang: the loops stop when the
//!   replies stop making progress) and none panics.
//!
//! Nothing may panic; what parses must re-encode to something that parses
//! the same.
#![no_main]

use std::cell::RefCell;
use std::time::Duration;

use hvsim::guestops::{Guest, TcloChannel, UploadOptions};
use libfuzzer_sys::fuzz_target;
use protocol::hgfs;
use protocol::vix::{self, op};

/// A guest that answers with the fuzzer's replies, then stops answering.
struct Hostile {
    replies: RefCell<Vec<Vec<u8>>>,
}

impl TcloChannel for Hostile {
    fn send(&self, _command: &[u8], _timeout: Duration) -> Result<Vec<u8>, String> {
        self.replies
            .borrow_mut()
            .pop()
            .ok_or_else(|| "no more replies".to_string())
    }
}

fn guest_side(data: &[u8]) {
    let Ok((_, msg)) = vix::parse_tclo_args(data) else {
        return;
    };
    let Ok(req) = vix::Request::parse(msg) else {
        return;
    };
    let _ = req.credential();
    let b = req.body;
    match req.header.opcode {
        op::LIST_FILES | op::INITIATE_FILE_TRANSFER_FROM_GUEST => {
            if let Ok(v) = vix::ListFiles::decode(b) {
                assert_eq!(vix::ListFiles::decode(&v.encode()), Ok(v));
            }
        }
        op::CREATE_DIRECTORY_EX => {
            if let Ok(v) = vix::CreateDirectory::decode(b) {
                assert_eq!(vix::CreateDirectory::decode(&v.encode()), Ok(v));
            }
        }
        op::MOVE_GUEST_FILE_EX | op::MOVE_GUEST_DIRECTORY => {
            if let Ok(v) = vix::Move::decode(b) {
                assert_eq!(vix::Move::decode(&v.encode()), Ok(v));
            }
        }
        op::CREATE_TEMPORARY_FILE_EX | op::CREATE_TEMPORARY_DIRECTORY => {
            let _ = vix::CreateTemp::decode(b);
        }
        op::SET_GUEST_FILE_ATTRIBUTES => {
            if let Ok(v) = vix::SetAttributes::decode(b) {
                assert_eq!(vix::SetAttributes::decode(&v.encode()), Ok(v));
            }
        }
        op::START_PROGRAM => {
            let _ = vix::StartProgram::decode(b);
        }
        op::LIST_PROCESSES_EX => {
            if let Ok(v) = vix::ListProcesses::decode(b) {
                assert_eq!(vix::ListProcesses::decode(&v.encode()), Ok(v));
            }
        }
        op::READ_ENV_VARIABLES => {
            if let Ok(v) = vix::ReadEnv::decode(b) {
                assert_eq!(vix::ReadEnv::decode(&v.encode()), Ok(v));
            }
        }
        op::INITIATE_FILE_TRANSFER_TO_GUEST => {
            let _ = vix::TransferToGuest::decode(b);
        }
        op::TERMINATE_PROCESS => {
            let _ = vix::TerminateProcess::decode(b);
        }
        op::DELETE_GUEST_FILE_EX => {
            let _ = vix::DeleteFile::decode(b);
        }
        op::DELETE_GUEST_DIRECTORY_EX => {
            let _ = vix::DeleteDirectory::decode(b);
        }
        op::HGFS_SEND_PACKET => {
            if let Ok(p) = vix::HgfsPacket::decode(b) {
                hgfs_requests(p.packet);
            }
        }
        _ => {}
    }
}

fn hgfs_requests(packet: &[u8]) {
    let Ok(p) = hgfs::Packet::parse(packet) else {
        return;
    };
    let b = p.payload;
    let _ = hgfs::CreateSessionRequest::decode(b);
    let _ = hgfs::GetattrV2Request::decode(b);
    let _ = hgfs::SetattrV2Request::decode(b);
    let _ = hgfs::OpenRequest::decode(b);
    let _ = hgfs::CloseRequest::decode(b);
    let _ = hgfs::CloseV3Request::decode(b);
    if let Ok(o) = hgfs::OpenV3Request::decode(b) {
        let _ = hgfs::cp_name_to_path(&o.name);
    }
    let _ = hgfs::ReadV3Request::decode(b);
    if let Ok(w) = hgfs::WriteV3Request::decode(b) {
        assert!(w.data.len() <= b.len());
    }
}

fn host_side(data: &[u8]) {
    for binary in [false, true] {
        let Ok(r) = vix::Reply::parse(data, binary) else {
            continue;
        };
        assert!(r.data.len() <= data.len());
        let text = String::from_utf8_lossy(r.data);
        let _ = vix::FileList::parse(&text);
        let _ = vix::ProcInfo::parse_list(&text);
        let _ = vix::ProcChunk::parse(&text);
        let _ = vix::parse_env(&text);
        let _ = vix::decode_properties(r.data);
        if let Some(raw) = vix::base64_decode(r.data) {
            let _ = vix::decode_properties(&raw);
        }
        if let Ok(p) = hgfs::Packet::parse(r.data) {
            let b = p.payload;
            let _ = hgfs::CreateSessionReply::decode(b);
            let _ = hgfs::GetattrV2Reply::decode(b);
            let _ = hgfs::OpenV3Reply::decode(b);
            let _ = hgfs::OpenReply::decode(b);
            let _ = hgfs::decode_old_reply(b);
            let _ = hgfs::decode_write_v3_reply(b);
            if let Ok(d) = hgfs::decode_read_v3_reply(b) {
                assert!(d.len() <= b.len());
            }
        }
    }
}

/// Split the input into replies at "\n--\n" and let the library talk to
/// them: the first byte picks the operation.
fn library(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut replies: Vec<Vec<u8>> = Vec::new();
    let mut cur = rest;
    while let Some(i) = cur.windows(4).position(|w| w == b"\n--\n") {
        replies.push(cur[..i].to_vec());
        cur = &cur[i + 4..];
    }
    replies.push(cur.to_vec());
    replies.reverse();
    let chan = Hostile {
        replies: RefCell::new(replies),
    };
    let g = Guest::new(&chan, "root", "pw");
    match which % 8 {
        0 => {
            let _ = g.list_processes(&[]);
        }
        1 => {
            let _ = g.list_files("/", "");
        }
        2 => {
            let mut sink = std::io::sink();
            let _ = g.download("/f", &mut sink, &mut |_| {});
        }
        3 => {
            let mut src: &[u8] = &[1u8; 100_000];
            let _ = g.upload(&mut src, "/f", &UploadOptions::default(), &mut |_| {});
        }
        4 => {
            let _ = g.tools_state();
        }
        5 => {
            let spec = hvsim::guestops::RunSpec {
                program: "/bin/true".into(),
                timeout: Some(Duration::ZERO),
                ..Default::default()
            };
            let (mut o, mut e) = (std::io::sink(), std::io::sink());
            let _ = g.run(&spec, &mut o, &mut e);
        }
        6 => {
            let _ = g.env(&[]);
        }
        _ => {
            let _ = g.mktemp(false, "", "", "");
            let _ = g.mv_any("/a", "/b", true);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    guest_side(data);
    host_side(data);
    library(data);
});
