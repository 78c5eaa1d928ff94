//! Unpacking a package's payload: a cabinet (MSZIP or LZX, what vCenter
//! sends), ZIP, or gzip-compressed tar.
//!
//! The payload comes from the host and is untrusted: every member name must
//! be a relative path of plain components (a cabinet's `\` separators
//! become `/`); links, devices and absolute or `..` names are refused; the
//! number of members and their total size are bounded. Members are read
//! into memory first ([`unpack`], pure) and only then written
//! ([`write_members`]), so a bad archive changes nothing.

use std::io::{Cursor, Read};
use std::path::{Component, Path, PathBuf};

use protocol::deploypkg::PayloadType;

/// Most members an archive may have.
pub const MAX_MEMBERS: usize = 1024;
/// Most bytes all members together may unpack to.
pub const MAX_TOTAL: u64 = 256 << 20;

/// Why a payload could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The container format is broken.
    #[error("{kind} payload is malformed: {reason}")]
    Malformed {
        /// cabinet, zip or tar.gz.
        kind: &'static str,
        /// The decoder's explanation.
        reason: String,
    },
    /// A member name that would leave the directory, or is not a plain path.
    #[error("member name {0:?} is not a plain relative path")]
    Name(String),
    /// A symbolic or hard link, device or other special member.
    #[error("member {0:?} is not a regular file or directory")]
    Special(String),
    /// Too many members or too many bytes.
    #[error("payload unpacks to more than {MAX_MEMBERS} members or {MAX_TOTAL} bytes")]
    TooLarge,
    /// Writing a member failed.
    #[error("cannot write {}", .path.display())]
    Write {
        /// Where.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// One unpacked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Relative path, `/`-separated, plain components only.
    pub path: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Whether it should be executable.
    pub exec: bool,
}

fn clean_name(raw: &str) -> Result<String, ArchiveError> {
    let name = raw.replace('\\', "/");
    let name = name.trim_start_matches("./");
    let p = Path::new(name);
    let ok = !name.is_empty()
        && !name.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(ArchiveError::Name(raw.to_string()));
    }
    Ok(name.trim_end_matches('/').to_string())
}

fn malformed(kind: &'static str) -> impl Fn(std::io::Error) -> ArchiveError {
    move |e| ArchiveError::Malformed {
        kind,
        reason: e.to_string(),
    }
}

/// Read at most what is left of the budget; more is [`ArchiveError::TooLarge`].
fn read_bounded(
    r: &mut dyn Read,
    budget: &mut u64,
    kind: &'static str,
) -> Result<Vec<u8>, ArchiveError> {
    let mut data = Vec::new();
    let n = r
        .take(*budget + 1)
        .read_to_end(&mut data)
        .map_err(malformed(kind))? as u64;
    if n > *budget {
        return Err(ArchiveError::TooLarge);
    }
    *budget -= n;
    Ok(data)
}

