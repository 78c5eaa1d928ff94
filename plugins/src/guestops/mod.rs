//! guestops: the host's guest operations (VIX over TCLO, HGFS).

pub mod auth;
pub mod procs;
pub mod user;
