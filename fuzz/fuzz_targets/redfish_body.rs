//! Redfish action and PATCH bodies from an authenticated but hostile client:
//! ComputerSystem.Reset, VirtualMedia.InsertMedia/EjectMedia, the Boot PATCH,
//! the VirtualMedia PATCH, the session login and the account POST and PATCH
//! (AccountService), answered by the service over
//! a one-VM inventory (no sockets; https:// images become a missing file, so
//! nothing leaves the process). Errors are fine; panics are not, every
//! answer is JSON, a 2xx insert names a file under the media directory and
//! a failed one leaves the slot empty; the administrator account survives.
#![no_main]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hvsim::config::UserConfig;
use hvsim::http::Request;
use hvsim::nbd::Exports;
use hvsim::redfish::{Options, Service};
use hvsim::store::Store;
use hvsim::users::UserStore;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn media_dir() -> &'static PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("hvsim-fuzz-media-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("media dir");
        std::fs::write(d.join("a.iso"), [0x55u8; 4096]).expect("image");
        std::fs::canonicalize(d).expect("canonical media dir")
    })
}

fn service() -> &'static Arc<Service> {
    static S: OnceLock<Arc<Service>> = OnceLock::new();
    S.get_or_init(|| {
        let mut inv = BTreeMap::new();
        inv.insert("fuzz".to_string(), common::vm().clone());
        let store = Arc::new(Store::in_memory().expect("in-memory store"));
        let users = UserStore::load(
            &[UserConfig {
                name: "admin".into(),
                password: "pw".into(),
                role: Some("Administrator".into()),
            }],
            store,
        )
        .expect("users");
        let opts = Options {
            media_dir: Some(media_dir().clone()),
            media_ca: None,
            allow_http: false,
            inactivity: Duration::from_secs(1800),
            session_timeout: Duration::from_secs(1800),
            nbd: None,
            task_after: Duration::from_secs(10),
            proxy_slots: 2,
        };
        Service::new(
            Arc::new(inv),
            Arc::new(users),
            Exports::new(),
            opts,
            "00000000-0000-0000-0000-000000000000".into(),
        )
    })
}

/// The account the PATCH inputs change (created once, never deleted).
fn sacrificial() -> u8 {
    static ID: OnceLock<u8> = OnceLock::new();
    *ID.get_or_init(|| {
        service()
            .users
            .create(None, "fz", b"pw", hvsim::users::Role::Operator, true)
            .expect("fuzz account")
            .id
    })
}

fn request(method: &str, target: &str, body: Vec<u8>) -> Request {
    Request {
        method: method.into(),
        target: target.into(),
        // admin:pw
        headers: vec![("Authorization".into(), "Basic YWRtaW46cHc=".into())],
        body,
        peer: "127.0.0.1:1".parse().expect("addr"),
        tls: true,
        principal: None,
        takeover: Default::default(),
    }
}

/// https:// images would reach the network: point them at a missing file.
fn no_network(body: &[u8]) -> Vec<u8> {
    let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(body) else {
        return body.to_vec();
    };
    let remote = m
        .get("Image")
        .and_then(Value::as_str)
        .and_then(hvsim::media::protocol_of)
        .is_some_and(|p| p.starts_with("HTTP"));
    if !remote {
        return body.to_vec();
    }
    m.insert("Image".into(), "file:///nonexistent/x.iso".into());
    serde_json::to_vec(&Value::Object(m)).expect("json")
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let svc = service();
    let bmc = "/redfish/v1/Managers/fuzz-bmc";
    let (method, target, body) = match sel % 10 {
        0 => (
            "POST",
            "/redfish/v1/Systems/fuzz/Actions/ComputerSystem.Reset".to_string(),
            body.to_vec(),
        ),
        1 => (
            "POST",
            format!("{bmc}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia"),
            no_network(body),
        ),
        2 => (
            "POST",
            "/redfish/v1/Systems/fuzz/VirtualMedia/Usb/Actions/VirtualMedia.InsertMedia"
                .to_string(),
            no_network(body),
        ),
        3 => (
            "POST",
            format!("{bmc}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia"),
            body.to_vec(),
        ),
        4 | 5 => (
            "PATCH",
            "/redfish/v1/Systems/fuzz".to_string(),
            body.to_vec(),
        ),
        6 => ("PATCH", format!("{bmc}/VirtualMedia/Usb"), body.to_vec()),
        8 => (
            "POST",
            "/redfish/v1/AccountService/Accounts".to_string(),
            body.to_vec(),
        ),
        9 => (
            "PATCH",
            format!("/redfish/v1/AccountService/Accounts/{}", sacrificial()),
            body.to_vec(),
        ),
        _ => (
            "POST",
            "/redfish/v1/SessionService/Sessions".to_string(),
            body.to_vec(),
        ),
    };
    let resp = svc.answer(&request(method, &target, body));
    assert!((200..600).contains(&resp.status));
    if !resp.body.is_empty() {
        serde_json::from_slice::<Value>(&resp.body).expect("JSON answer");
    }
    if matches!(sel % 10, 1 | 2) {
        let slot = if sel % 10 == 1 { "Cd" } else { "Usb" };
        let inserted = svc.exports.get(&format!("fuzz/{slot}"));
        if resp.status == 200 {
            let m = inserted.expect("a 200 insert exports the medium");
            assert_eq!(m.size(), 4096, "only the media dir's image can be inserted");
        } else {
            assert!(inserted.is_none(), "a refused insert leaves the slot empty");
        }
    }
    // The administrator cannot be locked out through another account.
    let admin = svc.users.by_id(2).expect("the administrator account");
    assert!(admin.enabled && admin.name == "admin");
    // Log out, delete what was created and eject, so every input starts
    // from the same state.
    if let Some((_, loc)) = resp.headers.iter().find(|(k, _)| k == "Location") {
        if loc.starts_with("/redfish/v1/SessionService/Sessions/")
            || loc.starts_with("/redfish/v1/AccountService/Accounts/")
        {
            let r = svc.answer(&request("DELETE", loc, Vec::new()));
            assert_eq!(r.status, 204);
        }
    }
    for slot in ["Cd", "Usb"] {
        let t = format!("{bmc}/VirtualMedia/{slot}/Actions/VirtualMedia.EjectMedia");
        let r = svc.answer(&request("POST", &t, Vec::new()));
        assert_eq!(r.status, 200);
    }
});
