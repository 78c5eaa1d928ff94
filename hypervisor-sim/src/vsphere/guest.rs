//! GuestOperationsManager: the vSphere guest operations (processes, files,
//! transfers) over the VM's guest tools, through [`crate::guestops`]. File
//! data moves through `/guestFile` URLs on the API's own listener, as on
//! ESXi: InitiateFileTransfer* returns a URL, the client GETs or PUTs it,
//! hvsim moves the bytes with HGFS packets through the guest tools.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use protocol::vix::{self, err, file_attr};

use crate::guestops::{Guest, GuestOpsError, UploadOptions};
use crate::http::{Request, Response};

use super::soap::{self, Node};
use super::val::Val;
use super::{mor_of, Fault, Outcome, Service, VmEntry};

/// How long a transfer URL stays valid.
pub const TRANSFER_TTL: Duration = Duration::from_secs(300);
/// Most transfer URLs waiting to be used.
pub const MAX_TRANSFERS: usize = 256;
/// Largest file moved through one `/guestFile` request: the HTTP layer
/// holds a request or response body in memory.
pub const MAX_TRANSFER_BYTES: usize = 64 << 20;

/// A transfer URL handed out and not used yet.
#[derive(Debug, Clone)]
pub struct Transfer {
    vm_id: String,
    user: String,
    password: String,
    path: String,
    upload: Option<UploadOptions>,
    size: u64,
    created: Instant,
}

/// The transfers of a service.
#[derive(Debug, Default)]
pub struct Transfers(Mutex<HashMap<String, Transfer>>);

impl Transfers {
    fn add(&self, t: Transfer) -> Result<String, Fault> {
        let token = super::random_hex(16)
            .ok_or_else(|| Fault::new("SystemError", "no entropy for a transfer token"))?;
        let mut map = self.0.lock().unwrap();
        map.retain(|_, t| t.created.elapsed() < TRANSFER_TTL);
        if map.len() >= MAX_TRANSFERS {
            return Err(Fault::new(
                "GuestOperationsUnavailable",
                format!("too many file transfers waiting (at most {MAX_TRANSFERS}): use or let expire the URLs handed out"),
            ));
        }
        map.insert(token.clone(), t);
        Ok(token)
    }

    fn take(&self, token: &str) -> Option<Transfer> {
        let mut map = self.0.lock().unwrap();
        let t = map.remove(token)?;
        (t.created.elapsed() < TRANSFER_TTL).then_some(t)
    }
}

/// The name/password of a `GuestAuthentication` argument.
fn auth(op: &Node) -> Result<(String, String), Fault> {
    let a = op
        .child("auth")
        .ok_or_else(|| Fault::invalid_argument("auth"))?;
    match a.xsi_type() {
        Some("NamePasswordAuthentication") | None => Ok((
            a.text_of("username").unwrap_or("").to_string(),
            a.text_of("password").unwrap_or("").to_string(),
        )),
        Some(other) => Err(Fault::new(
            "GuestAuthenticationChallenge",
            format!("{other} is not supported by hvsim: use NamePasswordAuthentication"),
        )),
    }
}

fn text(op: &Node, name: &str) -> String {
    op.text_of(name).unwrap_or("").to_string()
}

/// The vSphere fault for a guest-operation failure.
pub fn fault(e: &GuestOpsError, path: &str) -> Fault {
    let msg = e.to_string();
    let file = |kind: &'static str| {
        Fault::new(kind, msg.clone()).with(format!("<file>{}</file>", soap::escape(path)))
    };
    match e {
        GuestOpsError::Transport(_) | GuestOpsError::NotSupported(_) | GuestOpsError::Timeout { .. } => {
            Fault::new("GuestOperationsUnavailable", format!("The guest operations agent could not be contacted: {msg}"))
        }
        GuestOpsError::Vix { code, .. } => match u64::from(vix::code_of(*code)) {
            err::INVALID_LOGIN_CREDENTIALS | err::AUTHENTICATION_FAIL | err::CANNOT_AUTHENTICATE_WITH_GUEST => {
                Fault::new("InvalidGuestLogin", "Failed to authenticate with the guest operating system using the supplied credentials.")
            }
            err::FILE_NOT_FOUND => file("FileNotFound"),
            err::FILE_ALREADY_EXISTS => file("FileAlreadyExists"),
            err::NOT_A_FILE => file("NotAFile"),
            err::NOT_A_DIRECTORY => file("NotADirectory"),
            err::DIRECTORY_NOT_EMPTY => file("DirectoryNotEmpty"),
            err::FILE_ACCESS_ERROR | err::GUEST_USER_PERMISSIONS => Fault::new("GuestPermissionDenied", msg),
            err::NO_SUCH_PROCESS => Fault::new("GuestProcessNotFound", msg).with("<pid>0</pid>".into()),
            err::OPERATION_DISABLED | err::GUEST_OPERATIONS_PROHIBITED => {
                Fault::new("OperationDisabledByGuest", msg)
            }
            err::OBJECT_IS_BUSY => Fault::new("GuestOperationsUnavailable", format!("the guest is busy (a quiesced snapshot in progress?): {msg}")),
            err::INVALID_ARG | err::FILE_NAME_INVALID | err::FILE_NAME_TOO_LONG => Fault::invalid_argument(path),
            _ => Fault::new("GuestOperationsFault", msg),
        },
        GuestOpsError::Hgfs { .. } | GuestOpsError::BadReply { .. } => Fault::new("GuestOperationsFault", msg),
        GuestOpsError::Request { .. } => Fault::invalid_argument(path),
        GuestOpsError::Io { .. } => Fault::new("SystemError", msg),
    }
}

