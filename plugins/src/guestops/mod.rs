//! guestops: the host's guest operations — run programs, list and kill
//! processes, manage and move files — as vSphere's GuestOperationsManager,
//! `govc guest.*`, PowerCLI's Invoke-VMScript and Ansible drive them.
//!
//! The host sends TCLO `Vix_1_Relayed_Command` with a VIX request
//! ([`protocol::vix`]); the reply is vmtoolsd's `"<error> <errno> "` text
//! (or `#` + binary for HGFS packets, opcode 84). Every opcode but
//! GET_TOOLS_STATE carries a name and password: checked through PAM by the
//! `vm-agent-auth` helper ([`auth`]) without blocking the agent (the reply
//! is deferred meanwhile, see [`crate::Plugin::on_tclo_deferred`]), then the
//! operation runs as that user ([`user`]). TCLO `f` carries bare HGFS
//! packets for the host's own use (deployPkg), served as root.
//!
//! Idle cost: nothing runs until a request comes. A deadline exists only
//! while something is alive: a login check, a cached login, a started
//! program without pidfd, an exited program's entry, an HGFS session, a
//! cached process list, a deferred failure reply.

pub mod auth;
pub mod files;
pub mod hgfs_server;
pub mod procs;
pub mod user;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use protocol::rpc::tclo_reply;
use protocol::vix::{self, err, op, prop, Credential, Property, PropertyValue, Request};
use serde::Deserialize;

use crate::{Context, HostEvent, Plugin};
use auth::{Authenticator, Verdict};
use files::Fail;
use hgfs_server::HgfsServer;
use procs::Programs;
use user::Account;

/// The TCLO command of HGFS packets sent directly (`HGFS_SYNC_REQREP_CMD`).
pub const TCLO_HGFS: &str = "f";
/// A refused login is answered no sooner than this after it arrived, so
/// that guessing passwords over the backdoor is slow (PAM's own delay,
/// pam_faildelay, comes on top).
pub const FAIL_DELAY: Duration = Duration::from_secs(2);
/// How long a large process list waits for the host to fetch its next
/// part (vmtoolsd's `SECONDS_UNTIL_LISTPROC_CACHE_CLEANUP`).
const LIST_CACHE_TTL: Duration = Duration::from_secs(10 * 60);
/// Most large process lists cached at once.
const LIST_CACHE_MAX: usize = 8;

/// The `[guestops]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestOpsConfig {
    /// Answer guest operations at all (off: every request but
    /// GET_TOOLS_STATE gets VIX_E_OPERATION_DISABLED, as vmtoolsd's
    /// `[guestoperations] disabled=true`).
    pub enabled: bool,
    /// Operations refused with VIX_E_OPERATION_DISABLED, named as
    /// vmtoolsd's `[guestoperations] <Op>.disabled` keys:
    /// `StartProgramInGuest`, `ListProcessesInGuest`, ... ([`OPERATIONS`]).
    pub disabled: Vec<String>,
    /// The PAM login helper; empty: `vm-agent-auth` next to the agent.
    pub auth_helper: PathBuf,
    /// Most started programs running at once.
    pub max_programs: usize,
}

impl Default for GuestOpsConfig {
    fn default() -> Self {
        GuestOpsConfig {
            enabled: true,
            disabled: Vec::new(),
            auth_helper: PathBuf::new(),
            max_programs: 64,
        }
    }
}

