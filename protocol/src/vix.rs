//! VIX guest-operation messages as the host sends them through TCLO
//! `Vix_1_Relayed_Command`, and the replies the guest tools give.
//!
//! Layout facts come from open-vm-tools (`lib/include/vixCommands.h`,
//! `lib/foundryMsg/foundryMsg.c`, `services/plugins/vix/vixTools.c` and
//! `foundryToolsDaemon.c`). Everything is little-endian and packed.
//!
//! A request is three regions: the 51-byte [`RequestHeader`], an
//! opcode-specific body (fixed fields, then strings), and a credential.
//! Most strings are given by a `u32` length that excludes the NUL and occupy
//! `len + 1` bytes; `START_PROGRAM` and `READ_ENV_VARIABLES` count the NUL
//! (vmtoolsd parses those with `GetOptionalString(s)`), which the body types
//! here take care of.
//!
//! The guest answers (TCLO result after `OK `) with `"<error> <additional> "`
//! and then either a NUL-terminated string or, when the request had
//! [`flags::GUEST_RETURNS_BINARY`], `#` and raw bytes ([`Reply`]).
//!
//! Every parser here bounds its lengths by the input it was given: the guest
//! is untrusted from the host's point of view, the host from the guest's.

use std::fmt::Write as _;

/// `VIX_COMMAND_MAGIC_WORD`.
pub const MAGIC: u32 = 0xd00d_0001;
/// `VIX_COMMAND_MESSAGE_VERSION`.
pub const MESSAGE_VERSION: u16 = 5;
/// Size of `VixMsgHeader`.
pub const MSG_HEADER_LEN: usize = 23;
/// Size of `VixCommandRequestHeader`.
pub const REQUEST_HEADER_LEN: usize = 51;
/// `VIX_COMMAND_MAX_SIZE`: no message may claim more.
pub const COMMAND_MAX_SIZE: usize = 16 * 1024 * 1024;
/// `VIX_COMMAND_MAX_REQUEST_SIZE`: no request may be longer.
pub const MAX_REQUEST_SIZE: usize = 65536;
/// Size of `VixMsgAuthDataV1`, appended after the credential when
/// [`request_flags::INCLUDES_AUTH_DATA_V1`] is set.
pub const AUTH_DATA_V1_LEN: usize = 12;
/// The TCLO command that carries VIX requests to the guest.
pub const TCLO_RELAYED_COMMAND: &str = "Vix_1_Relayed_Command";
/// `GUESTMSG_MAX_IN_SIZE`: the largest TCLO reply the channel carries.
pub const GUESTMSG_MAX_IN_SIZE: usize = 65536;
/// The largest result vmtoolsd puts after the `"<err> <additional> "` prefix
/// (`GUESTMSG_MAX_IN_SIZE` minus its reserved prefix room of 53 bytes).
pub const MAX_RESULT_LEN: usize = GUESTMSG_MAX_IN_SIZE - 53;

/// Opcodes (`VixAsyncOpType`) of the guest operations.
pub mod op {
    /// Probe the tools: base64 property list.
    pub const GET_TOOLS_STATE: u32 = 62;
    /// One HGFS packet relayed to the guest's HGFS server.
    pub const HGFS_SEND_PACKET: u32 = 84;
    /// List a directory (or one file).
    pub const LIST_FILES: u32 = 177;
    /// Make a directory, optionally with parents.
    pub const CREATE_DIRECTORY_EX: u32 = 178;
    /// Rename/move a file.
    pub const MOVE_GUEST_FILE_EX: u32 = 179;
    /// Rename/move a directory.
    pub const MOVE_GUEST_DIRECTORY: u32 = 180;
    /// Create a temporary file; result is its path.
    pub const CREATE_TEMPORARY_FILE_EX: u32 = 181;
    /// Create a temporary directory; result is its path.
    pub const CREATE_TEMPORARY_DIRECTORY: u32 = 182;
    /// Change times, owner, mode of a file.
    pub const SET_GUEST_FILE_ATTRIBUTES: u32 = 183;
    /// Start a program; result is its pid.
    pub const START_PROGRAM: u32 = 185;
    /// List processes, with exit codes of the ones the tools started.
    pub const LIST_PROCESSES_EX: u32 = 186;
    /// Read environment variables of the user.
    pub const READ_ENV_VARIABLES: u32 = 187;
    /// Prepare a download: result is one `<fxi>` entry.
    pub const INITIATE_FILE_TRANSFER_FROM_GUEST: u32 = 188;
    /// Prepare an upload: checks the destination.
    pub const INITIATE_FILE_TRANSFER_TO_GUEST: u32 = 189;
    /// Validate credentials only.
    pub const VALIDATE_CREDENTIALS: u32 = 192;
    /// Kill a process.
    pub const TERMINATE_PROCESS: u32 = 193;
    /// Delete a file.
    pub const DELETE_GUEST_FILE_EX: u32 = 194;
    /// Delete a directory, optionally recursively.
    pub const DELETE_GUEST_DIRECTORY_EX: u32 = 195;
}

/// VIX error codes (`VixError`, vix.h and vixOpenSource.h). The wire carries a
/// 64-bit value whose low 16 bits are the code ([`code_of`]).
pub mod err {
    /// Success.
    pub const OK: u64 = 0;
    /// Unknown failure.
    pub const FAIL: u64 = 1;
    /// Out of memory.
    pub const OUT_OF_MEMORY: u64 = 2;
    /// Invalid argument.
    pub const INVALID_ARG: u64 = 3;
    /// No such file.
    pub const FILE_NOT_FOUND: u64 = 4;
    /// Busy (e.g. file systems frozen).
    pub const OBJECT_IS_BUSY: u64 = 5;
    /// Not supported.
    pub const NOT_SUPPORTED: u64 = 6;
    /// File error.
    pub const FILE_ERROR: u64 = 7;
    /// Disk full.
    pub const DISK_FULL: u64 = 8;
    /// File already exists.
    pub const FILE_ALREADY_EXISTS: u64 = 12;
    /// Access denied on a file.
    pub const FILE_ACCESS_ERROR: u64 = 13;
    /// File name invalid.
    pub const FILE_NAME_INVALID: u64 = 22;
    /// Not valid UTF-8.
    pub const INVALID_UTF8_STRING: u64 = 27;
    /// Authentication failure.
    pub const AUTHENTICATION_FAIL: u64 = 35;
    /// Tools not running.
    pub const TOOLS_NOT_RUNNING: u64 = 3016;
    /// The guest user lacks permission.
    pub const GUEST_USER_PERMISSIONS: u64 = 3015;
    /// Guest operations prohibited.
    pub const GUEST_OPERATIONS_PROHIBITED: u64 = 3017;
    /// Cannot authenticate with guest.
    pub const CANNOT_AUTHENTICATE_WITH_GUEST: u64 = 3024;
    /// The guest does not know the opcode.
    pub const UNRECOGNIZED_COMMAND_IN_GUEST: u64 = 3025;
    /// Credential type not supported.
    pub const LOGIN_TYPE_NOT_SUPPORTED: u64 = 3032;
    /// Wrong user name or password.
    pub const INVALID_LOGIN_CREDENTIALS: u64 = 3050;
    /// Malformed message header.
    pub const INVALID_MESSAGE_HEADER: u64 = 10000;
    /// Malformed message body.
    pub const INVALID_MESSAGE_BODY: u64 = 10001;
    /// Not a regular file.
    pub const NOT_A_FILE: u64 = 20001;
    /// Not a directory.
    pub const NOT_A_DIRECTORY: u64 = 20002;
    /// No such process.
    pub const NO_SUCH_PROCESS: u64 = 20003;
    /// File name too long.
    pub const FILE_NAME_TOO_LONG: u64 = 20004;
    /// Operation disabled by configuration.
    pub const OPERATION_DISABLED: u64 = 20005;
    /// Directory not empty.
    pub const DIRECTORY_NOT_EMPTY: u64 = 20006;
}

/// The VIX error code in a 64-bit wire error (`VIX_ERROR_CODE`).
pub fn code_of(error: u64) -> u16 {
    (error & 0xffff) as u16
}

/// `commonFlags` bits (`VixCommonCommandOptionValues`).
pub mod flags {
    /// The message is a request.
    pub const REQUEST: u8 = 0x01;
    /// Report an event.
    pub const REPORT_EVENT: u8 = 0x02;
    /// Forward to the guest.
    pub const FORWARD_TO_GUEST: u8 = 0x04;
    /// The guest returns a string.
    pub const GUEST_RETURNS_STRING: u8 = 0x08;
    /// The guest returns an integer as a string.
    pub const GUEST_RETURNS_INTEGER_STRING: u8 = 0x10;
    /// The guest returns a property list.
    pub const GUEST_RETURNS_PROPERTY_LIST: u8 = 0x40;
    /// The guest returns `#` then binary data.
    pub const GUEST_RETURNS_BINARY: u8 = 0x80;
}

/// `requestFlags` bits.
pub mod request_flags {
    /// A `VixMsgAuthDataV1` follows the credential.
    pub const INCLUDES_AUTH_DATA_V1: u32 = 0x010;
    /// Escape XML data in results.
    pub const ESCAPE_XML_DATA: u32 = 0x040;
}

/// User credential types (`VIX_USER_CREDENTIAL_*`).
pub mod cred {
    /// No credential.
    pub const NONE: u32 = 0;
    /// Name and password.
    pub const NAME_PASSWORD: u32 = 1;
    /// Anonymous.
    pub const ANONYMOUS: u32 = 2;
    /// Root.
    pub const ROOT: u32 = 3;
    /// Name and password, obfuscated (same encoding as type 1).
    pub const NAME_PASSWORD_OBFUSCATED: u32 = 4;
    /// Console user.
    pub const CONSOLE_USER: u32 = 5;
    /// Ticketed session.
    pub const TICKETED_SESSION: u32 = 9;
    /// SSPI.
    pub const SSPI: u32 = 10;
    /// SAML bearer token.
    pub const SAML_BEARER_TOKEN: u32 = 11;
    /// SAML bearer token verified by the host.
    pub const SAML_BEARER_TOKEN_HOST_VERIFIED: u32 = 12;
}