fn posix_attrs(f: &vix::FileInfo) -> Val {
    let t = |secs: u64| Val::Time(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    let mut fields = vec![("modificationTime", t(f.mtime)), ("accessTime", t(f.atime))];
    if !f.symlink_target.is_empty() {
        fields.push(("symlinkTarget", Val::s(f.symlink_target.clone())));
    }
    fields.extend([
        ("ownerId", Val::Int(f.uid)),
        ("groupId", Val::Int(f.gid)),
        ("permissions", Val::Long(i64::from(f.perm))),
    ]);
    Val::Obj("GuestPosixFileAttributes", fields)
}

fn file_type(f: &vix::FileInfo) -> &'static str {
    if f.file_type & file_attr::SYMLINK != 0 {
        "symlink"
    } else if f.file_type & file_attr::DIRECTORY != 0 {
        "directory"
    } else {
        "file"
    }
}

/// The `/guestFile` URL for a token, written as ESXi writes it: host `*`
/// and port 443, which clients replace with the address they connected to
/// (govmomi replaces the whole `*:443`; Ansible's community.vmware
/// replaces `*` with the host and `443` with the port it was given, which
/// breaks on any URL with `443` elsewhere, such as a host:port of
/// `127.0.0.1:8443`).
fn url(vm_id: &str, token: &str) -> String {
    format!("https://*:443/guestFile?id={vm_id}&token={token}")
}