/// The operation names `disabled` takes, and their opcodes (vmtoolsd's
/// `VIX_TOOLS_CONFIG_API_*_NAME`).
pub const OPERATIONS: [(&str, &[u32]); 16] = [
    ("StartProgramInGuest", &[op::START_PROGRAM]),
    ("ListProcessesInGuest", &[op::LIST_PROCESSES_EX]),
    ("TerminateProcessInGuest", &[op::TERMINATE_PROCESS]),
    ("ReadEnvironmentVariableInGuest", &[op::READ_ENV_VARIABLES]),
    ("MakeDirectoryInGuest", &[op::CREATE_DIRECTORY_EX]),
    ("DeleteFileInGuest", &[op::DELETE_GUEST_FILE_EX]),
    ("DeleteDirectoryInGuest", &[op::DELETE_GUEST_DIRECTORY_EX]),
    ("MoveDirectoryInGuest", &[op::MOVE_GUEST_DIRECTORY]),
    ("MoveFileInGuest", &[op::MOVE_GUEST_FILE_EX]),
    (
        "CreateTemporaryFileInGuest",
        &[op::CREATE_TEMPORARY_FILE_EX],
    ),
    (
        "CreateTemporaryDirectoryInGuest",
        &[op::CREATE_TEMPORARY_DIRECTORY],
    ),
    ("ListFilesInGuest", &[op::LIST_FILES]),
    (
        "ChangeFileAttributesInGuest",
        &[op::SET_GUEST_FILE_ATTRIBUTES],
    ),
    (
        "InitiateFileTransferFromGuest",
        &[op::INITIATE_FILE_TRANSFER_FROM_GUEST],
    ),
    (
        "InitiateFileTransferToGuest",
        &[op::INITIATE_FILE_TRANSFER_TO_GUEST],
    ),
    ("ValidateCredentialsInGuest", &[op::VALIDATE_CREDENTIALS]),
];

/// Why the `[guestops]` section is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestOpsConfigError {
    /// `disabled` names no operation.
    #[error("guestops.disabled: unknown operation {0:?} (one of StartProgramInGuest, ListProcessesInGuest, ...)")]
    UnknownOperation(String),
}

impl GuestOpsConfig {
    /// Check the operation names.
    pub fn validate(&self) -> Result<(), GuestOpsConfigError> {
        for name in &self.disabled {
            if !OPERATIONS.iter().any(|(n, _)| n == name) {
                return Err(GuestOpsConfigError::UnknownOperation(name.clone()));
            }
        }
        Ok(())
    }

    fn disabled(&self, opcode: u32) -> bool {
        if opcode == op::GET_TOOLS_STATE {
            return false;
        }
        if !self.enabled {
            return true;
        }
        OPERATIONS
            .iter()
            .filter(|(name, _)| self.disabled.iter().any(|d| d == name))
            .any(|(_, ops)| ops.contains(&opcode))
    }

    fn helper(&self) -> PathBuf {
        if !self.auth_helper.as_os_str().is_empty() {
            return self.auth_helper.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("vm-agent-auth")))
            .unwrap_or_else(|| PathBuf::from("/usr/bin/vm-agent-auth"))
    }
}

/// The opcodes that run after a login check.
const AUTHENTICATED: [u32; 17] = [
    op::HGFS_SEND_PACKET,
    op::LIST_FILES,
    op::CREATE_DIRECTORY_EX,
    op::MOVE_GUEST_FILE_EX,
    op::MOVE_GUEST_DIRECTORY,
    op::CREATE_TEMPORARY_FILE_EX,
    op::CREATE_TEMPORARY_DIRECTORY,
    op::SET_GUEST_FILE_ATTRIBUTES,
    op::START_PROGRAM,
    op::LIST_PROCESSES_EX,
    op::READ_ENV_VARIABLES,
    op::INITIATE_FILE_TRANSFER_FROM_GUEST,
    op::INITIATE_FILE_TRANSFER_TO_GUEST,
    op::VALIDATE_CREDENTIALS,
    op::TERMINATE_PROCESS,
    op::DELETE_GUEST_FILE_EX,
    op::DELETE_GUEST_DIRECTORY_EX,
];

/// A request waiting for its login check (or for its failure delay).
#[derive(Debug)]
struct Waiting {
    msg: Vec<u8>,
    arrived: Instant,
    /// The refusal, sent at `arrived + FAIL_DELAY`.
    refusal: Option<Vec<u8>>,
}

#[derive(Debug)]
struct ListCache {
    key: u32,
    uid: u32,
    text: Vec<u8>,
    until: Instant,
}

/// What one operation answers: the VIX error, errno and result bytes.
type OpOutcome = Result<Vec<u8>, Fail>;

