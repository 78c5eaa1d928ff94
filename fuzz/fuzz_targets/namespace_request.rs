//! Namespace DB requests from a guest (`namespace-priv-get-values`,
//! `namespace-priv-set-keys`): parsing never panics, a planned change keeps
//! the namespace within its limits, and the host answers every request
//! over a privileged channel with "1 " or "0 ".
#![no_main]

mod common;

use hvsim::namespace::{self, Namespace, MAX_NAMESPACE_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > 128 * 1024 {
        return;
    }
    let mut ns = Namespace::new();
    ns.insert("ready".into(), b"TRUE".to_vec());
    if let Ok(req) = namespace::parse_get(data) {
        let body = namespace::get(Some(&ns), &req).expect("namespace exists");
        assert!(body.iter().filter(|&&b| b == 0).count() >= req.keys.len());
    }
    if let Ok(req) = namespace::parse_set(data) {
        if let Ok(changes) = namespace::plan(Some(&ns), &req) {
            namespace::apply(&mut ns, &changes);
            let size: usize = ns.iter().map(|(k, v)| k.len() + v.len()).sum();
            assert!(size <= MAX_NAMESPACE_BYTES);
            assert!(ns.values().all(|v| !v.is_empty()), "empty values delete");
        }
    }
    let vm = common::vm();
    for cmd in [&b"namespace-priv-get-values "[..], b"namespace-priv-set-keys "] {
        let mut msg = cmd.to_vec();
        msg.extend_from_slice(data);
        let reply = vm.vsock_rpci_as(&msg, true).expect("vm is on");
        assert!(reply.starts_with(b"1 ") || reply.starts_with(b"0 "));
    }
});
