//! RPCI commands the simulated host answers (guest asks, host answers).
//!
//! Replies follow the VMX: "1 " + result on success, "0 " + reason on failure.

use protocol::guestinfo_key as k;
use protocol::host::HostMessage;
use protocol::nicinfo;
use protocol::rpc::{rpci_reply, split_command};

use crate::vm::Sink;

fn ok(body: &[u8]) -> HostMessage {
    rpci_reply(true, body).into()
}

fn err(body: &str) -> HostMessage {
    rpci_reply(false, body.as_bytes()).into()
}

/// Text of an argument, or an error reply.
fn text(b: &[u8]) -> Result<&str, HostMessage> {
    std::str::from_utf8(b).map_err(|_| err("Invalid arguments: not UTF-8"))
}

/// Answer one RPCI message.
pub fn handle(s: &mut Sink<'_>, msg: &[u8]) -> HostMessage {
    let reply = dispatch(s, msg);
    // Anything but a read may have changed what the host shows.
    if !msg.starts_with(b"info-get")
        && !msg.starts_with(b"log ")
        && !msg.starts_with(b"guestlib.")
        && !msg.starts_with(b"disk.wiper")
    {
        s.touch();
    }
    reply
}

fn dispatch(s: &mut Sink<'_>, msg: &[u8]) -> HostMessage {
    let (name, args) = split_command(msg);
    // vmtoolsd sends most messages as C strings, terminator included; the
    // terminator is not part of a value. Binary guest info (NIC XDR, detailed
    // OS data) is sent with its exact length and keeps every byte.
    let args = if name == b"SetGuestInfo" || name.starts_with(b"namespace-priv-") {
        args
    } else {
        args.strip_suffix(b"\0").unwrap_or(args)
    };
    match name {
        b"info-get" => info_get(s, args),
        b"info-set" => info_set(s, args),
        b"log" => {
            // vmware.log takes what passes the VM's guest-log bound, so
            // a flooding guest fills neither file.
            if s.guest_log(args) {
                s.vmware_log().guest(args);
            }
            ok(b"")
        }
        b"tools.set.version" => {
            let v = String::from_utf8_lossy(args)
                .trim()
                .trim_end_matches('\0')
                .to_string();
            s.data().tools.version = Some(v);
            ok(b"")
        }
        b"tools.set.versiontype" => {
            // "VERSION TYPE": open-vm-tools 12 sends only this, not
            // tools.set.version (e.g. "12352 4": 12.2.0, open-vm-tools).
            let v = String::from_utf8_lossy(args).trim().to_string();
            let mut it = v.split_whitespace();
            let tools = &mut s.data().tools;
            if let Some(version) = it.next() {
                tools.version = Some(version.to_string());
            }
            tools.version_type = Some(it.next().unwrap_or("").to_string());
            ok(b"")
        }
        b"vmx.capability.unified_loop" => {
            let v = String::from_utf8_lossy(args)
                .trim()
                .trim_end_matches('\0')
                .to_string();
            s.data().tools.unified_loop = Some(v);
            ok(b"")
        }
        b"tools.os.statechange.status" => state_change(s, args),
        b"guestlib.info.get" => guestlib_info(s, args),
        b"guestlib.stat.get" => guestlib_stat(s, args),
        b"disk.wiper.enable" => {
            if s.data().host.settings.disk_shrink {
                ok(b"1")
            } else {
                ok(b"0")
            }
        }
        b"disk.shrink" => {
            if s.data().host.settings.disk_shrink {
                log::info!("{}: guest asked to shrink its disks", s.name());
                ok(b"")
            } else {
                err("Shrink disk is disabled for this virtual machine")
            }
        }
        b"vmx.set_option" => set_option(s, args),
        b"namespace-priv-get-values" => namespace_get(s, args),
        b"namespace-priv-set-keys" => namespace_set(s, args),
        b"SetGuestInfo" => set_guest_info(s, args),
        b"SetGuestDiskInfo" => set_disk_info(s, args),
        b"vmbackup.eventSet" => crate::snapshot::event_set(s, args),
        b"deployPkg.update.state" => deploy_state(s, args),
        n if n.starts_with(b"tools.capability.") => {
            let cap = String::from_utf8_lossy(&n["tools.capability.".len()..]).into_owned();
            let v = String::from_utf8_lossy(args)
                .trim_end_matches('\0')
                .to_string();
            let caps = &mut s.data().tools.capabilities;
            if caps.len() < 256 || caps.contains_key(&cap) {
                caps.insert(cap, v);
            }
            ok(b"")
        }
        _ => err("Unknown command"),
    }
}

