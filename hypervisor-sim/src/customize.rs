//! Guest customization from the host side, as vCenter and hostd do it:
//! build a package (the 512-byte `VMWAREDEPLOYPKG_` header and a CAB, ZIP
//! or gzipped-tar payload carrying `cust.cfg`), send TCLO
//! `deployPkg.begin`, copy the package into the directory the guest named
//! through its HGFS server (TCLO `f` packets), send `deployPkg.deploy`,
//! then follow the guest's `deployPkg.update.state` reports: record them,
//! answer the NIC reconnect exchange (103/104), and keep the outcome for
//! `vm show --json` (`customization`).

use std::io::{Cursor, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use protocol::custcfg::{CustSpec, NicSpec};
use protocol::deploypkg::{
    self as dp, code_is_failure, event, state, Header, PayloadType, StateReport,
};
use serde::Deserialize;

/// Most reports kept per customization.
pub const MAX_EVENTS: usize = 256;

/// Why a customization could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum CustomizeError {
    /// SPEC.toml is unreadable or invalid.
    #[error("customization spec {}: {message}", .path.display())]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file the spec or the command line names cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The package could not be put together.
    #[error("cannot build the package: {0}")]
    Build(String),
}

/// One `[[nic]]` of SPEC.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicToml {
    /// MAC address.
    pub mac: String,
    /// Address by DHCP (default when no `ipv4` is given).
    pub dhcp: Option<bool>,
    /// `ADDR/PREFIX`.
    pub ipv4: Option<String>,
    /// IPv4 default gateway.
    pub gateway4: Option<String>,
    /// `["ADDR/PREFIX", ...]`.
    #[serde(default)]
    pub ipv6: Vec<String>,
    /// IPv6 default gateway.
    pub gateway6: Option<String>,
}

/// SPEC.toml: what `hvsim vm customize` asks of the guest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecToml {
    /// Host name.
    pub hostname: Option<String>,
    /// DNS domain.
    pub domain: Option<String>,
    /// Time zone (`Europe/Berlin`).
    pub time_zone: Option<String>,
    /// Hardware clock in UTC.
    pub utc: Option<bool>,
    /// A file holding the root password (first line).
    pub password_file: Option<PathBuf>,
    /// DNS servers.
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// DNS search domains.
    #[serde(default)]
    pub dns_suffixes: Vec<String>,
    /// A custom script (pre/post customization) to ship.
    pub custom_script: Option<PathBuf>,
    /// The marker; a guest applies a marker once (default: a new one per run).
    pub marker_id: Option<String>,
    /// NICs, matched by MAC.
    #[serde(default)]
    pub nic: Vec<NicToml>,
}

fn prefix_addr<T: std::str::FromStr>(s: &str, max: u8) -> Option<(T, u8)> {
    let (a, p) = s.split_once('/')?;
    let p: u8 = p.parse().ok().filter(|p| *p <= max)?;
    Some((a.parse().ok()?, p))
}

