//! vmbackup: quiesced snapshots (open-vm-tools' services/plugins/vmbackup,
//! lib/include/vmware/guestrpc/vmbackup.h, guestQuiesce.x).
//!
//! The host starts an operation with the TCLO command `vmbackup.start
//! [<generateManifests> [<disk UUIDs>]]` or `vmbackup.startWithOpts <XDR
//! GuestQuiesceParams>`, ends the frozen window with `vmbackup.snapshotDone`
//! or cancels with `vmbackup.abort`. The guest reports its progress with the
//! RPCI message `vmbackup.eventSet <event> <code> <description>`.

use crate::xdr::{Reader, Writer, XdrError};

/// TCLO: start with options from the guest's config.
pub const START: &str = "vmbackup.start";
/// TCLO: start with options from the host (XDR).
pub const START_WITH_OPTS: &str = "vmbackup.startWithOpts";
/// TCLO: cancel the operation.
pub const ABORT: &str = "vmbackup.abort";
/// TCLO: the host took the snapshot; thaw.
pub const SNAPSHOT_DONE: &str = "vmbackup.snapshotDone";
/// TCLO: the Windows VSS completer's last step (not used on Linux).
pub const SNAPSHOT_COMPLETED: &str = "vmbackup.snapshotCompleted";
/// RPCI: a progress event from the guest.
pub const EVENT_SET: &str = "vmbackup.eventSet";

/// The guest sends `req.keepAlive` when it sent no event for half of this
/// (VMBACKUP_KEEP_ALIVE_PERIOD, ms).
pub const KEEP_ALIVE_PERIOD_MS: u64 = 5000;
/// The guest's own abort timer when neither the host nor its config sets one
/// (GUEST_QUIESCE_DEFAULT_TIMEOUT_IN_SEC: vCenter's 15-minute limit).
pub const DEFAULT_TIMEOUT_SECS: u32 = 900;
/// Longest script argument (GUEST_QUIESCE_SCRIPTARG_MAX_LEN).
pub const SCRIPT_ARG_MAX: usize = 256;
/// Longest disk UUID list (GUEST_QUIESCE_DISKUUID_MAX_LEN).
pub const DISK_UUIDS_MAX: usize = 3200;
/// The start-while-busy answer, as vmtoolsd words it.
pub const BUSY: &str = "Quiesce operation already in progress.";

/// Events of `vmbackup.eventSet` (VMBACKUP_EVENT_*).
pub mod event {
    /// The operation started.
    pub const RESET: &str = "reset";
    /// The guest gave up after an abort (host's or its own timer).
    pub const ABORTED: &str = "req.aborted";
    /// The operation is over; the guest is idle again.
    pub const DONE: &str = "req.done";
    /// Something failed (the code and description say what).
    pub const ERROR: &str = "req.error";
    /// A VSS manifest (Windows).
    pub const MANIFEST: &str = "req.manifest";
    /// A generic manifest file was written (its path follows).
    pub const GENERIC_MANIFEST: &str = "req.genericManifest";
    /// The provider cancelled the snapshot.
    pub const SNAPSHOT_ABORT: &str = "prov.snapshotAbort";
    /// File systems are frozen: the host may take the snapshot now.
    pub const SNAPSHOT_COMMIT: &str = "prov.snapshotCommit";
    /// The provider prepares (Windows).
    pub const SNAPSHOT_PREPARE: &str = "prov.snapshotPrepare";
    /// A VSS writer failed (Windows).
    pub const WRITER_ERROR: &str = "req.writerError";
    /// Still working.
    pub const KEEP_ALIVE: &str = "req.keepAlive";

    /// Every event a guest may send.
    pub const ALL: [&str; 11] = [
        RESET,
        ABORTED,
        DONE,
        ERROR,
        MANIFEST,
        GENERIC_MANIFEST,
        SNAPSHOT_ABORT,
        SNAPSHOT_COMMIT,
        SNAPSHOT_PREPARE,
        WRITER_ERROR,
        KEEP_ALIVE,
    ];
}

/// Event codes (VmBackupStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0.
    Success = 0,
    /// 1: a command came in a state that does not take it.
    InvalidState = 1,
    /// 2: a freeze or thaw script failed.
    ScriptError = 2,
    /// 3: freezing or thawing the file systems failed.
    SyncError = 3,
    /// 4: the host (or the guest's timer) aborted.
    RemoteAbort = 4,
    /// 5: anything else.
    UnexpectedError = 5,
}

impl Status {
    /// The status with this code.
    pub fn from_code(c: u32) -> Option<Status> {
        Some(match c {
            0 => Status::Success,
            1 => Status::InvalidState,
            2 => Status::ScriptError,
            3 => Status::SyncError,
            4 => Status::RemoteAbort,
            5 => Status::UnexpectedError,
            _ => return None,
        })
    }