/// `guestlib.info.get VERSION`: the guest SDK's statistics.
fn guestlib_info(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    use protocol::guestlib;
    if !s.data().host.settings.resources.guest_sdk {
        return err("Unknown command");
    }
    let memory_mb = s.info().memory_mb;
    match guestlib::parse_info_request(args) {
        Some(v @ (2 | 3)) => {
            let d = s.data();
            let info = d.host.guestlib_info(memory_mb, d.booted_at);
            let body = if v == 3 {
                guestlib::encode_v3(&info)
            } else {
                guestlib::encode_v2(&info)
            };
            ok(&body)
        }
        // The highest version this host speaks.
        Some(_) => err(&guestlib::DATA_VERSION.to_string()),
        None => err("Invalid arguments"),
    }
}

/// `guestlib.stat.get ENCODING STAT PARAM`: the extended statistics.
fn guestlib_stat(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    if !s.data().host.settings.resources.guest_sdk {
        return err("Unknown command");
    }
    let Some(req) = protocol::guestlib::parse_stat_request(args) else {
        return err("Invalid arguments");
    };
    let uuid = s.info().uuid;
    let d = s.data();
    match d.host.guestlib_stat(&req, &uuid, d.booted_at) {
        Some(body) => ok(&body),
        None => err("Unknown stat"),
    }
}

/// `vmx.set_option NAME OLD NEW`: the guest changes a tools option
/// (`vmware-toolbox-cmd timesync enable` sends `synctime 0 1`).
fn set_option(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    let a = match text(args) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut it = a.split_whitespace();
    let (Some(name), Some(_old), Some(new), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return err("Invalid arguments");
    };
    match s.set_option(name, new) {
        Ok(()) => ok(b""),
        Err(e) => err(&e),
    }
}

/// `namespace-priv-get-values NS\0KEY\0...` (privileged channels only).
fn namespace_get(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    use crate::namespace::{self, NamespaceError};
    if !s.privileged() {
        return err(&NamespaceError::PermissionDenied.to_string());
    }
    let r = namespace::parse_get(args)
        .and_then(|req| namespace::get(s.data().host.namespaces.get(req.namespace), &req));
    match r {
        Ok(body) => ok(&body),
        Err(e) => err(&e.to_string()),
    }
}

/// `namespace-priv-set-keys NS\0N\0(OP\0KEY\0VALUE\0OLD\0)*` (privileged
/// channels only; all operations apply or none).
fn namespace_set(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    use crate::namespace::{self, NamespaceError};
    if !s.privileged() {
        return err(&NamespaceError::PermissionDenied.to_string());
    }
    let req = match namespace::parse_set(args) {
        Ok(r) => r,
        Err(e) => return err(&e.to_string()),
    };
    let changes = match namespace::plan(s.data().host.namespaces.get(req.namespace), &req) {
        Ok(c) => c,
        Err(e) => return err(&e.to_string()),
    };
    match s.namespace_apply(req.namespace, &changes) {
        Ok(()) => ok(b""),
        Err(e) => err(&e),
    }
}

/// `info-get guestinfo.KEY`.
fn info_get(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    let key = match text(args) {
        Ok(k) => k.trim_end_matches('\0').trim(),
        Err(e) => return e,
    };
    match s.data().vars.get(key) {
        Some(v) => HostMessage::with_tail(b"1 ".to_vec(), v.clone()),
        None => err("No value found"),
    }
}

/// `info-set guestinfo.KEY VALUE`: the value is everything after the key's space.
fn info_set(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    let Some(sp) = args.iter().position(|&b| b == b' ') else {
        return err("Two and exactly two arguments expected");
    };
    let (key, value) = (&args[..sp], &args[sp + 1..]);
    let key = match text(key) {
        Ok(k) => k,
        Err(e) => return e,
    };
    match s.set_var(key, value) {
        Ok(()) => ok(b""),
        Err(e) => err(&e),
    }
}