impl SpecToml {
    /// Read SPEC.toml; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<(SpecToml, PathBuf), CustomizeError> {
        let text = std::fs::read_to_string(path).map_err(|source| CustomizeError::Read {
            path: path.to_owned(),
            source,
        })?;
        let spec: SpecToml = toml::from_str(&text).map_err(|e| CustomizeError::Spec {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((spec, base))
    }

    /// The cust.cfg meaning, validated as the guest will validate it;
    /// `base` resolves relative paths; `marker` is used when the spec sets none.
    pub fn to_cust(
        &self,
        base: &Path,
        origin: &Path,
        marker: &str,
    ) -> Result<CustSpec, CustomizeError> {
        let bad = |m: String| CustomizeError::Spec {
            path: origin.to_owned(),
            message: m,
        };
        let mut c = CustSpec {
            hostname: self.hostname.clone(),
            domain: self.domain.clone(),
            time_zone: self.time_zone.clone(),
            utc: self.utc,
            dns_suffixes: self.dns_suffixes.clone(),
            marker_id: Some(self.marker_id.clone().unwrap_or_else(|| marker.to_string())),
            ..CustSpec::default()
        };
        for d in &self.dns_servers {
            c.dns_servers.push(
                d.parse::<IpAddr>()
                    .map_err(|_| bad(format!("dns_servers: {d:?} is not an IP address")))?,
            );
        }
        if let Some(p) = &self.password_file {
            let path = base.join(p);
            let text = std::fs::read_to_string(&path)
                .map_err(|source| CustomizeError::Read { path, source })?;
            c.root_password = Some(text.lines().next().unwrap_or("").to_string());
        }
        if let Some(s) = &self.custom_script {
            let name = s
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| bad("custom_script names no file".into()))?;
            c.custom_script = Some(name);
        }
        for (i, n) in self.nic.iter().enumerate() {
            let ipv4 =
                match &n.ipv4 {
                    Some(s) => Some(prefix_addr::<Ipv4Addr>(s, 32).ok_or_else(|| {
                        bad(format!("nic {}: ipv4 {s:?} is not ADDR/PREFIX", i + 1))
                    })?),
                    None => None,
                };
            let mut ipv6 = Vec::new();
            for s in &n.ipv6 {
                ipv6.push(
                    prefix_addr::<Ipv6Addr>(s, 128).ok_or_else(|| {
                        bad(format!("nic {}: ipv6 {s:?} is not ADDR/PREFIX", i + 1))
                    })?,
                );
            }
            let gw4 = match &n.gateway4 {
                Some(g) => vec![g.parse::<Ipv4Addr>().map_err(|_| {
                    bad(format!(
                        "nic {}: gateway4 {g:?} is not an IPv4 address",
                        i + 1
                    ))
                })?],
                None => Vec::new(),
            };
            let gw6 = match &n.gateway6 {
                Some(g) => vec![g.parse::<Ipv6Addr>().map_err(|_| {
                    bad(format!(
                        "nic {}: gateway6 {g:?} is not an IPv6 address",
                        i + 1
                    ))
                })?],
                None => Vec::new(),
            };
            c.nics.push(NicSpec {
                name: format!("NIC{}", i + 1),
                mac: n.mac.to_ascii_lowercase(),
                primary: i == 0,
                dhcp: n.dhcp.unwrap_or(ipv4.is_none()),
                ipv4,
                gateways4: gw4,
                ipv6,
                gateways6: gw6,
            });
        }
        // What the guest will check, checked here first.
        CustSpec::parse(c.render().as_bytes()).map_err(|e| bad(e.to_string()))?;
        Ok(c)
    }
}

/// What goes into a package besides the header.
#[derive(Debug, Clone)]
pub struct PackageSpec {
    /// Archive format.
    pub format: PayloadType,
    /// Header command (empty: the guest applies cust.cfg itself).
    pub command: String,
    /// Header flags ([`dp::flags`]).
    pub flags: u8,
    /// Header process timeout, seconds (0: the guest's default).
    pub process_timeout: u16,
    /// Files by name in the archive.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Build a package: the header, then the archive.
pub fn build_package(p: &PackageSpec) -> Result<Vec<u8>, CustomizeError> {
    let e = |e: std::io::Error| CustomizeError::Build(e.to_string());
    let payload = match p.format {
        PayloadType::Cabinet => {
            let mut b = cab::CabinetBuilder::new();
            let folder = b.add_folder(cab::CompressionType::MsZip);
            for (name, _) in &p.files {
                folder.add_file(name.replace('/', "\\"));
            }
            let mut w = b.build(Cursor::new(Vec::new())).map_err(e)?;
            let mut i = 0;
            while let Some(mut fw) = w.next_file().map_err(e)? {
                fw.write_all(&p.files[i].1).map_err(e)?;
                i += 1;
            }
            w.finish().map_err(e)?.into_inner()
        }
        PayloadType::Zip => {
            let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let o = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(0o600);
            for (name, data) in &p.files {
                z.start_file(name.as_str(), o)
                    .map_err(|x| CustomizeError::Build(x.to_string()))?;
                z.write_all(data).map_err(e)?;
            }
            z.finish()
                .map_err(|x| CustomizeError::Build(x.to_string()))?
                .into_inner()
        }
        PayloadType::GzippedTar => {
            let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let mut t = tar::Builder::new(gz);
            for (name, data) in &p.files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o600);
                h.set_entry_type(tar::EntryType::Regular);
                t.append_data(&mut h, name, data.as_slice()).map_err(e)?;
            }
            t.into_inner().map_err(e)?.finish().map_err(e)?
        }
    };
    let mut h = Header::new(p.format, &p.command, payload.len() as u64);
    h.flags = p.flags;
    h.process_timeout = p.process_timeout;
    let head = h
        .encode()
        .map_err(|x| CustomizeError::Build(x.to_string()))?;
    let mut pkg = head.to_vec();
    pkg.extend_from_slice(&payload);
    Ok(pkg)
}