/// File type flags in `<ft>` (`VIX_FILE_ATTRIBUTES_*`).
pub mod file_attr {
    /// A directory.
    pub const DIRECTORY: u32 = 0x0001;
    /// A symbolic link.
    pub const SYMLINK: u32 = 0x0002;
    /// Hidden.
    pub const HIDDEN: u32 = 0x0004;
    /// Read-only.
    pub const READONLY: u32 = 0x0008;
}

/// `fileOptions` of SET_GUEST_FILE_ATTRIBUTES (`VIX_FILE_ATTRIBUTE_SET_*`).
pub mod set_attr {
    /// Set the access time.
    pub const ACCESS_DATE: i32 = 0x0001;
    /// Set the modification time.
    pub const MODIFY_DATE: i32 = 0x0002;
    /// Set read-only.
    pub const READONLY: i32 = 0x0004;
    /// Set hidden.
    pub const HIDDEN: i32 = 0x0008;
    /// Set the owner.
    pub const UNIX_OWNERID: i32 = 0x0010;
    /// Set the group.
    pub const UNIX_GROUPID: i32 = 0x0020;
    /// Set the permission bits.
    pub const UNIX_PERMISSIONS: i32 = 0x0040;
}

/// Property ids and types of the GET_TOOLS_STATE property list.
///
/// Despite their names, vmtoolsd 12.2 sets the `GUEST_*_ENABLED` booleans
/// (4540-4568) to whether the operation is *disabled* in tools.conf
/// (`VixToolsComputeEnabledProperty` returns `VixToolsGetAPIDisabledFromConf`):
/// `false` means available. govmomi's toolbox sends `true`.
pub mod prop {
    /// `VIX_PROPERTYTYPE_INTEGER`.
    pub const TYPE_INTEGER: i32 = 1;
    /// `VIX_PROPERTYTYPE_STRING`.
    pub const TYPE_STRING: i32 = 2;
    /// `VIX_PROPERTYTYPE_BOOL`.
    pub const TYPE_BOOL: i32 = 3;
    /// `VIX_PROPERTYTYPE_INT64`.
    pub const TYPE_INT64: i32 = 5;
    /// `VIX_PROPERTYTYPE_BLOB`.
    pub const TYPE_BLOB: i32 = 6;
    /// Tools version string.
    pub const GUEST_TOOLS_VERSION: i32 = 4500;
    /// Tools API options.
    pub const GUEST_TOOLS_API_OPTIONS: i32 = 4501;
    /// Guest OS family.
    pub const GUEST_OS_FAMILY: i32 = 4502;
    /// Guest OS version.
    pub const GUEST_OS_VERSION: i32 = 4503;
    /// Guest host name.
    pub const GUEST_NAME: i32 = 4505;
    /// Tools product name.
    pub const GUEST_TOOLS_PRODUCT_NAME: i32 = 4511;
    /// Guest OS version, short.
    pub const GUEST_OS_VERSION_SHORT: i32 = 4520;
    /// StartProgram enabled.
    pub const GUEST_START_PROGRAM_ENABLED: i32 = 4540;
    /// ListProcesses enabled.
    pub const GUEST_LIST_PROCESSES_ENABLED: i32 = 4541;
    /// TerminateProcess enabled.
    pub const GUEST_TERMINATE_PROCESS_ENABLED: i32 = 4542;
    /// ReadEnvironmentVariable enabled.
    pub const GUEST_READ_ENVIRONMENT_VARIABLE_ENABLED: i32 = 4543;
    /// MakeDirectory enabled.
    pub const GUEST_MAKE_DIRECTORY_ENABLED: i32 = 4547;
    /// DeleteFile enabled.
    pub const GUEST_DELETE_FILE_ENABLED: i32 = 4548;
    /// DeleteDirectory enabled.
    pub const GUEST_DELETE_DIRECTORY_ENABLED: i32 = 4549;
    /// MoveDirectory enabled.
    pub const GUEST_MOVE_DIRECTORY_ENABLED: i32 = 4550;
    /// MoveFile enabled.
    pub const GUEST_MOVE_FILE_ENABLED: i32 = 4551;
    /// CreateTempFile enabled.
    pub const GUEST_CREATE_TEMP_FILE_ENABLED: i32 = 4552;
    /// CreateTempDirectory enabled.
    pub const GUEST_CREATE_TEMP_DIRECTORY_ENABLED: i32 = 4553;
    /// ListFiles enabled.
    pub const GUEST_LIST_FILES_ENABLED: i32 = 4554;
    /// ChangeFileAttributes enabled.
    pub const GUEST_CHANGE_FILE_ATTRIBUTES_ENABLED: i32 = 4555;
    /// InitiateFileTransferFromGuest enabled.
    pub const GUEST_INITIATE_FILE_TRANSFER_FROM_GUEST_ENABLED: i32 = 4556;
    /// InitiateFileTransferToGuest enabled.
    pub const GUEST_INITIATE_FILE_TRANSFER_TO_GUEST_ENABLED: i32 = 4557;
}

/// Why a VIX message or reply did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VixError {
    /// Header inconsistent (magic, version, lengths, size limits).
    #[error("invalid VIX message header: {0}")]
    BadHeader(&'static str),
    /// Body too short, string not NUL-terminated, lengths wrong.
    #[error("invalid VIX message body: {0}")]
    BadBody(&'static str),
    /// A string is not UTF-8.
    #[error("string in VIX message is not UTF-8")]
    BadUtf8,
    /// The credential region does not decode.
    #[error("invalid VIX credential: {0}")]
    BadCredential(&'static str),
    /// The credential type is not name/password.
    #[error("unsupported VIX credential type {0}")]
    UnsupportedCredential(u32),
    /// The reply of the guest does not have the `"<err> <additional> "` form.
    #[error("invalid VIX reply from the guest: {0}")]
    BadReply(&'static str),
    /// A result (XML, property list) does not parse.
    #[error("invalid VIX result: {0}")]
    BadResult(&'static str),
    /// A value does not fit into a message.
    #[error("VIX message too large: {0}")]
    TooLarge(&'static str),
}

impl VixError {
    /// The VIX error number a guest answers for this parse failure.
    pub fn code(&self) -> u64 {
        match self {
            VixError::BadHeader(_) => err::INVALID_MESSAGE_HEADER,
            VixError::BadBody(_) | VixError::BadResult(_) | VixError::BadReply(_) => {
                err::INVALID_MESSAGE_BODY
            }
            VixError::BadUtf8 => err::INVALID_UTF8_STRING,
            VixError::BadCredential(_) => err::INVALID_MESSAGE_BODY,
            VixError::UnsupportedCredential(_) => err::LOGIN_TYPE_NOT_SUPPORTED,
            VixError::TooLarge(_) => err::INVALID_ARG,
        }
    }
}

/// A short, human description of a VIX error code.
pub fn error_name(error: u64) -> &'static str {
    match u64::from(code_of(error)) {
        err::OK => "OK",
        err::FAIL => "unknown failure",
        err::OUT_OF_MEMORY => "out of memory",
        err::INVALID_ARG => "invalid argument",
        err::FILE_NOT_FOUND => "file not found",
        err::OBJECT_IS_BUSY => "busy",
        err::NOT_SUPPORTED => "not supported",
        err::FILE_ERROR => "file error",
        err::DISK_FULL => "disk full",
        err::FILE_ALREADY_EXISTS => "file already exists",
        err::FILE_ACCESS_ERROR => "permission denied",
        err::FILE_NAME_INVALID => "invalid file name",
        err::INVALID_UTF8_STRING => "string is not UTF-8",
        err::AUTHENTICATION_FAIL => "authentication failed",
        err::GUEST_USER_PERMISSIONS => "the guest user lacks permission",
        err::TOOLS_NOT_RUNNING => "tools not running",
        err::GUEST_OPERATIONS_PROHIBITED => "guest operations prohibited",
        err::CANNOT_AUTHENTICATE_WITH_GUEST => "cannot authenticate with the guest",
        err::UNRECOGNIZED_COMMAND_IN_GUEST => "command not recognized by the guest",
        err::LOGIN_TYPE_NOT_SUPPORTED => "login type not supported",
        err::INVALID_LOGIN_CREDENTIALS => "invalid user name or password",
        err::INVALID_MESSAGE_HEADER => "invalid message header",
        err::INVALID_MESSAGE_BODY => "invalid message body",
        err::NOT_A_FILE => "not a file",
        err::NOT_A_DIRECTORY => "not a directory",
        err::NO_SUCH_PROCESS => "no such process",
        err::FILE_NAME_TOO_LONG => "file name too long",
        err::OPERATION_DISABLED => "operation disabled in the guest",
        err::DIRECTORY_NOT_EMPTY => "directory not empty",
        _ => "VIX error",
    }
}

// ---------------------------------------------------------------------------
// Little-endian cursor helpers.

/// Reads fixed fields and strings out of a body, bounded by its length.
#[derive(Debug)]
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], VixError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(VixError::BadBody("message too short"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, VixError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, VixError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or_default(),
        ))
    }

    fn i32(&mut self) -> Result<i32, VixError> {
        Ok(self.u32()? as i32)
    }

    fn u64(&mut self) -> Result<u64, VixError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or_default(),
        ))
    }

    fn i64(&mut self) -> Result<i64, VixError> {
        Ok(self.u64()? as i64)
    }

    fn u16(&mut self) -> Result<u16, VixError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or_default(),
        ))
    }

    /// A string of `len` characters followed by a NUL (`GetString`).
    fn string(&mut self, len: u32) -> Result<String, VixError> {
        let raw = self.take(
            (len as usize)
                .checked_add(1)
                .ok_or(VixError::BadBody("string too long"))?,
        )?;
        let (text, nul) = raw.split_at(raw.len() - 1);
        if nul[0] != 0 || text.contains(&0) {
            return Err(VixError::BadBody("string length does not match its NUL"));
        }
        String::from_utf8(text.to_vec()).map_err(|_| VixError::BadUtf8)
    }

    /// A string whose length counts its NUL; 0 means absent
    /// (`GetOptionalString`). The NUL may come before the end of the region.
    fn optional_string(&mut self, len: u32) -> Result<String, VixError> {
        if len == 0 {
            return Ok(String::new());
        }
        let raw = self.take(len as usize)?;
        let end = raw
            .iter()
            .position(|&b| b == 0)
            .ok_or(VixError::BadBody("string not NUL-terminated"))?;
        String::from_utf8(raw[..end].to_vec()).map_err(|_| VixError::BadUtf8)
    }

    /// `count` NUL-terminated strings filling exactly `len` bytes
    /// (`GetOptionalStrings`).
    fn strings(&mut self, count: u32, len: u32) -> Result<Vec<String>, VixError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut raw = self.take(len as usize)?;
        let mut out = Vec::new();
        for _ in 0..count {
            let end = raw
                .iter()
                .position(|&b| b == 0)
                .ok_or(VixError::BadBody("string list not NUL-terminated"))?;
            out.push(String::from_utf8(raw[..end].to_vec()).map_err(|_| VixError::BadUtf8)?);
            raw = &raw[end + 1..];
        }
        if !raw.is_empty() {
            return Err(VixError::BadBody("trailing bytes after string list"));
        }
        Ok(out)
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn len32(s: &str) -> u32 {
    u32::try_from(s.len()).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------
// Header and request.

/// `VixCommandRequestHeader` (which starts with `VixMsgHeader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestHeader {
    /// `totalMessageLength`: header + body + credential (+ auth data).
    pub total_len: u32,
    /// `headerLength`: 51 for requests.
    pub header_len: u32,
    /// `bodyLength`.
    pub body_len: u32,
    /// `credentialLength`.
    pub credential_len: u32,
    /// `commonFlags` ([`flags`]).
    pub common_flags: u8,
    /// `opCode` ([`op`]).
    pub opcode: u32,
    /// `requestFlags` ([`request_flags`]).
    pub request_flags: u32,
    /// `timeOut`.
    pub timeout: u32,
    /// `cookie`: chosen by the host, identifies the request.
    pub cookie: u64,
    /// `clientHandleId`.
    pub client_handle_id: u32,
    /// `userCredentialType` ([`cred`]).
    pub credential_type: u32,
}

