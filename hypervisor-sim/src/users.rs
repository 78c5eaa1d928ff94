//! The users of the host services (IPMI, CIM, Redfish): loaded from the
//! config's `[[user]]` tables, with later changes (a password set over IPMI,
//! an account created, renamed, given another role, disabled or deleted over
//! IPMI or Redfish) kept in the state database: they survive a restart and
//! win over the config.
//!
//! Passwords are kept as given, not hashed: IPMI's RAKP and MD5 challenge
//! authentication need the shared secret itself (every BMC stores it
//! reversibly). Protect the state directory accordingly.

use std::sync::{Arc, RwLock};

use crate::config::UserConfig;
use crate::store::{Store, StoreError, StoredAccount};

/// Highest IPMI user ID; ID 1 is the null user, the config's users get 2 on.
pub const MAX_USERS: u8 = 16;

/// Longest password IPMI can carry (a 20-byte Set User Password).
pub const MAX_IPMI_PASSWORD: usize = 20;

/// Longest user name IPMI can carry.
pub const MAX_IPMI_NAME: usize = 16;

/// Longest user name at all (Redfish and CIM logins).
pub const MAX_NAME: usize = 64;

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.chars().any(|c| c.is_control() || c == ':')
}

/// Why the user list is unusable or a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A `[[user]]` entry is unusable.
    #[error("user {name:?}: {msg}")]
    Config {
        /// The user.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// No user has this IPMI user ID.
    #[error("no user with id {0}")]
    NoSuchUser(u8),
    /// The new password is too long for IPMI.
    #[error("password longer than {MAX_IPMI_PASSWORD} bytes")]
    PasswordTooLong,
    /// The name is unusable.
    #[error("user names are 1-{MAX_NAME} printable characters without ':'")]
    BadName,
    /// Another user has this name.
    #[error("a user named {0:?} exists")]
    NameTaken(String),
    /// Every IPMI user ID is in use.
    #[error("no free user slot: IPMI has room for {} users", MAX_USERS - 1)]
    Full,
    /// The change could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read state only (IPMI privilege User).
    ReadOnly,
    /// Also power and boot control (IPMI privilege Operator).
    Operator,
    /// Everything, including users (IPMI privilege Administrator).
    Administrator,
}

impl Role {
    /// The IPMI privilege level of this role (2 User, 3 Operator, 4 Administrator).
    pub fn ipmi_privilege(self) -> u8 {
        match self {
            Role::ReadOnly => 2,
            Role::Operator => 3,
            Role::Administrator => 4,
        }
    }

    /// The role's name as Redfish and the config spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "ReadOnly",
            Role::Operator => "Operator",
            Role::Administrator => "Administrator",
        }
    }

    /// The role for an IPMI privilege level (2 User, 3 Operator, 4
    /// Administrator); `None` for Callback, No Access and the rest.
    pub fn from_ipmi_privilege(level: u8) -> Option<Role> {
        match level {
            2 => Some(Role::ReadOnly),
            3 => Some(Role::Operator),
            4 => Some(Role::Administrator),
            _ => None,
        }
    }

    /// Parse a config role name (`Administrator`, `Operator`, `ReadOnly`).
    pub fn parse(s: &str) -> Option<Role> {
        match s.to_ascii_lowercase().as_str() {
            "administrator" | "admin" => Some(Role::Administrator),
            "operator" => Some(Role::Operator),
            "readonly" | "read-only" | "user" => Some(Role::ReadOnly),
            _ => None,
        }
    }
}

/// One user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// IPMI user ID (2..=MAX_USERS).
    pub id: u8,
    /// Login name.
    pub name: String,
    /// Password.
    pub password: Vec<u8>,
    /// Role.
    pub role: Role,
    /// Whether the account may log in.
    pub enabled: bool,
    /// The config name this user came from; `None` if created at run time.
    pub origin: Option<String>,
}

impl User {
    fn slot_key(&self) -> String {
        match &self.origin {
            Some(n) => format!("config:{n}"),
            None => format!("id:{}", self.id),
        }
    }