    /// A short name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::InvalidState => "invalid state",
            Status::ScriptError => "script error",
            Status::SyncError => "sync error",
            Status::RemoteAbort => "remote abort",
            Status::UnexpectedError => "unexpected error",
        }
    }
}

/// GuestQuiesceParamsV1: what the host asks for in `vmbackup.startWithOpts`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuiesceParams {
    /// Write a manifest describing the operation.
    pub create_manifest: bool,
    /// Quiesce applications (scripts on Linux).
    pub quiesce_apps: bool,
    /// Quiesce (freeze) file systems.
    pub quiesce_fs: bool,
    /// The snapshot may be writable (hardware providers; unused on Linux).
    pub writable_snapshot: bool,
    /// Run the custom freeze/thaw scripts.
    pub exec_scripts: bool,
    /// Extra argument for the scripts (empty: none).
    pub script_arg: String,
    /// Seconds before the guest gives up by itself (0: its default).
    pub timeout: u32,
    /// Space-separated disk UUIDs (ignored by Linux guests).
    pub disk_uuids: String,
}

/// GuestQuiesceParams versions (GuestQuiesceParamsVersion).
const PARAMS_V1: u32 = 1;
const PARAMS_V2: u32 = 2;

/// Why `vmbackup.startWithOpts` arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// The XDR did not decode.
    #[error("quiesce parameters do not decode: {0}")]
    Xdr(#[from] XdrError),
    /// Version 2 (VSS) or unknown: Linux guests take only version 1.
    #[error("Incompatible quiesce parameter version")]
    Version(u32),
    /// The union arm's pointer is null.
    #[error("quiesce parameters are missing")]
    Missing,
    /// Bytes after the parameters.
    #[error("{0} bytes follow the quiesce parameters")]
    Trailing(usize),
}

impl QuiesceParams {
    /// Decode the XDR union `GuestQuiesceParams` (only its version 1 arm, as
    /// Linux vmtoolsd). A C terminator after the XDR is tolerated.
    pub fn decode(b: &[u8]) -> Result<QuiesceParams, ParamsError> {
        let mut r = Reader::new(b);
        let ver = r.u32()?;
        if ver != PARAMS_V1 {
            // Version 2 carries VSS fields that mean nothing here.
            let _ = PARAMS_V2;
            return Err(ParamsError::Version(ver));
        }
        let p = r
            .optional("guestQuiesceParamsV1", |r| {
                Ok(QuiesceParams {
                    create_manifest: r.bool("createManifest")?,
                    quiesce_apps: r.bool("quiesceApps")?,
                    quiesce_fs: r.bool("quiesceFS")?,
                    writable_snapshot: r.bool("writableSnapshot")?,
                    exec_scripts: r.bool("execScripts")?,
                    script_arg: r.string("scriptArg", SCRIPT_ARG_MAX)?,
                    timeout: r.u32()?,
                    disk_uuids: r.string("diskUuids", DISK_UUIDS_MAX)?,
                })
            })?
            .ok_or(ParamsError::Missing)?;
        let rest = &b[r.position()..];
        if rest.iter().any(|&c| c != 0) || rest.len() > 3 {
            return Err(ParamsError::Trailing(rest.len()));
        }
        Ok(p)
    }

    /// Encode as the host sends it (version 1).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(PARAMS_V1);
        w.optional(Some(self), |w, p| {
            w.bool(p.create_manifest);
            w.bool(p.quiesce_apps);
            w.bool(p.quiesce_fs);
            w.bool(p.writable_snapshot);
            w.bool(p.exec_scripts);
            w.string(&p.script_arg);
            w.u32(p.timeout);
            w.string(&p.disk_uuids);
        });
        w.into_bytes()
    }
}

/// One `vmbackup.eventSet` message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event name (one of [`event::ALL`] for a known event).
    pub name: &'a str,
    /// The code (a [`Status`] for known codes).
    pub code: u32,
    /// The description (may be empty).
    pub desc: &'a str,
}

/// Why a `vmbackup.eventSet` message did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not UTF-8.
    #[error("vmbackup event is not UTF-8")]
    NotUtf8,
    /// No event name.
    #[error("vmbackup event has no name")]
    NoName,
    /// The code is missing or not a number.
    #[error("vmbackup event has no numeric code")]
    BadCode,
    /// Longer than any event a guest sends.
    #[error("vmbackup event is {0} bytes; at most {MAX_EVENT} are allowed")]
    TooLong(usize),
}

/// Longest event arguments taken (a description with a manifest path or an
/// error message; far more than vmtoolsd sends).
pub const MAX_EVENT: usize = 4096;