/// Unpack a payload into memory.
pub fn unpack(kind: PayloadType, payload: &[u8]) -> Result<Vec<Member>, ArchiveError> {
    let mut budget = MAX_TOTAL;
    let mut out = Vec::new();
    let push = |out: &mut Vec<Member>, m: Member| {
        if out.len() >= MAX_MEMBERS {
            return Err(ArchiveError::TooLarge);
        }
        if out.iter().any(|o: &Member| o.path == m.path) {
            return Err(ArchiveError::Name(m.path));
        }
        out.push(m);
        Ok(())
    };
    match kind {
        PayloadType::Cabinet => {
            const K: &str = "cabinet";
            check_cabinet(payload).map_err(|reason| ArchiveError::Malformed {
                kind: K,
                reason: reason.to_string(),
            })?;
            let mut cab = cab::Cabinet::new(Cursor::new(payload)).map_err(malformed(K))?;
            let mut names = Vec::new();
            for folder in cab.folder_entries() {
                for f in folder.file_entries() {
                    names.push((f.name().to_string(), f.is_exec()));
                    if names.len() > MAX_MEMBERS {
                        return Err(ArchiveError::TooLarge);
                    }
                }
            }
            for (raw, exec) in names {
                let path = clean_name(&raw)?;
                let mut r = cab.read_file(&raw).map_err(malformed(K))?;
                let data = read_bounded(&mut r, &mut budget, K)?;
                push(&mut out, Member { path, data, exec })?;
            }
        }
        PayloadType::Zip => {
            const K: &str = "zip";
            let mut z = zip::ZipArchive::new(Cursor::new(payload)).map_err(|e| {
                ArchiveError::Malformed {
                    kind: K,
                    reason: e.to_string(),
                }
            })?;
            if z.len() > MAX_MEMBERS {
                return Err(ArchiveError::TooLarge);
            }
            for i in 0..z.len() {
                let mut f = z.by_index(i).map_err(|e| ArchiveError::Malformed {
                    kind: K,
                    reason: e.to_string(),
                })?;
                let raw = f.name().to_string();
                if f.is_dir() {
                    clean_name(&raw)?;
                    continue;
                }
                let mode = f.unix_mode();
                if mode.is_some_and(|m| m & 0o170000 != 0 && m & 0o170000 != 0o100000) {
                    return Err(ArchiveError::Special(raw));
                }
                let path = clean_name(&raw)?;
                let data = read_bounded(&mut f, &mut budget, K)?;
                let exec = mode.is_some_and(|m| m & 0o111 != 0);
                push(&mut out, Member { path, data, exec })?;
            }
        }
        PayloadType::GzippedTar => {
            const K: &str = "tar.gz";
            let gz = flate2::read::GzDecoder::new(payload);
            let mut t = tar::Archive::new(gz);
            for e in t.entries().map_err(malformed(K))? {
                let mut e = e.map_err(malformed(K))?;
                let raw = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                match e.header().entry_type() {
                    tar::EntryType::Directory => {
                        clean_name(&raw)?;
                        continue;
                    }
                    tar::EntryType::Regular | tar::EntryType::Continuous => {}
                    _ => return Err(ArchiveError::Special(raw)),
                }
                let path = clean_name(&raw)?;
                let exec = e.header().mode().is_ok_and(|m| m & 0o111 != 0);
                let data = read_bounded(&mut e, &mut budget, K)?;
                push(&mut out, Member { path, data, exec })?;
            }
        }
    }
    Ok(out)
}

/// Check a cabinet's layout before the decoder sees it: every folder's
/// data blocks lie inside the payload, every file lies inside its folder's
/// uncompressed data, and no file continues into another cabinet. (The
/// `cab` crate indexes out of bounds on a file that starts past its
/// folder's end.)
fn check_cabinet(b: &[u8]) -> Result<(), &'static str> {
    let u8_at = |o: usize| b.get(o).copied().ok_or("truncated");
    let u16_at = |o: usize| Ok::<_, &str>(u16::from_le_bytes([u8_at(o)?, u8_at(o + 1)?]));
    let u32_at = |o: usize| {
        Ok::<_, &str>(u32::from_le_bytes([
            u8_at(o)?,
            u8_at(o + 1)?,
            u8_at(o + 2)?,
            u8_at(o + 3)?,
        ]))
    };
    let cstr_end = |o: usize| -> Result<usize, &'static str> {
        let rest = b.get(o..).ok_or("truncated")?;
        let n = rest
            .iter()
            .take(256)
            .position(|&c| c == 0)
            .ok_or("unterminated name")?;
        Ok(o + n + 1)
    };
    if b.get(..4) != Some(b"MSCF") {
        return Err("no MSCF signature");
    }
    let files_at = u32_at(16)? as usize;
    let folders = u16_at(26)? as usize;
    let files = u16_at(28)? as usize;
    let flags = u16_at(30)?;
    if flags & 3 != 0 {
        return Err("spans several cabinets");
    }
    let mut at = 36;
    let (mut folder_reserve, mut data_reserve) = (0usize, 0usize);
    if flags & 4 != 0 {
        let header_reserve = u16_at(36)? as usize;
        folder_reserve = u8_at(38)? as usize;
        data_reserve = u8_at(39)? as usize;
        at = 40 + header_reserve;
    }
    let mut totals = Vec::with_capacity(folders.min(1024));
    for _ in 0..folders {
        let mut data_at = u32_at(at)? as usize;
        let blocks = u16_at(at + 4)?;
        at += 8 + folder_reserve;
        let mut total = 0u64;
        for _ in 0..blocks {
            let compressed = u16_at(data_at + 4)? as usize;
            total += u64::from(u16_at(data_at + 6)?);
            data_at += 8 + data_reserve + compressed;
            if data_at > b.len() {
                return Err("a data block lies outside the cabinet");
            }
        }
        totals.push(total);
    }
    let mut at = files_at;
    for _ in 0..files {
        let size = u64::from(u32_at(at)?);
        let offset = u64::from(u32_at(at + 4)?);
        let folder = u16_at(at + 8)? as usize;
        let total = *totals
            .get(folder)
            .ok_or("a file names a folder that is not there")?;
        if offset + size > total {
            return Err("a file lies outside its folder's data");
        }
        at = cstr_end(at + 16)?;
    }
    Ok(())
}

