//! The control socket's `guest` request: one guest operation on one VM.
//!
//! File data never goes through JSON: the client passes descriptors with
//! the request (SCM_RIGHTS) and the server reads or writes them directly,
//! one chunk at a time: `upload` reads the source from the first, `download`
//! writes the destination to the first, `run` writes the program's stdout to
//! the first and its stderr to the second.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::Duration;

use protocol::vix::{file_attr, FileInfo, ProcInfo, PropertyValue};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Guest, RunSpec, UploadOptions};
use crate::vm::Vm;

/// A guest password in a control request; `Debug` does not show it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

fn yes() -> bool {
    true
}

/// One guest operation, as the control socket carries it.
#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum GuestCmd {
    /// The tools' property list.
    ToolsState,
    /// Run a program; stdout and stderr go to the two passed descriptors.
    Run {
        /// Program path in the guest.
        program: String,
        /// Its arguments, one word each.
        #[serde(default)]
        args: Vec<String>,
        /// Working directory (default: the user's home).
        #[serde(default)]
        cwd: String,
        /// Extra `NAME=VALUE` environment.
        #[serde(default)]
        env: Vec<String>,
        /// Stop waiting after this long.
        timeout_ms: Option<u64>,
    },
    /// List processes.
    Ps {
        /// Only these pids.
        #[serde(default)]
        pids: Vec<u64>,
    },
    /// Kill a process.
    Kill {
        /// The pid.
        pid: u64,
    },
    /// List a directory.
    Ls {
        /// The directory (or a file).
        path: String,
        /// Regular expression the names must match.
        #[serde(default)]
        pattern: String,
    },
    /// Make a directory.
    Mkdir {
        /// The directory.
        path: String,
        /// Make missing parents too.
        #[serde(default)]
        parents: bool,
    },
    /// Delete a file.
    Rm {
        /// The file.
        path: String,
    },
    /// Delete a directory.
    Rmdir {
        /// The directory.
        path: String,
        /// Its contents too.
        #[serde(default)]
        recursive: bool,
    },
    /// Move a file or directory.
    Mv {
        /// Source.
        from: String,
        /// Destination.
        to: String,
        /// Replace an existing destination.
        #[serde(default = "yes")]
        overwrite: bool,
    },
    /// Make a temporary file or directory; the result is its path.
    Mktemp {
        /// A directory rather than a file.
        #[serde(default)]
        directory: bool,
        /// Name prefix.
        #[serde(default)]
        prefix: String,
        /// Name suffix.
        #[serde(default)]
        suffix: String,
        /// Where (default: the guest's temporary directory).
        #[serde(default)]
        parent: String,
    },
    /// Read environment variables.
    Env {
        /// These names only.
        #[serde(default)]
        names: Vec<String>,
    },
    /// Upload the passed descriptor's content to `path`.
    Upload {
        /// Destination in the guest.
        path: String,
        /// Mode to set.
        mode: Option<u32>,
        /// Replace an existing file.
        #[serde(default = "yes")]
        overwrite: bool,
    },
    /// Download `path` into the passed descriptor.
    Download {
        /// Source in the guest.
        path: String,
    },
}

fn file_json(f: &FileInfo) -> Value {
    let kind = if f.file_type & file_attr::SYMLINK != 0 {
        "symlink"
    } else if f.file_type & file_attr::DIRECTORY != 0 {
        "dir"
    } else {
        "file"
    };
    json!({
        "name": f.name, "type": kind, "size": f.size, "mtime": f.mtime, "atime": f.atime,
        "uid": f.uid, "gid": f.gid, "mode": f.perm, "target": f.symlink_target,
    })
}

fn proc_json(p: &ProcInfo) -> Value {
    json!({
        "pid": p.pid, "name": p.name, "cmd": p.cmd, "user": p.user, "start": p.start,
        "exit_code": p.exit_code, "exit_time": p.exit_time,
    })
}

fn take_fd(fds: &mut Vec<OwnedFd>, what: &str) -> Result<File, String> {
    if fds.is_empty() {
        return Err(format!(
            "guest {what}: the request must pass a file descriptor"
        ));
    }
    Ok(File::from(fds.remove(0)))
}

