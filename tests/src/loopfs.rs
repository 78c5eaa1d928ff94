//! A loop-mounted ext4 image in a private mount namespace: the only file
//! system a quiesce test may ever freeze.
//!
//! The image is made by the test and mounted in a mount namespace of its
//! own (held by a `sleep` process), never on the machine's mount table;
//! guests run inside it (`nsenter`). [`LoopFs::check_is_loop_mount`] makes
//! sure the mount point is the loop device before anything may freeze it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::stderr;

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run command")
}

/// A loop-mounted ext4 image in a private mount namespace.
#[derive(Debug)]
pub struct LoopFs {
    /// The test's directory (the image, the mount point, logs).
    pub dir: tempfile::TempDir,
    /// The mount point (inside the namespace).
    pub mnt: PathBuf,
    holder: Option<Child>,
}

impl LoopFs {
    #[allow(clippy::new_without_default)] // it mounts: not a default value
    /// Make, mount and check the image (needs root, util-linux, e2fsprogs).
    pub fn new() -> LoopFs {
        let dir = tempfile::Builder::new()
            .prefix("vmbackup-t")
            .tempdir()
            .unwrap();
        let img = dir.path().join("disk.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let o = run(Command::new("truncate").args(["-s", "32M"]).arg(&img));
        assert!(o.status.success(), "{}", stderr(&o));
        let o = run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&img));
        assert!(o.status.success(), "mkfs.ext4 (e2fsprogs): {}", stderr(&o));
        let ready = dir.path().join("ready");
        let script = format!(
            "mount -o loop '{}' '{}' && echo before-freeze > '{}/before' && touch '{}' && exec sleep 100000",
            img.display(),
            mnt.display(),
            mnt.display(),
            ready.display()
        );
        let holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux)");
        let mut fs = LoopFs {
            dir,
            mnt,
            holder: Some(holder),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.exists() {
            if let Some(st) = fs.holder.as_mut().unwrap().try_wait().unwrap() {
                panic!("mounting the loop image failed: {st}");
            }
            assert!(Instant::now() < deadline, "the loop mount never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        fs.check_is_loop_mount();
        fs
    }

    /// The process holding the namespace.
    pub fn pid(&self) -> u32 {
        self.holder.as_ref().unwrap().id()
    }

    /// The mount point as seen from outside the namespace.
    pub fn outside(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid()))
            .join(self.mnt.strip_prefix("/").unwrap())
            .join(name)
    }

    /// The namespace's mount table (as /proc/mounts lists it).
    pub fn mounts(&self) -> Vec<(String, String, String)> {
        let t = std::fs::read_to_string(format!("/proc/{}/mounts", self.pid())).unwrap();
        t.lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (unescape(f[0]), unescape(f[1]), f[2].to_string())
            })
            .collect()
    }

    /// Never go on unless the mount point is our loop device's ext4.
    pub fn check_is_loop_mount(&self) {
        let m = self.mounts();
        let mine: Vec<_> = m
            .iter()
            .filter(|(_, p, _)| Path::new(p) == self.mnt)
            .collect();
        assert_eq!(mine.len(), 1, "{m:?}");
        assert!(
            mine[0].0.starts_with("/dev/loop") && mine[0].2 == "ext4",
            "{} is not the test's loop mount: {mine:?}",
            self.mnt.display()
        );
        // And it is not mounted outside the namespace.
        let host = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!host
            .lines()
            .any(|l| l.split(' ').nth(1).map(unescape).as_deref()
                == Some(&self.mnt.to_string_lossy()[..])));
    }

    /// `[vmbackup] excludedFileSystems` for vmtoolsd: every mount point of
    /// the namespace but the loop mount.
    pub fn vmtoolsd_exclusions(&self) -> String {
        let mut out = Vec::new();
        for (_, p, _) in self.mounts() {
            if Path::new(&p) == self.mnt {
                continue;
            }
            // GKeyFile escapes and the comma separator could break a
            // pattern, and then a mount would not be excluded.
            assert!(
                !p.contains([',', '\\', '\n', '\t']) && p.trim() == p,
                "mount point {p:?} cannot be excluded safely; not running vmtoolsd"
            );
            out.push(p);
        }
        out.sort();
        out.dedup();
        out.join(",")
    }

    /// Write `name` from another thread: true when it completed within
    /// `wait` (the file system takes writes), false when it blocks.
    pub fn write_completes(&self, name: &str, wait: Duration) -> bool {
        let path = self.outside(name);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let r = std::fs::write(&path, b"written");
            let _ = tx.send(r.is_ok());
        });
        match rx.recv_timeout(wait) {
            Ok(ok) => {
                assert!(ok, "writing {name} failed");
                true
            }
            Err(_) => false,
        }
    }

    /// Takes writes again and the data from before is intact.
    pub fn assert_thawed(&self, what: &str) {
        assert!(
            self.write_completes(&format!("after-{what}"), Duration::from_secs(20)),
            "{what}: the file system is still frozen"
        );
        assert_eq!(
            std::fs::read_to_string(self.outside("before")).unwrap(),
            "before-freeze\n",
            "{what}"
        );
    }

    /// A command that runs in the namespace.
    pub fn nsenter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t").arg(self.pid().to_string()).args(["-m", "--"]);
        c
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        // Whatever happened, thaw before the namespace goes away.
        let _ = self
            .nsenter()
            .args(["fsfreeze", "-u"])
            .arg(&self.mnt)
            .stderr(Stdio::null())
            .output();
        if let Some(mut h) = self.holder.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
