//! VMware's DMI for programs under `hvsim exec`: the files of
//! `/sys/class/dmi/id` (`/sys/devices/virtual/dmi/id`) as a Linux guest of an
//! ESXi host reads them, from the VM's UUID and model.
//!
//! [`files`] is pure. [`present`] (Linux) puts them in place for this
//! process and the program it becomes: it enters a private mount namespace
//! and mounts a read-only tmpfs holding the files over the DMI directory. The
//! machine's own files and mounts are never changed; nothing propagates out
//! of the namespace (every mount in it is made private first).
//!
//! Where the machine has no DMI directory at all (containers on a VM without
//! SMBIOS, other firmware), sysfs cannot grow one: the parent directories
//! (`/sys/devices/virtual`, `/sys/class`) are shadowed by a tmpfs in which
//! every original entry is bind-mounted back, plus the new `dmi` entry.

/// The product name an ESXi VM with BIOS firmware reports.
pub const DEFAULT_MODEL: &str = "VMware Virtual Platform";

/// One file of the DMI directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmiFile {
    /// File name inside `/sys/class/dmi/id`.
    pub name: &'static str,
    /// Contents, newline included (as sysfs prints them).
    pub contents: String,
    /// Permission bits: serial numbers and the UUID are root-only, as in sysfs.
    pub mode: u32,
}

/// The `VMware-` serial number: the UUID's bytes in order, in two groups of
/// eight split by a dash (`VMware-56 4d ... 9a-bc de ...`).
pub fn serial(uuid: &[u8; 16]) -> String {
    let half = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!("VMware-{}-{}", half(&uuid[..8]), half(&uuid[8..]))
}