/// The guestops plugin.
#[derive(Debug)]
pub struct GuestOps {
    cfg: GuestOpsConfig,
    auth: Authenticator,
    programs: Programs,
    hgfs: HgfsServer,
    frozen: bool,
    waiting: Option<Waiting>,
    ready: Option<Vec<u8>>,
    lists: Vec<ListCache>,
    next_key: u32,
}

/// The TCLO reply carrying a VIX reply.
fn vix_reply(error: u64, errno: u32, result: &[u8], binary: bool) -> Vec<u8> {
    tclo_reply(true, &vix::encode_reply(error, errno, result, binary))
}

/// vmtoolsd's `VixToolsRewriteError`: for the non-VI opcodes among ours
/// (GET_TOOLS_STATE, HGFS packets) a bad login reads "no permission".
fn rewrite(opcode: u32, code: u64) -> u64 {
    if code == err::INVALID_LOGIN_CREDENTIALS
        && (opcode == op::HGFS_SEND_PACKET || opcode == op::GET_TOOLS_STATE)
    {
        err::GUEST_USER_PERMISSIONS
    } else {
        code
    }
}

impl GuestOps {
    /// A plugin with this config.
    pub fn new(cfg: GuestOpsConfig) -> GuestOps {
        GuestOps {
            auth: Authenticator::new(cfg.helper()),
            programs: Programs::new(cfg.max_programs),
            hgfs: HgfsServer::new(),
            cfg,
            frozen: false,
            waiting: None,
            ready: None,
            lists: Vec::new(),
            next_key: 1,
        }
    }

    /// Apply a new config (SIGHUP): cached logins are dropped; a login
    /// check under way finishes.
    pub fn set_config(&mut self, cfg: GuestOpsConfig) {
        self.auth.set_helper(cfg.helper());
        self.auth.forget();
        self.programs.set_max_running(cfg.max_programs);
        self.cfg = cfg;
    }

    /// The file systems are frozen (vmbackup): every VIX request answers
    /// VIX_E_OBJECT_IS_BUSY until thawed, as vmtoolsd's
    /// `gRestrictCommands`, so that no operation blocks on a frozen disk.
    pub fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    /// Frozen by a host event, or by this agent's own quiesced snapshot
    /// ([`crate::vmbackup::io_frozen`]).
    fn is_frozen(&self) -> bool {
        self.frozen || crate::vmbackup::io_frozen()
    }

    /// Answer a `Vix_1_Relayed_Command`: now, or `None` while the login is
    /// checked.
    fn relayed(&mut self, args: &[u8], now: Instant) -> Option<Vec<u8>> {
        let Ok((_name, msg)) = vix::parse_tclo_args(args) else {
            return Some(vix_reply(err::INVALID_MESSAGE_HEADER, 0, b"", false));
        };
        let req = match Request::parse(msg) {
            Ok(r) => r,
            Err(e) => {
                log::warn!("guestops: {e}");
                return Some(vix_reply(e.code(), 0, b"", false));
            }
        };
        let opcode = req.header.opcode;
        let binary = req.returns_binary();
        if self.is_frozen() {
            log::warn!("guestops: file systems frozen; command {opcode} refused");
            return Some(vix_reply(err::OBJECT_IS_BUSY, 0, b"", binary));
        }
        if self.cfg.disabled(opcode) {
            log::info!("guestops: command {opcode} disabled by configuration");
            return Some(vix_reply(err::OPERATION_DISABLED, 0, b"", binary));
        }
        if opcode == op::GET_TOOLS_STATE {
            return Some(vix_reply(err::OK, 0, self.tools_state().as_bytes(), binary));
        }
        if !AUTHENTICATED.contains(&opcode) {
            log::debug!("guestops: command {opcode} not supported");
            return Some(vix_reply(
                err::UNRECOGNIZED_COMMAND_IN_GUEST,
                0,
                b"",
                binary,
            ));
        }
        let (user, password) = match req.credential() {
            Ok(Credential::NamePassword { user, password, .. }) => (user, password),
            Ok(Credential::None) => {
                let code = rewrite(opcode, err::INVALID_LOGIN_CREDENTIALS);
                return Some(vix_reply(code, 0, b"", binary));
            }
            Err(e) => return Some(vix_reply(e.code(), 0, b"", binary)),
        };
        if let Some(account) = self.auth.cached(&user, password.as_bytes(), now) {
            return Some(self.execute(&req, &account, now));
        }
        match self.auth.start(&user, password.as_bytes(), now) {
            Ok(()) => {
                self.waiting = Some(Waiting {
                    msg: msg.to_vec(),
                    arrived: now,
                    refusal: None,
                });
                None
            }
            Err(e) => {
                log::error!("guestops: {e}");
                Some(vix_reply(err::FAIL, 0, b"", binary))
            }
        }
    }

