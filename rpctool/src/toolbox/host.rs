//! The host calls vm-toolbox makes: raw backdoor commands and one-off RPCI
//! messages (a channel per message, as vmware-toolbox-cmd opens one).

use agent::rpci::Rpci;
use agent::transport::{self, BackdoorSpec, TraceBackdoor, TRACE_ENV};
use protocol::guest::Backdoor;
use protocol::guestlib::{self, InfoV3, Value};
use protocol::{cmd, Regs, BDOOR_MAGIC};

/// The host connection.
pub struct Host {
    backdoor: Box<dyn Backdoor + Send>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Host")
    }
}

/// The outcome of one RPCI message: the reply and whether it succeeded;
/// None when no channel could be opened or the transport failed.
pub type RpcReply = Option<(bool, Vec<u8>)>;

impl Host {
    /// Reach the host (VM_BACKDOOR, else port I/O in a VMware VM).
    pub fn connect() -> Option<Host> {
        let b = transport::connect(&BackdoorSpec::Auto).ok()?;
        let trace = std::env::var_os(TRACE_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        let backdoor = if trace {
            Box::new(TraceBackdoor::new(b))
        } else {
            b
        };
        Some(Host { backdoor })
    }

    /// One low-bandwidth backdoor command with `ebx` (the "size" register).
    pub fn call(&mut self, command: u16, ebx: u32) -> Regs {
        let mut r = Regs::command(command, 0);
        r.ebx = ebx;
        self.backdoor.call(r).unwrap_or(Regs {
            eax: u32::MAX,
            ..Regs::default()
        })
    }

    /// Send one RPCI message on a channel of its own.
    pub fn rpc(&mut self, msg: &[u8]) -> RpcReply {
        // The channel owns its transport: a connection of its own (with a
        // simulator's socket) or port I/O again.
        let backdoor = transport::connect(&BackdoorSpec::Auto).ok()?;
        let mut rpci = Rpci::open(backdoor).ok()?;
        let r = rpci.send(msg).ok().map(|r| (r.ok, r.body));
        let _ = rpci.close();
        r
    }

    /// GETGUIOPTIONS.
    pub fn gui_options(&mut self) -> u32 {
        self.call(cmd::GETGUIOPTIONS, 0).eax
    }

    /// GETMHZ as the signed value vmware-toolbox-cmd reads.
    pub fn mhz(&mut self) -> i32 {
        self.call(cmd::GETMHZ, 0).eax as i32
    }

    /// Host time: seconds and microseconds (GETTIMEFULL, else GETTIME);
    /// seconds <= 0 when unknown.
    pub fn time(&mut self) -> (i64, i64) {
        let r = self.call(cmd::GETTIMEFULL, 0);
        let (secs, r) = if r.eax == BDOOR_MAGIC {
            ((i64::from(r.esi) << 32) | i64::from(r.edx), r)
        } else {
            let r = self.call(cmd::GETTIME, 0);
            let s = if r.eax == u32::MAX {
                -1
            } else {
                i64::from(r.eax)
            };
            (s, r)
        };
        (secs, i64::from(r.ebx))
    }

    /// One removable device (name, connected), reading its `RD_Info` a
    /// word at a time with GETDEVICELISTELEMENT.
    pub fn device(&mut self, id: u16) -> Option<(String, bool)> {
        let mut info = [0u8; 40];
        for off in (0..40u16).step_by(4) {
            let r = self.call(
                cmd::GETDEVICELISTELEMENT,
                u32::from(id) << 16 | u32::from(off),
            );
            if r.eax == 0 {
                return None;
            }
            info[usize::from(off)..usize::from(off) + 4].copy_from_slice(&r.ebx.to_le_bytes());
        }
        let end = info[..32].iter().position(|&b| b == 0).unwrap_or(32);
        Some((
            String::from_utf8_lossy(&info[..end]).into_owned(),
            info[36] != 0,
        ))
    }

    /// TOGGLEDEVICE; true when the host did it.
    pub fn toggle_device(&mut self, id: u16, connect: bool) -> bool {
        let ebx = if connect { 0x8000_0000 } else { 0 } | u32::from(id);
        self.call(cmd::TOGGLEDEVICE, ebx).eax != 0
    }

    /// `VMGuestLib_OpenHandle` + `VMGuestLib_UpdateInfo`: the guest SDK's
    /// statistics, or libguestlib's error text.
    pub fn guestlib(&mut self) -> Result<InfoV3, &'static str> {
        let msg = format!("{} {}", guestlib::INFO_COMMAND, guestlib::DATA_VERSION);
        match self.rpc(msg.as_bytes()) {
            Some((true, body)) => {
                let info = guestlib::decode_v3(&body).map_err(|_| ERR_OTHER)?;
                Ok(info)
            }
            Some((false, _)) => Err(ERR_NOT_ENABLED),
            None => Err(ERR_OTHER),
        }
    }
}

/// libguestlib's error texts.
pub const ERR_NOT_ENABLED: &str = "VMware Guest API is not enabled on the host";
/// Anything else.
pub const ERR_OTHER: &str = "Other error";
/// An invalid stat.
pub const ERR_NOT_AVAILABLE: &str = "This value is not available on this host";
/// A session id of 0.
pub const ERR_NO_INFO: &str = "VMGuestLib_UpdateInfo() has not been called";
/// A stat the host did not send.
pub const ERR_UNSUPPORTED: &str = "Host does not support this request.";
/// A `stat raw` request over 255 bytes.
pub const ERR_BUFFER: &str = "The provided memory buffer is too small";

/// A stat as libguestlib's getters return it.
pub fn stat(info: &InfoV3, id: u32) -> Result<u64, &'static str> {
    if info.session_id == 0 {
        return Err(ERR_NO_INFO);
    }
    match info.get(id) {
        Err(()) => Err(ERR_UNSUPPORTED),
        Ok(None) => Err(ERR_NOT_AVAILABLE),
        Ok(Some(Value::U32(v))) => Ok(u64::from(*v)),
        Ok(Some(Value::U64(v))) => Ok(*v),
        Ok(Some(_)) => Err(ERR_OTHER),
    }
}