impl RequestHeader {
    /// Append the 51 header bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, MAGIC);
        out.extend_from_slice(&MESSAGE_VERSION.to_le_bytes());
        put_u32(out, self.total_len);
        put_u32(out, self.header_len);
        put_u32(out, self.body_len);
        put_u32(out, self.credential_len);
        out.push(self.common_flags);
        put_u32(out, self.opcode);
        put_u32(out, self.request_flags);
        put_u32(out, self.timeout);
        put_u64(out, self.cookie);
        put_u32(out, self.client_handle_id);
        put_u32(out, self.credential_type);
    }

    /// Decode and validate the header at the start of `msg` the way vmtoolsd
    /// does (`VixMsg_ValidateRequestMsg` and the parser init): magic,
    /// version, request flag, header length 51, lengths adding up to the
    /// total, total within [`MAX_REQUEST_SIZE`] and within `msg`.
    pub fn decode(msg: &[u8]) -> Result<Self, VixError> {
        if msg.len() < REQUEST_HEADER_LEN {
            return Err(VixError::BadHeader("shorter than a request header"));
        }
        let mut c = Cursor::new(msg);
        let magic = c.u32()?;
        let version = c.u16()?;
        let h = RequestHeader {
            total_len: c.u32()?,
            header_len: c.u32()?,
            body_len: c.u32()?,
            credential_len: c.u32()?,
            common_flags: c.u8()?,
            opcode: c.u32()?,
            request_flags: c.u32()?,
            timeout: c.u32()?,
            cookie: c.u64()?,
            client_handle_id: c.u32()?,
            credential_type: c.u32()?,
        };
        if magic != MAGIC {
            return Err(VixError::BadHeader("bad magic"));
        }
        if version != MESSAGE_VERSION {
            return Err(VixError::BadHeader("unsupported message version"));
        }
        if h.header_len as usize != REQUEST_HEADER_LEN {
            return Err(VixError::BadHeader("header length is not 51"));
        }
        if h.total_len as usize > MAX_REQUEST_SIZE {
            return Err(VixError::BadHeader("request larger than 64 KiB"));
        }
        if h.common_flags & flags::REQUEST == 0 {
            return Err(VixError::BadHeader("request flag not set"));
        }
        let extra = if h.request_flags & request_flags::INCLUDES_AUTH_DATA_V1 != 0 {
            AUTH_DATA_V1_LEN as u64
        } else {
            0
        };
        let computed =
            u64::from(h.header_len) + u64::from(h.body_len) + u64::from(h.credential_len) + extra;
        if computed != u64::from(h.total_len) {
            return Err(VixError::BadHeader("lengths do not add up to the total"));
        }
        if h.total_len as usize > msg.len() {
            return Err(VixError::BadHeader("message shorter than its total length"));
        }
        Ok(h)
    }
}

/// A validated request: header, body and credential regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The header.
    pub header: RequestHeader,
    /// The opcode-specific body.
    pub body: &'a [u8],
    /// The credential region (for name/password: [`Credential::encode`]).
    pub credential: &'a [u8],
}

impl<'a> Request<'a> {
    /// Validate `msg` ([`RequestHeader::decode`]) and split it into regions.
    pub fn parse(msg: &'a [u8]) -> Result<Self, VixError> {
        let header = RequestHeader::decode(msg)?;
        let body_start = REQUEST_HEADER_LEN;
        let body_end = body_start + header.body_len as usize;
        let cred_end = body_end + header.credential_len as usize;
        Ok(Request {
            header,
            body: &msg[body_start..body_end],
            credential: &msg[body_end..cred_end],
        })
    }

    /// Whether the reply must be `#` + binary.
    pub fn returns_binary(&self) -> bool {
        self.header.common_flags & flags::GUEST_RETURNS_BINARY != 0
    }

    /// Decode the credential region according to the header's type.
    pub fn credential(&self) -> Result<Credential, VixError> {
        Credential::decode(self.header.credential_type, self.credential)
    }
}

/// Build a complete request message: header, `body`, `credential`.
///
/// `common_flags` gets [`flags::REQUEST`] added; pass
/// [`flags::GUEST_RETURNS_BINARY`] for opcode 84.
pub fn build_request(
    opcode: u32,
    common_flags: u8,
    cookie: u64,
    credential: &Credential,
    body: &[u8],
) -> Result<Vec<u8>, VixError> {
    let (credential_type, cred) = credential.encode();
    let total = REQUEST_HEADER_LEN + body.len() + cred.len();
    if total > MAX_REQUEST_SIZE {
        return Err(VixError::TooLarge("request larger than 64 KiB"));
    }
    let header = RequestHeader {
        total_len: total as u32,
        header_len: REQUEST_HEADER_LEN as u32,
        body_len: body.len() as u32,
        credential_len: cred.len() as u32,
        common_flags: common_flags | flags::REQUEST,
        opcode,
        request_flags: 0,
        timeout: 0,
        cookie,
        client_handle_id: 0,
        credential_type,
    };
    let mut out = Vec::with_capacity(total);
    header.encode(&mut out);
    out.extend_from_slice(body);
    out.extend_from_slice(&cred);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Credentials.

/// A user credential as the VMX sends it.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credential (GET_TOOLS_STATE).
    None,
    /// Name and password, type 1 ([`cred::NAME_PASSWORD`]) or 4
    /// ([`cred::NAME_PASSWORD_OBFUSCATED`]); both are encoded alike.
    NamePassword {
        /// The credential type, 1 or 4.
        kind: u32,
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::NamePassword { kind, user, .. } => f
                .debug_struct("NamePassword")
                .field("kind", kind)
                .field("user", user)
                .field("password", &"<hidden>")
                .finish(),
        }
    }
}