    /// The login check ended: run the waiting request, or schedule its
    /// refusal.
    fn verdict(&mut self, verdict: Verdict, now: Instant) {
        let Some(mut w) = self.waiting.take() else {
            return;
        };
        let Ok(req) = Request::parse(&w.msg) else {
            // Parsed once already; never leave the host without a reply.
            self.ready = Some(vix_reply(err::FAIL, 0, b"", false));
            return;
        };
        match verdict {
            Verdict::Valid(account) => {
                let reply = self.execute(&req, &account, now);
                self.ready = Some(reply);
            }
            Verdict::Invalid => {
                let opcode = req.header.opcode;
                log::warn!("guestops: login refused for command {opcode}");
                let code = rewrite(opcode, err::INVALID_LOGIN_CREDENTIALS);
                w.refusal = Some(vix_reply(code, 0, b"", req.returns_binary()));
                if now >= w.arrived + FAIL_DELAY {
                    self.ready = w.refusal.take();
                } else {
                    self.waiting = Some(w);
                }
            }
        }
    }

    /// Run an authenticated request as `account`.
    fn execute(&mut self, req: &Request<'_>, account: &Account, now: Instant) -> Vec<u8> {
        let opcode = req.header.opcode;
        let binary = req.returns_binary();
        log::debug!("guestops: command {opcode} as {}", account.name);
        // StartProgram impersonates for its checks only: the child needs
        // root to take on all of the user's ids.
        let outcome = if opcode == op::START_PROGRAM {
            self.run(opcode, req.body, account, now)
        } else {
            match account.impersonate() {
                Ok(guard) => {
                    let r = self.run(opcode, req.body, account, now);
                    drop(guard);
                    r
                }
                Err(e) => {
                    log::error!("guestops: {e}");
                    Err(Fail::vix(err::GUEST_USER_PERMISSIONS))
                }
            }
        };
        match outcome {
            Ok(result) => vix_reply(err::OK, 0, &result, binary),
            Err(f) => vix_reply(rewrite(opcode, f.code), f.errno, b"", binary),
        }
    }

