//! Persistent state: guest variables and the OVF environment of every VM, in
//! SQLite (WAL journal, `synchronous = FULL`: a variable the guest was told is
//! set survives `kill -9` and power loss).
//!
//! SQLite because it is one file, crash-safe by design, inspectable with the
//! `sqlite3` shell, and fast enough: writes happen only on `info-set`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer hvsim.
    #[error("state database {path} has schema version {found}; this hvsim knows up to {known}")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// Ours.
        known: i64,
    },
}

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS guestinfo (
         vm      TEXT NOT NULL,
         key     TEXT NOT NULL,
         value   BLOB NOT NULL,
         updated INTEGER NOT NULL,
         PRIMARY KEY (vm, key)
     ) WITHOUT ROWID;
     PRAGMA user_version = 1;";

/// Tables of the tools options and the namespace DB, created on open so
/// that older state databases gain them in place.
const HOST_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS options (
         vm      TEXT NOT NULL,
         key     TEXT NOT NULL,
         value   TEXT NOT NULL,
         PRIMARY KEY (vm, key)
     ) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS namespace_keys (
         vm      TEXT NOT NULL,
         ns      TEXT NOT NULL,
         key     TEXT NOT NULL,
         value   BLOB NOT NULL,
         PRIMARY KEY (vm, ns, key)
     ) WITHOUT ROWID;";

