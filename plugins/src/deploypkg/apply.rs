//! The one place guest customization writes system files: under a root
//! directory (`/` in a guest, a throwaway tree in tests), each file written
//! to a temporary name beside it, synced, then renamed over the old one.
//!
//! Also what the writer needs to know about the system under the root:
//! which network stack reads the configuration, which interface has which
//! MAC, what the hosts file and adjtime say now.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::render::{FileContent, FileOut, NetStack};

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}", .path.display())]
pub struct WriteError {
    /// The file.
    pub path: PathBuf,
    /// What the OS said.
    #[source]
    pub source: std::io::Error,
}

/// A root directory everything is written under.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// The root at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        Root { dir: dir.into() }
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `rel` (relative, or absolute meaning "from the root") under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel.trim_start_matches('/'))
    }

    /// Whether `rel` exists under the root (links are not followed out of it).
    pub fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.path(rel)).is_ok()
    }

    /// A text file under the root, if readable.
    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    /// Write every file, each atomically; the first failure stops.
    pub fn write_all(&self, files: &[FileOut]) -> Result<(), WriteError> {
        files.iter().try_for_each(|f| self.write(f))
    }

    /// Write one file atomically: a temporary file (or link) in the same
    /// directory, synced, renamed over the target. A link at the target is
    /// replaced, never followed.
    pub fn write(&self, f: &FileOut) -> Result<(), WriteError> {
        let path = self.path(&f.path);
        let err = |source| WriteError {
            path: path.clone(),
            source,
        };
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(err)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{name}.vm-agent-tmp"));
        let _ = std::fs::remove_file(&tmp);
        match &f.content {
            FileContent::Text(t) => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(f.mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&tmp)
                    .map_err(err)?;
                let done = file
                    .write_all(t.as_bytes())
                    .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(f.mode)))
                    .and_then(|()| file.sync_all());
                if let Err(e) = done {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(err(e));
                }
            }
            FileContent::Symlink(target) => {
                std::os::unix::fs::symlink(target, &tmp).map_err(err)?;
            }
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The network stack the system under the root uses: netplan when its
    /// configuration directory and program are there, else NetworkManager
    /// when installed, else systemd-networkd when enabled, else ifupdown
    /// when `/etc/network/interfaces` exists.
    pub fn detect_stack(&self) -> Option<NetStack> {
        let any = |paths: &[&str]| paths.iter().any(|p| self.exists(p));
        if any(&["etc/netplan"]) && any(&["usr/sbin/netplan", "usr/bin/netplan", "sbin/netplan"]) {
            return Some(NetStack::Netplan);
        }
        if any(&["usr/sbin/NetworkManager", "sbin/NetworkManager"]) && any(&["etc/NetworkManager"])
        {
            return Some(NetStack::NetworkManager);
        }
        if any(&[
            "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
            "etc/systemd/system/dbus-org.freedesktop.network1.service",
        ]) {
            return Some(NetStack::Networkd);
        }
        if any(&["etc/network/interfaces"]) {
            return Some(NetStack::Ifupdown);
        }
        None
    }

    /// The interface whose `sys/class/net/*/address` is `mac`.
    pub fn interface_with_mac(&self, mac: &str) -> Option<String> {
        let dir = std::fs::read_dir(self.path("sys/class/net")).ok()?;
        let mut names: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.into_iter().find(|n| {
            self.read(&format!("sys/class/net/{n}/address"))
                .is_some_and(|a| a.trim().eq_ignore_ascii_case(mac))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_replaces_links() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        let outside = d.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, d.path().join("etc/hostname")).unwrap();
        root.write(&FileOut {
            path: "etc/hostname".into(),
            content: FileContent::Text("web1\n".into()),
            mode: 0o644,
        })
        .unwrap();
        assert_eq!(root.read("etc/hostname").unwrap(), "web1\n");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        root.write(&FileOut {
            path: "etc/localtime".into(),
            content: FileContent::Symlink("/usr/share/zoneinfo/UTC".into()),
            mode: 0o777,
        })
        .unwrap();
        assert_eq!(
            std::fs::read_link(d.path().join("etc/localtime")).unwrap(),
            Path::new("/usr/share/zoneinfo/UTC")
        );
        let names: Vec<_> = std::fs::read_dir(d.path().join("etc"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    #[test]
    fn detects_stacks_and_interfaces() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::new(d.path());
        assert_eq!(root.detect_stack(), None);
        std::fs::create_dir_all(d.path().join("etc/network")).unwrap();
        std::fs::write(d.path().join("etc/network/interfaces"), "").unwrap();
        assert_eq!(root.detect_stack(), Some(NetStack::Ifupdown));
        std::fs::create_dir_all(d.path().join("etc/netplan")).unwrap();
        std::fs::create_dir_all(d.path().join("usr/sbin")).unwrap();
        std::fs::write(d.path().join("usr/sbin/netplan"), "").unwrap();
        assert_eq!(root.detect_stack(), Some(NetStack::Netplan));
        std::fs::create_dir_all(d.path().join("sys/class/net/ens192")).unwrap();
        std::fs::write(
            d.path().join("sys/class/net/ens192/address"),
            "00:50:56:AA:00:01\n",
        )
        .unwrap();
        assert_eq!(
            root.interface_with_mac("00:50:56:aa:00:01").as_deref(),
            Some("ens192")
        );
        assert_eq!(root.interface_with_mac("00:50:56:aa:00:02"), None);
    }
}