    /// One operation, while impersonating `account`.
    fn run(&mut self, opcode: u32, body: &[u8], account: &Account, now: Instant) -> OpOutcome {
        let bad = |e: vix::VixError| Fail::vix(e.code());
        match opcode {
            op::HGFS_SEND_PACKET => {
                let p = vix::HgfsPacket::decode(body).map_err(bad)?;
                Ok(self.hgfs.dispatch(p.packet, account.uid, now))
            }
            op::VALIDATE_CREDENTIALS => Ok(Vec::new()),
            op::LIST_FILES => {
                let r = vix::ListFiles::decode(body).map_err(bad)?;
                let re = if r.pattern.is_empty() {
                    None
                } else {
                    Some(
                        regex_lite::Regex::new(&r.pattern)
                            .map_err(|_| Fail::vix(err::INVALID_ARG))?,
                    )
                };
                Ok(files::list_files(&r, re.as_ref(), vix::MAX_RESULT_LEN)?.into_bytes())
            }
            op::CREATE_DIRECTORY_EX => {
                let r = vix::CreateDirectory::decode(body).map_err(bad)?;
                files::create_directory(&r.path, r.create_parents).map(|()| Vec::new())
            }
            op::MOVE_GUEST_FILE_EX | op::MOVE_GUEST_DIRECTORY => {
                let r = vix::Move::decode(body).map_err(bad)?;
                let dir = opcode == op::MOVE_GUEST_DIRECTORY;
                files::move_path(&r.old_path, &r.new_path, r.overwrite, dir).map(|()| Vec::new())
            }
            op::CREATE_TEMPORARY_FILE_EX | op::CREATE_TEMPORARY_DIRECTORY => {
                let r = vix::CreateTemp::decode(body).map_err(bad)?;
                let dir = opcode == op::CREATE_TEMPORARY_DIRECTORY;
                files::create_temp(&r.prefix, &r.suffix, &r.directory, dir).map(String::into_bytes)
            }
            op::SET_GUEST_FILE_ATTRIBUTES => {
                let r = vix::SetAttributes::decode(body).map_err(bad)?;
                files::set_attributes(&r).map(|()| Vec::new())
            }
            op::INITIATE_FILE_TRANSFER_FROM_GUEST => {
                let r = vix::ListFiles::decode(body).map_err(bad)?;
                files::transfer_from_guest(&r.path).map(String::into_bytes)
            }
            op::INITIATE_FILE_TRANSFER_TO_GUEST => {
                let r = vix::TransferToGuest::decode(body).map_err(bad)?;
                files::transfer_to_guest(&r.path, r.overwrite).map(|()| Vec::new())
            }
            op::DELETE_GUEST_FILE_EX => {
                let r = vix::DeleteFile::decode(body).map_err(bad)?;
                files::delete_file(&r.path).map(|()| Vec::new())
            }
            op::DELETE_GUEST_DIRECTORY_EX => {
                let r = vix::DeleteDirectory::decode(body).map_err(bad)?;
                files::delete_directory(&r.path, r.recursive).map(|()| Vec::new())
            }
            op::START_PROGRAM => {
                let r = vix::StartProgram::decode(body).map_err(bad)?;
                self.start_program(&r, account)
            }
            op::LIST_PROCESSES_EX => {
                let r = vix::ListProcesses::decode(body).map_err(bad)?;
                self.list_processes(&r, account.uid, now)
            }
            op::READ_ENV_VARIABLES => {
                let r = vix::ReadEnv::decode(body).map_err(bad)?;
                let env = procs::user_env(account);
                let vars: Vec<String> = if r.names.is_empty() {
                    env.iter().map(|(k, v)| format!("{k}={v}")).collect()
                } else {
                    r.names
                        .iter()
                        .filter_map(|n| env.iter().find(|(k, _)| k == n))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect()
                };
                Ok(vix::env_to_xml(&vars).into_bytes())
            }
            op::TERMINATE_PROCESS => {
                let r = vix::TerminateProcess::decode(body).map_err(bad)?;
                if r.pid == u64::from(std::process::id()) {
                    return Err(Fail::vix(err::GUEST_USER_PERMISSIONS));
                }
                match procs::terminate(r.pid) {
                    Ok(()) => {
                        self.programs.kill_later(r.pid, now);
                        Ok(Vec::new())
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                        Err(Fail {
                            code: err::GUEST_USER_PERMISSIONS,
                            errno: e.raw_os_error().unwrap_or(0) as u32,
                        })
                    }
                    Err(e) => Err(Fail::os(&e)),
                }
            }
            _ => Err(Fail::vix(err::UNRECOGNIZED_COMMAND_IN_GUEST)),
        }
    }

    fn start_program(&mut self, r: &vix::StartProgram, account: &Account) -> OpOutcome {
        if r.program.is_empty() {
            return Err(Fail::vix(err::INVALID_ARG));
        }
        let args = (!r.arguments.is_empty()).then_some(r.arguments.as_str());
        let dir = (!r.working_dir.is_empty()).then_some(r.working_dir.as_str());
        match self.programs.start(account, &r.program, args, dir, &r.env) {
            Ok(pid) => Ok(pid.to_string().into_bytes()),
            Err(procs::StartError::NotFound(e)) => Err(Fail::os(&e)),
            Err(procs::StartError::NotExecutable) => Err(Fail::vix(err::GUEST_USER_PERMISSIONS)),
            Err(procs::StartError::NotADirectory) => Err(Fail::vix(err::NOT_A_DIRECTORY)),
            Err(procs::StartError::TooMany) => Err(Fail::vix(err::OBJECT_IS_BUSY)),
            Err(procs::StartError::Impersonate(e)) => {
                log::error!("guestops: {e}");
                Err(Fail::vix(err::GUEST_USER_PERMISSIONS))
            }
            Err(procs::StartError::Spawn(e)) => {
                log::error!("guestops: cannot start {}: {e}", r.program);
                Err(Fail {
                    code: 3012, // VIX_E_PROGRAM_NOT_STARTED
                    errno: e.raw_os_error().unwrap_or(0) as u32,
                })
            }
        }
    }