/// The state database.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Store {
    /// Open (or create) `state.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("state.db");
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path,
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.execute_batch(HOST_SCHEMA).map_err(err)?;
        Ok(Store {
            path,
            conn: Mutex::new(conn),
        })
    }

    /// A store that lives in memory only (fuzzing, unit tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let s = Store {
            path,
            conn: Mutex::new(conn),
        };
        s.conn().execute_batch(SCHEMA).map_err(|e| s.err(e))?;
        s.conn().execute_batch(HOST_SCHEMA).map_err(|e| s.err(e))?;
        Ok(s)
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent:
        // each statement is its own transaction.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every variable of `vm`.
    pub fn vars(&self, vm: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT key, value FROM guestinfo WHERE vm = ?1 ORDER BY key")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![vm], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Set one variable; durable when this returns.
    pub fn set_var(&self, vm: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.conn()
            .prepare_cached(
                "INSERT INTO guestinfo (vm, key, value, updated) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (vm, key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            )
            .and_then(|mut st| st.execute(params![vm, key, value, now]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

impl Store {
    /// The tools options of `vm` set at run time.
    pub fn options(
        &self,
        vm: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT key, value FROM options WHERE vm = ?1")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![vm], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Set one tools option; durable when this returns.
    pub fn set_option(&self, vm: &str, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO options (vm, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (vm, key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut st| st.execute(params![vm, key, value]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The keys and values of namespace `ns` of `vm`.
    pub fn namespace(&self, vm: &str, ns: &str) -> Result<crate::namespace::Namespace, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT key, value FROM namespace_keys WHERE vm = ?1 AND ns = ?2")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![vm, ns], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Apply changes to namespace `ns` of `vm` in one transaction.
    pub fn namespace_apply(
        &self,
        vm: &str,
        ns: &str,
        changes: &crate::namespace::Changes,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for (k, v) in changes {
            match v {
                Some(v) => tx.execute(
                    "INSERT INTO namespace_keys (vm, ns, key, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (vm, ns, key) DO UPDATE SET value = excluded.value",
                    params![vm, ns, k, v],
                ),
                None => tx.execute(
                    "DELETE FROM namespace_keys WHERE vm = ?1 AND ns = ?2 AND key = ?3",
                    params![vm, ns, k],
                ),
            }
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }
}

/// An exclusive lock on a state directory, so two servers never share one.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Take the lock or say who holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, String> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let path = dir.join("hvsim.lock");
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Err(format!(
                "state dir {} is in use by another hvsim serve (pid {}); stop it or pick another --state-dir",
                dir.display(),
                pid.trim()
            ));
        }
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = write!(f, "{}", std::process::id());
        Ok(DirLock { _file: f })
    }
}

/// Tables of the BMC services (IPMI SEL, time offsets) and the shared users,
/// created on first use so that older state databases gain them in place.
const BMC_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS sel (
         vm      TEXT NOT NULL,
         id      INTEGER NOT NULL,
         record  BLOB NOT NULL,
         PRIMARY KEY (vm, id)
     ) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS bmc_meta (
         vm      TEXT NOT NULL,
         key     TEXT NOT NULL,
         value   INTEGER NOT NULL,
         PRIMARY KEY (vm, key)
     ) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS users (
         name     TEXT PRIMARY KEY,
         password BLOB NOT NULL,
         enabled  INTEGER NOT NULL,
         updated  INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS accounts (
         key      TEXT PRIMARY KEY,
         id       INTEGER NOT NULL,
         name     TEXT NOT NULL,
         password BLOB NOT NULL,
         role     TEXT NOT NULL,
         enabled  INTEGER NOT NULL,
         deleted  INTEGER NOT NULL,
         updated  INTEGER NOT NULL
     ) WITHOUT ROWID;";

/// A stored user change (password or enable flag) for the shared user list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// Login name.
    pub name: String,
    /// Password as last set.
    pub password: Vec<u8>,
    /// Whether the account may log in.
    pub enabled: bool,
}

/// The stored state of one account slot (the `accounts` table).
///
/// `key` names the slot: `config:NAME` for a user that came from the
/// config's `[[user]]` list (so a renamed or deleted config user stays
/// renamed or deleted), `id:N` for one created at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    /// The slot.
    pub key: String,
    /// IPMI user ID (authoritative for created accounts only).
    pub id: u8,
    /// Login name.
    pub name: String,
    /// Password.
    pub password: Vec<u8>,
    /// Role name (`Administrator`, `Operator`, `ReadOnly`).
    pub role: String,
    /// Whether the account may log in.
    pub enabled: bool,
    /// Deleted: the slot is free.
    pub deleted: bool,
}

impl Store {
    /// Create the BMC and user tables if missing.
    pub fn ensure_bmc_schema(&self) -> Result<(), StoreError> {
        self.conn()
            .execute_batch(BMC_SCHEMA)
            .map_err(|e| self.err(e))
    }

    /// Every SEL record of `vm`, by record id.
    pub fn sel_records(&self, vm: &str) -> Result<Vec<(u16, Vec<u8>)>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT id, record FROM sel WHERE vm = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![vm], |r| Ok((r.get::<_, u16>(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Store one SEL record; durable when this returns.
    pub fn sel_add(&self, vm: &str, id: u16, record: &[u8]) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("INSERT OR REPLACE INTO sel (vm, id, record) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![vm, id, record]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Delete one SEL record.
    pub fn sel_delete(&self, vm: &str, id: u16) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM sel WHERE vm = ?1 AND id = ?2")
            .and_then(|mut st| st.execute(params![vm, id]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Delete every SEL record of `vm`.
    pub fn sel_clear(&self, vm: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM sel WHERE vm = ?1")
            .and_then(|mut st| st.execute(params![vm]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// A BMC setting of `vm` (SEL time offset, last erase time, ...).
    pub fn bmc_meta(&self, vm: &str, key: &str) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn()
            .prepare_cached("SELECT value FROM bmc_meta WHERE vm = ?1 AND key = ?2")
            .and_then(|mut st| st.query_row(params![vm, key], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Set a BMC setting of `vm`.
    pub fn set_bmc_meta(&self, vm: &str, key: &str, value: i64) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("INSERT OR REPLACE INTO bmc_meta (vm, key, value) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![vm, key, value]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Every stored user change.
    pub fn users(&self) -> Result<Vec<StoredUser>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached("SELECT name, password, enabled FROM users ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(StoredUser {
                    name: r.get(0)?,
                    password: r.get(1)?,
                    enabled: r.get::<_, i64>(2)? != 0,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Every stored account slot.
    pub fn accounts(&self) -> Result<Vec<StoredAccount>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(
                "SELECT key, id, name, password, role, enabled, deleted FROM accounts ORDER BY key",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(StoredAccount {
                    key: r.get(0)?,
                    id: r.get(1)?,
                    name: r.get(2)?,
                    password: r.get(3)?,
                    role: r.get(4)?,
                    enabled: r.get::<_, i64>(5)? != 0,
                    deleted: r.get::<_, i64>(6)? != 0,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Store one account slot; durable when this returns.
    pub fn set_account(&self, a: &StoredAccount) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO accounts (key, id, name, password, role, enabled, deleted, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    a.key,
                    a.id,
                    a.name,
                    a.password,
                    a.role,
                    a.enabled as i64,
                    a.deleted as i64,
                    now
                ])
            })
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(d.path()).unwrap();
        s.set_var("vm0", "guestinfo.a", b"1").unwrap();
        s.set_var("vm0", "guestinfo.a", b"2").unwrap();
        s.set_var("vm1", "guestinfo.b", b"\0bin").unwrap();
        drop(s);
        let s = Store::open(d.path()).unwrap();
        assert_eq!(
            s.vars("vm0").unwrap(),
            vec![("guestinfo.a".into(), b"2".to_vec())]
        );
        assert_eq!(
            s.vars("vm1").unwrap(),
            vec![("guestinfo.b".into(), b"\0bin".to_vec())]
        );
    }

    #[test]
    fn second_lock_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _a = DirLock::acquire(d.path()).unwrap();
        let e = DirLock::acquire(d.path()).unwrap_err();
        assert!(e.contains("in use by another hvsim serve"), "{e}");
    }
}