/// `SetGuestInfo  N VALUE` (note the two spaces: the first separates the
/// command, the second is part of the historical format).
fn set_guest_info(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    let rest = args.strip_prefix(b" ").unwrap_or(args);
    let (num, value) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let key: u32 = match std::str::from_utf8(num).ok().and_then(|n| n.parse().ok()) {
        Some(k) if (1..=64).contains(&k) => k,
        _ => return err("Invalid key"),
    };
    match key {
        k::IPADDRESS_V2 | k::IPADDRESS_V3 => match nicinfo::decode(value) {
            Ok(mut info) => {
                if key == k::IPADDRESS_V2 {
                    for n in &mut info.nics {
                        n.ips.truncate(nicinfo::MAX_IPS_V2_KEY);
                    }
                }
                let d = s.data();
                let changed = d.nics.as_ref() != Some(&info);
                d.nics = Some(info);
                d.nic_error = None;
                if changed {
                    s.guest_info_changed();
                }
                ok(b"")
            }
            Err(e) => {
                s.guest_warn(format_args!(
                    "guest sent NIC info that does not decode: {e}"
                ));
                s.data().nic_error = Some(e.to_string());
                err("Invalid NIC info")
            }
        },
        k::OS_DETAILED => match parse_os_detailed(value) {
            Some(o) => {
                let d = s.data();
                let changed = d.os_detailed.as_ref() != Some(&o);
                d.os_detailed = Some(o);
                if changed {
                    s.guest_info_changed();
                }
                ok(b"")
            }
            None => err("Invalid detailed OS data"),
        },
        k::MEMORY => match protocol::gueststats::decode(value) {
            Ok(stats) => {
                let d = s.data();
                d.memory = Some((stats, std::time::Instant::now()));
                d.memory_error = None;
                ok(b"")
            }
            Err(e) => {
                s.guest_warn(format_args!(
                    "guest sent memory statistics that do not decode: {e}"
                ));
                s.data().memory_error = Some(e.to_string());
                err("Invalid memory statistics")
            }
        },
        k::UPTIME => {
            let t = String::from_utf8_lossy(value);
            match t.trim_end_matches('\0').trim().parse::<u64>() {
                Ok(h) => {
                    s.data().uptime = Some((h, std::time::Instant::now()));
                    let text = value.strip_suffix(b"\0").unwrap_or(value);
                    s.data().guest.insert(key, text.to_vec());
                    ok(b"")
                }
                Err(_) => err("Invalid uptime"),
            }
        }
        _ => {
            let value = value.strip_suffix(b"\0").unwrap_or(value);
            let old = s.data().guest.insert(key, value.to_vec());
            if old.as_deref() != Some(value) {
                s.guest_info_changed();
            }
            ok(b"")
        }
    }
}

/// `tools.os.statechange.status <0|1> <state>` (state numbers as
/// open-vm-tools' GuestOsState: 1 halt, 2 reboot, 3 power on, 4 resume, 5 suspend).
fn state_change(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    let a = String::from_utf8_lossy(args);
    let mut it = a.trim_end_matches('\0').split_whitespace();
    let (Some(st), Some(state)) = (it.next(), it.next()) else {
        return err("Invalid arguments");
    };
    let okay = match st {
        "1" => true,
        "0" => false,
        _ => return err("Invalid arguments"),
    };
    let Ok(state) = state.parse::<u32>() else {
        return err("Invalid arguments");
    };
    s.guest_info(format_args!(
        "guest reports state change {state} {}",
        if okay { "done" } else { "failed" }
    ));
    s.guest_state_change(okay, state);
    ok(b"")
}

/// `deployPkg.update.state STATE [CODE [MESSAGE]]`: a customization's
/// progress. The NIC reconnect events get their answers (103:
/// `queryNicsSupported`, 104: `connected`, the NICs being always connected
/// here).
fn deploy_state(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    let text = String::from_utf8_lossy(args);
    let Some(r) = protocol::deploypkg::StateReport::parse(&text) else {
        return err("Invalid arguments");
    };
    log::info!("{}: customization report {}", s.name(), r.args());
    let slot = &mut s.data().customization;
    // `3` alone opens a deployment: a new record unless one is running
    // (`hvsim vm customize` opened it when it began).
    let fresh = r.state == protocol::deploypkg::state::DEPLOYING
        && r.code.is_none()
        && slot
            .as_ref()
            .is_some_and(|c| c.status != crate::customize::Status::Running);
    if fresh {
        *slot = None;
    }
    let c = slot.get_or_insert_with(crate::customize::Customization::default);
    ok(c.report(&r).as_bytes())
}

/// Detailed OS data (key 11), open-vm-tools' `HostinfoDetailedDataHeader`
/// as raw little-endian C memory: u32 version (1), `char shortName[129]`,
/// `char fullName[513]`, padding to the struct's 4-byte alignment (648
/// bytes in all), then the NUL-terminated details string
/// (`prettyName='...' familyName='Linux' ...`).
fn parse_os_detailed(v: &[u8]) -> Option<(String, String, String)> {
    const SHORT: std::ops::Range<usize> = 4..4 + 129;
    const FULL: std::ops::Range<usize> = 133..133 + 513;
    const HEADER: usize = 648;
    if v.len() < HEADER || u32::from_le_bytes(v[..4].try_into().ok()?) != 1 {
        return None;
    }
    let cstr = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    Some((cstr(&v[SHORT]), cstr(&v[FULL]), cstr(&v[HEADER..])))
}

/// `SetGuestDiskInfo {json}`: the guest's file systems.
fn set_disk_info(s: &mut Sink<'_>, args: &[u8]) -> HostMessage {
    let body = args.strip_suffix(b"\0").unwrap_or(args);
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            s.data().disks = Some(v);
            ok(b"")
        }
        Err(e) => {
            s.guest_warn(format_args!("guest sent disk info that is not JSON: {e}"));
            err("Invalid disk info")
        }
    }
}