impl Service {
    /// A GuestOperationsManager method on `vm`.
    pub(super) fn guest_op(&self, e: &VmEntry, op: &Node) -> Outcome {
        let (user, password) = auth(op)?;
        let guest = Guest::new(&*e.vm, &user, &password);
        let method = op.name.as_str();
        let path_arg = match method {
            "MakeDirectoryInGuest" | "DeleteDirectoryInGuest" => text(op, "directoryPath"),
            "MoveFileInGuest" => text(op, "srcFilePath"),
            "MoveDirectoryInGuest" => text(op, "srcDirectoryPath"),
            "InitiateFileTransferFromGuest" | "InitiateFileTransferToGuest" => {
                text(op, "guestFilePath")
            }
            _ => text(op, "filePath"),
        };
        let f = |e: GuestOpsError| fault(&e, &path_arg);
        match method {
            "ValidateCredentialsInGuest" => {
                guest.env(&["PATH".to_string()]).map_err(f)?;
                Ok(None)
            }
            "StartProgramInGuest" => {
                let spec = op
                    .child("spec")
                    .ok_or_else(|| Fault::invalid_argument("spec"))?;
                let program = text(spec, "programPath");
                if program.is_empty() {
                    return Err(Fault::invalid_argument("spec.programPath"));
                }
                let env: Vec<String> = spec.all("envVariables").map(|n| n.text.clone()).collect();
                let pid = guest
                    .start_program(
                        &program,
                        &text(spec, "arguments"),
                        &text(spec, "workingDirectory"),
                        &env,
                    )
                    .map_err(|e| fault(&e, &program))?;
                Ok(Some(Val::Long(pid)))
            }
            "ListProcessesInGuest" => {
                let pids: Vec<u64> = op
                    .all("pids")
                    .filter_map(|p| p.text.trim().parse().ok())
                    .collect();
                let procs = guest.list_processes(&pids).map_err(f)?;
                let t = |secs: i64| {
                    Val::Time(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
                };
                Ok(Some(Val::List(
                    "GuestProcessInfo",
                    procs
                        .iter()
                        .map(|p| {
                            let name = p.cmd.clone().unwrap_or_else(|| {
                                p.name.split_whitespace().next().unwrap_or("").to_string()
                            });
                            let mut fields = vec![
                                ("name", Val::s(name)),
                                ("pid", Val::Long(p.pid)),
                                ("owner", Val::s(p.user.clone())),
                                ("cmdLine", Val::s(p.name.clone())),
                                ("startTime", t(p.start)),
                            ];
                            if let (Some(end), Some(code)) =
                                (p.exit_time.filter(|t| *t > 0), p.exit_code)
                            {
                                fields.push(("endTime", t(end)));
                                fields.push(("exitCode", Val::Int(code)));
                            }
                            Val::Obj("GuestProcessInfo", fields)
                        })
                        .collect(),
                )))
            }
            "TerminateProcessInGuest" => {
                let pid: u64 = op
                    .text_of("pid")
                    .and_then(|p| p.trim().parse().ok())
                    .ok_or_else(|| Fault::invalid_argument("pid"))?;
                guest.kill(pid).map_err(|e| match e {
                    GuestOpsError::Vix { code, .. }
                        if u64::from(vix::code_of(code)) == err::NO_SUCH_PROCESS =>
                    {
                        Fault::new(
                            "GuestProcessNotFound",
                            format!("no process {pid} in the guest"),
                        )
                        .with(format!("<pid>{pid}</pid>"))
                    }
                    e => fault(&e, ""),
                })?;
                Ok(None)
            }
            "ReadEnvironmentVariableInGuest" => {
                let names: Vec<String> = op.all("names").map(|n| n.text.clone()).collect();
                let vars = guest.env(&names).map_err(f)?;
                Ok(Some(Val::List(
                    "string",
                    vars.into_iter().map(Val::s).collect(),
                )))
            }
            "MakeDirectoryInGuest" => {
                guest
                    .mkdir(&path_arg, op.bool_of("createParentDirectories", false))
                    .map_err(f)?;
                Ok(None)
            }
            "DeleteFileInGuest" => {
                guest.rm(&path_arg).map_err(f)?;
                Ok(None)
            }
            "DeleteDirectoryInGuest" => {
                guest
                    .rmdir(&path_arg, op.bool_of("recursive", false))
                    .map_err(f)?;
                Ok(None)
            }
            "MoveFileInGuest" => {
                guest
                    .mv(
                        &path_arg,
                        &text(op, "dstFilePath"),
                        false,
                        op.bool_of("overwrite", false),
                    )
                    .map_err(f)?;
                Ok(None)
            }
            "MoveDirectoryInGuest" => {
                guest
                    .mv(&path_arg, &text(op, "dstDirectoryPath"), true, false)
                    .map_err(f)?;
                Ok(None)
            }
            "CreateTemporaryFileInGuest" | "CreateTemporaryDirectoryInGuest" => {
                let dir = method == "CreateTemporaryDirectoryInGuest";
                let p = guest
                    .mktemp(
                        dir,
                        &text(op, "prefix"),
                        &text(op, "suffix"),
                        &text(op, "directoryPath"),
                    )
                    .map_err(f)?;
                Ok(Some(Val::s(p)))
            }
            "ListFilesInGuest" => {
                let index = op
                    .text_of("index")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let max = op
                    .text_of("maxResults")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let pattern = op.text_of("matchPattern").unwrap_or("").to_string();
                let page = guest
                    .list_files_page(&path_arg, &pattern, index, max)
                    .map_err(f)?;
                let files = page
                    .files
                    .iter()
                    .map(|fi| {
                        Val::Obj(
                            "GuestFileInfo",
                            vec![
                                ("path", Val::s(fi.name.clone())),
                                ("type", Val::s(file_type(fi))),
                                ("size", Val::Long(fi.size as i64)),
                                ("attributes", posix_attrs(fi)),
                            ],
                        )
                    })
                    .collect();
                Ok(Some(Val::Obj(
                    "GuestListFileInfo",
                    vec![
                        ("files", Val::List("GuestFileInfo", files)),
                        ("remaining", Val::Int(page.remaining as i32)),
                    ],
                )))
            }
            "InitiateFileTransferFromGuest" => {
                let info = guest.stat_for_download(&path_arg).map_err(f)?;
                if info.size as usize > MAX_TRANSFER_BYTES {
                    return Err(Fault::new(
                        "GuestOperationsFault",
                        format!("{path_arg} is {} bytes; hvsim moves at most {MAX_TRANSFER_BYTES} bytes per /guestFile transfer (use hvsim vm guest download for larger files)", info.size),
                    ));
                }
                let token = self.transfers.add(Transfer {
                    vm_id: e.id.clone(),
                    user,
                    password,
                    path: path_arg.clone(),
                    upload: None,
                    size: info.size,
                    created: Instant::now(),
                })?;
                Ok(Some(Val::Obj(
                    "FileTransferInformation",
                    vec![
                        ("attributes", posix_attrs(&info)),
                        ("size", Val::Long(info.size as i64)),
                        ("url", Val::s(url(&e.id, &token))),
                    ],
                )))
            }
            "InitiateFileTransferToGuest" => {
                let size: u64 = op
                    .text_of("fileSize")
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| Fault::invalid_argument("fileSize"))?;
                if size as usize > MAX_TRANSFER_BYTES {
                    return Err(Fault::new(
                        "GuestOperationsFault",
                        format!("{size} bytes: hvsim moves at most {MAX_TRANSFER_BYTES} bytes per /guestFile transfer (use hvsim vm guest upload for larger files)"),
                    ));
                }
                let overwrite = op.bool_of("overwrite", false);
                guest.prepare_upload(&path_arg, overwrite).map_err(f)?;
                let mode = op
                    .child("fileAttributes")
                    .and_then(|a| a.text_of("permissions"))
                    .and_then(|p| p.trim().parse::<u32>().ok());
                let token = self.transfers.add(Transfer {
                    vm_id: e.id.clone(),
                    user,
                    password,
                    path: path_arg,
                    upload: Some(UploadOptions {
                        overwrite: true,
                        mode,
                    }),
                    size,
                    created: Instant::now(),
                })?;
                Ok(Some(Val::s(url(&e.id, &token))))
            }
            _ => Err(Fault::new(
                "NotSupported",
                format!("{method} is not supported by hvsim"),
            )),
        }
    }