/// The files of a native package for `cust`: `cust.cfg`, `nics.txt` (the
/// NICs to reconnect, by ordinal) and the custom script.
pub fn native_files(cust: &CustSpec, script: Option<(&str, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![("cust.cfg".to_string(), cust.render().into_bytes())];
    if !cust.nics.is_empty() {
        let ordinals: Vec<String> = (1..=cust.nics.len()).map(|i| i.to_string()).collect();
        files.push(("nics.txt".to_string(), ordinals.join(",").into_bytes()));
    }
    if let Some((name, data)) = script {
        files.push((name.to_string(), data));
    }
    files
}

/// How a customization is going, as hostd's `customizationStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Started, no outcome yet.
    Running,
    /// The guest reported DONE with success.
    Succeeded,
    /// The guest (or the copy) reported a failure.
    Failed,
}

/// One report as received.
#[derive(Debug, Clone)]
pub struct CustEvent {
    /// When, since the epoch.
    pub at: SystemTime,
    /// State number.
    pub state: u32,
    /// Code, if sent.
    pub code: Option<u32>,
    /// The rest of the report.
    pub message: String,
}

/// A VM's latest customization.
#[derive(Debug, Clone)]
pub struct Customization {
    /// Outcome so far.
    pub status: Status,
    /// Latest state reported.
    pub state: u32,
    /// Latest code reported (0 when none).
    pub code: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// Every report, oldest first (at most [`MAX_EVENTS`]).
    pub events: Vec<CustEvent>,
    /// Where the package was copied.
    pub package: Option<String>,
    /// Whether the guest's NICs were reported connected (104 answered).
    pub nics_connected: bool,
}

impl Default for Customization {
    fn default() -> Self {
        Customization {
            status: Status::Running,
            state: state::PENDING,
            code: 0,
            error: None,
            events: Vec::new(),
            package: None,
            nics_connected: false,
        }
    }
}

