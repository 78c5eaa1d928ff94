//! Customization payloads (CAB, ZIP, gzipped tar) from the host: unpacking
//! never panics, stays within its bounds, and every member it yields has a
//! plain relative name (nothing that could leave the extraction directory).
#![no_main]

use libfuzzer_sys::fuzz_target;
use plugins::deploypkg::archive::{unpack, MAX_MEMBERS, MAX_TOTAL};
use protocol::deploypkg::PayloadType;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, payload)) = data.split_first() else {
        return;
    };
    let Some(kind) = PayloadType::from_byte(kind % 3) else {
        return;
    };
    if let Ok(members) = unpack(kind, payload) {
        assert!(members.len() <= MAX_MEMBERS);
        assert!(members.iter().map(|m| m.data.len() as u64).sum::<u64>() <= MAX_TOTAL);
        for m in &members {
            let p = std::path::Path::new(&m.path);
            assert!(p.is_relative(), "{}", m.path);
            assert!(
                p.components().all(|c| matches!(c, std::path::Component::Normal(_))),
                "{}",
                m.path
            );
        }
    }
});