    /// `GET|PUT /guestFile?id=VM&token=T`: the data of a transfer.
    pub(super) fn guest_file(&self, req: &Request) -> Response {
        let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let param = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.split_once('=').filter(|(a, _)| *a == k).map(|(_, v)| v))
        };
        let Some(t) = param("token").and_then(|tok| self.transfers.take(tok)) else {
            return Response::text(
                404,
                "no such transfer: the URL is unknown, used or expired (it lives 5 minutes)\n",
            );
        };
        if param("id") != Some(t.vm_id.as_str()) {
            return Response::text(404, "no such transfer for this VM\n");
        }
        let Some(e) = self.inv.vm(&t.vm_id) else {
            return Response::text(404, "the VM is gone\n");
        };
        let guest = Guest::new(&*e.vm, &t.user, &t.password);
        match (req.method.as_str(), &t.upload) {
            ("GET", None) => {
                let mut body = Vec::with_capacity(t.size as usize);
                match guest.download(&t.path, &mut body, &mut |_| {}) {
                    Ok(_) => Response {
                        status: 200,
                        headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                        body,
                    },
                    Err(err) => Response::text(500, &format!("{err}\n")),
                }
            }
            ("PUT", Some(opts)) => {
                let mut src: &[u8] = &req.body;
                match guest.upload(&mut src, &t.path, opts, &mut |_| {}) {
                    Ok(_) => Response::text(200, ""),
                    Err(err) => Response::text(500, &format!("{err}\n")),
                }
            }
            _ => Response::text(405, "GET a transfer from the guest, PUT one to it\n"),
        }
    }
}

/// The guest-operation methods and the manager each belongs to.
pub fn is_guest_method(method: &str) -> bool {
    matches!(
        method,
        "ValidateCredentialsInGuest"
            | "StartProgramInGuest"
            | "ListProcessesInGuest"
            | "TerminateProcessInGuest"
            | "ReadEnvironmentVariableInGuest"
            | "MakeDirectoryInGuest"
            | "DeleteFileInGuest"
            | "DeleteDirectoryInGuest"
            | "MoveFileInGuest"
            | "MoveDirectoryInGuest"
            | "CreateTemporaryFileInGuest"
            | "CreateTemporaryDirectoryInGuest"
            | "ListFilesInGuest"
            | "InitiateFileTransferFromGuest"
            | "InitiateFileTransferToGuest"
            | "ChangeFileAttributesInGuest"
            | "AcquireCredentialsInGuest"
            | "ReleaseCredentialsInGuest"
    )
}

/// The VM argument of a guest-operation call.
pub fn vm_arg(op: &Node) -> Option<super::val::Mor> {
    op.child("vm").map(mor_of)
}