impl Credential {
    /// A type 1 name/password credential.
    pub fn name_password(user: &str, password: &str) -> Self {
        Credential::NamePassword {
            kind: cred::NAME_PASSWORD,
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// The credential type and the credential region:
    /// `{u32 nameLength, u32 passwordLength}`, the obfuscated string, NUL.
    pub fn encode(&self) -> (u32, Vec<u8>) {
        match self {
            Credential::None => (cred::NONE, Vec::new()),
            Credential::NamePassword {
                kind,
                user,
                password,
            } => {
                let mut out = Vec::new();
                put_u32(&mut out, len32(user));
                put_u32(&mut out, len32(password));
                out.extend_from_slice(obfuscate_name_password(user, password).as_bytes());
                out.push(0);
                (*kind, out)
            }
        }
    }

    /// Decode a credential region of the given type.
    pub fn decode(kind: u32, region: &[u8]) -> Result<Self, VixError> {
        match kind {
            cred::NONE => Ok(Credential::None),
            cred::NAME_PASSWORD | cred::NAME_PASSWORD_OBFUSCATED => {
                let mut c = Cursor::new(region);
                let _name_len = c
                    .u32()
                    .map_err(|_| VixError::BadCredential("region too short"))?;
                let _password_len = c
                    .u32()
                    .map_err(|_| VixError::BadCredential("region too short"))?;
                let rest = &region[8..];
                let end = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(VixError::BadCredential("not NUL-terminated"))?;
                let text = std::str::from_utf8(&rest[..end])
                    .map_err(|_| VixError::BadCredential("not ASCII"))?;
                let (user, password) = deobfuscate_name_password(text)?;
                Ok(Credential::NamePassword {
                    kind,
                    user,
                    password,
                })
            }
            other => Err(VixError::UnsupportedCredential(other)),
        }
    }
}

/// The characters vmtoolsd escapes after base64 (`\`, `'`, `"`, space, CR,
/// LF, tab) and the digit each becomes after a backslash.
const OBFUSCATION_MAP: [(u8, u8); 7] = [
    (b'\\', b'1'),
    (b'\'', b'2'),
    (b'"', b'3'),
    (b' ', b'4'),
    (b'\r', b'5'),
    (b'\n', b'6'),
    (b'\t', b'7'),
];

/// `VixMsg_ObfuscateNamePassword`: base64 of `name\0password\0`, with the
/// escape rules (which never trigger on base64 output). Not encryption.
pub fn obfuscate_name_password(user: &str, password: &str) -> String {
    let mut packed = Vec::with_capacity(user.len() + password.len() + 2);
    packed.extend_from_slice(user.as_bytes());
    packed.push(0);
    packed.extend_from_slice(password.as_bytes());
    packed.push(0);
    escape_obfuscated(&base64_encode(&packed))
}

fn escape_obfuscated(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match OBFUSCATION_MAP.iter().find(|(p, _)| *p == b) {
            Some((_, e)) => {
                out.push('\\');
                out.push(*e as char);
            }
            None => out.push(b as char),
        }
    }
    out
}

/// `VixMsg_DeObfuscateNamePassword`: the inverse of
/// [`obfuscate_name_password`].
pub fn deobfuscate_name_password(s: &str) -> Result<(String, String), VixError> {
    let mut plain = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'\\' {
            let e = bytes
                .next()
                .ok_or(VixError::BadCredential("dangling escape"))?;
            let (p, _) = OBFUSCATION_MAP
                .iter()
                .find(|(_, x)| *x == e)
                .ok_or(VixError::BadCredential("unknown escape"))?;
            plain.push(*p);
        } else {
            plain.push(b);
        }
    }
    let decoded = base64_decode(&plain).ok_or(VixError::BadCredential("not base64"))?;
    let mut parts = decoded.splitn(3, |&b| b == 0);
    let user = parts.next().unwrap_or_default();
    let password = parts
        .next()
        .ok_or(VixError::BadCredential("no NUL after the user name"))?;
    let user = String::from_utf8(user.to_vec()).map_err(|_| VixError::BadUtf8)?;
    let password = String::from_utf8(password.to_vec()).map_err(|_| VixError::BadUtf8)?;
    Ok((user, password))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 decoding; padding optional, whitespace refused.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let text = match text.iter().position(|&b| b == b'=') {
        Some(p) => {
            if text[p..].iter().any(|&b| b != b'=') || text.len() - p > 2 {
                return None;
            }
            &text[..p]
        }
        None => text,
    };
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in text {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Request bodies.

/// Body of LIST_FILES (177) and INITIATE_FILE_TRANSFER_FROM_GUEST (188):
/// `VixMsgListFilesRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListFiles {
    /// `fileOptions`.
    pub file_options: i32,
    /// Directory or file to list.
    pub path: String,
    /// Regular-expression filter; empty for none.
    pub pattern: String,
    /// First entry to return (paging).
    pub index: i32,
    /// Most entries to return; 0 for no limit.
    pub max_results: i32,
    /// `offset` (unused by vmtoolsd's ListFiles paging, which uses index).
    pub offset: u64,
}

impl ListFiles {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i32(&mut out, self.file_options);
        put_u32(&mut out, len32(&self.path));
        put_u32(&mut out, len32(&self.pattern));
        put_i32(&mut out, self.index);
        put_i32(&mut out, self.max_results);
        put_u64(&mut out, self.offset);
        put_str(&mut out, &self.path);
        if !self.pattern.is_empty() {
            put_str(&mut out, &self.pattern);
        }
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let file_options = c.i32()?;
        let path_len = c.u32()?;
        let pattern_len = c.u32()?;
        let index = c.i32()?;
        let max_results = c.i32()?;
        let offset = c.u64()?;
        let path = c.string(path_len)?;
        let pattern = if pattern_len > 0 {
            c.string(pattern_len)?
        } else {
            String::new()
        };
        Ok(ListFiles {
            file_options,
            path,
            pattern,
            index,
            max_results,
            offset,
        })
    }
}

/// Body of CREATE_DIRECTORY_EX (178): `VixMsgCreateFileRequestEx`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateDirectory {
    /// `fileOptions`.
    pub file_options: i32,
    /// Directory to create.
    pub path: String,
    /// Create missing parents (`mkdir -p`).
    pub create_parents: bool,
}

impl CreateDirectory {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i32(&mut out, self.file_options);
        put_u32(&mut out, len32(&self.path));
        put_u32(&mut out, 0);
        out.push(u8::from(self.create_parents));
        put_str(&mut out, &self.path);
        out
    }

    /// Decode the body (the property list region is skipped).
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let file_options = c.i32()?;
        let path_len = c.u32()?;
        let _props_len = c.u32()?;
        let create_parents = c.u8()? != 0;
        let path = c.string(path_len)?;
        Ok(CreateDirectory {
            file_options,
            path,
            create_parents,
        })
    }
}

/// Body of MOVE_GUEST_FILE_EX (179) and MOVE_GUEST_DIRECTORY (180):
/// `VixCommandRenameFileRequestEx`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Move {
    /// `copyFileOptions`.
    pub options: i32,
    /// Source path.
    pub old_path: String,
    /// Destination path.
    pub new_path: String,
    /// Replace an existing destination.
    pub overwrite: bool,
}

impl Move {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i32(&mut out, self.options);
        put_u32(&mut out, len32(&self.old_path));
        put_u32(&mut out, len32(&self.new_path));
        put_u32(&mut out, 0);
        out.push(u8::from(self.overwrite));
        put_str(&mut out, &self.old_path);
        put_str(&mut out, &self.new_path);
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let options = c.i32()?;
        let old_len = c.u32()?;
        let new_len = c.u32()?;
        let _props_len = c.u32()?;
        let overwrite = c.u8()? != 0;
        let old_path = c.string(old_len)?;
        let new_path = c.string(new_len)?;
        Ok(Move {
            options,
            old_path,
            new_path,
            overwrite,
        })
    }
}

/// Body of CREATE_TEMPORARY_FILE_EX (181) and CREATE_TEMPORARY_DIRECTORY
/// (182): `VixMsgCreateTempFileRequestEx`. All three strings are present
/// (possibly empty); an empty directory means the system temp directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTemp {
    /// `options`.
    pub options: i32,
    /// Name prefix.
    pub prefix: String,
    /// Name suffix.
    pub suffix: String,
    /// Directory to create it in; empty for the default.
    pub directory: String,
}

impl CreateTemp {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i32(&mut out, self.options);
        put_u32(&mut out, len32(&self.prefix));
        put_u32(&mut out, len32(&self.suffix));
        put_u32(&mut out, len32(&self.directory));
        put_u32(&mut out, 0);
        put_str(&mut out, &self.prefix);
        put_str(&mut out, &self.suffix);
        put_str(&mut out, &self.directory);
        out
    }

    /// Decode the body; as vmtoolsd, the lengths must account for the body
    /// exactly (property list last).
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let options = c.i32()?;
        let prefix_len = c.u32()?;
        let suffix_len = c.u32()?;
        let dir_len = c.u32()?;
        let props_len = c.u32()?;
        let expected = 20u64
            + u64::from(prefix_len)
            + u64::from(suffix_len)
            + u64::from(dir_len)
            + 3
            + u64::from(props_len);
        if expected != body.len() as u64 {
            return Err(VixError::BadBody("temporary file lengths do not match"));
        }
        let prefix = c.string(prefix_len)?;
        let suffix = c.string(suffix_len)?;
        let directory = c.string(dir_len)?;
        Ok(CreateTemp {
            options,
            prefix,
            suffix,
            directory,
        })
    }
}

/// Body of SET_GUEST_FILE_ATTRIBUTES (183):
/// `VixMsgSetGuestFileAttributesRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetAttributes {
    /// Which fields apply ([`set_attr`]).
    pub file_options: i32,
    /// Access time, seconds since the epoch.
    pub access_time: i64,
    /// Modification time, seconds since the epoch.
    pub modification_time: i64,
    /// Owner uid.
    pub owner_id: i32,
    /// Group gid.
    pub group_id: i32,
    /// Permission bits.
    pub permissions: i32,
    /// Hidden (Windows).
    pub hidden: bool,
    /// Read-only.
    pub read_only: bool,
    /// File to change.
    pub path: String,
}

impl SetAttributes {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i32(&mut out, self.file_options);
        put_i64(&mut out, self.access_time);
        put_i64(&mut out, self.modification_time);
        put_i32(&mut out, self.owner_id);
        put_i32(&mut out, self.group_id);
        put_i32(&mut out, self.permissions);
        out.push(u8::from(self.hidden));
        out.push(u8::from(self.read_only));
        put_u32(&mut out, len32(&self.path));
        put_str(&mut out, &self.path);
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let file_options = c.i32()?;
        let access_time = c.i64()?;
        let modification_time = c.i64()?;
        let owner_id = c.i32()?;
        let group_id = c.i32()?;
        let permissions = c.i32()?;
        let hidden = c.u8()? != 0;
        let read_only = c.u8()? != 0;
        let path_len = c.u32()?;
        let path = c.string(path_len)?;
        Ok(SetAttributes {
            file_options,
            access_time,
            modification_time,
            owner_id,
            group_id,
            permissions,
            hidden,
            read_only,
            path,
        })
    }
}

/// Body of START_PROGRAM (185): `VixMsgStartProgramRequest`. The three
/// string lengths count their NUL (0 = absent), the environment is
/// `numEnvVars` NUL-terminated `NAME=VALUE` strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartProgram {
    /// `startMinimized` (Windows).
    pub start_minimized: bool,
    /// Program path.
    pub program: String,
    /// Arguments, one string as a shell would see it.
    pub arguments: String,
    /// Working directory; empty for the user's home.
    pub working_dir: String,
    /// Environment as `NAME=VALUE`.
    pub env: Vec<String>,
}