    fn stored(&self, deleted: bool) -> StoredAccount {
        StoredAccount {
            key: self.slot_key(),
            id: self.id,
            name: self.name.clone(),
            password: self.password.clone(),
            role: self.role.as_str().to_string(),
            enabled: self.enabled,
            deleted,
        }
    }
}

impl std::fmt::Debug for User {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// The shared user list.
#[derive(Debug)]
pub struct UserStore {
    users: RwLock<Vec<User>>,
    store: Arc<Store>,
}

impl UserStore {
    /// Users from the config, with the changes stored in `store` applied.
    pub fn load(config: &[UserConfig], store: Arc<Store>) -> Result<UserStore, UserError> {
        store.ensure_bmc_schema()?;
        let legacy = store.users()?;
        let mut users: Vec<User> = Vec::new();
        for (i, c) in config.iter().enumerate() {
            let bad = |msg: &str| UserError::Config {
                name: c.name.clone(),
                msg: msg.to_string(),
            };
            if !valid_name(&c.name) {
                return Err(bad(&format!(
                    "names are 1-{MAX_NAME} printable characters without ':'"
                )));
            }
            if users.iter().any(|u| u.name == c.name) {
                return Err(bad("appears twice"));
            }
            if users.len() + 2 > MAX_USERS as usize {
                return Err(bad(&format!(
                    "too many users: IPMI has room for {}",
                    MAX_USERS - 1
                )));
            }
            let role = match &c.role {
                None => Role::ReadOnly,
                Some(r) => Role::parse(r).ok_or_else(|| {
                    bad(&format!(
                        "role {r:?} is not Administrator, Operator or ReadOnly"
                    ))
                })?,
            };
            let mut u = User {
                id: i as u8 + 2,
                name: c.name.clone(),
                password: c.password.as_bytes().to_vec(),
                role,
                enabled: true,
                origin: Some(c.name.clone()),
            };
            // Changes stored before accounts could be renamed or deleted.
            if let Some(s) = legacy.iter().find(|s| s.name == c.name) {
                u.password.clone_from(&s.password);
                u.enabled = s.enabled;
            }
            users.push(u);
        }
        // Stored slots: config users changed at run time first (they keep
        // the config's ID), then the accounts created at run time.
        let mut stored = store.accounts()?;
        stored.sort_by_key(|a| !a.key.starts_with("config:"));
        for a in stored {
            let Some(role) = Role::parse(&a.role) else {
                log::warn!(
                    "stored account {:?}: unknown role {:?}, skipped",
                    a.key,
                    a.role
                );
                continue;
            };
            if let Some(origin) = a.key.strip_prefix("config:") {
                let Some(pos) = users
                    .iter()
                    .position(|u| u.origin.as_deref() == Some(origin))
                else {
                    continue; // the config no longer has this user
                };
                if a.deleted {
                    users.remove(pos);
                    continue;
                }
                let u = &mut users[pos];
                u.name = a.name;
                u.password = a.password;
                u.role = role;
                u.enabled = a.enabled;
            } else if !a.deleted {
                let mut id = a.id;
                if users.iter().any(|u| u.id == id) || !(2..=MAX_USERS).contains(&id) {
                    match (2..=MAX_USERS).find(|i| !users.iter().any(|u| u.id == *i)) {
                        Some(free) => {
                            log::warn!(
                                "account {:?}: user ID {id} is now a config user's, moved to {free}",
                                a.name
                            );
                            id = free;
                        }
                        None => {
                            log::warn!("account {:?}: no free user ID, not loaded", a.name);
                            continue;
                        }
                    }
                }
                let u = User {
                    id,
                    name: a.name.clone(),
                    password: a.password.clone(),
                    role,
                    enabled: a.enabled,
                    origin: None,
                };
                if id != a.id {
                    store.set_account(&StoredAccount { deleted: true, ..a })?;
                    store.set_account(&u.stored(false))?;
                }
                users.push(u);
            }
        }
        // A rename may have collided with a config name added since.
        let mut seen = std::collections::HashSet::new();
        users.retain(|u| {
            let fresh = seen.insert(u.name.clone());
            if !fresh {
                log::warn!(
                    "user {:?} appears twice; user ID {} not loaded",
                    u.name,
                    u.id
                );
            }
            fresh
        });
        users.sort_by_key(|u| u.id);
        for u in &users {
            if u.name.len() > MAX_IPMI_NAME || u.password.len() > MAX_IPMI_PASSWORD {
                log::warn!(
                    "user {:?}: names over {MAX_IPMI_NAME} or passwords over {MAX_IPMI_PASSWORD} bytes cannot log in over IPMI",
                    u.name
                );
            }
        }
        Ok(UserStore {
            users: RwLock::new(users),
            store,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<User>> {
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Every user.
    pub fn list(&self) -> Vec<User> {
        self.read().clone()
    }

    /// The user called `name`, enabled or not.
    pub fn by_name(&self, name: &[u8]) -> Option<User> {
        self.read()
            .iter()
            .find(|u| u.name.as_bytes() == name)
            .cloned()
    }

    /// The user with IPMI user ID `id`.
    pub fn by_id(&self, id: u8) -> Option<User> {
        self.read().iter().find(|u| u.id == id).cloned()
    }

    /// Check a name and password (constant time in the password), for
    /// services with plain logins (Redfish, CIM). Disabled users fail.
    pub fn verify(&self, name: &str, password: &[u8]) -> Option<User> {
        let u = self.by_name(name.as_bytes())?;
        let same = u.password.len() == password.len()
            && u.password
                .iter()
                .zip(password)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        (same && u.enabled).then_some(u)
    }

    fn change(&self, id: u8, f: impl FnOnce(&mut User)) -> Result<(), UserError> {
        let mut users = self.write();
        let u = users
            .iter_mut()
            .find(|u| u.id == id)
            .ok_or(UserError::NoSuchUser(id))?;
        let mut new = u.clone();
        f(&mut new);
        // Durable first, then visible.
        self.store.set_account(&new.stored(false))?;
        *u = new;
        Ok(())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<User>> {
        self.users.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Create an account in the lowest free user ID, or in `id` when given
    /// (IPMI's Set User Name on an empty slot). Persisted.
    pub fn create(
        &self,
        id: Option<u8>,
        name: &str,
        password: &[u8],
        role: Role,
        enabled: bool,
    ) -> Result<User, UserError> {
        if !valid_name(name) {
            return Err(UserError::BadName);
        }
        if password.len() > MAX_IPMI_PASSWORD {
            return Err(UserError::PasswordTooLong);
        }
        let mut users = self.write();
        if users.iter().any(|u| u.name == name) {
            return Err(UserError::NameTaken(name.to_string()));
        }
        let free = |i: &u8| !users.iter().any(|u| u.id == *i);
        let id = match id {
            Some(i) if !(2..=MAX_USERS).contains(&i) => return Err(UserError::NoSuchUser(i)),
            Some(i) if !free(&i) => return Err(UserError::NameTaken(name.to_string())),
            Some(i) => i,
            None => (2..=MAX_USERS).find(free).ok_or(UserError::Full)?,
        };
        let u = User {
            id,
            name: name.to_string(),
            password: password.to_vec(),
            role,
            enabled,
            origin: None,
        };
        self.store.set_account(&u.stored(false))?;
        users.push(u.clone());
        users.sort_by_key(|u| u.id);
        Ok(u)
    }

    /// Delete user `id`; its ID becomes free. Persisted.
    pub fn delete(&self, id: u8) -> Result<(), UserError> {
        let mut users = self.write();
        let pos = users
            .iter()
            .position(|u| u.id == id)
            .ok_or(UserError::NoSuchUser(id))?;
        self.store.set_account(&users[pos].stored(true))?;
        users.remove(pos);
        Ok(())
    }

    /// Rename user `id`. Persisted.
    pub fn rename(&self, id: u8, name: &str) -> Result<(), UserError> {
        if !valid_name(name) {
            return Err(UserError::BadName);
        }
        if self.read().iter().any(|u| u.name == name && u.id != id) {
            return Err(UserError::NameTaken(name.to_string()));
        }
        self.change(id, |u| u.name = name.to_string())
    }

    /// Give user `id` another role. Persisted.
    pub fn set_role(&self, id: u8, role: Role) -> Result<(), UserError> {
        self.change(id, |u| u.role = role)
    }

    /// Set the password of user `id` (persisted).
    pub fn set_password(&self, id: u8, password: &[u8]) -> Result<(), UserError> {
        if password.len() > MAX_IPMI_PASSWORD {
            return Err(UserError::PasswordTooLong);
        }
        self.change(id, |u| u.password = password.to_vec())
    }

    /// Enable or disable user `id` (persisted).
    pub fn set_enabled(&self, id: u8, enabled: bool) -> Result<(), UserError> {
        self.change(id, |u| u.enabled = enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, pw: &str, role: Option<&str>) -> UserConfig {
        UserConfig {
            name: name.into(),
            password: pw.into(),
            role: role.map(Into::into),
        }
    }

    #[test]
    fn password_change_survives_reload() {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(d.path()).unwrap());
        let c = [
            cfg("admin", "password", Some("Administrator")),
            cfg("ro", "x", None),
        ];
        let us = UserStore::load(&c, store.clone()).unwrap();
        assert_eq!(us.by_id(2).unwrap().role, Role::Administrator);
        assert_eq!(us.by_id(3).unwrap().role, Role::ReadOnly);
        us.set_password(2, b"n3w").unwrap();
        assert!(us.verify("admin", b"n3w").is_some());
        drop(us);
        let us = UserStore::load(&c, store).unwrap();
        assert!(us.verify("admin", b"password").is_none());
        assert!(us.verify("admin", b"n3w").is_some());
        assert!(matches!(
            us.set_password(9, b"x"),
            Err(UserError::NoSuchUser(9))
        ));
    }

    #[test]
    fn created_renamed_and_deleted_accounts_survive_reload() {
        let d = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(d.path()).unwrap());
        let c = [
            cfg("admin", "password", Some("Administrator")),
            cfg("ro", "x", None),
        ];
        let us = UserStore::load(&c, store.clone()).unwrap();
        let op = us
            .create(None, "oper", b"secret", Role::Operator, true)
            .unwrap();
        assert_eq!(op.id, 4);
        assert!(matches!(
            us.create(None, "oper", b"y", Role::ReadOnly, true),
            Err(UserError::NameTaken(_))
        ));
        assert!(matches!(
            us.create(Some(2), "other", b"y", Role::ReadOnly, true),
            Err(UserError::NameTaken(_))
        ));
        us.rename(3, "viewer").unwrap();
        us.set_role(3, Role::Operator).unwrap();
        us.delete(2).unwrap();
        assert!(us.verify("admin", b"password").is_none());
        // The freed ID is reused by the next account.
        assert_eq!(
            us.create(None, "new", b"", Role::ReadOnly, false)
                .unwrap()
                .id,
            2
        );
        drop(us);
        let us = UserStore::load(&c, store).unwrap();
        let names: Vec<_> = us
            .list()
            .into_iter()
            .map(|u| (u.id, u.name, u.role))
            .collect();
        assert_eq!(
            names,
            vec![
                (2, "new".to_string(), Role::ReadOnly),
                (3, "viewer".to_string(), Role::Operator),
                (4, "oper".to_string(), Role::Operator),
            ]
        );
        assert!(us.verify("oper", b"secret").is_some());
        assert!(us.verify("new", b"").is_none(), "created disabled");
    }

    #[test]
    fn bad_config_is_refused() {
        let store = Arc::new(Store::in_memory().unwrap());
        let e = UserStore::load(&[cfg("a", "b", Some("root"))], store.clone()).unwrap_err();
        assert!(e.to_string().contains("role"), "{e}");
        let e = UserStore::load(&[cfg("a", "b", None), cfg("a", "c", None)], store).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
