//! A VM's `vmware.log` (`STATE/vms/NAME/vmware.log`): what the VMX writes
//! there and support tooling reads, above all the guest's `log` RPCI
//! messages as `Guest: ` lines, which `vmware-xferlogs -g` scans for the
//! files a guest sent with `vmware-xferlogs -p` (`Guest: >Logfile Begins`,
//! base64 lines, `Guest: >Logfile Ends`).
//!
//! Line format, as an ESXi VMX writes it:
//!
//! ```text
//! 2026-12-04T19:32:24.123Z| vcpu-0| I005: Guest: >Logfile Begins : /tmp/x: ver - 1
//! ```
//!
//! UTC time with milliseconds, the VMX thread, the level and the text. A
//! line is cut at [`MAX_LINE`] bytes, as the VMX does; control characters
//! other than tab become `?`, so one message can never forge another line.
//! Every line goes through [`VmLog::append`], the one place to add rate
//! limits or rotation.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Longest line body (after the prefix), bytes.
pub const MAX_LINE: usize = 4096;

/// The thread a guest's backdoor messages are logged under.
pub const VCPU: &str = "vcpu-0";

/// One line: `<time>| <thread>| I005: <text>\n`, `text` cut at
/// [`MAX_LINE`] bytes and made printable.
pub fn format_line(t: SystemTime, thread: &str, text: &[u8]) -> Vec<u8> {
    let mut out = format!("{}| {thread}| I005: ", protocol::appinfo::utc_millis(t)).into_bytes();
    out.extend(text.iter().take(MAX_LINE).map(|&b| {
        if b < 0x20 && b != b'\t' || b == 0x7f {
            b'?'
        } else {
            b
        }
    }));
    out.push(b'\n');
    out
}

/// A VM's log file; writes nothing until [`VmLog::open`].
#[derive(Debug, Default)]
pub struct VmLog {
    file: Mutex<Option<(PathBuf, File)>>,
}

impl VmLog {
    /// Append to `path` (created with its directory) from now on, starting
    /// with the line a VMX starts its log with.
    pub fn open(&self, path: &Path, header: &str) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        *self.lock() = Some((path.to_path_buf(), f));
        self.append("vmx", header.as_bytes());
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(PathBuf, File)>> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the log is, once open.
    pub fn path(&self) -> Option<PathBuf> {
        self.lock().as_ref().map(|(p, _)| p.clone())
    }

    /// Write one line from `thread`. A write error is logged, never
    /// returned: the guest's call does not fail for the host's disk.
    pub fn append(&self, thread: &str, text: &[u8]) {
        let mut g = self.lock();
        let Some((path, f)) = g.as_mut() else { return };
        if let Err(e) = f.write_all(&format_line(SystemTime::now(), thread, text)) {
            log::warn!("cannot write {}: {e}", path.display());
        }
    }

    /// A guest's `log` RPCI message: one `Guest: ` line per line of it
    /// (C terminator and trailing newlines dropped).
    pub fn guest(&self, msg: &[u8]) {
        let msg = msg.strip_suffix(b"\0").unwrap_or(msg);
        let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
        for line in msg.split(|&b| b == b'\n') {
            let mut text = b"Guest: ".to_vec();
            text.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
            self.append(VCPU, &text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn lines_as_the_vmx_writes_them() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_437_986_042);
        assert_eq!(
            format_line(t, VCPU, b"Guest: >Logfile Ends "),
            b"2026-11-23T12:46:26.042Z| vcpu-0| I005: Guest: >Logfile Ends \n"
        );
        let long = format_line(t, VCPU, &[b'a'; 10_000]);
        assert_eq!(
            long.len(),
            "2026-11-23T12:46:26.042Z| vcpu-0| I005: ".len() + MAX_LINE + 1
        );
        assert!(format_line(t, VCPU, b"a\nb\x1bc\td").ends_with(b"a?b?c\td\n"));
    }

    #[test]
    fn guest_messages_become_guest_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vms/vm0/vmware.log");
        let log = VmLog::default();
        log.guest(b"before open: dropped");
        log.open(&path, "Log for hvsim").unwrap();
        log.guest(b"one\ntwo\n\0");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with("| vmx| I005: Log for hvsim"));
        assert!(lines[1].ends_with("| vcpu-0| I005: Guest: one"));
        assert!(lines[2].ends_with("| vcpu-0| I005: Guest: two"));
        assert_eq!(log.path(), Some(path));
    }
}