/// Parse the arguments of `vmbackup.eventSet` (`<event> <code> <desc>`);
/// a C terminator is dropped.
pub fn parse_event(args: &[u8]) -> Result<Event<'_>, EventError> {
    if args.len() > MAX_EVENT {
        return Err(EventError::TooLong(args.len()));
    }
    let args = args.strip_suffix(b"\0").unwrap_or(args);
    let s = std::str::from_utf8(args).map_err(|_| EventError::NotUtf8)?;
    let (name, rest) = s.split_once(' ').unwrap_or((s, ""));
    if name.is_empty() {
        return Err(EventError::NoName);
    }
    let (code, desc) = rest.split_once(' ').unwrap_or((rest, ""));
    let code = code.parse::<u32>().map_err(|_| EventError::BadCode)?;
    Ok(Event { name, code, desc })
}

/// The RPCI message for an event (`vmbackup.eventSet <event> <code> <desc>`,
/// with the space before an empty description, as vmtoolsd formats it).
pub fn event_message(name: &str, code: Status, desc: &str) -> Vec<u8> {
    format!("{EVENT_SET} {name} {} {desc}", code as u32).into_bytes()
}

/// The arguments of `vmbackup.start`: `[<generateManifests> [<volumes>]]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartArgs {
    /// Write a manifest.
    pub generate_manifests: bool,
    /// Volumes (disk UUIDs from a host; paths when they start with `/`).
    pub volumes: String,
}

/// Parse the arguments of `vmbackup.start` the way vmtoolsd does: an
/// optional integer, then the rest as the volume list.
pub fn parse_start(args: &[u8]) -> StartArgs {
    let args = args.strip_suffix(b"\0").unwrap_or(args);
    let s = String::from_utf8_lossy(args);
    let s = s.trim_start_matches(' ');
    let (first, rest) = s.split_once(' ').unwrap_or((s, ""));
    match first.parse::<i64>() {
        Ok(n) => StartArgs {
            generate_manifests: n != 0,
            volumes: rest.trim().to_string(),
        },
        Err(_) => StartArgs {
            generate_manifests: false,
            volumes: s.trim().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_and_golden_bytes() {
        let p = QuiesceParams {
            create_manifest: false,
            quiesce_apps: true,
            quiesce_fs: true,
            writable_snapshot: false,
            exec_scripts: true,
            script_arg: "ab".into(),
            timeout: 30,
            disk_uuids: String::new(),
        };
        let b = p.encode();
        let mut want = Vec::new();
        for v in [1u32, 1, 0, 1, 1, 0, 1, 2] {
            want.extend_from_slice(&v.to_be_bytes());
        }
        want.extend_from_slice(b"ab\0\0");
        want.extend_from_slice(&30u32.to_be_bytes());
        want.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(b, want);
        assert_eq!(QuiesceParams::decode(&b).unwrap(), p);
        let mut with_nul = b.clone();
        with_nul.push(0);
        assert_eq!(QuiesceParams::decode(&with_nul).unwrap(), p);
    }

    #[test]
    fn params_errors() {
        let mut v2 = QuiesceParams::default().encode();
        v2[3] = 2;
        assert_eq!(
            QuiesceParams::decode(&v2).unwrap_err(),
            ParamsError::Version(2)
        );
        assert_eq!(
            QuiesceParams::decode(&[0, 0, 0, 1, 0, 0, 0, 0]).unwrap_err(),
            ParamsError::Missing
        );
        let b = QuiesceParams::default().encode();
        assert!(matches!(
            QuiesceParams::decode(&b[..b.len() - 2]),
            Err(ParamsError::Xdr(_))
        ));
        let mut long = b.clone();
        long.extend_from_slice(b"junk");
        assert_eq!(
            QuiesceParams::decode(&long).unwrap_err(),
            ParamsError::Trailing(4)
        );
        assert_eq!(
            ParamsError::Version(2).to_string(),
            "Incompatible quiesce parameter version"
        );
    }

    #[test]
    fn events() {
        assert_eq!(
            event_message(event::KEEP_ALIVE, Status::Success, ""),
            b"vmbackup.eventSet req.keepAlive 0 "
        );
        let e = parse_event(b"req.error 2 Custom quiesce script failed.\0").unwrap();
        assert_eq!(
            e,
            Event {
                name: "req.error",
                code: 2,
                desc: "Custom quiesce script failed."
            }
        );
        assert_eq!(
            parse_event(b"req.done 0 ").unwrap(),
            Event {
                name: "req.done",
                code: 0,
                desc: ""
            }
        );
        assert_eq!(parse_event(b"reset 0").unwrap().desc, "");
        assert_eq!(parse_event(b"reset x").unwrap_err(), EventError::BadCode);
        assert_eq!(parse_event(b" 0 x").unwrap_err(), EventError::NoName);
        assert_eq!(parse_event(&[0xff]).unwrap_err(), EventError::NotUtf8);
    }

    #[test]
    fn start_args() {
        assert_eq!(parse_start(b""), StartArgs::default());
        assert_eq!(
            parse_start(b"1 uuid-a uuid-b"),
            StartArgs {
                generate_manifests: true,
                volumes: "uuid-a uuid-b".into()
            }
        );
        assert_eq!(parse_start(b"0").volumes, "");
    }
}
