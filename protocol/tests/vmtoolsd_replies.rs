//! Replies captured from Debian's vmtoolsd 12.2 (vix and hgfsServer
//! plugins) under `hvsim exec`, exactly as they came back over TCLO (the
//! files in `tests/vmtoolsd/`): the codec parses them, and re-encoding what
//! it parsed gives the same bytes where the format is fully determined.

use protocol::hgfs::{self, op, status};
use protocol::vix::{self, file_attr, FileList, Reply};

fn reply(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/vmtoolsd/{name}", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    raw.strip_prefix(b"OK ")
        .expect("TCLO success prefix")
        .to_vec()
}

#[test]
fn list_files_reply() {
    let raw = reply("list-files.reply");
    let r = Reply::parse(&raw, false).unwrap();
    assert_eq!(r.code(), 0);
    let text = r.text();
    let l = FileList::parse(&text).unwrap();
    assert!(!l.truncated);
    assert_eq!(l.remaining, 0);
    let names: Vec<&str> = l.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, [".", "..", "l", "a.txt", "sub"]);
    let a = &l.files[3];
    assert_eq!((a.file_type, a.size, a.mtime), (0, 6, 1_577_934_245));
    // <perm> is the whole st_mode.
    assert_eq!(a.perm, 0o100640);
    let link = &l.files[2];
    assert_eq!(link.file_type, file_attr::SYMLINK);
    assert_eq!(link.symlink_target, "a.txt");
    assert!(l.files[4].is_dir());
    // Our encoding of what we parsed is vmtoolsd's text, NUL and all.
    assert_eq!(vix::encode_reply(0, 0, l.to_xml().as_bytes(), false), raw);
}

#[test]
fn transfer_from_guest_reply() {
    let raw = reply("transfer-from-guest.reply");
    let r = Reply::parse(&raw, false).unwrap();
    let l = FileList::parse(&r.text()).unwrap();
    assert_eq!(l.files.len(), 1);
    assert_eq!(l.files[0].name, "/tmp/gx/g/a.txt");
    assert_eq!(l.files[0].size, 6);
    assert_eq!(
        vix::encode_reply(0, 0, l.files[0].to_xml().as_bytes(), false),
        raw
    );
}

#[test]
fn errors_and_env() {
    let r = reply("bad-password.reply");
    let p = Reply::parse(&r, false).unwrap();
    assert_eq!(p.code() as u64, vix::err::INVALID_LOGIN_CREDENTIALS);
    // vmtoolsd prints the additional error as a signed number.
    assert_eq!(p.additional as i32, -25);
    assert_eq!(r, b"3050 -25 \0");
    let r = reply("rm-missing.reply");
    assert_eq!(Reply::parse(&r, false).unwrap().code(), 4);
    assert_eq!(vix::encode_reply(4, 0, b"", false), r);
    let r = reply("env.reply");
    let env = vix::parse_env(&Reply::parse(&r, false).unwrap().text()).unwrap();
    assert_eq!(env, ["HOME=/root"]);
    assert_eq!(
        vix::encode_reply(0, 0, vix::env_to_xml(&env).as_bytes(), false),
        r
    );
}

#[test]
fn tools_state_reply() {
    let r = reply("tools-state.reply");
    let p = Reply::parse(&r, false).unwrap();
    let raw = vix::base64_decode(p.data).unwrap();
    let props = vix::decode_properties(&raw).unwrap();
    let find = |id| props.iter().find(|p| p.id == id).map(|p| p.value.clone());
    assert_eq!(
        find(vix::prop::GUEST_TOOLS_VERSION),
        Some(vix::PropertyValue::Str("12.2.0 build-21223074".into()))
    );
    assert_eq!(
        find(vix::prop::GUEST_OS_FAMILY),
        Some(vix::PropertyValue::Int(1))
    );
    // "Enabled" properties carry the disabled flag: false for available.
    assert_eq!(
        find(vix::prop::GUEST_START_PROGRAM_ENABLED),
        Some(vix::PropertyValue::Bool(false))
    );
    assert_eq!(vix::encode_properties(&props), raw);
}

/// The HGFS packet inside a binary VIX reply.
fn hgfs_reply(name: &str) -> (hgfs::Header, Vec<u8>, Vec<u8>) {
    let raw = reply(name);
    let r = Reply::parse(&raw, true).unwrap();
    assert_eq!(r.code(), 0);
    let p = hgfs::Packet::parse(r.data).unwrap();
    assert_eq!(p.header.flags, hgfs::packet_flags::REPLY);
    assert_eq!(p.header.status, status::SUCCESS);
    (p.header, p.payload.to_vec(), r.data.to_vec())
}

#[test]
fn hgfs_session_open_read_close() {
    let (h, payload, _) = hgfs_reply("hgfs-create-session.reply");
    assert_eq!(h.op, op::CREATE_SESSION_V4);
    assert_eq!(h.header_size as usize, hgfs::HEADER_LEN);
    let s = hgfs::CreateSessionReply::decode(&payload).unwrap();
    assert_eq!(s.max_packet_size as usize, hgfs::LARGE_PACKET_MAX);
    assert_eq!(s.capabilities.len(), 65);
    assert_eq!(s.encode(), payload);
    let session = s.session_id;

    let (h, payload, _) = hgfs_reply("hgfs-open-v3.reply");
    assert_eq!(
        (h.op, h.session_id, h.request_id),
        (op::OPEN_V3, session, 2)
    );
    let o = hgfs::OpenV3Reply::decode(&payload).unwrap();
    assert_eq!(o.encode(), payload);

    // vmtoolsd counts one byte more than the data into a read reply's
    // packet size (sizeof with the payload[1] placeholder).
    let (h, payload, packet) = hgfs_reply("hgfs-read-v3.reply");
    assert_eq!(h.op, op::READ_V3);
    assert_eq!(hgfs::decode_read_v3_reply(&payload).unwrap(), b"hello\n");
    assert_eq!(packet.len(), hgfs::HEADER_LEN + 12 + 6 + 1);
    let (_, payload, _) = hgfs_reply("hgfs-read-v3-eof.reply");
    assert_eq!(hgfs::decode_read_v3_reply(&payload).unwrap(), b"");

    let (h, payload, _) = hgfs_reply("hgfs-close.reply");
    assert_eq!(h.op, op::CLOSE);
    assert_eq!(hgfs::decode_old_reply(&payload).unwrap().1, status::SUCCESS);
    let (h, payload, packet) = hgfs_reply("hgfs-destroy-session.reply");
    assert_eq!(h.op, op::DESTROY_SESSION_V4);
    assert_eq!(payload, hgfs::destroy_session_payload());
    // Our server-side encoding of the same reply is vmtoolsd's.
    assert_eq!(
        hgfs::build_reply(&h, status::SUCCESS, &payload).unwrap(),
        packet
    );
}

#[test]
fn hgfs_write_and_setattr() {
    let (h, payload, packet) = hgfs_reply("hgfs-write-v3.reply");
    assert_eq!(h.op, op::WRITE_V3);
    assert_eq!(hgfs::decode_write_v3_reply(&payload).unwrap(), 6);
    assert_eq!(hgfs::encode_write_v3_reply(6), payload);
    assert_eq!(
        hgfs::build_reply(&h, status::SUCCESS, &payload).unwrap(),
        packet
    );
    let (h, payload, _) = hgfs_reply("hgfs-setattr-v2.reply");
    assert_eq!(h.op, op::SETATTR_V2);
    assert_eq!(hgfs::decode_old_reply(&payload).unwrap().1, status::SUCCESS);
}