    /// LIST_PROCESSES_EX with vmtoolsd's multi-trip form for results
    /// larger than one reply.
    fn list_processes(&mut self, r: &vix::ListProcesses, uid: u32, now: Instant) -> OpOutcome {
        // Header sizes as vmtoolsd reserves them (format strings + digits).
        const FIRST: usize =
            "<key>%u</key><totalSize>%d</totalSize><leftToSend>%d</leftToSend>".len() + 1 + 30;
        const NEXT: usize = "<leftToSend>%d</leftToSend>".len() + 1 + 10;
        let max = vix::MAX_RESULT_LEN;
        self.lists.retain(|l| l.until > now);
        let (key, offset) = if r.key != 0 {
            let l = self
                .lists
                .iter()
                .find(|l| l.key == r.key)
                .ok_or(Fail::vix(err::FAIL))?;
            if r.offset as usize > l.text.len() || l.uid != uid {
                return Err(Fail::vix(err::FAIL));
            }
            (r.key, r.offset as usize)
        } else {
            self.programs.reap(now);
            let started = self.programs.started();
            let list = if r.pids.is_empty() {
                procs::list_all(&started)
            } else {
                procs::list_pids(&started, &r.pids)
            };
            let mut text = String::new();
            for p in &list {
                text.push_str(
                    &vix::ProcInfo {
                        cmd: Some(p.cmd.clone()),
                        name: p.name.clone(),
                        pid: p.pid as i64,
                        user: p.user.clone(),
                        start: p.start,
                        exit_code: Some(p.exit_code),
                        exit_time: Some(p.end),
                    }
                    .to_xml(),
                );
            }
            // vmtoolsd counts the terminating NUL in the size.
            if text.len() + 1 + FIRST <= max {
                return Ok(text.into_bytes());
            }
            let key = self.next_key;
            self.next_key = self.next_key.wrapping_add(1).max(1);
            if self.lists.len() >= LIST_CACHE_MAX {
                self.lists.remove(0);
            }
            let mut bytes = text.into_bytes();
            bytes.push(0);
            self.lists.push(ListCache {
                key,
                uid,
                text: bytes,
                until: now + LIST_CACHE_TTL,
            });
            (key, 0)
        };
        let i = self
            .lists
            .iter()
            .position(|l| l.key == key)
            .ok_or(Fail::vix(err::FAIL))?;
        let total = self.lists[i].text.len();
        let hdr = if offset == 0 { FIRST } else { NEXT };
        let left = total - offset;
        let this = left.min(max - hdr);
        let left_after = left - this;
        let chunk = &self.lists[i].text[offset..offset + this];
        let chunk = String::from_utf8_lossy(chunk);
        let chunk = chunk.trim_end_matches('\0');
        let text = if offset == 0 {
            vix::ProcChunk::first(key, total as u32, left_after as u32, chunk)
        } else {
            vix::ProcChunk::next(left_after as u32, chunk)
        };
        if left_after == 0 {
            self.lists.remove(i);
        }
        Ok(text.into_bytes())
    }

