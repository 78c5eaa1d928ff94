//! `/console/{vm}`: the VM's serial console (the pty of `hvsim exec
//! --console`, [`crate::console`]) over a WebSocket, for the page's terminal.
//!
//! Binary messages carry bytes both ways: the program's output to the page
//! (its recent output first, from the console's ring, as IPMI SOL does),
//! keystrokes to the program. Text messages from the server are its own
//! notices (why the session ends), also given as the close reason.
//!
//! Rules: an Operator or Administrator only (IPMI's SOL privilege is
//! similar: it changes what runs on the VM); one interactive session per VM,
//! shared with IPMI SOL ([`crate::console::Slot::claim`]): a second one, from
//! either side, is refused naming the holder. Input is bounded by the
//! WebSocket's message limit ([`MAX_INPUT`]) and written to the pty without
//! blocking (what a full input queue cannot take within a second is dropped,
//! with a notice). The session ends when the program exits, the page closes
//! the socket, or the login session ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::http::ws::{self, Message, WsConfig};
use crate::http::{Request, Response};
use crate::redfish::Service;
use crate::users::Role;

/// Largest message (keystrokes, a paste) accepted from the page.
pub const MAX_INPUT: usize = 64 << 10;
/// How long the bridge waits for keystrokes before it looks for output.
const TICK: Duration = Duration::from_millis(40);

fn refuse(status: u16, msg: &str) -> Response {
    super::api_error(status, msg)
}

/// Answer a WebSocket upgrade on `/console/{vm}`.
pub fn console(svc: &Arc<Service>, req: &Request, name: &str) -> Response {
    let (caller, proto) = match svc.caller_ws(req) {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                e.status,
                "log in first; a browser offers its XSRF token as the WebSocket subprotocol",
            )
        }
    };
    if caller.role < Role::Operator {
        return refuse(
            403,
            &format!(
                "the serial console needs the Operator or Administrator role; {} is {}",
                caller.user,
                caller.role.as_str()
            ),
        );
    }
    let Some(vm) = svc.inventory.get(name).cloned() else {
        return refuse(404, &format!("no VM named {name:?}"));
    };
    let who = format!("the web console of {} from {}", caller.user, req.peer);
    let creds = super::live::credentials(req);
    let svc = svc.clone();
    let cfg = WsConfig {
        max_message: MAX_INPUT,
        read_timeout: Some(TICK),
        ..WsConfig::default()
    };
    ws::upgrade(req, proto.as_deref(), cfg, move |conn| {
        let vmname = vm.info.name.clone();
        // Refusals after the upgrade, so the page can show why (a browser
        // sees nothing of a refused handshake).
        let end = |conn: &ws::WsConn, why: &str| {
            let _ = conn.send_text(why);
            let reason: String = why.chars().take(100).collect();
            let _ = conn.close(ws::close_code::POLICY, &reason);
        };
        let Some(mut console) = vm.console.get() else {
            end(
                &conn,
                &format!(
                    "VM {vmname} has no console (start its program with `hvsim exec --console`)"
                ),
            );
            return;
        };
        let _claim = match vm.console.claim(&vmname, &who) {
            Ok(c) => c,
            Err(why) => {
                log::warn!("{vmname}: web console refused: {why}");
                end(&conn, &why);
                return;
            }
        };
        log::info!("{vmname}: serial console opened by {who}");
        let (mut r, w) = conn.split();
        let mut pos = console.start();
        let mut checked = Instant::now();
        loop {
            // Output since last time (the program may have been restarted:
            // follow the new console from its start).
            if let Some(c) = vm.console.get() {
                if c.id != console.id && console.end() <= pos {
                    console = c;
                    pos = console.start();
                }
            }
            loop {
                let (at, bytes) = console.read(pos, 16 << 10);
                if bytes.is_empty() {
                    break;
                }
                pos = at + bytes.len() as u64;
                if w.send_binary(&bytes).is_err() {
                    return;
                }
            }
            if console.is_closed() && vm.console.get().is_none() && console.end() <= pos {
                let _ = w.send_text("the console program exited");
                let _ = w.close(ws::close_code::NORMAL, "the console program exited");
                return;
            }
            if checked.elapsed() >= super::live::RECHECK {
                checked = Instant::now();
                if svc.caller(&creds).is_err() {
                    let _ = w.send_text("your session has ended");
                    let _ = w.close(ws::close_code::POLICY, "your session has ended");
                    return;
                }
            }
            match r.recv() {
                Ok(Message::Binary(b)) => feed(&console, &b, &vmname),
                Ok(Message::Text(t)) => feed(&console, t.as_bytes(), &vmname),
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    log::info!("{vmname}: serial console of {who} closed: {e}");
                    return;
                }
            }
        }
    })
}

/// Keystrokes to the program, without blocking for long.
fn feed(console: &crate::console::Console, mut b: &[u8], vm: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while !b.is_empty() {
        match console.write(b) {
            Ok(0) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(0) => {
                log::warn!(
                    "{vm}: console input queue full: {} byte(s) dropped",
                    b.len()
                );
                return;
            }
            Ok(n) => b = &b[n..],
            Err(e) => {
                log::warn!("{vm}: console write: {e}");
                return;
            }
        }
    }
}
