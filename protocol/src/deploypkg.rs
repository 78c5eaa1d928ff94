//! Guest customization packages (deployPkg): the 512-byte
//! `VMWAREDEPLOYPKG_` header, the `deployPkg.update.state` report and its
//! state, error and event numbers.
//!
//! The host sends TCLO `deployPkg.begin` (the guest answers with a private
//! directory), copies the package into it over HGFS, then sends
//! `deployPkg.deploy PATH`; the guest reports progress with RPCI
//! `deployPkg.update.state STATE [CODE [MESSAGE]]`. Layouts and numbers as
//! open-vm-tools defines them (deployPkgFormat.h, guestrpc/deploypkg.h,
//! guestrpc/guestcust-events.h).

/// The first 16 bytes of every package (not NUL-terminated).
pub const SIGNATURE: &[u8; 16] = b"VMWAREDEPLOYPKG_";
/// Header size; the payload usually follows at this offset.
pub const HEADER_LEN: usize = 512;
/// Bytes reserved for the command (NUL-terminated).
pub const COMMAND_LEN: usize = 456;
/// The only major version there is.
pub const MAJOR_VERSION: u8 = 1;
/// TCLO command creating the private directory.
pub const TCLO_BEGIN: &str = "deployPkg.begin";
/// TCLO command starting the deployment of the package at the given path.
pub const TCLO_DEPLOY: &str = "deployPkg.deploy";
/// RPCI progress report.
pub const RPCI_UPDATE_STATE: &str = "deployPkg.update.state";
/// The log file vmtoolsd names in its reports (hostd shows it to users).
pub const LOG_PATH: &str = "/var/log/vmware-imc/toolsDeployPkg.log";
/// The host's answer to [`event::ENABLE_NICS`] when it can report NIC state.
pub const QUERY_NICS_SUPPORTED: &str = "queryNicsSupported";
/// The host's answer to [`event::QUERY_NICS`] once the NICs are connected.
pub const NICS_CONNECTED: &str = "connected";
/// The command placeholder vCenter's packages use for the extraction directory.
pub const IMC_TMP_PATH_VAR: &str = "@@IMC_TMP_PATH_VAR@@";
/// The older placeholder, replaced when [`IMC_TMP_PATH_VAR`] is absent.
pub const TMP_PATH_VAR: &str = "/tmp/.vmware/linux/deploy";

/// Header flags (the byte called `reserved` in the C struct).
pub mod flags {
    /// Do not reboot after a successful customization.
    pub const SKIP_REBOOT: u8 = 1;
    /// Never hand the customization over to cloud-init.
    pub const IGNORE_CLOUD_INIT: u8 = 2;
    /// The package carries raw cloud-init data.
    pub const RAW_CLOUD_INIT: u8 = 4;
}

/// `ToolsDeployPackageState`.
pub mod state {
    /// Nothing going on.
    pub const IDLE: u32 = 0;
    /// Customization requested.
    pub const PENDING: u32 = 1;
    /// The package is being copied.
    pub const COPYING: u32 = 2;
    /// `deployPkg.deploy` arrived.
    pub const DEPLOYING: u32 = 3;
    /// The customization runs.
    pub const RUNNING: u32 = 4;
    /// Finished.
    pub const DONE: u32 = 5;
}

/// `ToolsDeployPkgError`: the code of a report.
pub mod error {
    /// No error.
    pub const SUCCESS: u32 = 0;
    /// Old tools.
    pub const NOT_SUPPORT: u32 = 1;
    /// The package is not there.
    pub const PKG_NOT_FOUND: u32 = 2;
    /// Bad RPC.
    pub const RPC_INVALID: u32 = 3;
    /// Copy failed.
    pub const COPY_FAILED: u32 = 4;
    /// The deployment failed.
    pub const DEPLOY_FAILED: u32 = 5;
    /// The package has a custom script and the guest does not allow them.
    pub const CUST_SCRIPT_DISABLED: u32 = 6;
    /// The guest does not allow customization.
    pub const CUST_DISABLED: u32 = 7;
    /// cloud-init is too old for raw cloud-init data.
    pub const CLOUDINIT_NOT_SUPPORT_RAWDATA: u32 = 8;
    /// The raw cloud-init metadata is malformed.
    pub const CLOUDINIT_WRONG_META_FORMAT: u32 = 9;
}

/// `GuestCustEvent`: codes above 100, sent with state RUNNING.
pub mod event {
    /// The customization failed.
    pub const CUSTOMIZE_FAILED: u32 = 100;
    /// The network settings could not be applied.
    pub const NETWORK_SETUP_FAILED: u32 = 101;
    /// Sysprep failed (Windows).
    pub const SYSPREP_FAILED: u32 = 102;
    /// Please reconnect these NICs (message: their ordinals).
    pub const ENABLE_NICS: u32 = 103;
    /// Are these NICs connected yet?
    pub const QUERY_NICS: u32 = 104;
}