    /// GET_TOOLS_STATE: vmtoolsd's property list, base64.
    fn tools_state(&self) -> String {
        let os_release = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let os = crate::osinfo::OsInfo::from_os_release(
            &os_release,
            kernel.trim(),
            cfg!(target_pointer_width = "64"),
        );
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let s = |id, v: String| Property {
            id,
            value: PropertyValue::Str(v),
        };
        let i = |id, v: i32| Property {
            id,
            value: PropertyValue::Int(v),
        };
        let b = |id, v: bool| Property {
            id,
            value: PropertyValue::Bool(v),
        };
        let on = |opcode: u32| !self.cfg.disabled(opcode);
        let props = vec![
            s(prop::GUEST_OS_VERSION, os.full_name()),
            s(prop::GUEST_OS_VERSION_SHORT, os.short_name()),
            s(prop::GUEST_TOOLS_PRODUCT_NAME, "VMware Tools".into()),
            s(
                prop::GUEST_TOOLS_VERSION,
                concat!("vm-agent ", env!("CARGO_PKG_VERSION")).into(),
            ),
            s(prop::GUEST_NAME, host.trim().to_owned()),
            // VIX_TOOLSFEATURE_SUPPORT_GET_HANDLE_STATE.
            i(prop::GUEST_TOOLS_API_OPTIONS, 1),
            // GUEST_OS_FAMILY_LINUX.
            i(prop::GUEST_OS_FAMILY, 1),
            // VIX_PROPERTY_GUEST_OS_PACKAGE_LIST: empty, as vmtoolsd.
            s(4504, String::new()),
            // VIX_PROPERTY_VM_GUEST_TEMP_DIR_PROPERTY.
            s(203, files::temp_dir()),
            // VIX_PROPERTY_GUEST_TOOLS_WORD_SIZE.
            i(
                4519,
                if cfg!(target_pointer_width = "64") {
                    64
                } else {
                    32
                },
            ),
            b(prop::GUEST_START_PROGRAM_ENABLED, on(op::START_PROGRAM)),
            b(
                prop::GUEST_LIST_PROCESSES_ENABLED,
                on(op::LIST_PROCESSES_EX),
            ),
            b(
                prop::GUEST_TERMINATE_PROCESS_ENABLED,
                on(op::TERMINATE_PROCESS),
            ),
            b(
                prop::GUEST_READ_ENVIRONMENT_VARIABLE_ENABLED,
                on(op::READ_ENV_VARIABLES),
            ),
            // VALIDATE / ACQUIRE / RELEASE_CREDENTIALS_ENABLED.
            b(4544, on(op::VALIDATE_CREDENTIALS)),
            b(4545, false),
            b(4546, false),
            b(
                prop::GUEST_MAKE_DIRECTORY_ENABLED,
                on(op::CREATE_DIRECTORY_EX),
            ),
            b(
                prop::GUEST_DELETE_FILE_ENABLED,
                on(op::DELETE_GUEST_FILE_EX),
            ),
            b(
                prop::GUEST_DELETE_DIRECTORY_ENABLED,
                on(op::DELETE_GUEST_DIRECTORY_EX),
            ),
            b(
                prop::GUEST_MOVE_DIRECTORY_ENABLED,
                on(op::MOVE_GUEST_DIRECTORY),
            ),
            b(prop::GUEST_MOVE_FILE_ENABLED, on(op::MOVE_GUEST_FILE_EX)),
            b(
                prop::GUEST_CREATE_TEMP_FILE_ENABLED,
                on(op::CREATE_TEMPORARY_FILE_EX),
            ),
            b(
                prop::GUEST_CREATE_TEMP_DIRECTORY_ENABLED,
                on(op::CREATE_TEMPORARY_DIRECTORY),
            ),
            b(prop::GUEST_LIST_FILES_ENABLED, on(op::LIST_FILES)),
            b(
                prop::GUEST_CHANGE_FILE_ATTRIBUTES_ENABLED,
                on(op::SET_GUEST_FILE_ATTRIBUTES),
            ),
            b(
                prop::GUEST_INITIATE_FILE_TRANSFER_FROM_GUEST_ENABLED,
                on(op::INITIATE_FILE_TRANSFER_FROM_GUEST),
            ),
            b(
                prop::GUEST_INITIATE_FILE_TRANSFER_TO_GUEST_ENABLED,
                on(op::INITIATE_FILE_TRANSFER_TO_GUEST),
            ),
        ];
        vix::base64_encode(&vix::encode_properties(&props))
    }