/// `product_uuid` as Linux prints it for a VMware VM of hardware version 13
/// or later (SMBIOS 2.7): the first three fields of the SMBIOS bytes are
/// little-endian, so they read byte-swapped against the VM's UUID (and the
/// serial number), the last two unchanged.
pub fn product_uuid(uuid: &[u8; 16]) -> String {
    let b = uuid;
    let h = |r: &[u8]| r.iter().map(|x| format!("{x:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        h(&[b[3], b[2], b[1], b[0]]),
        h(&[b[5], b[4]]),
        h(&[b[7], b[6]]),
        h(&b[8..10]),
        h(&b[10..16])
    )
}

/// The kernel's modalias field value: printable ASCII without spaces and
/// colons.
fn alias(s: &str) -> String {
    s.chars()
        .filter(|&c| c.is_ascii_graphic() && c != ':')
        .collect()
}

/// The DMI files of a VM with BIOS UUID `uuid` and product name `model`, as
/// ESXi (hardware version 13 and later, BIOS firmware) presents them.
pub fn files(uuid: &[u8; 16], model: &str) -> Vec<DmiFile> {
    let fields: [(&'static str, &str); 18] = [
        ("bios_date", "12/12/2018"),
        ("bios_release", "4.6"),
        ("bios_vendor", "Phoenix Technologies LTD"),
        ("bios_version", "6.00"),
        ("board_asset_tag", ""),
        ("board_name", "440BX Desktop Reference Platform"),
        ("board_vendor", "Intel Corporation"),
        ("board_version", "None"),
        ("chassis_asset_tag", "No Asset Tag"),
        ("chassis_type", "1"),
        ("chassis_vendor", "No Enclosure"),
        ("chassis_version", "N/A"),
        ("ec_firmware_release", "0.0"),
        ("product_name", model),
        ("product_sku", ""),
        ("product_version", "None"),
        ("product_family", ""),
        ("sys_vendor", "VMware, Inc."),
    ];
    let get = |k: &str| fields.iter().find(|(n, _)| *n == k).map_or("", |(_, v)| *v);
    let modalias = format!(
        "dmi:bvn{}:bvr{}:bd{}:br{}:efr{}:svn{}:pn{}:pvr{}:rvn{}:rn{}:rvr{}:cvn{}:ct{}:cvr{}:sku{}:",
        alias(get("bios_vendor")),
        alias(get("bios_version")),
        alias(get("bios_date")),
        alias(get("bios_release")),
        alias(get("ec_firmware_release")),
        alias(get("sys_vendor")),
        alias(get("product_name")),
        alias(get("product_version")),
        alias(get("board_vendor")),
        alias(get("board_name")),
        alias(get("board_version")),
        alias(get("chassis_vendor")),
        alias(get("chassis_type")),
        alias(get("chassis_version")),
        alias(get("product_sku")),
    );
    let mut out: Vec<DmiFile> = fields
        .iter()
        // An empty product_family is absent on such a VM.
        .filter(|(n, v)| !(*n == "product_family" && v.is_empty()))
        .map(|(name, v)| DmiFile {
            name,
            contents: format!("{v}\n"),
            mode: 0o444,
        })
        .collect();
    let private = |name, contents: String| DmiFile {
        name,
        contents: contents + "\n",
        mode: 0o400,
    };
    out.push(private("product_serial", serial(uuid)));
    out.push(private("product_uuid", product_uuid(uuid)));
    out.push(private("board_serial", "None".into()));
    out.push(private("chassis_serial", "None".into()));
    out.push(DmiFile {
        name: "modalias",
        contents: format!("{modalias}\n"),
        mode: 0o444,
    });
    out.push(DmiFile {
        name: "uevent",
        contents: format!("MODALIAS={modalias}\n"),
        mode: 0o644,
    });
    out.sort_by_key(|f| f.name);
    out
}

/// Why the DMI files could not be presented.
#[derive(Debug, thiserror::Error)]
pub enum DmiError {
    /// No private mount namespace: not root (no CAP_SYS_ADMIN).
    #[error("no private mount namespace for it ({0}): run hvsim exec as root, or under `unshare -rm` (a user namespace), or pass --no-dmi")]
    Namespace(std::io::Error),
    /// A step inside the private namespace failed.
    #[error("{what}: {source} (pass --no-dmi to run with the machine's DMI)")]
    Setup {
        /// The step.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

#[cfg(target_os = "linux")]
mod linux {
    use std::ffi::CString;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::{Path, PathBuf};

    use super::{DmiError, DmiFile};

    /// Where sysfs keeps the DMI directory; `/sys/class/dmi/id` is a
    /// symlink to it.
    const DMI_DIR: &str = "/sys/devices/virtual/dmi/id";
    const CLASS_DMI: &str = "/sys/class/dmi";

    fn setup(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DmiError {
        let what = what.into();
        move |source| DmiError::Setup { what, source }
    }

    fn cstr(p: &Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
    }

    fn mount(
        src: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> std::io::Result<()> {
        let src = src.map(cstr);
        let target = cstr(target);
        let fstype = fstype.map(|s| CString::new(s).unwrap_or_default());
        let data = data.map(|s| CString::new(s).unwrap_or_default());
        let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: every pointer is null or a NUL-terminated string that
        // lives until the call returns.
        let rc =
            unsafe { libc::mount(p(&src), target.as_ptr(), p(&fstype), flags, p(&data).cast()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    const TMPFS_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

    fn tmpfs(at: &Path) -> Result<(), DmiError> {
        mount(
            Some(Path::new("tmpfs")),
            at,
            Some("tmpfs"),
            TMPFS_FLAGS,
            Some("mode=0755,size=1m"),
        )
        .map_err(setup(format!("mount a tmpfs on {}", at.display())))
    }

    fn read_only(at: &Path) -> Result<(), DmiError> {
        mount(
            None,
            at,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | TMPFS_FLAGS,
            None,
        )
        .map_err(setup(format!("make {} read-only", at.display())))
    }

    /// Cover `dir` with a tmpfs that holds every entry `dir` had (directories
    /// and files bind-mounted back from the original, symlinks copied), so
    /// new entries can be added next to them.
    fn shadow(dir: &Path) -> Result<(), DmiError> {
        let entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(setup(format!("list {}", dir.display())))?
            .filter_map(Result::ok)
            .collect();
        // The original stays reachable through this descriptor once covered.
        let orig: OwnedFd = std::fs::File::open(dir)
            .map_err(setup(format!("open {}", dir.display())))?
            .into();
        tmpfs(dir)?;
        for e in entries {
            let name = e.file_name();
            let at = dir.join(&name);
            let from = PathBuf::from(format!("/proc/self/fd/{}", orig.as_raw_fd())).join(&name);
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_symlink() {
                let to = std::fs::read_link(&from)
                    .map_err(setup(format!("read link {}", at.display())))?;
                symlink(to, &at).map_err(setup(format!("link {}", at.display())))?;
                continue;
            }
            if ft.is_dir() {
                std::fs::create_dir(&at)
            } else {
                std::fs::write(&at, b"")
            }
            .map_err(setup(format!("create {}", at.display())))?;
            mount(Some(&from), &at, None, libc::MS_BIND | libc::MS_REC, None)
                .map_err(setup(format!("bind {} back", at.display())))?;
        }
        Ok(())
    }

    fn write_files(dir: &Path, files: &[DmiFile]) -> Result<(), DmiError> {
        for f in files {
            let p = dir.join(f.name);
            std::fs::write(&p, &f.contents).map_err(setup(format!("write {}", p.display())))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))
                .map_err(setup(format!("chmod {}", p.display())))?;
        }
        Ok(())
    }

    /// Enter a private mount namespace in which `/sys/class/dmi/id` and
    /// `/sys/devices/virtual/dmi/id` hold `files` (read-only). Only this
    /// process and what it execs or forks afterwards see them.
    pub fn present(files: &[DmiFile]) -> Result<(), DmiError> {
        // SAFETY: unshare with a flag; affects only this (single-threaded) process.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return Err(DmiError::Namespace(std::io::Error::last_os_error()));
        }
        // Nothing done here may reach the machine's mount namespace.
        mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        )
        .map_err(setup("make the mounts private"))?;
        let dmi = Path::new(DMI_DIR);
        if dmi.is_dir() {
            tmpfs(dmi)?;
            write_files(dmi, files)?;
            return read_only(dmi);
        }
        // No DMI on this machine: make room for it.
        let virt = Path::new("/sys/devices/virtual");
        shadow(virt)?;
        std::fs::create_dir_all(dmi).map_err(setup(format!("create {DMI_DIR}")))?;
        write_files(dmi, files)?;
        read_only(virt)?;
        let class = Path::new(CLASS_DMI);
        if class.join("id").is_dir() {
            return Ok(());
        }
        // /sys/class/dmi/id is the symlink sysfs has there.
        let covered = if class.is_dir() {
            shadow(class)?;
            class
        } else {
            let parent = Path::new("/sys/class");
            shadow(parent)?;
            std::fs::create_dir(class).map_err(setup(format!("create {CLASS_DMI}")))?;
            parent
        };
        symlink("../../devices/virtual/dmi/id", class.join("id"))
            .map_err(setup(format!("link {CLASS_DMI}/id")))?;
        read_only(covered)
    }
}

#[cfg(target_os = "linux")]
pub use linux::present;

#[cfg(test)]
mod tests {
    use super::*;

    const U: [u8; 16] = [
        0x56, 0x4d, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a,
        0xbc,
    ];

    fn get<'a>(f: &'a [DmiFile], name: &str) -> &'a DmiFile {
        f.iter().find(|x| x.name == name).expect(name)
    }

    #[test]
    fn serial_and_uuid_as_vmware_formats_them() {
        assert_eq!(
            serial(&U),
            "VMware-56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc"
        );
        assert_eq!(product_uuid(&U), "34124d56-7856-bc9a-def0-123456789abc");
    }

    #[test]
    fn files_say_vmware() {
        let f = files(&U, DEFAULT_MODEL);
        assert_eq!(get(&f, "sys_vendor").contents, "VMware, Inc.\n");
        assert_eq!(
            get(&f, "product_name").contents,
            "VMware Virtual Platform\n"
        );
        assert_eq!(
            get(&f, "bios_vendor").contents,
            "Phoenix Technologies LTD\n"
        );
        assert_eq!(get(&f, "product_uuid").mode, 0o400);
        assert_eq!(get(&f, "sys_vendor").mode, 0o444);
        assert!(get(&f, "modalias")
            .contents
            .contains(":svnVMware,Inc.:pnVMwareVirtualPlatform:pvrNone:"));
        assert!(f.iter().all(|x| x.contents.ends_with('\n')));
        let f = files(&U, "VMware20,1");
        assert_eq!(get(&f, "product_name").contents, "VMware20,1\n");
        assert!(get(&f, "uevent").contents.starts_with("MODALIAS=dmi:"));
    }
}