/// Name of a state number, lower case.
pub fn state_name(s: u32) -> &'static str {
    match s {
        state::IDLE => "idle",
        state::PENDING => "pending",
        state::COPYING => "copying",
        state::DEPLOYING => "deploying",
        state::RUNNING => "running",
        state::DONE => "done",
        _ => "unknown",
    }
}

/// Name of a report code (error or event), lower case.
pub fn code_name(c: u32) -> &'static str {
    match c {
        error::SUCCESS => "success",
        error::NOT_SUPPORT => "not-supported",
        error::PKG_NOT_FOUND => "package-not-found",
        error::RPC_INVALID => "rpc-invalid",
        error::COPY_FAILED => "copy-failed",
        error::DEPLOY_FAILED => "deploy-failed",
        error::CUST_SCRIPT_DISABLED => "custom-script-disabled",
        error::CUST_DISABLED => "customization-disabled",
        error::CLOUDINIT_NOT_SUPPORT_RAWDATA => "cloud-init-too-old",
        error::CLOUDINIT_WRONG_META_FORMAT => "cloud-init-bad-metadata",
        event::CUSTOMIZE_FAILED => "customize-failed",
        event::NETWORK_SETUP_FAILED => "network-setup-failed",
        event::SYSPREP_FAILED => "sysprep-failed",
        event::ENABLE_NICS => "enable-nics",
        event::QUERY_NICS => "query-nics",
        _ => "unknown",
    }
}

/// Whether a report code means the customization failed.
pub fn code_is_failure(c: u32) -> bool {
    !matches!(c, error::SUCCESS | event::ENABLE_NICS | event::QUERY_NICS)
}

/// The payload's archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadType {
    /// Microsoft cabinet (what vCenter sends).
    Cabinet,
    /// ZIP.
    Zip,
    /// gzip-compressed tar.
    GzippedTar,
}

impl PayloadType {
    /// The header byte.
    pub fn byte(self) -> u8 {
        match self {
            PayloadType::Cabinet => 0,
            PayloadType::Zip => 1,
            PayloadType::GzippedTar => 2,
        }
    }

    /// From the header byte.
    pub fn from_byte(b: u8) -> Option<PayloadType> {
        match b {
            0 => Some(PayloadType::Cabinet),
            1 => Some(PayloadType::Zip),
            2 => Some(PayloadType::GzippedTar),
            _ => None,
        }
    }
}

/// Why a package header is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than 512 bytes.
    #[error("package is {0} bytes, shorter than its 512-byte header")]
    Short(usize),
    /// The first 16 bytes are not `VMWAREDEPLOYPKG_`.
    #[error("not a deployment package (no VMWAREDEPLOYPKG_ signature)")]
    Signature,
    /// A major version this code does not know.
    #[error("package format version {0}.{1} is not supported (1.x is)")]
    Version(u8, u8),
    /// Unknown payload type byte.
    #[error("unknown payload type {0}")]
    PayloadType(u8),
    /// The command is not NUL-terminated or not UTF-8.
    #[error("the command in the header is not a terminated UTF-8 string")]
    Command,
    /// The payload is not inside the package.
    #[error("payload at {offset}+{length} lies outside the {size}-byte package")]
    Payload {
        /// Payload offset from the header.
        offset: u64,
        /// Payload length.
        length: u64,
        /// Package size.
        size: u64,
    },
    /// The command does not fit in 455 bytes.
    #[error("command is {0} bytes, at most 455 fit")]
    CommandTooLong(usize),
}

/// A parsed package header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Minor version.
    pub minor: u8,
    /// Payload archive format.
    pub payload_type: PayloadType,
    /// [`flags`] bits.
    pub flags: u8,
    /// Seconds the command may run (0: the guest's default).
    pub process_timeout: u16,
    /// Total package length the header claims.
    pub pkg_length: u64,
    /// Payload offset from the start of the package.
    pub payload_offset: u64,
    /// Payload length.
    pub payload_length: u64,
    /// The seed bytes (unused on Linux).
    pub seed: [u8; 8],
    /// The command to run; empty for none.
    pub command: String,
}

impl Header {
    /// A header for `payload_len` bytes of payload right after it.
    pub fn new(payload_type: PayloadType, command: &str, payload_len: u64) -> Header {
        Header {
            minor: 0,
            payload_type,
            flags: 0,
            process_timeout: 0,
            pkg_length: HEADER_LEN as u64 + payload_len,
            payload_offset: HEADER_LEN as u64,
            payload_length: payload_len,
            seed: [0; 8],
            command: command.to_string(),
        }
    }