/// A vSphere CustomizationSpec as hvsim's customization spec (the same
/// cust.cfg `hvsim vm customize --spec` builds). NICs without a MAC take
/// the VM's NICs in order, as vCenter maps them.
pub fn customization_spec(
    spec: &Node,
    vm_macs: &[String],
) -> Result<crate::customize::SpecToml, Fault> {
    use crate::customize::{NicToml, SpecToml};
    let mut out = SpecToml::default();
    if let Some(id) = spec.child("identity") {
        match id.xsi_type() {
            Some("CustomizationLinuxPrep") | None => {}
            Some(other) => {
                return Err(Fault::new(
                    "CustomizationFault",
                    format!(
                        "{other} is not supported for a Linux guest: use CustomizationLinuxPrep"
                    ),
                ))
            }
        }
        if let Some(h) = id.child("hostName") {
            match h.xsi_type() {
                Some("CustomizationFixedName") | None => {
                    out.hostname = h.text_of("name").map(str::to_string);
                }
                Some("CustomizationVirtualMachineName") => {}
                Some(other) => {
                    return Err(Fault::new(
                        "CustomizationFault",
                        format!(
                        "host name generator {other} is not supported: use CustomizationFixedName"
                    ),
                    ))
                }
            }
        }
        out.domain = id.text_of("domain").map(str::to_string);
        out.time_zone = id.text_of("timeZone").map(str::to_string);
        out.utc = id
            .text_of("hwClockUTC")
            .map(|v| v.trim() == "true" || v.trim() == "1");
    }
    if let Some(g) = spec.child("globalIPSettings") {
        out.dns_servers = g
            .all("dnsServerList")
            .map(|n| n.text.trim().to_string())
            .collect();
        out.dns_suffixes = g
            .all("dnsSuffixList")
            .map(|n| n.text.trim().to_string())
            .collect();
    }
    for (i, m) in spec.all("nicSettingMap").enumerate() {
        let mac = match m
            .text_of("macAddress")
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(mac) => mac.to_string(),
            None => vm_macs.get(i).cloned().ok_or_else(|| {
                Fault::new(
                    "CustomizationFault",
                    format!(
                        "nicSettingMap[{i}] has no macAddress and the guest reported no NIC {i}"
                    ),
                )
            })?,
        };
        let a = m
            .child("adapter")
            .ok_or_else(|| Fault::invalid_argument("spec.nicSettingMap.adapter"))?;
        let mut nic = NicToml {
            mac,
            dhcp: None,
            ipv4: None,
            gateway4: None,
            ipv6: Vec::new(),
            gateway6: None,
        };
        match a.child("ip") {
            Some(ip) if ip.xsi_type() == Some("CustomizationFixedIp") => {
                let addr = ip.text_of("ipAddress").unwrap_or("").trim().to_string();
                let mask = a.text_of("subnetMask").unwrap_or("").trim();
                let prefix = mask
                    .parse::<std::net::Ipv4Addr>()
                    .map(|m| u32::from(m).leading_ones())
                    .map_err(|_| Fault::invalid_argument("spec.nicSettingMap.adapter.subnetMask"))?;
                nic.ipv4 = Some(format!("{addr}/{prefix}"));
                nic.gateway4 = a.all("gateway").next().map(|g| g.text.trim().to_string());
            }
            Some(ip) if ip.xsi_type() == Some("CustomizationDhcpIpGenerator") => nic.dhcp = Some(true),
            None => nic.dhcp = Some(true),
            Some(ip) => {
                return Err(Fault::new(
                    "CustomizationFault",
                    format!("IP generator {} is not supported: use CustomizationFixedIp or CustomizationDhcpIpGenerator", ip.xsi_type().unwrap_or("?")),
                ))
            }
        }
        if let Some(v6) = a.child("ipV6Spec") {
            for ip in v6
                .all("ip")
                .filter(|ip| ip.xsi_type() == Some("CustomizationFixedIpV6"))
            {
                nic.ipv6.push(format!(
                    "{}/{}",
                    ip.text_of("ipAddress").unwrap_or("").trim(),
                    ip.text_of("subnetMask").unwrap_or("64").trim()
                ));
            }
            nic.gateway6 = v6.all("gateway").next().map(|g| g.text.trim().to_string());
        }
        for d in a.all("dnsServerList") {
            let d = d.text.trim().to_string();
            if !out.dns_servers.contains(&d) {
                out.dns_servers.push(d);
            }
        }
        out.nic.push(nic);
    }
    Ok(out)
}