impl StartProgram {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let opt = |s: &str| if s.is_empty() { 0 } else { len32(s) + 1 };
        let env_len: usize = self.env.iter().map(|e| e.len() + 1).sum();
        let mut out = Vec::new();
        out.push(u8::from(self.start_minimized));
        put_u32(&mut out, opt(&self.program));
        put_u32(&mut out, opt(&self.arguments));
        put_u32(&mut out, opt(&self.working_dir));
        put_u32(&mut out, u32::try_from(self.env.len()).unwrap_or(u32::MAX));
        put_u32(&mut out, u32::try_from(env_len).unwrap_or(u32::MAX));
        for s in [&self.program, &self.arguments, &self.working_dir] {
            if !s.is_empty() {
                put_str(&mut out, s);
            }
        }
        for e in &self.env {
            put_str(&mut out, e);
        }
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let start_minimized = c.u8()? != 0;
        let program_len = c.u32()?;
        let args_len = c.u32()?;
        let cwd_len = c.u32()?;
        let num_env = c.u32()?;
        let env_len = c.u32()?;
        let program = c.optional_string(program_len)?;
        let arguments = c.optional_string(args_len)?;
        let working_dir = c.optional_string(cwd_len)?;
        let env = c.strings(num_env, env_len)?;
        Ok(StartProgram {
            start_minimized,
            program,
            arguments,
            working_dir,
            env,
        })
    }
}

/// Body of LIST_PROCESSES_EX (186): `VixMsgListProcessesExRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListProcesses {
    /// 0 on the first trip; the `<key>` of a multi-trip result after.
    pub key: u32,
    /// Offset into the cached result for the next trip.
    pub offset: u32,
    /// Only these pids; empty for all.
    pub pids: Vec<u64>,
}

impl ListProcesses {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u32(&mut out, self.key);
        put_u32(&mut out, self.offset);
        put_u32(&mut out, u32::try_from(self.pids.len()).unwrap_or(u32::MAX));
        for p in &self.pids {
            put_u64(&mut out, *p);
        }
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let key = c.u32()?;
        let offset = c.u32()?;
        let n = c.u32()?;
        if (n as usize).saturating_mul(8) > body.len() - 12 {
            return Err(VixError::BadBody("more pids than the body holds"));
        }
        let pids = (0..n).map(|_| c.u64()).collect::<Result<_, _>>()?;
        Ok(ListProcesses { key, offset, pids })
    }
}

/// Body of READ_ENV_VARIABLES (187):
/// `VixMsgReadEnvironmentVariablesRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadEnv {
    /// Names to read; empty for the whole environment.
    pub names: Vec<String>,
}

impl ReadEnv {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let len: usize = self.names.iter().map(|e| e.len() + 1).sum();
        let mut out = Vec::new();
        put_u32(
            &mut out,
            u32::try_from(self.names.len()).unwrap_or(u32::MAX),
        );
        put_u32(&mut out, u32::try_from(len).unwrap_or(u32::MAX));
        for n in &self.names {
            put_str(&mut out, n);
        }
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let n = c.u32()?;
        let len = c.u32()?;
        Ok(ReadEnv {
            names: c.strings(n, len)?,
        })
    }
}

/// Body of INITIATE_FILE_TRANSFER_TO_GUEST (189):
/// `VixCommandInitiateFileTransferToGuestRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransferToGuest {
    /// `options` (file attribute flags).
    pub options: i32,
    /// Destination path.
    pub path: String,
    /// Replace an existing file.
    pub overwrite: bool,
}

impl TransferToGuest {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i32(&mut out, self.options);
        put_u32(&mut out, len32(&self.path));
        out.push(u8::from(self.overwrite));
        put_str(&mut out, &self.path);
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let options = c.i32()?;
        let len = c.u32()?;
        let overwrite = c.u8()? != 0;
        let path = c.string(len)?;
        Ok(TransferToGuest {
            options,
            path,
            overwrite,
        })
    }
}

/// Body of TERMINATE_PROCESS (193): `VixCommandKillProcessRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TerminateProcess {
    /// Process id.
    pub pid: u64,
    /// `options`.
    pub options: u32,
}

impl TerminateProcess {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_u64(&mut out, self.pid);
        put_u32(&mut out, self.options);
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        Ok(TerminateProcess {
            pid: c.u64()?,
            options: c.u32()?,
        })
    }
}

/// Body of DELETE_GUEST_FILE_EX (194): `VixMsgSimpleFileRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteFile {
    /// `fileOptions`.
    pub file_options: i32,
    /// File to delete.
    pub path: String,
}

impl DeleteFile {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i32(&mut out, self.file_options);
        put_u32(&mut out, len32(&self.path));
        put_str(&mut out, &self.path);
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let file_options = c.i32()?;
        let len = c.u32()?;
        Ok(DeleteFile {
            file_options,
            path: c.string(len)?,
        })
    }
}

/// Body of DELETE_GUEST_DIRECTORY_EX (195): `VixMsgDeleteDirectoryRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteDirectory {
    /// `fileOptions`.
    pub file_options: i32,
    /// Directory to delete.
    pub path: String,
    /// Delete its contents too.
    pub recursive: bool,
}

impl DeleteDirectory {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_i32(&mut out, self.file_options);
        put_u32(&mut out, len32(&self.path));
        put_u32(&mut out, 0);
        out.push(u8::from(self.recursive));
        put_str(&mut out, &self.path);
        out
    }

    /// Decode the body.
    pub fn decode(body: &[u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let file_options = c.i32()?;
        let len = c.u32()?;
        let _props = c.u32()?;
        let recursive = c.u8()? != 0;
        Ok(DeleteDirectory {
            file_options,
            path: c.string(len)?,
            recursive,
        })
    }
}

/// Body of HGFS_SEND_PACKET (84): `VixCommandHgfsSendPacket` then the
/// HGFS packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HgfsPacket<'a> {
    /// `timeout`.
    pub timeout: i32,
    /// The HGFS request packet.
    pub packet: &'a [u8],
}

impl<'a> HgfsPacket<'a> {
    /// Encode the body.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.packet.len());
        put_u32(
            &mut out,
            u32::try_from(self.packet.len()).unwrap_or(u32::MAX),
        );
        put_i32(&mut out, self.timeout);
        out.extend_from_slice(self.packet);
        out
    }

    /// Decode the body; the packet size must be non-zero and within it.
    pub fn decode(body: &'a [u8]) -> Result<Self, VixError> {
        let mut c = Cursor::new(body);
        let size = c.u32()?;
        let timeout = c.i32()?;
        if size == 0 {
            return Err(VixError::BadBody("empty HGFS packet"));
        }
        let packet = c.take(size as usize)?;
        Ok(HgfsPacket { timeout, packet })
    }
}

// ---------------------------------------------------------------------------
// TCLO framing.

/// The TCLO command the host sends: `Vix_1_Relayed_Command "<name>"`, NUL,
/// then the VIX message.
pub fn tclo_command(request_name: &str, msg: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(TCLO_RELAYED_COMMAND.len() + request_name.len() + msg.len() + 5);
    out.extend_from_slice(TCLO_RELAYED_COMMAND.as_bytes());
    out.extend_from_slice(b" \"");
    out.extend_from_slice(request_name.replace('"', "").as_bytes());
    out.extend_from_slice(b"\"");
    out.push(0);
    out.extend_from_slice(msg);
    out
}

/// Split the arguments of a `Vix_1_Relayed_Command` (the bytes after the
/// command name and its space) into the request name and the VIX message:
/// as vmtoolsd, everything up to the first NUL is the name part.
pub fn parse_tclo_args(args: &[u8]) -> Result<(String, &[u8]), VixError> {
    let nul = args
        .iter()
        .position(|&b| b == 0)
        .ok_or(VixError::BadHeader("no NUL after the request name"))?;
    let name = String::from_utf8_lossy(&args[..nul]);
    let name = name.trim().trim_matches('"').to_string();
    Ok((name, &args[nul + 1..]))
}

/// A guest's reply to a relayed command, after the TCLO `OK ` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The 64-bit VIX error; [`code_of`] gives the code.
    pub error: u64,
    /// The additional error (errno in the guest).
    pub additional: u32,
    /// The result: text without its NUL, or the binary after `#`.
    pub data: &'a [u8],
}

impl<'a> Reply<'a> {
    /// Parse `"<err> <additional> "` then the result. With `binary` the
    /// result starts with `#`; a failed binary request may come back as text
    /// (vmtoolsd only adds `#` when it parsed the request), so `#` is
    /// optional there.
    pub fn parse(reply: &'a [u8], binary: bool) -> Result<Self, VixError> {
        let (error, rest) = split_number(reply).ok_or(VixError::BadReply("no error number"))?;
        let error = if let Some(neg) = error.strip_prefix('-') {
            neg.parse::<u64>()
                .map(|v| v.wrapping_neg())
                .map_err(|_| VixError::BadReply("bad error number"))?
        } else {
            error
                .parse::<u64>()
                .map_err(|_| VixError::BadReply("bad error number"))?
        };
        let (additional, rest) =
            split_number(rest).ok_or(VixError::BadReply("no additional error"))?;
        let additional = additional
            .parse::<i64>()
            .map_err(|_| VixError::BadReply("bad additional error"))?
            as u32;
        let data = if binary && rest.first() == Some(&b'#') {
            &rest[1..]
        } else {
            match rest.iter().position(|&b| b == 0) {
                Some(p) => &rest[..p],
                None => rest,
            }
        };
        Ok(Reply {
            error,
            additional,
            data,
        })
    }

    /// The VIX error code.
    pub fn code(&self) -> u16 {
        code_of(self.error)
    }

    /// The result as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.data).into_owned()
    }
}