    /// Parse the header of a whole package and check the payload lies in it.
    pub fn parse(pkg: &[u8]) -> Result<Header, HeaderError> {
        if pkg.len() < HEADER_LEN {
            return Err(HeaderError::Short(pkg.len()));
        }
        if &pkg[..16] != SIGNATURE {
            return Err(HeaderError::Signature);
        }
        let (major, minor) = (pkg[16], pkg[17]);
        if major != MAJOR_VERSION {
            return Err(HeaderError::Version(major, minor));
        }
        let payload_type =
            PayloadType::from_byte(pkg[18]).ok_or(HeaderError::PayloadType(pkg[18]))?;
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&pkg[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let cmd = &pkg[56..56 + COMMAND_LEN];
        let end = cmd
            .iter()
            .position(|&c| c == 0)
            .ok_or(HeaderError::Command)?;
        let command = std::str::from_utf8(&cmd[..end])
            .map_err(|_| HeaderError::Command)?
            .to_string();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&pkg[48..56]);
        let h = Header {
            minor,
            payload_type,
            flags: pkg[19],
            process_timeout: u16::from_le_bytes([pkg[20], pkg[21]]),
            pkg_length: u64_at(24),
            payload_offset: u64_at(32),
            payload_length: u64_at(40),
            seed,
            command,
        };
        h.payload_range(pkg.len() as u64)?;
        Ok(h)
    }

    /// Where the payload is in a package of `size` bytes.
    pub fn payload_range(&self, size: u64) -> Result<std::ops::Range<usize>, HeaderError> {
        let bad = HeaderError::Payload {
            offset: self.payload_offset,
            length: self.payload_length,
            size,
        };
        let end = self
            .payload_offset
            .checked_add(self.payload_length)
            .ok_or(bad.clone())?;
        if self.payload_offset < HEADER_LEN as u64 || end > size {
            return Err(bad);
        }
        Ok(self.payload_offset as usize..end as usize)
    }

    /// The 512 header bytes.
    pub fn encode(&self) -> Result<[u8; HEADER_LEN], HeaderError> {
        if self.command.len() >= COMMAND_LEN || self.command.contains('\0') {
            return Err(HeaderError::CommandTooLong(self.command.len()));
        }
        let mut b = [0u8; HEADER_LEN];
        b[..16].copy_from_slice(SIGNATURE);
        b[16] = MAJOR_VERSION;
        b[17] = self.minor;
        b[18] = self.payload_type.byte();
        b[19] = self.flags;
        b[20..22].copy_from_slice(&self.process_timeout.to_le_bytes());
        b[24..32].copy_from_slice(&self.pkg_length.to_le_bytes());
        b[32..40].copy_from_slice(&self.payload_offset.to_le_bytes());
        b[40..48].copy_from_slice(&self.payload_length.to_le_bytes());
        b[48..56].copy_from_slice(&self.seed);
        b[56..56 + self.command.len()].copy_from_slice(self.command.as_bytes());
        Ok(b)
    }
}

/// Substitute the extraction directory into a header command as vmtoolsd
/// does: every `@@IMC_TMP_PATH_VAR@@`, or when there is none every
/// `/tmp/.vmware/linux/deploy`.
pub fn substitute_dir(command: &str, dir: &str) -> String {
    if command.contains(IMC_TMP_PATH_VAR) {
        command.replace(IMC_TMP_PATH_VAR, dir)
    } else {
        command.replace(TMP_PATH_VAR, dir)
    }
}

/// One `deployPkg.update.state` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateReport {
    /// [`state`] number.
    pub state: u32,
    /// [`error`] or [`event`] code; `None` when only the state was sent.
    pub code: Option<u32>,
    /// The rest: usually the log path, then `@` and a message.
    pub message: String,
}

impl StateReport {
    /// The RPCI message text (after the command name's space).
    pub fn args(&self) -> String {
        match (self.code, self.message.is_empty()) {
            (None, _) => self.state.to_string(),
            (Some(c), true) => format!("{} {c}", self.state),
            (Some(c), false) => format!("{} {c} {}", self.state, self.message),
        }
    }

    /// The whole RPCI message.
    pub fn message_bytes(&self) -> Vec<u8> {
        format!("{RPCI_UPDATE_STATE} {}", self.args()).into_bytes()
    }

    /// A report in vmtoolsd's usual form: `STATE CODE LOGPATH[@TEXT]`.
    pub fn with_log(state: u32, code: u32, log: &str, text: Option<&str>) -> StateReport {
        let message = match text {
            Some(t) => format!("{log}@{t}"),
            None => log.to_string(),
        };
        StateReport {
            state,
            code: Some(code),
            message,
        }
    }

