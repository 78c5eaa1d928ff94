//! Guest operations from the host: run programs, list and move files, move
//! file data, as vSphere's GuestOperationsManager does, through the guest
//! tools' VIX handler (TCLO `Vix_1_Relayed_Command`) and their HGFS server
//! (VIX opcode 84).
//!
//! [`Guest`] is the library API (the CLI, the control socket and a future
//! vSphere facade sit on it); it drives any [`TcloChannel`], in hvsim a
//! [`Vm`]'s TCLO queue. Wire formats are in [`protocol::vix`] and
//! [`protocol::hgfs`]. The guest is untrusted: every reply is parsed with
//! bounded lengths, and loops over replies (process-list trips, directory
//! pages, file chunks) stop when the guest stops making progress.
//!
//! [`service`] answers the control socket's `guest` requests.

pub mod service;
#[cfg(test)]
mod tests;
mod transfer;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use protocol::vix::{self, err, op, Credential, FileInfo, ProcInfo, Property};

use crate::vm::Vm;

pub use transfer::{UploadOptions, CHUNK};

/// Where guest operations go: something that delivers a TCLO command to the
/// guest tools and returns their whole reply (`OK ...` or `ERROR ...`).
pub trait TcloChannel {
    /// Send `command`, wait up to `timeout` for the reply.
    fn send(&self, command: &[u8], timeout: Duration) -> Result<Vec<u8>, String>;
}

impl TcloChannel for Vm {
    /// Fails at once when no guest agent polls TCLO (rather than after the
    /// timeout).
    fn send(&self, command: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
        if !self.tools_running() {
            return Err(format!(
                "the guest tools are not running in {} (no guest agent polls TCLO); start vmtoolsd (with its vix plugin) or vm-agent in the guest",
                self.info.name
            ));
        }
        self.tclo_raw(command, timeout)
    }
}

/// Default wait for one guest reply.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest process list assembled from several trips.
pub const MAX_PROCESS_LIST: usize = 64 << 20;
/// Most directory entries `ls` collects.
pub const MAX_LIST_ENTRIES: usize = 10_000_000;

/// Why a guest operation failed. The messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum GuestOpsError {
    /// The TCLO command did not get through (tools not running, timeout).
    #[error("{0}")]
    Transport(String),
    /// The guest tools answered TCLO but have no VIX handler.
    #[error(
        "the guest tools do not support guest operations (no vix plugin?): they answered {0:?}"
    )]
    NotSupported(String),
    /// The guest refused the operation with a VIX error.
    #[error("{what}: {message}")]
    Vix {
        /// The operation, e.g. `rm /tmp/x`.
        what: String,
        /// The 64-bit VIX error.
        code: u64,
        /// The guest's errno, when it gave one.
        additional: u32,
        /// What it means and what to do.
        message: String,
    },
    /// The guest's HGFS server refused a file operation.
    #[error("{what}: the guest's file server says {}", protocol::hgfs::status_name(*status))]
    Hgfs {
        /// The operation.
        what: String,
        /// The HGFS status.
        status: u32,
    },
    /// The guest's reply does not parse.
    #[error("{what}: malformed reply from the guest tools: {detail}")]
    BadReply {
        /// The operation.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// The request could not be built (too long a path, ...).
    #[error("{what}: {detail}")]
    Request {
        /// The operation.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// Reading or writing the host side of a transfer failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// A program did not end in time.
    #[error("{what}: still running after {secs} s (pid {pid} in the guest)")]
    Timeout {
        /// The operation.
        what: String,
        /// Seconds waited.
        secs: u64,
        /// The guest pid.
        pid: i64,
    },
}

impl GuestOpsError {
    /// The VIX error code, when the guest answered one.
    pub fn vix_code(&self) -> Option<u16> {
        match self {
            GuestOpsError::Vix { code, .. } => Some(vix::code_of(*code)),
            _ => None,
        }
    }
}

/// What a VIX error means for the user.
pub fn vix_message(code: u64, additional: u32) -> String {
    let base = match u64::from(vix::code_of(code)) {
        err::INVALID_LOGIN_CREDENTIALS | err::AUTHENTICATION_FAIL => {
            "the guest refused the user name or password (check --user and the password; \
             vmtoolsd checks them with its PAM service, which also wants a login shell listed in /etc/shells)"
                .to_string()
        }
        err::UNRECOGNIZED_COMMAND_IN_GUEST => {
            "the guest tools do not support this guest operation (no vix plugin?)".to_string()
        }
        err::FILE_ACCESS_ERROR | err::GUEST_USER_PERMISSIONS => {
            "permission denied in the guest (the user may not access it)".to_string()
        }
        err::FILE_NOT_FOUND => "no such file or directory in the guest".to_string(),
        err::FILE_ALREADY_EXISTS => "it already exists in the guest".to_string(),
        err::NOT_A_FILE => "not a regular file in the guest".to_string(),
        err::NOT_A_DIRECTORY => "not a directory in the guest".to_string(),
        err::DIRECTORY_NOT_EMPTY => "the directory is not empty (use -r)".to_string(),
        err::NO_SUCH_PROCESS => "no such process in the guest".to_string(),
        err::OPERATION_DISABLED | err::GUEST_OPERATIONS_PROHIBITED => {
            "guest operations are disabled in the guest's configuration".to_string()
        }
        err::OBJECT_IS_BUSY => {
            "the guest is busy (file systems frozen for a snapshot?); try again".to_string()
        }
        err::INVALID_ARG => "invalid argument".to_string(),
        err::LOGIN_TYPE_NOT_SUPPORTED => {
            "the guest does not accept name/password credentials".to_string()
        }
        err::INVALID_MESSAGE_HEADER | err::INVALID_MESSAGE_BODY => {
            "the guest tools could not parse the request".to_string()
        }
        _ => vix::error_name(code).to_string(),
    };
    let mut s = format!("{base} (VIX error {})", vix::code_of(code));
    if additional != 0 && additional < 4096 {
        let e = io::Error::from_raw_os_error(additional as i32);
        s.push_str(&format!(", guest errno {additional}: {e}"));
    }
    s
}

static NEXT_COOKIE: AtomicU64 = AtomicU64::new(1);

/// A program to run in the guest ([`Guest::run`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSpec {
    /// Program path in the guest.
    pub program: String,
    /// Arguments; each is passed as one word (quoted for the guest shell).
    pub args: Vec<String>,
    /// Working directory; empty for the user's home.
    pub working_dir: String,
    /// Extra environment as `NAME=VALUE`.
    pub env: Vec<String>,
    /// Give up waiting after this long (the program keeps running).
    pub timeout: Option<Duration>,
}

