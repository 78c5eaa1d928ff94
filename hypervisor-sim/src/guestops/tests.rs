//! The library against a scripted guest that speaks the protocol with
//! small pages and chunks: process lists in several trips (split inside a
//! multi-byte character), directory pages, and files moved through an
//! in-memory HGFS server.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use protocol::hgfs::{self, op as hop, status};
use protocol::vix::{self, op, FileInfo, ProcInfo};

use super::{Guest, GuestOpsError, TcloChannel, UploadOptions};

#[derive(Default)]
struct Fake {
    procs: String,
    files: Vec<FileInfo>,
    page: usize,
    trip: usize,
    store: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    open: RefCell<BTreeMap<u32, (String, bool)>>,
    calls: RefCell<usize>,
}

impl Fake {
    fn reply(&self, req: &vix::Request<'_>) -> Vec<u8> {
        let binary = req.returns_binary();
        let text = |s: String| vix::encode_reply(0, 0, s.as_bytes(), binary);
        match req.header.opcode {
            op::LIST_PROCESSES_EX => {
                let r = vix::ListProcesses::decode(req.body).unwrap();
                let all = self.procs.as_bytes();
                let start = r.offset as usize;
                let end = (start + self.trip).min(all.len());
                let left = (all.len() - end) as u32;
                let mut out = if r.key == 0 {
                    format!(
                        "<key>9</key><totalSize>{}</totalSize><leftToSend>{left}</leftToSend>",
                        all.len()
                    )
                    .into_bytes()
                } else {
                    assert_eq!(r.key, 9);
                    format!("<leftToSend>{left}</leftToSend>").into_bytes()
                };
                out.extend_from_slice(&all[start..end]);
                vix::encode_reply(0, 0, &out, false)
            }
            op::LIST_FILES => {
                let r = vix::ListFiles::decode(req.body).unwrap();
                let from = r.index as usize;
                let to = (from + self.page).min(self.files.len());
                let l = vix::FileList {
                    truncated: to < self.files.len(),
                    remaining: (self.files.len() - to) as u32,
                    files: self.files[from..to].to_vec(),
                };
                text(l.to_xml())
            }
            op::INITIATE_FILE_TRANSFER_FROM_GUEST => {
                let r = vix::ListFiles::decode(req.body).unwrap();
                match self.store.borrow().get(&r.path) {
                    Some((d, mode)) => text(
                        FileInfo {
                            name: r.path.clone(),
                            size: d.len() as u64,
                            perm: (0o100000 | mode) as i32,
                            ..Default::default()
                        }
                        .to_xml(),
                    ),
                    None => vix::encode_reply(vix::err::FILE_NOT_FOUND, 2, b"", false),
                }
            }
            op::INITIATE_FILE_TRANSFER_TO_GUEST => text(String::new()),
            op::HGFS_SEND_PACKET => {
                let p = vix::HgfsPacket::decode(req.body).unwrap();
                let reply = self.hgfs(p.packet);
                vix::encode_reply(0, 0, &reply, true)
            }
            _ => vix::encode_reply(vix::err::UNRECOGNIZED_COMMAND_IN_GUEST, 0, b"", binary),
        }
    }

    fn hgfs(&self, packet: &[u8]) -> Vec<u8> {
        let p = hgfs::Packet::parse(packet).unwrap();
        let h = p.header;
        let ok = |payload: Vec<u8>| hgfs::build_reply(&h, status::SUCCESS, &payload).unwrap();
        match h.op {
            hop::CREATE_SESSION_V4 => ok(hgfs::CreateSessionReply {
                session_id: 77,
                max_packet_size: hgfs::LARGE_PACKET_MAX as u32,
                ..Default::default()
            }
            .encode()),
            hop::DESTROY_SESSION_V4 => ok(hgfs::destroy_session_payload()),
            hop::OPEN_V3 => {
                assert_eq!(h.session_id, 77);
                let o = hgfs::OpenV3Request::decode(p.payload).unwrap();
                let path = hgfs::cp_name_to_path(&o.name).unwrap();
                let write = o.mode == hgfs::open_mode::WRITE_ONLY;
                if write {
                    self.store
                        .borrow_mut()
                        .insert(path.clone(), (Vec::new(), 0o644));
                } else if !self.store.borrow().contains_key(&path) {
                    return hgfs::build_reply(&h, status::NO_SUCH_FILE_OR_DIR, &[]).unwrap();
                }
                let handle = self.open.borrow().len() as u32 + 1;
                self.open.borrow_mut().insert(handle, (path, write));
                ok(hgfs::OpenV3Reply {
                    handle,
                    ..Default::default()
                }
                .encode())
            }
            hop::READ_V3 => {
                let r = hgfs::ReadV3Request::decode(p.payload).unwrap();
                let open = self.open.borrow();
                let store = self.store.borrow();
                let data = &store[&open[&r.handle].0].0;
                let start = (r.offset as usize).min(data.len());
                // Shorter reads than asked, as a server may give.
                let end = (start + (r.required_size as usize).min(10_000)).min(data.len());
                ok(hgfs::encode_read_v3_reply(&data[start..end]))
            }
            hop::WRITE_V3 => {
                let w = hgfs::WriteV3Request::decode(p.payload).unwrap();
                let open = self.open.borrow();
                let mut store = self.store.borrow_mut();
                let data = &mut store.get_mut(&open[&w.handle].0).unwrap().0;
                assert_eq!(w.offset as usize, data.len(), "sequential writes");
                // Accept at most 20000 bytes per write: the client resends the rest.
                let n = w.data.len().min(20_000);
                data.extend_from_slice(&w.data[..n]);
                ok(hgfs::encode_write_v3_reply(n as u32))
            }
            hop::CLOSE => {
                let c = hgfs::CloseRequest::decode(p.payload).unwrap();
                self.open.borrow_mut().remove(&c.handle).unwrap();
                ok(hgfs::old_reply_payload(c.id, status::SUCCESS))
            }
            hop::SETATTR_V2 => {
                let s = hgfs::SetattrV2Request::decode(p.payload).unwrap();
                let path = hgfs::cp_name_to_path(&s.name).unwrap();
                self.store.borrow_mut().get_mut(&path).unwrap().1 = s.attr.mode();
                ok(hgfs::old_reply_payload(s.id, status::SUCCESS))
            }
            _ => hgfs::build_reply(&h, status::OPERATION_NOT_SUPPORTED, &[]).unwrap(),
        }
    }
}

