//! vim25 SOAP requests from a logged-in but hostile client, answered by the
//! vSphere API over a one-VM inventory: any bytes as the body of
//! `POST /sdk`. Errors (SOAP faults) are fine; panics are not, every answer
//! is a SOAP envelope, and the session and the VM stay usable.
//! WaitForUpdates is bounded to 10 ms here so an input cannot stall the run.
#![no_main]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hvsim::config::UserConfig;
use hvsim::http::Request;
use hvsim::store::Store;
use hvsim::users::UserStore;
use hvsim::vsphere::Service;
use libfuzzer_sys::fuzz_target;

fn request(body: Vec<u8>, cookie: Option<&str>) -> Request {
    Request {
        method: "POST".into(),
        target: "/sdk".into(),
        headers: cookie
            .map(|c| vec![("Cookie".into(), c.to_string())])
            .unwrap_or_default(),
        body,
        peer: "127.0.0.1:1".parse().expect("addr"),
        tls: true,
        principal: None,
        takeover: Default::default(),
    }
}

fn service() -> &'static (Arc<Service>, String) {
    static S: OnceLock<(Arc<Service>, String)> = OnceLock::new();
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
        let svc = Service::with_max_wait(&Arc::new(inv), Arc::new(users), Duration::from_millis(10));
        let login = b"<Envelope><Body><Login xmlns=\"urn:vim25\"><_this type=\"SessionManager\">ha-sessionmgr</_this><userName>admin</userName><password>pw</password></Login></Body></Envelope>".to_vec();
        let r = svc.answer(&request(login, None));
        assert_eq!(r.status, 200);
        let cookie = r
            .headers
            .iter()
            .find(|(k, _)| k == "Set-Cookie")
            .map(|(_, v)| v.split(';').next().unwrap_or("").to_string())
            .expect("session cookie");
        (svc, cookie)
    })
}

fuzz_target!(|data: &[u8]| {
    let (svc, cookie) = service();
    let r = svc.answer(&request(data.to_vec(), Some(cookie)));
    assert!(r.status == 200 || r.status == 500, "status {}", r.status);
    assert!(
        r.body.windows(17).any(|w| w == b"soapenv:Envelope "),
        "every answer is a SOAP envelope"
    );
    // Still logged in, still serving.
    let probe = b"<Envelope><Body><Fetch xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">1</_this><prop>name</prop></Fetch></Body></Envelope>".to_vec();
    let r = svc.answer(&request(probe, Some(cookie)));
    if r.status != 200 {
        // The input may have logged the session out; log in again next time
        // is not possible with a OnceLock, so only a fault is acceptable.
        assert!(String::from_utf8_lossy(&r.body).contains("NotAuthenticated"));
    }
});