fn split_number(s: &[u8]) -> Option<(&str, &[u8])> {
    let sp = s.iter().take(24).position(|&b| b == b' ')?;
    let n = std::str::from_utf8(&s[..sp]).ok()?;
    Some((n, &s[sp + 1..]))
}

/// Encode a guest reply (without the TCLO `OK `): `"<err> <additional> "`
/// then `#` + `result` when `binary`, else `result` + NUL.
pub fn encode_reply(error: u64, additional: u32, result: &[u8], binary: bool) -> Vec<u8> {
    let mut out = format!("{} {} ", error as i64, additional as i32).into_bytes();
    if binary {
        out.push(b'#');
        out.extend_from_slice(result);
    } else {
        out.extend_from_slice(result);
        out.push(0);
    }
    out
}

// ---------------------------------------------------------------------------
// XML results.

/// Escape as vmtoolsd's `VixToolsEscapeXMLString`: `"`, `%`, `&`, `'`, `<`,
/// `>` become `%XX` (two upper-case hex digits).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' | '%' | '&' | '\'' | '<' | '>' => {
                let _ = write!(out, "%{:02X}", ch as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Undo [`xml_escape`]: any `%XX` becomes its byte; a `%` not followed by
/// two hex digits stays.
pub fn xml_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The text between `<tag>` and `</tag>` at the start of `s` (after
/// optional whitespace), and what follows.
fn take_tag<'s>(s: &'s str, tag: &str) -> Option<(&'s str, &'s str)> {
    let s = s.trim_start();
    let rest = s.strip_prefix('<')?.strip_prefix(tag)?.strip_prefix('>')?;
    let close = format!("</{tag}>");
    let end = rest.find(&close)?;
    Some((&rest[..end], &rest[end + close.len()..]))
}

/// Find `<tag>value</tag>` anywhere inside `s`.
fn find_tag<'s>(s: &'s str, tag: &str) -> Option<&'s str> {
    let open = format!("<{tag}>");
    let start = s.find(&open)? + open.len();
    let close = format!("</{tag}>");
    let end = s[start..].find(&close)?;
    Some(&s[start..start + end])
}

fn num<T: std::str::FromStr>(s: Option<&str>, what: &'static str) -> Result<T, VixError> {
    s.ok_or(VixError::BadResult(what))?
        .trim()
        .parse()
        .map_err(|_| VixError::BadResult(what))
}

/// One `<fxi>` entry of LIST_FILES / INITIATE_FILE_TRANSFER_FROM_GUEST
/// (Linux form).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileInfo {
    /// File name (in ListFiles: relative to the directory).
    pub name: String,
    /// Type flags ([`file_attr`]).
    pub file_type: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: u64,
    /// Access time, seconds.
    pub atime: u64,
    /// Owner uid.
    pub uid: i32,
    /// Group gid.
    pub gid: i32,
    /// Mode bits.
    pub perm: i32,
    /// Target of a symlink; empty otherwise.
    pub symlink_target: String,
}

impl FileInfo {
    /// The `<fxi>` element, strings escaped.
    pub fn to_xml(&self) -> String {
        format!(
            "<fxi><Name>{}</Name><ft>{}</ft><fs>{}</fs><mt>{}</mt><at>{}</at><uid>{}</uid><gid>{}</gid><perm>{}</perm><slt>{}</slt></fxi>",
            xml_escape(&self.name),
            self.file_type,
            self.size,
            self.mtime,
            self.atime,
            self.uid,
            self.gid,
            self.perm,
            xml_escape(&self.symlink_target)
        )
    }

    fn from_inner(inner: &str) -> Result<Self, VixError> {
        Ok(FileInfo {
            name: xml_unescape(
                find_tag(inner, "Name").ok_or(VixError::BadResult("fxi without Name"))?,
            ),
            file_type: num(find_tag(inner, "ft"), "bad <ft>")?,
            size: num(find_tag(inner, "fs"), "bad <fs>")?,
            mtime: num(find_tag(inner, "mt").or(Some("0")), "bad <mt>")?,
            atime: num(find_tag(inner, "at").or(Some("0")), "bad <at>")?,
            uid: num(find_tag(inner, "uid").or(Some("0")), "bad <uid>")?,
            gid: num(find_tag(inner, "gid").or(Some("0")), "bad <gid>")?,
            perm: num(find_tag(inner, "perm").or(Some("0")), "bad <perm>")?,
            symlink_target: xml_unescape(find_tag(inner, "slt").unwrap_or("")),
        })
    }

    /// Whether `<ft>` says directory.
    pub fn is_dir(&self) -> bool {
        self.file_type & file_attr::DIRECTORY != 0
    }

    /// Whether `<ft>` says symlink.
    pub fn is_symlink(&self) -> bool {
        self.file_type & file_attr::SYMLINK != 0
    }
}

/// A LIST_FILES result: `"0 "` or `"1 "` (truncated: the 64 KiB reply
/// was full before `maxResults`), `<rem>N</rem>` (entries after this page),
/// then the entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileList {
    /// The page stopped because the reply was full.
    pub truncated: bool,
    /// `<rem>`: entries left after this page (0 when absent).
    pub remaining: u32,
    /// The entries.
    pub files: Vec<FileInfo>,
}

impl FileList {
    /// The result text as vmtoolsd writes it: truncation flag, `<rem>`, the
    /// entries.
    pub fn to_xml(&self) -> String {
        let mut s = format!("{} <rem>{}</rem>", u8::from(self.truncated), self.remaining);
        for f in &self.files {
            s.push_str(&f.to_xml());
        }
        s
    }

    /// Parse a result (also a single `<fxi>` from transfer-from-guest,
    /// which has neither flag nor `<rem>`).
    pub fn parse(text: &str) -> Result<Self, VixError> {
        let mut rest = text;
        let mut truncated = false;
        if let Some(r) = rest.strip_prefix("0 ") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("1 ") {
            rest = r;
            truncated = true;
        }
        let mut remaining = 0;
        if let Some((r, after)) = take_tag(rest, "rem") {
            remaining = num(Some(r), "bad <rem>")?;
            rest = after;
        }
        let mut files = Vec::new();
        while !rest.trim().is_empty() {
            let (inner, after) =
                take_tag(rest, "fxi").ok_or(VixError::BadResult("expected <fxi>"))?;
            files.push(FileInfo::from_inner(inner)?);
            rest = after;
        }
        Ok(FileList {
            truncated,
            remaining,
            files,
        })
    }
}

/// One `<proc>` entry of LIST_PROCESSES_EX.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcInfo {
    /// `<cmd>`: the executable name, when known.
    pub cmd: Option<String>,
    /// `<name>`: the command line.
    pub name: String,
    /// Process id.
    pub pid: i64,
    /// Owner.
    pub user: String,
    /// Start time, seconds.
    pub start: i64,
    /// Exit code of a process the tools started and saw exit.
    pub exit_code: Option<i32>,
    /// Exit time of such a process (0 while running).
    pub exit_time: Option<i64>,
}

impl ProcInfo {
    /// The `<proc>` element as vmtoolsd writes it: `<eCode>`/`<eTime>`
    /// only for processes it started.
    pub fn to_xml(&self) -> String {
        let mut s = String::from("<proc>");
        if let Some(cmd) = &self.cmd {
            let _ = write!(s, "<cmd>{}</cmd>", xml_escape(cmd));
        }
        let _ = write!(
            s,
            "<name>{}</name><pid>{}</pid><user>{}</user><start>{}</start>",
            xml_escape(&self.name),
            self.pid,
            xml_escape(&self.user),
            self.start
        );
        if let (Some(c), Some(t)) = (self.exit_code, self.exit_time) {
            let _ = write!(s, "<eCode>{c}</eCode><eTime>{t}</eTime>");
        }
        s.push_str("</proc>");
        s
    }

    /// Whether the process ended (eTime set and non-zero).
    pub fn exited(&self) -> bool {
        matches!(self.exit_time, Some(t) if t != 0)
    }

    /// Parse a sequence of `<proc>` elements.
    pub fn parse_list(text: &str) -> Result<Vec<ProcInfo>, VixError> {
        let mut rest = text;
        let mut out = Vec::new();
        while !rest.trim().is_empty() {
            let (inner, after) =
                take_tag(rest, "proc").ok_or(VixError::BadResult("expected <proc>"))?;
            out.push(ProcInfo {
                cmd: find_tag(inner, "cmd").map(xml_unescape),
                name: xml_unescape(find_tag(inner, "name").unwrap_or("")),
                pid: num(find_tag(inner, "pid"), "bad <pid>")?,
                user: xml_unescape(find_tag(inner, "user").unwrap_or("")),
                start: num(find_tag(inner, "start").or(Some("0")), "bad <start>")?,
                exit_code: find_tag(inner, "eCode")
                    .map(|v| num(Some(v), "bad <eCode>"))
                    .transpose()?,
                exit_time: find_tag(inner, "eTime")
                    .map(|v| num(Some(v), "bad <eTime>"))
                    .transpose()?,
            });
            rest = after;
        }
        Ok(out)
    }
}

/// One trip of a LIST_PROCESSES_EX result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcChunk<'s> {
    /// The whole result in one reply.
    Complete(&'s str),
    /// The first trip of a large result: `<key>` to send back,
    /// `<totalSize>` bytes in all, `<leftToSend>` after this chunk.
    First {
        /// Key for the next trips.
        key: u32,
        /// Total size of the result.
        total: u32,
        /// Bytes left after this chunk.
        left: u32,
        /// This chunk of the result.
        data: &'s str,
    },
    /// A later trip: bytes left, and this chunk.
    Next {
        /// Bytes left after this chunk.
        left: u32,
        /// This chunk.
        data: &'s str,
    },
}