impl Customization {
    /// Take one `deployPkg.update.state` report; the reply body for the guest.
    pub fn report(&mut self, r: &StateReport) -> &'static str {
        if self.events.len() < MAX_EVENTS {
            self.events.push(CustEvent {
                at: SystemTime::now(),
                state: r.state,
                code: r.code,
                message: r.message.clone(),
            });
        }
        self.state = r.state;
        let code = r.code.unwrap_or(0);
        self.code = code;
        if code_is_failure(code) {
            if self.status != Status::Failed {
                self.status = Status::Failed;
                let text = r.text().map(str::to_string).unwrap_or_else(|| {
                    if r.message.is_empty() || r.message == dp::LOG_PATH {
                        dp::code_name(code).to_string()
                    } else {
                        r.message.clone()
                    }
                });
                self.error = Some(text);
            }
        } else if r.state == state::DONE && self.status == Status::Running {
            self.status = Status::Succeeded;
        }
        match code {
            event::ENABLE_NICS => dp::QUERY_NICS_SUPPORTED,
            event::QUERY_NICS => {
                self.nics_connected = true;
                dp::NICS_CONNECTED
            }
            _ => "",
        }
    }

    /// The failure of a step on the host's side (begin, copy).
    pub fn host_failed(&mut self, state: u32, code: u32, why: String) {
        self.state = state;
        self.code = code;
        self.status = Status::Failed;
        self.error = Some(why);
    }

    /// The `customization` object of `vm show --json`.
    pub fn json(&self) -> serde_json::Value {
        let events: Vec<serde_json::Value> = self
            .events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "time": e.at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
                    "state": e.state,
                    "state_name": dp::state_name(e.state),
                    "code": e.code,
                    "code_name": e.code.map(dp::code_name),
                    "message": e.message,
                })
            })
            .collect();
        // The log excerpt: what the guest said after the log path's '@'.
        let log: Vec<&str> = self
            .events
            .iter()
            .filter_map(|e| {
                let t = e
                    .message
                    .split_once('@')
                    .map(|(_, t)| t)
                    .unwrap_or(&e.message);
                (!t.is_empty() && t != dp::LOG_PATH).then_some(t)
            })
            .collect();
        serde_json::json!({
            "status": match self.status {
                Status::Running => "running",
                Status::Succeeded => "succeeded",
                Status::Failed => "failed",
            },
            "state": dp::state_name(self.state),
            "state_number": self.state,
            "code": self.code,
            "code_name": dp::code_name(self.code),
            "error": self.error,
            "package": self.package,
            "nics_connected": self.nics_connected,
            "events": events,
            "log": log.join("\n"),
        })
    }
}

/// How long `begin`, each copy packet and `deploy` may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The package's file name in the guest's directory.
pub const PACKAGE_NAME: &str = "hvsim-customization.pkg";

/// Run the host's side of the exchange on `vm`: begin, copy, deploy. The
/// reports that follow arrive through RPCI.
pub fn start(vm: &crate::vm::Vm, package: &[u8]) -> Result<serde_json::Value, String> {
    let set = |c: Customization| vm.lock().data.customization = Some(c);
    set(Customization::default());
    let fail = |st: u32, code: u32, why: String| {
        let mut g = vm.lock();
        g.data
            .customization
            .get_or_insert_with(Customization::default)
            .host_failed(st, code, why.clone());
        why
    };
    let reply = vm
        .tclo(dp::TCLO_BEGIN.as_bytes(), STEP_TIMEOUT)
        .map_err(|e| {
            fail(
                state::PENDING,
                dp::error::NOT_SUPPORT,
                format!("deployPkg.begin: {e}"),
            )
        })?;
    let text = String::from_utf8_lossy(&reply)
        .trim_end_matches('\0')
        .to_string();
    let Some(dir) = text
        .strip_prefix("OK ")
        .map(str::trim)
        .filter(|d| d.starts_with('/'))
    else {
        return Err(fail(
            state::PENDING,
            dp::error::NOT_SUPPORT,
            format!("deployPkg.begin: the guest answered {text:?}"),
        ));
    };
    let path = format!("{}/{PACKAGE_NAME}", dir.trim_end_matches('/'));
    {
        let mut g = vm.lock();
        if let Some(c) = &mut g.data.customization {
            c.state = state::COPYING;
            c.package = Some(path.clone());
        }
    }
    copy(vm, &path, package).map_err(|e| {
        fail(
            state::COPYING,
            dp::error::COPY_FAILED,
            format!("copying the package into the guest: {e}"),
        )
    })?;
    let cmd = format!("{} {path}", dp::TCLO_DEPLOY);
    let reply = vm.tclo(cmd.as_bytes(), STEP_TIMEOUT).map_err(|e| {
        fail(
            state::DEPLOYING,
            dp::error::DEPLOY_FAILED,
            format!("deployPkg.deploy: {e}"),
        )
    })?;
    let text = String::from_utf8_lossy(&reply)
        .trim_end_matches('\0')
        .to_string();
    if !text.starts_with("OK") {
        let mut g = vm.lock();
        if let Some(c) = &mut g.data.customization {
            if c.status == Status::Running {
                c.host_failed(
                    state::DEPLOYING,
                    dp::error::DEPLOY_FAILED,
                    format!("deployPkg.deploy: {text}"),
                );
            }
        }
    }
    Ok(serde_json::json!({ "directory": dir, "package": path, "deploy_reply": text }))
}

