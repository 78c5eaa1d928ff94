//! The users of the host services (IPMI, CIM, Redfish): loaded from the
//! config's `[[user]]` tables, with later changes (a password set over IPMI,
//! an account disabled) kept in the state database: they survive a restart
//! and win over the config's password.
//!
//! Passwords are kept as given, not hashed: IPMI's RAKP and MD5 challenge
//! authentication need the shared secret itself (every BMC stores it
//! reversibly). Protect the state directory accordingly.

use std::sync::{Arc, RwLock};

use crate::config::UserConfig;
use crate::store::{Store, StoreError, StoredUser};

/// Highest IPMI user ID; ID 1 is the null user, the config's users get 2 on.
pub const MAX_USERS: u8 = 16;

/// Longest password IPMI can carry (a 20-byte Set User Password).
pub const MAX_IPMI_PASSWORD: usize = 20;

/// Longest user name IPMI can carry.
pub const MAX_IPMI_NAME: usize = 16;

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
        let stored = store.users()?;
        let mut users: Vec<User> = Vec::new();
        for (i, c) in config.iter().enumerate() {
            let bad = |msg: &str| UserError::Config {
                name: c.name.clone(),
                msg: msg.to_string(),
            };
            if c.name.is_empty() || c.name.len() > 64 || c.name.chars().any(char::is_control) {
                return Err(bad("names are 1-64 printable characters"));
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
            };
            if let Some(s) = stored.iter().find(|s| s.name == c.name) {
                u.password.clone_from(&s.password);
                u.enabled = s.enabled;
            }
            if u.name.len() > MAX_IPMI_NAME || u.password.len() > MAX_IPMI_PASSWORD {
                log::warn!(
                    "user {:?}: names over {MAX_IPMI_NAME} or passwords over {MAX_IPMI_PASSWORD} bytes cannot log in over IPMI",
                    u.name
                );
            }
            users.push(u);
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
        let mut users = self.users.write().unwrap_or_else(|p| p.into_inner());
        let u = users
            .iter_mut()
            .find(|u| u.id == id)
            .ok_or(UserError::NoSuchUser(id))?;
        let mut new = u.clone();
        f(&mut new);
        // Durable first, then visible.
        self.store.set_user(&StoredUser {
            name: new.name.clone(),
            password: new.password.clone(),
            enabled: new.enabled,
        })?;
        *u = new;
        Ok(())
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
    fn bad_config_is_refused() {
        let store = Arc::new(Store::in_memory().unwrap());
        let e = UserStore::load(&[cfg("a", "b", Some("root"))], store.clone()).unwrap_err();
        assert!(e.to_string().contains("role"), "{e}");
        let e = UserStore::load(&[cfg("a", "b", None), cfg("a", "c", None)], store).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}