impl TcloChannel for Fake {
    fn send(&self, command: &[u8], _timeout: Duration) -> Result<Vec<u8>, String> {
        *self.calls.borrow_mut() += 1;
        let args = command
            .strip_prefix(b"Vix_1_Relayed_Command ")
            .expect("relayed command");
        let (_, msg) = vix::parse_tclo_args(args).unwrap();
        let req = vix::Request::parse(msg).unwrap();
        if req.header.opcode != op::GET_TOOLS_STATE {
            assert_eq!(
                req.credential().unwrap(),
                vix::Credential::name_password("root", "pw")
            );
        }
        let mut out = b"OK ".to_vec();
        out.extend_from_slice(&self.reply(&req));
        Ok(out)
    }
}

#[test]
fn process_lists_come_in_several_trips() {
    let procs: Vec<ProcInfo> = (0..300)
        .map(|i| ProcInfo {
            cmd: Some("prøgram".into()),
            name: format!("/usr/bin/prøgram --number {i} <&>"),
            pid: i,
            user: "root".into(),
            start: 1000 + i,
            exit_code: Some(0),
            exit_time: Some(0),
        })
        .collect();
    let fake = Fake {
        procs: procs.iter().map(ProcInfo::to_xml).collect(),
        // An odd trip size splits the two-byte "ø" somewhere.
        trip: 997,
        ..Default::default()
    };
    let g = Guest::new(&fake, "root", "pw");
    assert_eq!(g.list_processes(&[]).unwrap(), procs);
    assert!(*fake.calls.borrow() > 10);
}

#[test]
fn directory_listings_are_paged() {
    let files: Vec<FileInfo> = (0..250)
        .map(|i| FileInfo {
            name: format!("f{i}"),
            size: i,
            ..Default::default()
        })
        .collect();
    let fake = Fake {
        files: files.clone(),
        page: 40,
        ..Default::default()
    };
    let g = Guest::new(&fake, "root", "pw");
    assert_eq!(g.list_files("/d", "").unwrap(), files);
    assert_eq!(*fake.calls.borrow(), 7);
}

#[test]
fn files_go_up_and_down_through_hgfs() {
    let fake = Fake::default();
    let g = Guest::new(&fake, "root", "pw");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut sent = Vec::new();
    let n = g
        .upload(
            &mut &data[..],
            "/tmp/f",
            &UploadOptions {
                overwrite: true,
                mode: Some(0o750),
            },
            &mut |b| sent.push(b),
        )
        .unwrap();
    assert_eq!(n, 200_000);
    assert_eq!(sent.last(), Some(&200_000));
    assert_eq!(fake.store.borrow()["/tmp/f"], (data.clone(), 0o750));
    assert!(fake.open.borrow().is_empty(), "closed");
    let mut back = Vec::new();
    let (n, info) = g.download("/tmp/f", &mut back, &mut |_| {}).unwrap();
    assert_eq!((n, back == data), (200_000, true));
    assert_eq!(info.perm & 0o7777, 0o750);
    // An empty file.
    g.upload(
        &mut &[][..],
        "/tmp/e",
        &UploadOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let mut back = Vec::new();
    assert_eq!(g.download("/tmp/e", &mut back, &mut |_| {}).unwrap().0, 0);
    // A missing file: the guest's VIX error, with its errno.
    let e = g
        .download("/tmp/missing", &mut back, &mut |_| {})
        .unwrap_err();
    assert_eq!(e.vix_code(), Some(4));
    assert!(e.to_string().contains("guest errno 2"), "{e}");
    // Transfers name absolute paths without "..".
    let e = g
        .upload(
            &mut &b"x"[..],
            "/a/../b",
            &UploadOptions::default(),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(e, GuestOpsError::Request { .. }), "{e}");
}