/// Copy `data` into the guest file `path` through the guest's HGFS server
/// (TCLO `f` packets).
fn copy(vm: &crate::vm::Vm, path: &str, data: &[u8]) -> Result<(), String> {
    let opts = crate::guestops::UploadOptions {
        overwrite: true,
        mode: Some(0o600),
    };
    crate::guestops::upload_direct(vm, STEP_TIMEOUT, &mut &data[..], path, &opts, &mut |_| {})
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_toml_to_cust_cfg() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pw"), "hunter2\n").unwrap();
        let spec: SpecToml = toml::from_str(
            "hostname = \"web1\"\ndomain = \"example.test\"\ntime_zone = \"Europe/Berlin\"\nutc = true\n\
             password_file = \"pw\"\ndns_servers = [\"192.0.2.53\"]\ndns_suffixes = [\"example.test\"]\n\
             [[nic]]\nmac = \"00:50:56:AA:00:01\"\nipv4 = \"192.0.2.10/24\"\ngateway4 = \"192.0.2.1\"\nipv6 = [\"2001:db8::10/64\"]\ngateway6 = \"2001:db8::1\"\n\
             [[nic]]\nmac = \"00:50:56:aa:00:02\"\n",
        )
        .unwrap();
        let c = spec
            .to_cust(d.path(), Path::new("spec.toml"), "m1")
            .unwrap();
        assert_eq!(c.root_password.as_deref(), Some("hunter2"));
        assert!(!c.nics[0].dhcp && c.nics[1].dhcp);
        assert_eq!(c.marker_id.as_deref(), Some("m1"));
        let files = native_files(&c, None);
        assert_eq!(files[1], ("nics.txt".to_string(), b"1,2".to_vec()));
        for format in [
            PayloadType::Cabinet,
            PayloadType::Zip,
            PayloadType::GzippedTar,
        ] {
            let pkg = build_package(&PackageSpec {
                format,
                command: String::new(),
                flags: dp::flags::SKIP_REBOOT,
                process_timeout: 0,
                files: files.clone(),
            })
            .unwrap();
            let h = Header::parse(&pkg).unwrap();
            assert_eq!(h.payload_type, format);
            assert_eq!(h.flags, 1);
        }
        let bad: SpecToml = toml::from_str("[[nic]]\nmac = \"zz\"\n").unwrap();
        let e = bad
            .to_cust(d.path(), Path::new("spec.toml"), "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("MAC"), "{e}");
    }

    #[test]
    fn reports_make_the_outcome() {
        let mut c = Customization::default();
        let r = |s: &str| StateReport::parse(s).unwrap();
        assert_eq!(c.report(&r("3")), "");
        assert_eq!(
            c.report(&r("4 0 /var/log/vmware-imc/toolsDeployPkg.log")),
            ""
        );
        assert_eq!(
            c.report(&r("4 103 /var/log/vmware-imc/toolsDeployPkg.log@1")),
            "queryNicsSupported"
        );
        assert_eq!(
            c.report(&r("4 104 /var/log/vmware-imc/toolsDeployPkg.log@1")),
            "connected"
        );
        assert_eq!(c.status, Status::Running);
        c.report(&r("5 0 /var/log/vmware-imc/toolsDeployPkg.log"));
        assert_eq!(c.status, Status::Succeeded);
        assert!(c.nics_connected);
        let mut c = Customization::default();
        c.report(&r(
            "4 100 /var/log/vmware-imc/toolsDeployPkg.log@bad package header: x",
        ));
        assert_eq!(c.status, Status::Failed);
        assert_eq!(c.error.as_deref(), Some("bad package header: x"));
        let j = c.json();
        assert_eq!(j["status"], "failed");
        assert_eq!(j["code_name"], "customize-failed");
        assert_eq!(j["log"], "bad package header: x");
    }
}