impl<'s> ProcChunk<'s> {
    /// Classify a LIST_PROCESSES_EX reply text.
    pub fn parse(text: &'s str) -> Result<Self, VixError> {
        if let Some((key, rest)) = take_tag(text, "key") {
            let (total, rest) =
                take_tag(rest, "totalSize").ok_or(VixError::BadResult("no <totalSize>"))?;
            let (left, data) =
                take_tag(rest, "leftToSend").ok_or(VixError::BadResult("no <leftToSend>"))?;
            Ok(ProcChunk::First {
                key: num(Some(key), "bad <key>")?,
                total: num(Some(total), "bad <totalSize>")?,
                left: num(Some(left), "bad <leftToSend>")?,
                data,
            })
        } else if let Some((left, data)) = take_tag(text, "leftToSend") {
            Ok(ProcChunk::Next {
                left: num(Some(left), "bad <leftToSend>")?,
                data,
            })
        } else {
            Ok(ProcChunk::Complete(text))
        }
    }

    /// Encode the first trip's header followed by `data`.
    pub fn first(key: u32, total: u32, left: u32, data: &str) -> String {
        format!(
            "<key>{key}</key><totalSize>{total}</totalSize><leftToSend>{left}</leftToSend>{data}"
        )
    }

    /// Encode a later trip's header followed by `data`.
    pub fn next(left: u32, data: &str) -> String {
        format!("<leftToSend>{left}</leftToSend>{data}")
    }
}

/// Encode a READ_ENV_VARIABLES result: `<ev>NAME=VALUE</ev>` per variable,
/// escaped.
pub fn env_to_xml(vars: &[String]) -> String {
    vars.iter()
        .map(|v| format!("<ev>{}</ev>", xml_escape(v)))
        .collect()
}

/// Parse a READ_ENV_VARIABLES result into `NAME=VALUE` strings.
pub fn parse_env(text: &str) -> Result<Vec<String>, VixError> {
    let mut rest = text;
    let mut out = Vec::new();
    while !rest.trim().is_empty() {
        let (inner, after) = take_tag(rest, "ev").ok_or(VixError::BadResult("expected <ev>"))?;
        out.push(xml_unescape(inner));
        rest = after;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Property list (GET_TOOLS_STATE).

/// A property value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyValue {
    /// `VIX_PROPERTYTYPE_INTEGER`.
    Int(i32),
    /// `VIX_PROPERTYTYPE_STRING`.
    Str(String),
    /// `VIX_PROPERTYTYPE_BOOL`.
    Bool(bool),
    /// `VIX_PROPERTYTYPE_INT64`.
    Int64(i64),
    /// `VIX_PROPERTYTYPE_BLOB`.
    Blob(Vec<u8>),
}

/// One property: id ([`prop`]) and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Property id.
    pub id: i32,
    /// Value.
    pub value: PropertyValue,
}

/// Serialize a property list: per property `{i32 id, i32 type, i32 len}`
/// then the value (strings with their NUL).
pub fn encode_properties(props: &[Property]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in props {
        let (ty, val): (i32, Vec<u8>) = match &p.value {
            PropertyValue::Int(v) => (prop::TYPE_INTEGER, v.to_le_bytes().to_vec()),
            PropertyValue::Str(s) => {
                let mut v = s.as_bytes().to_vec();
                v.push(0);
                (prop::TYPE_STRING, v)
            }
            PropertyValue::Bool(b) => (prop::TYPE_BOOL, vec![u8::from(*b)]),
            PropertyValue::Int64(v) => (prop::TYPE_INT64, v.to_le_bytes().to_vec()),
            PropertyValue::Blob(b) => (prop::TYPE_BLOB, b.clone()),
        };
        put_i32(&mut out, p.id);
        put_i32(&mut out, ty);
        put_i32(&mut out, i32::try_from(val.len()).unwrap_or(i32::MAX));
        out.extend_from_slice(&val);
    }
    out
}