/// Run `cmd` on `vm`'s guest as `user`; `fds` are the descriptors passed
/// with the request.
pub fn handle(
    vm: &Vm,
    user: &str,
    password: &str,
    cmd: GuestCmd,
    mut fds: Vec<OwnedFd>,
) -> Result<Value, String> {
    let g = Guest::new(vm, user, password);
    let e = |e: super::GuestOpsError| e.to_string();
    match cmd {
        GuestCmd::ToolsState => {
            let props = g.tools_state().map_err(e)?;
            let mut m = serde_json::Map::new();
            for p in props {
                let v = match p.value {
                    PropertyValue::Int(i) => json!(i),
                    PropertyValue::Str(s) => json!(s),
                    PropertyValue::Bool(b) => json!(b),
                    PropertyValue::Int64(i) => json!(i),
                    PropertyValue::Blob(b) => json!(b.len()),
                };
                m.insert(p.id.to_string(), v);
            }
            Ok(Value::Object(m))
        }
        GuestCmd::Run {
            program,
            args,
            cwd,
            env,
            timeout_ms,
        } => {
            let mut out = take_fd(&mut fds, "run")?;
            let mut err = take_fd(&mut fds, "run")?;
            let spec = RunSpec {
                program,
                args,
                working_dir: cwd,
                env,
                timeout: timeout_ms.map(Duration::from_millis),
            };
            let r = g.run(&spec, &mut out, &mut err).map_err(e)?;
            Ok(json!({"pid": r.pid, "exit_code": r.exit_code}))
        }
        GuestCmd::Ps { pids } => Ok(Value::Array(
            g.list_processes(&pids)
                .map_err(e)?
                .iter()
                .map(proc_json)
                .collect(),
        )),
        GuestCmd::Kill { pid } => g.kill(pid).map(|()| Value::Null).map_err(e),
        GuestCmd::Ls { path, pattern } => Ok(Value::Array(
            g.list_files(&path, &pattern)
                .map_err(e)?
                .iter()
                .map(file_json)
                .collect(),
        )),
        GuestCmd::Mkdir { path, parents } => {
            g.mkdir(&path, parents).map(|()| Value::Null).map_err(e)
        }
        GuestCmd::Rm { path } => g.rm(&path).map(|()| Value::Null).map_err(e),
        GuestCmd::Rmdir { path, recursive } => {
            g.rmdir(&path, recursive).map(|()| Value::Null).map_err(e)
        }
        GuestCmd::Mv {
            from,
            to,
            overwrite,
        } => g
            .mv_any(&from, &to, overwrite)
            .map(|()| Value::Null)
            .map_err(e),
        GuestCmd::Mktemp {
            directory,
            prefix,
            suffix,
            parent,
        } => g
            .mktemp(directory, &prefix, &suffix, &parent)
            .map(Value::String)
            .map_err(e),
        GuestCmd::Env { names } => Ok(json!(g.env(&names).map_err(e)?)),
        GuestCmd::Upload {
            path,
            mode,
            overwrite,
        } => {
            let mut src = take_fd(&mut fds, "upload")?;
            let n = g
                .upload(
                    &mut src,
                    &path,
                    &UploadOptions { overwrite, mode },
                    &mut |_| {},
                )
                .map_err(e)?;
            Ok(json!({"bytes": n}))
        }
        GuestCmd::Download { path } => {
            let mut dst = take_fd(&mut fds, "download")?;
            let (n, info) = g.download(&path, &mut dst, &mut |_| {}).map_err(e)?;
            Ok(json!({"bytes": n, "file": file_json(&info)}))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::control::Request;

    #[test]
    fn guest_requests_parse_and_hide_the_password() {
        let r: Request = serde_json::from_str(
            r#"{"op":"guest","vm":"vm0","user":"root","password":"s3cret",
                "guest":{"cmd":"upload","path":"/tmp/x","mode":420}}"#,
        )
        .unwrap();
        let text = format!("{r:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("Upload"), "{text}");
        let r: Result<Request, _> = serde_json::from_str(
            r#"{"op":"guest","vm":"vm0","user":"root","password":"p","guest":{"cmd":"ls"}}"#,
        );
        assert!(r.is_err(), "ls needs a path");
        let r: Result<Request, _> = serde_json::from_str(
            r#"{"op":"guest","vm":"vm0","user":"root","password":"p","guest":{"cmd":"rm","path":"/a","bogus":1}}"#,
        );
        assert!(r.is_err(), "unknown fields are refused");
    }
}