    /// Parse the arguments of a report; `None` when the state or code is not a number.
    pub fn parse(args: &str) -> Option<StateReport> {
        let args = args.trim_start();
        let (st, rest) = split_word(args);
        let state = st.parse().ok()?;
        let rest = rest.trim_start();
        if rest.is_empty() {
            return Some(StateReport {
                state,
                code: None,
                message: String::new(),
            });
        }
        let (c, msg) = split_word(rest);
        Some(StateReport {
            state,
            code: Some(c.parse().ok()?),
            message: msg.trim_start().trim_end_matches(['\0', '\n']).to_string(),
        })
    }

    /// The part of the message after the log path's `@`, if any.
    pub fn text(&self) -> Option<&str> {
        self.message.split_once('@').map(|(_, t)| t)
    }
}

fn split_word(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_layout() {
        let mut h = Header::new(PayloadType::Zip, "/bin/echo @@IMC_TMP_PATH_VAR@@/x", 10);
        h.flags = flags::SKIP_REBOOT;
        h.process_timeout = 42;
        let b = h.encode().unwrap();
        assert_eq!(&b[..16], b"VMWAREDEPLOYPKG_");
        assert_eq!(b[16..20], [1, 0, 1, 1]);
        assert_eq!(b[20..22], [42, 0]);
        assert_eq!(b[24..32], 522u64.to_le_bytes());
        assert_eq!(b[32..40], 512u64.to_le_bytes());
        assert_eq!(b[40..48], 10u64.to_le_bytes());
        assert_eq!(&b[56..60], b"/bin");
        let mut pkg = b.to_vec();
        pkg.extend_from_slice(&[7; 10]);
        let p = Header::parse(&pkg).unwrap();
        assert_eq!(p, h);
        assert_eq!(p.payload_range(pkg.len() as u64).unwrap(), 512..522);
    }

    #[test]
    fn bad_headers_say_why() {
        assert_eq!(Header::parse(&[0; 100]), Err(HeaderError::Short(100)));
        assert_eq!(Header::parse(&[0; 600]), Err(HeaderError::Signature));
        let good = Header::new(PayloadType::Cabinet, "", 0).encode().unwrap();
        let mut b = good;
        b[16] = 2;
        assert_eq!(Header::parse(&b), Err(HeaderError::Version(2, 0)));
        let mut b = good;
        b[18] = 9;
        assert_eq!(Header::parse(&b), Err(HeaderError::PayloadType(9)));
        let mut b = good;
        b[56..512].fill(b'a');
        assert_eq!(Header::parse(&b), Err(HeaderError::Command));
        let mut b = good;
        b[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Header::parse(&b),
            Err(HeaderError::Payload { .. })
        ));
        let long = "x".repeat(456);
        assert!(Header::new(PayloadType::Zip, &long, 0).encode().is_err());
    }

    #[test]
    fn substitution_as_vmtoolsd() {
        assert_eq!(
            substitute_dir("/usr/bin/perl -I/tmp/.vmware/linux/deploy/scripts /tmp/.vmware/linux/deploy/cust.cfg", "/run/d"),
            "/usr/bin/perl -I/run/d/scripts /run/d/cust.cfg"
        );
        assert_eq!(
            substitute_dir(
                "@@IMC_TMP_PATH_VAR@@/run.sh /tmp/.vmware/linux/deploy",
                "/d"
            ),
            "/d/run.sh /tmp/.vmware/linux/deploy"
        );
    }

    #[test]
    fn reports_as_vmtoolsd_sends_them() {
        let r = StateReport::with_log(4, 0, LOG_PATH, None);
        assert_eq!(
            r.message_bytes(),
            b"deployPkg.update.state 4 0 /var/log/vmware-imc/toolsDeployPkg.log"
        );
        let r = StateReport::with_log(4, 103, LOG_PATH, Some("1,2"));
        assert_eq!(r.args(), "4 103 /var/log/vmware-imc/toolsDeployPkg.log@1,2");
        assert_eq!(StateReport::parse(&r.args()), Some(r.clone()));
        assert_eq!(r.text(), Some("1,2"));
        let only = StateReport::parse("3").unwrap();
        assert_eq!((only.state, only.code), (3, None));
        assert_eq!(only.args(), "3");
        let d = StateReport::parse("3 7 Customization is disabled by guest admin").unwrap();
        assert_eq!(d.message, "Customization is disabled by guest admin");
        assert_eq!(StateReport::parse("x 1"), None);
        assert_eq!(StateReport::parse("4 y"), None);
        assert!(code_is_failure(event::CUSTOMIZE_FAILED));
        assert!(!code_is_failure(event::QUERY_NICS));
    }
}