/// Write unpacked members under `dir` (which exists): directories 0700,
/// files 0600, or 0700 when executable.
pub fn write_members(dir: &Path, members: &[Member]) -> Result<(), ArchiveError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    for m in members {
        let path = dir.join(&m.path);
        let werr = |source| ArchiveError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(werr)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if m.exec { 0o700 } else { 0o600 })
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(werr)?;
        std::io::Write::write_all(&mut f, &m.data).map_err(werr)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cab_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = cab::CabinetBuilder::new();
        let folder = b.add_folder(cab::CompressionType::MsZip);
        for (n, _) in files {
            folder.add_file(*n);
        }
        let mut w = b.build(Cursor::new(Vec::new())).unwrap();
        let mut i = 0;
        while let Some(mut fw) = w.next_file().unwrap() {
            fw.write_all(files[i].1).unwrap();
            i += 1;
        }
        w.finish().unwrap().into_inner()
    }

    fn tgz_of(files: &[(&str, &[u8], tar::EntryType)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut t = tar::Builder::new(gz);
        for (n, d, kind) in files {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(d.len() as u64);
            h.set_mode(0o755);
            // Raw name bytes: tar's own path setter refuses `..`, a hostile
            // archive does not.
            h.as_old_mut().name[..n.len()].copy_from_slice(n.as_bytes());
            h.set_cksum();
            t.append(&h, *d).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn cabinet_with_backslashes() {
        let c = cab_of(&[
            ("cust.cfg", b"[NETWORK]\n"),
            ("scripts\\run.sh", b"echo hi\n"),
        ]);
        let m = unpack(PayloadType::Cabinet, &c).unwrap();
        assert_eq!(m[0].path, "cust.cfg");
        assert_eq!(m[1].path, "scripts/run.sh");
        assert_eq!(m[1].data, b"echo hi\n");
        let dir = tempfile::tempdir().unwrap();
        write_members(dir.path(), &m).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("scripts/run.sh")).unwrap(),
            b"echo hi\n"
        );
    }

    #[test]
    fn zip_and_tgz() {
        let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        z.start_file("run.sh", o).unwrap();
        z.write_all(b"#!/bin/sh\n").unwrap();
        let zipped = z.finish().unwrap().into_inner();
        let m = unpack(PayloadType::Zip, &zipped).unwrap();
        assert_eq!((m[0].path.as_str(), m[0].exec), ("run.sh", true));
        let t = tgz_of(&[("a/b.txt", b"x", tar::EntryType::Regular)]);
        let m = unpack(PayloadType::GzippedTar, &t).unwrap();
        assert_eq!(m[0].path, "a/b.txt");
    }

    #[test]
    fn hostile_archives_are_refused() {
        let t = tgz_of(&[("../evil", b"x", tar::EntryType::Regular)]);
        assert!(matches!(
            unpack(PayloadType::GzippedTar, &t),
            Err(ArchiveError::Name(_))
        ));
        let t = tgz_of(&[("/etc/passwd", b"x", tar::EntryType::Regular)]);
        assert!(matches!(
            unpack(PayloadType::GzippedTar, &t),
            Err(ArchiveError::Name(_))
        ));
        let t = tgz_of(&[("link", b"", tar::EntryType::Symlink)]);
        assert!(matches!(
            unpack(PayloadType::GzippedTar, &t),
            Err(ArchiveError::Special(_))
        ));
        // A file that starts past its folder's data (the fuzzer's find: the
        // cab crate indexes out of bounds on it).
        let mut c = cab_of(&[("a", b"hello")]);
        let files_at = u32::from_le_bytes(c[16..20].try_into().unwrap()) as usize;
        c[files_at + 4..files_at + 8].copy_from_slice(&1000u32.to_le_bytes());
        let e = unpack(PayloadType::Cabinet, &c).unwrap_err();
        assert!(e.to_string().contains("outside its folder"), "{e}");
        let c = cab_of(&[("..\\..\\x", b"x")]);
        assert!(matches!(
            unpack(PayloadType::Cabinet, &c),
            Err(ArchiveError::Name(_))
        ));
        for kind in [
            PayloadType::Cabinet,
            PayloadType::Zip,
            PayloadType::GzippedTar,
        ] {
            let e = unpack(kind, b"garbage that is not an archive").unwrap_err();
            assert!(matches!(e, ArchiveError::Malformed { .. }), "{kind:?}: {e}");
        }
    }
}