/// Parse a serialized property list (unknown types are an error).
pub fn decode_properties(data: &[u8]) -> Result<Vec<Property>, VixError> {
    let mut c = Cursor::new(data);
    let mut out = Vec::new();
    while c.pos < data.len() {
        let bad = |_| VixError::BadResult("property list truncated");
        let id = c.i32().map_err(bad)?;
        let ty = c.i32().map_err(bad)?;
        let len = c.u32().map_err(bad)?;
        let val = c.take(len as usize).map_err(bad)?;
        let fixed = |n: usize| {
            if val.len() == n {
                Ok(())
            } else {
                Err(VixError::BadResult("property length wrong for its type"))
            }
        };
        let value = match ty {
            prop::TYPE_INTEGER => {
                fixed(4)?;
                PropertyValue::Int(i32::from_le_bytes(val.try_into().unwrap_or_default()))
            }
            prop::TYPE_STRING => {
                let end = val.iter().position(|&b| b == 0).unwrap_or(val.len());
                PropertyValue::Str(String::from_utf8_lossy(&val[..end]).into_owned())
            }
            prop::TYPE_BOOL => {
                fixed(1)?;
                PropertyValue::Bool(val[0] != 0)
            }
            prop::TYPE_INT64 => {
                fixed(8)?;
                PropertyValue::Int64(i64::from_le_bytes(val.try_into().unwrap_or_default()))
            }
            prop::TYPE_BLOB => PropertyValue::Blob(val.to_vec()),
            _ => return Err(VixError::BadResult("unknown property type")),
        };
        out.push(Property { id, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_layout() {
        let body = DeleteFile {
            file_options: 0,
            path: "/tmp/x".into(),
        }
        .encode();
        let cred = Credential::name_password("root", "secret");
        let msg = build_request(op::DELETE_GUEST_FILE_EX, 0, 7, &cred, &body).unwrap();
        assert_eq!(&msg[0..4], &MAGIC.to_le_bytes());
        assert_eq!(&msg[4..6], &[5, 0]);
        // headerLength at 10, commonFlags at 22, opcode at 23.
        assert_eq!(u32::from_le_bytes(msg[10..14].try_into().unwrap()), 51);
        assert_eq!(msg[22], flags::REQUEST);
        assert_eq!(u32::from_le_bytes(msg[23..27].try_into().unwrap()), 194);
        let req = Request::parse(&msg).unwrap();
        assert_eq!(req.header.cookie, 7);
        assert_eq!(req.header.credential_type, cred::NAME_PASSWORD);
        assert_eq!(DeleteFile::decode(req.body).unwrap().path, "/tmp/x");
        assert_eq!(req.credential().unwrap(), cred);
    }

    #[test]
    fn header_validation() {
        let msg = build_request(op::GET_TOOLS_STATE, 0, 1, &Credential::None, &[]).unwrap();
        assert!(Request::parse(&msg).is_ok());
        let mut bad = msg.clone();
        bad[0] ^= 1;
        assert_eq!(Request::parse(&bad), Err(VixError::BadHeader("bad magic")));
        let mut bad = msg.clone();
        bad[4] = 4;
        assert!(matches!(Request::parse(&bad), Err(VixError::BadHeader(_))));
        let mut bad = msg.clone();
        bad[14] = 1; // bodyLength 1 but total unchanged
        assert!(matches!(Request::parse(&bad), Err(VixError::BadHeader(_))));
        let mut bad = msg.clone();
        bad[22] = 0; // not a request
        assert!(matches!(Request::parse(&bad), Err(VixError::BadHeader(_))));
        assert!(matches!(
            Request::parse(&msg[..50]),
            Err(VixError::BadHeader(_))
        ));
        // total larger than the buffer
        let mut bad = msg.clone();
        bad[6..10].copy_from_slice(&60u32.to_le_bytes());
        bad[14..18].copy_from_slice(&9u32.to_le_bytes());
        assert!(matches!(Request::parse(&bad), Err(VixError::BadHeader(_))));
        assert_eq!(VixError::BadHeader("x").code(), err::INVALID_MESSAGE_HEADER);
        let big = vec![0u8; MAX_REQUEST_SIZE];
        assert!(build_request(op::HGFS_SEND_PACKET, 0, 1, &Credential::None, &big).is_err());
    }

    #[test]
    fn credential_obfuscation() {
        // base64("root\0vmware\0")
        assert_eq!(
            obfuscate_name_password("root", "vmware"),
            "cm9vdAB2bXdhcmUA"
        );
        let (u, p) = deobfuscate_name_password("cm9vdAB2bXdhcmUA").unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("root", "vmware"));
        assert_eq!(escape_obfuscated("a b\\"), "a\\4b\\1");
        assert!(deobfuscate_name_password("cm9v\\9").is_err());
        assert!(deobfuscate_name_password("!!!!").is_err());
        let c = Credential::NamePassword {
            kind: cred::NAME_PASSWORD_OBFUSCATED,
            user: "ünïcode user".into(),
            password: "p ' \" \\ w".into(),
        };
        let (k, region) = c.encode();
        assert_eq!(k, 4);
        assert_eq!(Credential::decode(k, &region).unwrap(), c);
        assert_eq!(
            Credential::decode(9, &region),
            Err(VixError::UnsupportedCredential(9))
        );
        assert!(Credential::decode(1, &region[..5]).is_err());
        assert!(!format!("{c:?}").contains("w\""));
    }

    #[test]
    fn base64_roundtrip() {
        for n in 0..20 {
            let d: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            assert_eq!(base64_decode(base64_encode(&d).as_bytes()).unwrap(), d);
        }
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert!(base64_decode(b"YW=I").is_none());
    }

    #[test]
    fn bodies_roundtrip() {
        let lf = ListFiles {
            file_options: 0,
            path: "/etc".into(),
            pattern: "^p".into(),
            index: 3,
            max_results: 50,
            offset: 0,
        };
        assert_eq!(ListFiles::decode(&lf.encode()).unwrap(), lf);
        let lf2 = ListFiles {
            pattern: String::new(),
            ..lf.clone()
        };
        assert_eq!(lf2.encode().len(), 28 + 5);
        assert_eq!(ListFiles::decode(&lf2.encode()).unwrap(), lf2);
        let cd = CreateDirectory {
            file_options: 0,
            path: "/a/b".into(),
            create_parents: true,
        };
        assert_eq!(cd.encode().len(), 13 + 5);
        assert_eq!(CreateDirectory::decode(&cd.encode()).unwrap(), cd);
        let mv = Move {
            options: 0,
            old_path: "/a".into(),
            new_path: "/b".into(),
            overwrite: true,
        };
        assert_eq!(Move::decode(&mv.encode()).unwrap(), mv);
        let ct = CreateTemp {
            options: 0,
            prefix: "vmware".into(),
            suffix: "".into(),
            directory: "".into(),
        };
        assert_eq!(CreateTemp::decode(&ct.encode()).unwrap(), ct);
        let mut bad = ct.encode();
        bad.push(0);
        assert!(CreateTemp::decode(&bad).is_err());
        let sa = SetAttributes {
            file_options: set_attr::UNIX_PERMISSIONS,
            permissions: 0o640,
            path: "/f".into(),
            ..Default::default()
        };
        assert_eq!(sa.encode().len(), 38 + 3);
        assert_eq!(SetAttributes::decode(&sa.encode()).unwrap(), sa);
        let sp = StartProgram {
            start_minimized: false,
            program: "/bin/echo".into(),
            arguments: "hi > /tmp/o".into(),
            working_dir: "".into(),
            env: vec!["A=1".into(), "B=2".into()],
        };
        let enc = sp.encode();
        // programPathLength counts the NUL
        assert_eq!(u32::from_le_bytes(enc[1..5].try_into().unwrap()), 10);
        assert_eq!(u32::from_le_bytes(enc[9..13].try_into().unwrap()), 0);
        assert_eq!(StartProgram::decode(&enc).unwrap(), sp);
        let lp = ListProcesses {
            key: 0,
            offset: 0,
            pids: vec![1, 42],
        };
        assert_eq!(ListProcesses::decode(&lp.encode()).unwrap(), lp);
        let mut bad = lp.encode();
        bad[8] = 200;
        assert!(ListProcesses::decode(&bad).is_err());
        let re = ReadEnv {
            names: vec!["PATH".into(), "HOME".into()],
        };
        assert_eq!(ReadEnv::decode(&re.encode()).unwrap(), re);
        let tg = TransferToGuest {
            options: 0,
            path: "/x".into(),
            overwrite: true,
        };
        assert_eq!(tg.encode().len(), 9 + 3);
        assert_eq!(TransferToGuest::decode(&tg.encode()).unwrap(), tg);
        let tp = TerminateProcess {
            pid: 99,
            options: 0,
        };
        assert_eq!(tp.encode().len(), 12);
        assert_eq!(TerminateProcess::decode(&tp.encode()).unwrap(), tp);
        let dd = DeleteDirectory {
            file_options: 0,
            path: "/d".into(),
            recursive: true,
        };
        assert_eq!(DeleteDirectory::decode(&dd.encode()).unwrap(), dd);
        let hp = HgfsPacket {
            timeout: 0,
            packet: b"abc",
        };
        assert_eq!(HgfsPacket::decode(&hp.encode()).unwrap(), hp);
        assert!(HgfsPacket::decode(&[3, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn strings_are_checked() {
        // path length 3 but NUL at index 2
        let mut b = Vec::new();
        put_i32(&mut b, 0);
        put_u32(&mut b, 3);
        b.extend_from_slice(b"ab\0\0");
        assert!(DeleteFile::decode(&b).is_err());
        // length beyond the body
        let mut b = Vec::new();
        put_i32(&mut b, 0);
        put_u32(&mut b, u32::MAX);
        assert!(DeleteFile::decode(&b).is_err());
        // not UTF-8
        let mut b = Vec::new();
        put_i32(&mut b, 0);
        put_u32(&mut b, 1);
        b.extend_from_slice(&[0xff, 0]);
        assert_eq!(DeleteFile::decode(&b), Err(VixError::BadUtf8));
    }

    #[test]
    fn tclo_framing() {
        let cmd = tclo_command("42", b"\x01\x00\x0d\xd0");
        assert!(cmd.starts_with(b"Vix_1_Relayed_Command \"42\"\0"));
        let args = &cmd[TCLO_RELAYED_COMMAND.len() + 1..];
        let (name, msg) = parse_tclo_args(args).unwrap();
        assert_eq!(name, "42");
        assert_eq!(msg, b"\x01\x00\x0d\xd0");
        assert!(parse_tclo_args(b"\"x\"").is_err());
    }

    #[test]
    fn replies() {
        let r = encode_reply(0, 0, b"1234", false);
        assert_eq!(r, b"0 0 1234\0");
        let p = Reply::parse(&r, false).unwrap();
        assert_eq!((p.code(), p.data), (0, &b"1234"[..]));
        let r = encode_reply(err::INVALID_LOGIN_CREDENTIALS, 0, b"", false);
        assert_eq!(Reply::parse(&r, false).unwrap().code(), 3050);
        let r = encode_reply(0, 0, b"\0\x01#", true);
        assert_eq!(r, b"0 0 #\0\x01#");
        assert_eq!(Reply::parse(&r, true).unwrap().data, b"\0\x01#");
        // error with errno in the high bits
        let p = Reply::parse(b"8589934605 2 \0", false).unwrap();
        assert_eq!(p.code(), 13);
        assert_eq!(p.additional, 2);
        assert!(Reply::parse(b"garbage", false).is_err());
        assert!(Reply::parse(b"1", false).is_err());
        assert!(Reply::parse(b"x 0 ", false).is_err());
    }

    #[test]
    fn xml_escaping() {
        assert_eq!(xml_escape("a<b>&'\"%c"), "a%3Cb%3E%26%27%22%25c");
        assert_eq!(xml_unescape(&xml_escape("a<b>&'\"%c ü")), "a<b>&'\"%c ü");
        assert_eq!(xml_unescape("100%"), "100%");
        assert_eq!(xml_unescape("%zz%4"), "%zz%4");
    }

    #[test]
    fn file_list_roundtrip() {
        let l = FileList {
            truncated: true,
            remaining: 5,
            files: vec![
                FileInfo {
                    name: "a<b".into(),
                    file_type: 0,
                    size: 10,
                    mtime: 1,
                    atime: 2,
                    uid: 0,
                    gid: 0,
                    perm: 0o644,
                    symlink_target: String::new(),
                },
                FileInfo {
                    name: "l".into(),
                    file_type: file_attr::SYMLINK,
                    symlink_target: "/etc".into(),
                    ..Default::default()
                },
            ],
        };
        let x = l.to_xml();
        assert!(x.starts_with("1 <rem>5</rem><fxi><Name>a%3Cb</Name><ft>0</ft><fs>10</fs>"));
        let one = FileList::parse(&l.files[1].to_xml()).unwrap();
        assert_eq!(
            (one.truncated, one.remaining, one.files.len()),
            (false, 0, 1)
        );
        assert_eq!(FileList::parse(&x).unwrap(), l);
        assert!(FileList::parse("<fxi><Name>x</Name>").is_err());
        assert!(FileList::parse("<fxi><Name>x</Name><ft>q</ft><fs>1</fs></fxi>").is_err());
    }

    #[test]
    fn proc_list_and_chunks() {
        let p = ProcInfo {
            cmd: Some("bash".into()),
            name: "bash -c 'x'".into(),
            pid: 10,
            user: "root".into(),
            start: 100,
            exit_code: Some(3),
            exit_time: Some(200),
        };
        let q = ProcInfo {
            cmd: None,
            exit_code: None,
            exit_time: None,
            ..p.clone()
        };
        let x = format!("{}{}", p.to_xml(), q.to_xml());
        assert!(x.contains("<eCode>3</eCode><eTime>200</eTime></proc>"));
        let parsed = ProcInfo::parse_list(&x).unwrap();
        assert_eq!(parsed, vec![p.clone(), q]);
        assert!(parsed[0].exited());
        let first = ProcChunk::first(7, 100, 60, "<proc>");
        assert_eq!(
            ProcChunk::parse(&first).unwrap(),
            ProcChunk::First {
                key: 7,
                total: 100,
                left: 60,
                data: "<proc>"
            }
        );
        let next = ProcChunk::next(0, "x</proc>");
        assert_eq!(
            ProcChunk::parse(&next).unwrap(),
            ProcChunk::Next {
                left: 0,
                data: "x</proc>"
            }
        );
        assert_eq!(ProcChunk::parse(&x).unwrap(), ProcChunk::Complete(&x));
        assert!(ProcChunk::parse("<key>1</key>").is_err());
    }

    #[test]
    fn env_roundtrip() {
        let v = vec!["A=<1>".to_string(), "PATH=/bin".to_string()];
        let x = env_to_xml(&v);
        assert_eq!(x, "<ev>A=%3C1%3E</ev><ev>PATH=/bin</ev>");
        assert_eq!(parse_env(&x).unwrap(), v);
        assert!(parse_env("<ev>x").is_err());
    }

    #[test]
    fn properties_roundtrip() {
        let props = vec![
            Property {
                id: prop::GUEST_TOOLS_VERSION,
                value: PropertyValue::Str("12.0".into()),
            },
            Property {
                id: prop::GUEST_OS_FAMILY,
                value: PropertyValue::Int(1),
            },
            Property {
                id: prop::GUEST_START_PROGRAM_ENABLED,
                value: PropertyValue::Bool(true),
            },
            Property {
                id: 1,
                value: PropertyValue::Int64(-5),
            },
            Property {
                id: 2,
                value: PropertyValue::Blob(vec![1, 2]),
            },
        ];
        let enc = encode_properties(&props);
        assert_eq!(&enc[0..12], &[0x94, 0x11, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(decode_properties(&enc).unwrap(), props);
        assert!(decode_properties(&enc[..enc.len() - 1]).is_err());
        let mut bad = enc.clone();
        bad[4] = 9;
        assert!(decode_properties(&bad).is_err());
    }
}