/// How a program run in the guest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOutcome {
    /// Its pid in the guest.
    pub pid: i64,
    /// Its exit code as the guest tools report it.
    pub exit_code: i32,
}

/// Quote `s` as one word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// One guest, one user: the guest operations the tools offer.
pub struct Guest<'a> {
    chan: &'a dyn TcloChannel,
    cred: Credential,
    timeout: Duration,
}

impl std::fmt::Debug for Guest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest")
            .field("cred", &self.cred)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<'a> Guest<'a> {
    /// Operations on the guest behind `chan` as `user` with `password`.
    pub fn new(chan: &'a dyn TcloChannel, user: &str, password: &str) -> Self {
        Guest {
            chan,
            cred: Credential::name_password(user, password),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Wait up to `t` for each reply.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Send one VIX request and return the result bytes of a successful
    /// reply.
    fn call(
        &self,
        opcode: u32,
        body: &[u8],
        binary: bool,
        what: &dyn Fn() -> String,
    ) -> Result<Vec<u8>, GuestOpsError> {
        let cookie = NEXT_COOKIE.fetch_add(1, Ordering::Relaxed);
        let cred = if opcode == op::GET_TOOLS_STATE {
            &Credential::None
        } else {
            &self.cred
        };
        let flags = if binary {
            vix::flags::GUEST_RETURNS_BINARY
        } else {
            0
        };
        let msg = vix::build_request(opcode, flags, cookie, cred, body).map_err(|e| {
            GuestOpsError::Request {
                what: what(),
                detail: e.to_string(),
            }
        })?;
        let command = vix::tclo_command(&cookie.to_string(), &msg);
        let reply = self
            .chan
            .send(&command, self.timeout)
            .map_err(GuestOpsError::Transport)?;
        let rest = match reply.strip_prefix(protocol::rpc::TCLO_OK) {
            Some(r) => r,
            None => {
                let text = String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned();
                return Err(
                    if text.contains("Unknown Command") || text.contains("Unknown command") {
                        GuestOpsError::NotSupported(text)
                    } else {
                        GuestOpsError::BadReply {
                            what: what(),
                            detail: format!("TCLO answered {text:?}"),
                        }
                    },
                );
            }
        };
        let r = vix::Reply::parse(rest, binary).map_err(|e| GuestOpsError::BadReply {
            what: what(),
            detail: e.to_string(),
        })?;
        if r.code() != 0 {
            return Err(GuestOpsError::Vix {
                what: what(),
                code: r.error,
                additional: r.additional,
                message: vix_message(r.error, r.additional),
            });
        }
        Ok(r.data.to_vec())
    }

    fn call_text(
        &self,
        opcode: u32,
        body: &[u8],
        what: &dyn Fn() -> String,
    ) -> Result<String, GuestOpsError> {
        let data = self.call(opcode, body, false, what)?;
        String::from_utf8(data).map_err(|_| GuestOpsError::BadReply {
            what: what(),
            detail: "result is not UTF-8".into(),
        })
    }

    fn bad(what: &dyn Fn() -> String, e: impl std::fmt::Display) -> GuestOpsError {
        GuestOpsError::BadReply {
            what: what(),
            detail: e.to_string(),
        }
    }

    /// GET_TOOLS_STATE: the tools' property list (no authentication).
    pub fn tools_state(&self) -> Result<Vec<Property>, GuestOpsError> {
        let what = || "tools state".to_string();
        let data = self.call(op::GET_TOOLS_STATE, &[], false, &what)?;
        let raw = vix::base64_decode(trim_ascii(&data))
            .ok_or_else(|| Self::bad(&what, "property list is not base64"))?;
        vix::decode_properties(&raw).map_err(|e| Self::bad(&what, e))
    }

    /// START_PROGRAM: start `program` with the argument string `arguments`
    /// (the guest runs `"program" arguments` through its shell); returns the
    /// pid.
    pub fn start_program(
        &self,
        program: &str,
        arguments: &str,
        working_dir: &str,
        env: &[String],
    ) -> Result<i64, GuestOpsError> {
        let what = || format!("start {program}");
        let body = vix::StartProgram {
            start_minimized: false,
            program: program.to_string(),
            arguments: arguments.to_string(),
            working_dir: working_dir.to_string(),
            env: env.to_vec(),
        }
        .encode();
        let text = self.call_text(op::START_PROGRAM, &body, &what)?;
        text.trim()
            .parse()
            .map_err(|_| Self::bad(&what, format!("pid {text:?}")))
    }

    /// LIST_PROCESSES_EX: the guest's processes (only `pids` when not
    /// empty), fetched in as many trips as the guest needs.
    pub fn list_processes(&self, pids: &[u64]) -> Result<Vec<ProcInfo>, GuestOpsError> {
        let what = || "ps".to_string();
        let body = vix::ListProcesses {
            key: 0,
            offset: 0,
            pids: pids.to_vec(),
        }
        .encode();
        let first = self.call(op::LIST_PROCESSES_EX, &body, false, &what)?;
        let text = match split_chunk(&first).map_err(|e| Self::bad(&what, e))? {
            Chunk::Complete(data) => data.to_vec(),
            Chunk::First { key, total, data } => {
                if total > MAX_PROCESS_LIST {
                    return Err(Self::bad(&what, format!("{total}-byte process list")));
                }
                let mut all = Vec::with_capacity(total);
                all.extend_from_slice(data);
                while all.len() < total {
                    let body = vix::ListProcesses {
                        key,
                        offset: all.len() as u32,
                        pids: pids.to_vec(),
                    }
                    .encode();
                    let next = self.call(op::LIST_PROCESSES_EX, &body, false, &what)?;
                    match split_chunk(&next).map_err(|e| Self::bad(&what, e))? {
                        Chunk::Next { left, data } => {
                            if data.is_empty() && left > 0 {
                                return Err(Self::bad(&what, "a trip brought no data"));
                            }
                            all.extend_from_slice(data);
                            if all.len() > total {
                                return Err(Self::bad(&what, "more data than announced"));
                            }
                            if left == 0 {
                                break;
                            }
                        }
                        _ => return Err(Self::bad(&what, "expected a <leftToSend> chunk")),
                    }
                }
                all
            }
            Chunk::Next { .. } => return Err(Self::bad(&what, "first trip without <key>")),
        };
        let text = String::from_utf8_lossy(&text);
        ProcInfo::parse_list(&text).map_err(|e| Self::bad(&what, e))
    }

    /// TERMINATE_PROCESS.
    pub fn kill(&self, pid: u64) -> Result<(), GuestOpsError> {
        let body = vix::TerminateProcess { pid, options: 0 }.encode();
        self.call(op::TERMINATE_PROCESS, &body, false, &|| {
            format!("kill {pid}")
        })?;
        Ok(())
    }

    /// READ_ENV_VARIABLES: `NAME=VALUE` strings (all when `names` is empty).
    pub fn env(&self, names: &[String]) -> Result<Vec<String>, GuestOpsError> {
        let what = || "env".to_string();
        let body = vix::ReadEnv {
            names: names.to_vec(),
        }
        .encode();
        let text = self.call_text(op::READ_ENV_VARIABLES, &body, &what)?;
        vix::parse_env(&text).map_err(|e| Self::bad(&what, e))
    }

    /// One LIST_FILES page.
    pub fn list_files_page(
        &self,
        path: &str,
        pattern: &str,
        index: i32,
        max_results: i32,
    ) -> Result<vix::FileList, GuestOpsError> {
        let what = || format!("ls {path}");
        let body = vix::ListFiles {
            file_options: 0,
            path: path.to_string(),
            pattern: pattern.to_string(),
            index,
            max_results,
            offset: 0,
        }
        .encode();
        let text = self.call_text(op::LIST_FILES, &body, &what)?;
        vix::FileList::parse(&text).map_err(|e| Self::bad(&what, e))
    }

    /// LIST_FILES, all pages: the entries of a directory (or the file).
    pub fn list_files(&self, path: &str, pattern: &str) -> Result<Vec<FileInfo>, GuestOpsError> {
        let what = || format!("ls {path}");
        let mut all: Vec<FileInfo> = Vec::new();
        loop {
            let index =
                i32::try_from(all.len()).map_err(|_| Self::bad(&what, "too many entries"))?;
            let page = self.list_files_page(path, pattern, index, i32::MAX)?;
            let more = page.remaining > 0 || page.truncated;
            if page.files.is_empty() {
                if more {
                    return Err(Self::bad(&what, "a page brought no entries"));
                }
                break;
            }
            all.extend(page.files);
            if all.len() > MAX_LIST_ENTRIES {
                return Err(Self::bad(&what, "too many entries"));
            }
            if !more {
                break;
            }
        }
        Ok(all)
    }

    /// INITIATE_FILE_TRANSFER_FROM_GUEST: what a download would get (a
    /// regular file's attributes; directories and symlinks are refused).
    pub fn stat_for_download(&self, path: &str) -> Result<FileInfo, GuestOpsError> {
        let what = || format!("download {path}");
        let body = vix::ListFiles {
            path: path.to_string(),
            ..Default::default()
        }
        .encode();
        let text = self.call_text(op::INITIATE_FILE_TRANSFER_FROM_GUEST, &body, &what)?;
        let l = vix::FileList::parse(&text).map_err(|e| Self::bad(&what, e))?;
        l.files
            .into_iter()
            .next()
            .ok_or_else(|| Self::bad(&what, "no file entry"))
    }

    /// INITIATE_FILE_TRANSFER_TO_GUEST: check that `path` may be written.
    pub fn prepare_upload(&self, path: &str, overwrite: bool) -> Result<(), GuestOpsError> {
        let body = vix::TransferToGuest {
            options: 0,
            path: path.to_string(),
            overwrite,
        }
        .encode();
        self.call(op::INITIATE_FILE_TRANSFER_TO_GUEST, &body, false, &|| {
            format!("upload {path}")
        })?;
        Ok(())
    }

    /// CREATE_DIRECTORY_EX (`mkdir`, with `parents` `mkdir -p`).
    pub fn mkdir(&self, path: &str, parents: bool) -> Result<(), GuestOpsError> {
        let body = vix::CreateDirectory {
            file_options: 0,
            path: path.to_string(),
            create_parents: parents,
        }
        .encode();
        self.call(op::CREATE_DIRECTORY_EX, &body, false, &|| {
            format!("mkdir {path}")
        })?;
        Ok(())
    }

    /// DELETE_GUEST_FILE_EX.
    pub fn rm(&self, path: &str) -> Result<(), GuestOpsError> {
        let body = vix::DeleteFile {
            file_options: 0,
            path: path.to_string(),
        }
        .encode();
        self.call(op::DELETE_GUEST_FILE_EX, &body, false, &|| {
            format!("rm {path}")
        })?;
        Ok(())
    }

    /// DELETE_GUEST_DIRECTORY_EX (with `recursive` its contents too).
    pub fn rmdir(&self, path: &str, recursive: bool) -> Result<(), GuestOpsError> {
        let body = vix::DeleteDirectory {
            file_options: 0,
            path: path.to_string(),
            recursive,
        }
        .encode();
        self.call(op::DELETE_GUEST_DIRECTORY_EX, &body, false, &|| {
            format!("rmdir {path}")
        })?;
        Ok(())
    }

    /// MOVE_GUEST_FILE_EX, or MOVE_GUEST_DIRECTORY when `directory`.
    pub fn mv(
        &self,
        from: &str,
        to: &str,
        directory: bool,
        overwrite: bool,
    ) -> Result<(), GuestOpsError> {
        let body = vix::Move {
            options: 0,
            old_path: from.to_string(),
            new_path: to.to_string(),
            overwrite,
        }
        .encode();
        let opcode = if directory {
            op::MOVE_GUEST_DIRECTORY
        } else {
            op::MOVE_GUEST_FILE_EX
        };
        self.call(opcode, &body, false, &|| format!("mv {from} {to}"))?;
        Ok(())
    }

    /// Move `from` to `to` whatever it is: MOVE_GUEST_FILE_EX, and when the
    /// guest says it is a directory (VIX_E_NOT_A_FILE) MOVE_GUEST_DIRECTORY.
    pub fn mv_any(&self, from: &str, to: &str, overwrite: bool) -> Result<(), GuestOpsError> {
        match self.mv(from, to, false, overwrite) {
            Err(e) if e.vix_code() == Some(err::NOT_A_FILE as u16) => {
                self.mv(from, to, true, overwrite)
            }
            r => r,
        }
    }

    /// CREATE_TEMPORARY_FILE_EX or, with `directory`,
    /// CREATE_TEMPORARY_DIRECTORY: returns the new path.
    pub fn mktemp(
        &self,
        directory: bool,
        prefix: &str,
        suffix: &str,
        parent: &str,
    ) -> Result<String, GuestOpsError> {
        let body = vix::CreateTemp {
            options: 0,
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            directory: parent.to_string(),
        }
        .encode();
        let opcode = if directory {
            op::CREATE_TEMPORARY_DIRECTORY
        } else {
            op::CREATE_TEMPORARY_FILE_EX
        };
        let what = || "mktemp".to_string();
        let path = self.call_text(opcode, &body, &what)?;
        if path.is_empty() {
            return Err(Self::bad(&what, "empty path"));
        }
        Ok(path)
    }

    /// SET_GUEST_FILE_ATTRIBUTES.
    pub fn set_attributes(&self, attrs: &vix::SetAttributes) -> Result<(), GuestOpsError> {
        self.call(
            op::SET_GUEST_FILE_ATTRIBUTES,
            &attrs.encode(),
            false,
            &|| format!("chattr {}", attrs.path),
        )?;
        Ok(())
    }

    /// Upload `src` to `guest_path` (INITIATE_FILE_TRANSFER_TO_GUEST, then
    /// HGFS over opcode 84 in [`CHUNK`]-byte writes); `progress` gets the
    /// bytes sent so far. Returns the size.
    pub fn upload(
        &self,
        src: &mut dyn Read,
        guest_path: &str,
        opts: &UploadOptions,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, GuestOpsError> {
        transfer::upload(self, src, guest_path, opts, progress)
    }

    /// Download `guest_path` into `dst` (INITIATE_FILE_TRANSFER_FROM_GUEST,
    /// then HGFS reads); returns the bytes and the file's attributes.
    pub fn download(
        &self,
        guest_path: &str,
        dst: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(u64, FileInfo), GuestOpsError> {
        transfer::download(self, guest_path, dst, progress)
    }

    /// Wait for a program the tools started to end; its exit code.
    pub fn wait(&self, pid: i64, timeout: Option<Duration>) -> Result<i32, GuestOpsError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(5);
        loop {
            let procs = self.list_processes(&[pid as u64])?;
            if let Some(p) = procs.iter().find(|p| p.pid == pid) {
                if p.exited() {
                    return Ok(p.exit_code.unwrap_or(0));
                }
            } else {
                return Err(GuestOpsError::BadReply {
                    what: format!("wait for pid {pid}"),
                    detail: "the guest no longer lists the process".into(),
                });
            }
            if let Some(t) = timeout {
                if start.elapsed() >= t {
                    return Err(GuestOpsError::Timeout {
                        what: format!("wait for pid {pid}"),
                        secs: t.as_secs(),
                        pid,
                    });
                }
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// Run a program as `govc guest.run` does: two temporary files, the
    /// program started through the guest shell with `1> out 2> err`, polled
    /// until it ends, both outputs downloaded into `stdout` and `stderr`,
    /// the temporary files deleted.
    pub fn run(
        &self,
        spec: &RunSpec,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<RunOutcome, GuestOpsError> {
        let out = self.mktemp(false, "hvsim-out-", ".txt", "")?;
        let errf = match self.mktemp(false, "hvsim-err-", ".txt", "") {
            Ok(p) => p,
            Err(e) => {
                let _ = self.rm(&out);
                return Err(e);
            }
        };
        let result = self.run_with(spec, &out, &errf, stdout, stderr);
        let cleanup = self.rm(&out).and(self.rm(&errf));
        let outcome = result?;
        cleanup?;
        Ok(outcome)
    }

    fn run_with(
        &self,
        spec: &RunSpec,
        out: &str,
        errf: &str,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<RunOutcome, GuestOpsError> {
        let mut args: Vec<String> = spec.args.iter().map(|a| shell_quote(a)).collect();
        args.push(format!("1> {} 2> {}", shell_quote(out), shell_quote(errf)));
        let pid =
            self.start_program(&spec.program, &args.join(" "), &spec.working_dir, &spec.env)?;
        let exit_code = self.wait(pid, spec.timeout)?;
        self.download(out, stdout, &mut |_| {})?;
        self.download(errf, stderr, &mut |_| {})?;
        Ok(RunOutcome { pid, exit_code })
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// One trip of a LIST_PROCESSES_EX result, split on bytes (a trip may end
/// inside a multi-byte character).
enum Chunk<'a> {
    Complete(&'a [u8]),
    First {
        key: u32,
        total: usize,
        data: &'a [u8],
    },
    Next {
        left: u32,
        data: &'a [u8],
    },
}

fn split_chunk(data: &[u8]) -> Result<Chunk<'_>, vix::VixError> {
    const END: &[u8] = b"</leftToSend>";
    if !data.starts_with(b"<key>") && !data.starts_with(b"<leftToSend>") {
        return Ok(Chunk::Complete(data));
    }
    let end = data
        .windows(END.len())
        .take(256)
        .position(|w| w == END)
        .ok_or(vix::VixError::BadResult("no </leftToSend>"))?
        + END.len();
    let head = std::str::from_utf8(&data[..end])
        .map_err(|_| vix::VixError::BadResult("chunk header not ASCII"))?;
    let rest = &data[end..];
    match vix::ProcChunk::parse(head)? {
        vix::ProcChunk::First { key, total, .. } => Ok(Chunk::First {
            key,
            total: total as usize,
            data: rest,
        }),
        vix::ProcChunk::Next { left, .. } => Ok(Chunk::Next { left, data: rest }),
        vix::ProcChunk::Complete(_) => Err(vix::VixError::BadResult("bad chunk header")),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc/d.e"), "abc/d.e");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn chunks_split_on_bytes() {
        let first = b"<key>3</key><totalSize>10</totalSize><leftToSend>5</leftToSend>\xc3";
        match split_chunk(first).unwrap() {
            Chunk::First { key, total, data } => {
                assert_eq!((key, total, data), (3, 10, &b"\xc3"[..]));
            }
            _ => panic!("first"),
        }
        match split_chunk(b"<leftToSend>0</leftToSend>\xa9x").unwrap() {
            Chunk::Next { left, data } => assert_eq!((left, data), (0, &b"\xa9x"[..])),
            _ => panic!("next"),
        }
        assert!(matches!(
            split_chunk(b"<proc>").unwrap(),
            Chunk::Complete(_)
        ));
        assert!(split_chunk(b"<key>1</key>").is_err());
    }

    #[test]
    fn messages_say_what_to_do() {
        assert!(vix_message(3050, 0).contains("refused the user name or password"));
        assert!(vix_message(3025, 0).contains("no vix plugin"));
        assert!(vix_message(13 | (13u64 << 32), 13).contains("permission denied"));
        assert!(vix_message(20006, 0).contains("-r"));
    }
}