    /// Run due work: expiries, a timed-out login check, a refusal whose
    /// delay passed, SIGKILLs after TerminateProcess.
    fn tick(&mut self, now: Instant) {
        if let Some(v) = self.auth.on_deadline(now) {
            self.verdict(v, now);
        }
        if self
            .waiting
            .as_ref()
            .is_some_and(|w| w.refusal.is_some() && now >= w.arrived + FAIL_DELAY)
        {
            self.ready = self.waiting.take().and_then(|w| w.refusal);
        }
        self.programs.reap(now);
        self.programs.run_kills(now);
        self.hgfs.expire(now);
        self.lists.retain(|l| l.until > now);
    }
}

impl Plugin for GuestOps {
    fn name(&self) -> &'static str {
        "guestops"
    }

    fn tclo_commands(&self) -> &'static [&'static str] {
        &[vix::TCLO_RELAYED_COMMAND, TCLO_HGFS]
    }

    fn on_tclo(&mut self, ctx: &mut dyn Context, cmd: &str, args: &[u8]) -> Vec<u8> {
        // Synchronous callers get a refusal rather than a lost reply.
        self.on_tclo_deferred(ctx, cmd, args)
            .unwrap_or_else(|| vix_reply(err::OBJECT_IS_BUSY, 0, b"", false))
    }

    fn on_tclo_deferred(
        &mut self,
        _ctx: &mut dyn Context,
        cmd: &str,
        args: &[u8],
    ) -> Option<Vec<u8>> {
        let now = Instant::now();
        match cmd {
            vix::TCLO_RELAYED_COMMAND => self.relayed(args, now),
            TCLO_HGFS => {
                if args.is_empty() {
                    return Some(tclo_reply(false, b"1 argument required"));
                }
                if self.is_frozen() || !self.cfg.enabled {
                    // No packet goes to a frozen disk; an empty reply is
                    // what a server that cannot parse gives.
                    return Some(tclo_reply(true, b""));
                }
                // The host's own transfers (deployPkg) run as root.
                Some(tclo_reply(true, &self.hgfs.dispatch(args, 0, now)))
            }
            _ => Some(tclo_reply(false, b"Unknown Command")),
        }
    }

    fn take_reply(&mut self) -> Option<Vec<u8>> {
        self.ready.take()
    }

    fn capabilities(&self) -> Vec<Vec<u8>> {
        if !self.cfg.enabled {
            return Vec::new();
        }
        // open-vm-tools' hgfsServer plugin announces the HGFS server.
        vec![b"tools.capability.hgfs_server toolbox 1".to_vec()]
    }

    fn on_event(&mut self, _ctx: &mut dyn Context, event: HostEvent) {
        match event {
            HostEvent::Frozen => self.set_frozen(true),
            HostEvent::Thawed => self.set_frozen(false),
            HostEvent::Resumed => {}
        }
    }

    fn deadline(&self) -> Option<Instant> {
        let refusal = self
            .waiting
            .as_ref()
            .filter(|w| w.refusal.is_some())
            .map(|w| w.arrived + FAIL_DELAY);
        [
            refusal,
            self.auth.deadline(),
            self.programs.deadline(),
            self.hgfs.deadline(),
            self.lists.iter().map(|l| l.until).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn on_deadline(&mut self, _ctx: &mut dyn Context, now: Instant) {
        self.tick(now);
    }

    fn fds(&self) -> Vec<(RawFd, i16)> {
        let mut fds: Vec<(RawFd, i16)> = self
            .programs
            .fds()
            .into_iter()
            .map(|fd| (fd, libc::POLLIN))
            .collect();
        if let Some(fd) = self.auth.fd() {
            fds.push((fd, libc::POLLIN));
        }
        fds
    }

    fn on_ready(&mut self, _ctx: &mut dyn Context, fd: RawFd, now: Instant) {
        if self.auth.fd() == Some(fd) {
            if let Some(v) = self.auth.on_ready(now) {
                self.verdict(v, now);
            }
        } else if self.programs.owns(fd) {
            self.programs.reap(now);
        }
    }
}

#[cfg(test)]
mod tests;
