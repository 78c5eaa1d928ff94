//! IPMI sessions: IPMI 1.5 (challenge, MD5 or straight password) and
//! RMCP+ (Open Session, RAKP 1-4, integrity and confidentiality keys), the
//! sequence-number window, idle timeout and the session limit. No I/O: the
//! server hands in parsed packets and sends what comes back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::crypto::{self, Hash};
use super::rmcp;
use crate::users::{User, UserStore, MAX_IPMI_NAME, MAX_IPMI_PASSWORD};

/// RMCP+ status codes (spec table 13-15).
pub mod status {
    /// No errors.
    pub const OK: u8 = 0x00;
    /// Insufficient resources to create a session.
    pub const NO_RESOURCES: u8 = 0x01;
    /// Invalid session ID.
    pub const INVALID_SESSION: u8 = 0x02;
    /// Invalid authentication algorithm.
    pub const INVALID_AUTH_ALG: u8 = 0x04;
    /// Invalid integrity algorithm.
    pub const INVALID_INTEGRITY_ALG: u8 = 0x05;
    /// Invalid role.
    pub const INVALID_ROLE: u8 = 0x09;
    /// Unauthorized role or privilege level requested.
    pub const UNAUTHORIZED_ROLE: u8 = 0x0A;
    /// Unauthorized name.
    pub const UNAUTHORIZED_NAME: u8 = 0x0D;
    /// Invalid integrity check value.
    pub const INVALID_ICV: u8 = 0x0F;
    /// Invalid confidentiality algorithm.
    pub const INVALID_CONF_ALG: u8 = 0x10;
    /// No cipher suite match with proposed security algorithms.
    pub const NO_CIPHER_MATCH: u8 = 0x11;
    /// Illegal or unrecognized parameter.
    pub const ILLEGAL_PARAMETER: u8 = 0x12;
}

/// Privilege levels (spec table 22-21... as ipmitool names them).
pub mod privilege {
    /// Callback.
    pub const CALLBACK: u8 = 1;
    /// User: read-only.
    pub const USER: u8 = 2;
    /// Operator: power and boot control.
    pub const OPERATOR: u8 = 3;
    /// Administrator: everything.
    pub const ADMIN: u8 = 4;
}

/// A cipher suite: the three algorithms RMCP+ negotiates (spec table 22-20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CipherSuite {
    /// Suite ID.
    pub id: u8,
    /// Authentication (RAKP) algorithm.
    pub auth: u8,
    /// Integrity algorithm.
    pub integrity: u8,
    /// Confidentiality algorithm.
    pub confidentiality: u8,
}

/// Suites this BMC implements. Suite 0 (no authentication at all) is listed
/// and accepted only when [`SessionPolicy::allow_cipher_zero`] is set.
pub const SUITES: [CipherSuite; 3] = [
    CipherSuite {
        id: 0,
        auth: crypto::RAKP_NONE,
        integrity: crypto::INTEGRITY_NONE,
        confidentiality: crypto::CRYPT_NONE,
    },
    CipherSuite {
        id: 3,
        auth: crypto::RAKP_HMAC_SHA1,
        integrity: crypto::INTEGRITY_HMAC_SHA1_96,
        confidentiality: crypto::CRYPT_AES_CBC_128,
    },
    CipherSuite {
        id: 17,
        auth: crypto::RAKP_HMAC_SHA256,
        integrity: crypto::INTEGRITY_HMAC_SHA256_128,
        confidentiality: crypto::CRYPT_AES_CBC_128,
    },
];

impl CipherSuite {
    fn hash(&self) -> Option<Hash> {
        match self.auth {
            crypto::RAKP_HMAC_SHA1 => Some(Hash::Sha1),
            crypto::RAKP_HMAC_SHA256 => Some(Hash::Sha256),
            _ => None,
        }
    }

    /// Integrity code length on the wire (12 for SHA1-96, 16 for SHA256-128).
    pub fn integrity_len(&self) -> usize {
        match self.integrity {
            crypto::INTEGRITY_HMAC_SHA1_96 => 12,
            crypto::INTEGRITY_HMAC_SHA256_128 => 16,
            _ => 0,
        }
    }

    fn integrity_hash(&self) -> Option<Hash> {
        match self.integrity {
            crypto::INTEGRITY_HMAC_SHA1_96 => Some(Hash::Sha1),
            crypto::INTEGRITY_HMAC_SHA256_128 => Some(Hash::Sha256),
            _ => None,
        }
    }

    /// RAKP 4 integrity check value length (spec 13.28: 12 for HMAC-SHA1,
    /// 16 for HMAC-SHA256).
    fn icv_len(&self) -> usize {
        match self.auth {
            crypto::RAKP_HMAC_SHA1 => 12,
            crypto::RAKP_HMAC_SHA256 => 16,
            _ => 0,
        }
    }
}

/// What the BMC accepts beyond the secure defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Accept cipher suite 0 (no authentication, integrity or encryption).
    pub allow_cipher_zero: bool,
    /// Accept IPMI 1.5 sessions with authentication type none.
    pub allow_auth_none: bool,
    /// Most sessions (set up or active) at once.
    pub max_sessions: usize,
    /// An active session with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// A session still being set up after this long is dropped.
    pub setup_timeout: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            allow_cipher_zero: false,
            allow_auth_none: false,
            // Like many BMCs; ipmitool's `session info` shows it.
            max_sessions: 16,
            // IPMI 2.0 section 6.12.15 suggests 60 s +/- 3 s.
            idle_timeout: Duration::from_secs(60),
            setup_timeout: Duration::from_secs(10),
        }
    }
}

impl SessionPolicy {
    /// The suites offered and accepted under this policy.
    pub fn suites(&self) -> impl Iterator<Item = &'static CipherSuite> + '_ {
        SUITES
            .iter()
            .filter(move |s| s.id != 0 || self.allow_cipher_zero)
    }
}

/// Sliding window of received sequence numbers (IPMI 2.0 6.12.13: accept
/// up to 15 ahead of the highest seen and up to 16 behind, each once).
#[derive(Debug, Clone, Default)]
pub struct SeqWindow {
    highest: Option<u32>,
    /// Bit i set: `highest - i` was received.
    seen: u32,
}

impl SeqWindow {
    /// Accept `seq` (recording it) or refuse a replay or out-of-window value.
    pub fn accept(&mut self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        let Some(h) = self.highest else {
            self.highest = Some(seq);
            self.seen = 1;
            return true;
        };
        let ahead = seq.wrapping_sub(h);
        if ahead != 0 && ahead <= 15 {
            self.seen = if ahead >= 32 { 0 } else { self.seen << ahead } | 1;
            self.highest = Some(seq);
            return true;
        }
        let behind = h.wrapping_sub(seq);
        if behind < 16 {
            let bit = 1u32 << behind;
            if self.seen & bit != 0 {
                return false;
            }
            self.seen |= bit;
            return true;
        }
        false
    }
}

/// Session keys and algorithms of an RMCP+ session.
#[derive(Clone)]
pub struct PlusKeys {
    /// The negotiated suite.
    pub suite: CipherSuite,
    /// Integrity key K1.
    pub k1: Vec<u8>,
    /// AES key: the first 16 bytes of K2.
    pub aes: [u8; 16],
}

impl std::fmt::Debug for PlusKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlusKeys")
            .field("suite", &self.suite.id)
            .finish_non_exhaustive()
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone)]
pub enum Stage {
    /// IPMI 1.5: challenge issued, awaiting Activate Session.
    Challenged {
        /// The challenge string.
        challenge: [u8; 16],
        /// The authentication type asked for.
        auth_type: u8,
    },
    /// RMCP+: Open Session answered, awaiting RAKP 1.
    Opened {
        /// The suite agreed.
        suite: CipherSuite,
        /// Highest privilege the console proposed (0 = highest available).
        max_priv: u8,
    },
    /// RMCP+: RAKP 2 sent, awaiting RAKP 3.
    Rakp2Sent {
        /// The suite agreed.
        suite: CipherSuite,
        /// Console random number.
        rm: [u8; 16],
        /// BMC random number.
        rc: [u8; 16],
        /// Role byte of RAKP 1 (with the name-only bit).
        role: u8,
    },
    /// Usable.
    Active,
}

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The BMC's session ID (what the console sends to).
    pub id: u32,
    /// The console's session ID (RMCP+; equal to `id` for IPMI 1.5).
    pub remote_id: u32,
    /// A small number naming the session in Get Session Info.
    pub handle: u8,
    /// IPMI 2.0 (RMCP+) rather than 1.5.
    pub plus: bool,
    /// Setup stage.
    pub stage: Stage,
    /// The user, once known.
    pub user: Option<User>,
    /// The user's password as the session keys were made from it.
    password: Vec<u8>,
    /// IPMI 1.5 authentication type.
    pub auth_type: u8,
    /// RMCP+ keys, when active.
    pub keys: Option<PlusKeys>,
    /// Highest privilege this session may take.
    pub max_priv: u8,
    /// Current privilege.
    pub privilege: u8,
    /// Received sequence numbers.
    pub window: SeqWindow,
    /// Next sequence number the BMC sends.
    pub out_seq: u32,
    /// The console's address.
    pub peer: SocketAddr,
    /// Last accepted packet.
    pub last: Instant,
    /// Name of the user as sent in RAKP 1 (for RAKP 3).
    name: Vec<u8>,
}

/// Every session of one BMC.
#[derive(Debug)]
pub struct Sessions {
    /// The policy in force.
    pub policy: SessionPolicy,
    /// Highest privilege per cipher suite entry (position in the suite
    /// list; LAN parameter 24): 0 refuses the suite.
    pub suite_limit: [u8; 16],
    /// The BMC key K_G (Set Channel Security Keys): when set, session
    /// integrity keys are made from it instead of the user's password.
    pub kg: Option<Vec<u8>>,
    list: Vec<Session>,
    next_handle: u8,
    /// Bound on what unauthenticated peers make this BMC log.
    notes: std::sync::Arc<crate::ratelimit::RateLimiter>,
}

/// Bytes a second of log lines a BMC's peers may cause.
const NOTE_RATE: u64 = 8 << 10;

fn note(limit: &crate::ratelimit::RateLimiter, level: log::Level, args: std::fmt::Arguments<'_>) {
    if !log::log_enabled!(level) {
        return;
    }
    let line = args.to_string();
    if let crate::ratelimit::Verdict::Pass { suppressed } = limit.check(line.len() + 40) {
        if suppressed > 0 {
            log::warn!(
                "ipmi: suppressed {suppressed} messages caused by peers (over {} KiB/s)",
                NOTE_RATE >> 10
            );
        }
        log::log!(level, "{line}");
    }
}

/// A reply to a session-setup message: payload type and payload, sent with
/// session ID 0 outside any session.
pub type SetupReply = (u8, Vec<u8>);

impl Sessions {
    /// No sessions.
    pub fn new(policy: SessionPolicy) -> Sessions {
        Sessions {
            policy,
            suite_limit: [privilege::ADMIN; 16],
            kg: None,
            list: Vec::new(),
            next_handle: 1,
            notes: std::sync::Arc::new(crate::ratelimit::RateLimiter::new(
                NOTE_RATE,
                4 * NOTE_RATE,
            )),
        }
    }

    /// Log a line a peer caused, while the BMC's peers stay under
    /// [`NOTE_RATE`]; dropped lines are summed up in the next.
    fn note(&self, level: log::Level, args: std::fmt::Arguments<'_>) {
        note(&self.notes, level, args);
    }

    /// Drop sessions idle too long and setups that stalled.
    pub fn expire(&mut self, now: Instant) {
        let p = self.policy;
        let notes = self.notes.clone();
        self.list.retain(|s| {
            let limit = if matches!(s.stage, Stage::Active) {
                p.idle_timeout
            } else {
                p.setup_timeout
            };
            let keep = now.duration_since(s.last) < limit;
            if !keep {
                note(
                    &notes,
                    log::Level::Info,
                    format_args!("ipmi: session {:#010x} timed out", s.id),
                );
            }
            keep
        });
    }

    /// Active sessions.
    pub fn active(&self) -> impl Iterator<Item = &Session> {
        self.list
            .iter()
            .filter(|s| matches!(s.stage, Stage::Active))
    }

    /// The session with BMC session ID `id`.
    pub fn get(&self, id: u32) -> Option<&Session> {
        self.list.iter().find(|s| s.id == id)
    }

    /// The session with BMC session ID `id`, mutable.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut Session> {
        self.list.iter_mut().find(|s| s.id == id)
    }

    /// Close a session.
    pub fn close(&mut self, id: u32) -> bool {
        let n = self.list.len();
        self.list.retain(|s| s.id != id);
        n != self.list.len()
    }

    /// Close every session except `keep`.
    pub fn close_all_but(&mut self, keep: u32) {
        self.list.retain(|s| s.id == keep);
    }

    /// Room for one more session from `peer`: a peer may hold at most
    /// half the table ([`Sessions::per_peer`]), so one client cannot lock
    /// out the others. When the peer is at its share, its own oldest
    /// unfinished setup makes way; when the table is full, the oldest
    /// unfinished setup of anyone (so a flood of unauthenticated setups
    /// never locks out real users for longer than it keeps flooding);
    /// otherwise refuse.
    fn make_room(&mut self, peer: SocketAddr) -> bool {
        let mine = self
            .list
            .iter()
            .filter(|s| s.peer.ip() == peer.ip())
            .count();
        if mine >= self.per_peer() {
            return self.evict_setup(|s| s.peer.ip() == peer.ip());
        }
        if self.list.len() < self.policy.max_sessions {
            return true;
        }
        self.evict_setup(|_| true)
    }

    /// Most sessions (set up or active) one peer address may hold.
    pub fn per_peer(&self) -> usize {
        (self.policy.max_sessions / 2).max(1)
    }

    fn evict_setup(&mut self, of: impl Fn(&Session) -> bool) -> bool {
        let oldest = self
            .list
            .iter()
            .enumerate()
            .filter(|(_, s)| !matches!(s.stage, Stage::Active) && of(s))
            .min_by_key(|(_, s)| s.last)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                self.list.remove(i);
                true
            }
            None => false,
        }
    }

    /// An active RMCP+ session (no keys) for `user` at its highest
    /// privilege, as if set up by `peer`: a way for fuzz targets and tests
    /// to reach the in-session commands without the handshake. Nothing on
    /// the network path calls it.
    #[doc(hidden)]
    pub fn insert_active(&mut self, user: User, peer: SocketAddr) -> u32 {
        let id = self.new_id();
        let mut s = self.blank(id, id, true, Stage::Active, peer);
        let p = user.role.ipmi_privilege();
        s.max_priv = p;
        s.privilege = p;
        s.password = user.password.clone();
        s.user = Some(user);
        self.list.push(s);
        id
    }

    fn new_id(&self) -> u32 {
        loop {
            let id = crypto::random_u32();
            // Keep clear of the range ipmitool reserves for 1.5 SOL
            // (session ID + 0x10000000) colliding with another session.
            if self.get(id).is_none() && id != 0 {
                return id;
            }
        }
    }

    fn new_handle(&mut self) -> u8 {
        loop {
            let h = self.next_handle;
            self.next_handle = self.next_handle.wrapping_add(1).max(1);
            if !self.list.iter().any(|s| s.handle == h) {
                return h;
            }
        }
    }

    fn blank(
        &mut self,
        id: u32,
        remote_id: u32,
        plus: bool,
        stage: Stage,
        peer: SocketAddr,
    ) -> Session {
        Session {
            id,
            remote_id,
            handle: self.new_handle(),
            plus,
            stage,
            user: None,
            password: Vec::new(),
            auth_type: rmcp::AUTH_NONE,
            keys: None,
            max_priv: 0,
            privilege: 0,
            window: SeqWindow::default(),
            out_seq: 1,
            peer,
            last: Instant::now(),
            name: Vec::new(),
        }
    }

    // ---------------------------------------------------------------- 1.5

    /// Get Session Challenge (App 0x39): completion code and data.
    pub fn challenge(&mut self, users: &UserStore, data: &[u8], peer: SocketAddr) -> (u8, Vec<u8>) {
        if data.len() != 17 {
            return (0xC7, vec![]);
        }
        let auth_type = data[0] & 0x0F;
        let allowed = match auth_type {
            rmcp::AUTH_MD5 | rmcp::AUTH_PASSWORD => true,
            rmcp::AUTH_NONE => self.policy.allow_auth_none,
            _ => false,
        };
        if !allowed {
            return (0xCC, vec![]);
        }
        let name = trim_name(&data[1..17]);
        if name.is_empty() {
            return (0x82, vec![]); // null user names are not enabled
        }
        let Some(user) = users.by_name(name).filter(usable) else {
            self.note(
                log::Level::Warn,
                format_args!(
                    "ipmi: challenge for unknown user {:?} from {peer}",
                    String::from_utf8_lossy(name)
                ),
            );
            return (0x81, vec![]);
        };
        if !self.make_room(peer) {
            return (0x81, vec![]); // Activate Session would refuse anyway
        }
        let mut challenge = [0u8; 16];
        crypto::random(&mut challenge);
        let id = self.new_id();
        let mut s = self.blank(
            id,
            id,
            false,
            Stage::Challenged {
                challenge,
                auth_type,
            },
            peer,
        );
        s.auth_type = auth_type;
        s.password = user.password.clone();
        s.max_priv = user.role.ipmi_privilege();
        s.user = Some(user);
        self.list.push(s);
        let mut out = id.to_le_bytes().to_vec();
        out.extend_from_slice(&challenge);
        (0, out)
    }

    /// Check a 1.5 packet's auth code against session `s`.
    pub fn v15_authentic(s: &Session, p: &rmcp::V15<'_>) -> bool {
        if p.auth_type != s.auth_type {
            return false;
        }
        let pw = crypto::password16(&s.password);
        match (p.auth_type, p.auth_code) {
            (rmcp::AUTH_NONE, None) => true,
            (rmcp::AUTH_PASSWORD, Some(c)) => crypto::ct_eq(&c, &pw),
            (rmcp::AUTH_MD5, Some(c)) => {
                crypto::ct_eq(&c, &crypto::md5_auth_code(&pw, p.session_id, p.msg, p.seq))
            }
            _ => false,
        }
    }

    /// The auth code of a 1.5 packet the BMC sends in session `s`.
    pub fn v15_code(s: &Session, seq: u32, msg: &[u8]) -> Option<[u8; 16]> {
        let pw = crypto::password16(&s.password);
        match s.auth_type {
            rmcp::AUTH_PASSWORD => Some(pw),
            rmcp::AUTH_MD5 => Some(crypto::md5_auth_code(&pw, s.id, msg, seq)),
            _ => None,
        }
    }

    /// Activate Session (App 0x3A) for the challenged session `id`, whose
    /// packet was already found authentic.
    pub fn activate(&mut self, id: u32, data: &[u8]) -> (u8, Vec<u8>) {
        let Some(s) = self.get_mut(id) else {
            return (0x85, vec![]);
        };
        let Stage::Challenged {
            challenge,
            auth_type,
        } = s.stage.clone()
        else {
            return (0x85, vec![]);
        };
        if data.len() != 22 {
            return (0xC7, vec![]);
        }
        if data[0] & 0x0F != auth_type || !crypto::ct_eq(&data[2..18], &challenge) {
            return (0xCC, vec![]);
        }
        let want = data[1] & 0x0F;
        if want == 0 || want > privilege::ADMIN {
            return (0xCC, vec![]);
        }
        if want > s.max_priv {
            return (0x86, vec![]);
        }
        s.max_priv = want;
        s.privilege = want.min(privilege::USER);
        s.out_seq = u32::from_le_bytes([data[18], data[19], data[20], data[21]]);
        let inbound = crypto::random_u32() & 0x7FFF_FFFF | 1;
        // The console's first message carries `inbound`.
        s.window = SeqWindow {
            highest: Some(inbound.wrapping_sub(1)),
            seen: 1,
        };
        s.stage = Stage::Active;
        s.last = Instant::now();
        log::info!(
            "ipmi: 1.5 session {:#010x} for {} from {}",
            s.id,
            s.user.as_ref().map_or("?", |u| u.name.as_str()),
            s.peer
        );
        let mut out = vec![auth_type];
        out.extend_from_slice(&s.id.to_le_bytes());
        out.extend_from_slice(&inbound.to_le_bytes());
        out.push(want);
        (0, out)
    }

    // ---------------------------------------------------------------- RMCP+

    /// Handle an RMCP+ Open Session Request.
    pub fn open_session(&mut self, req: &[u8], peer: SocketAddr) -> SetupReply {
        let tag = req.first().copied().unwrap_or(0);
        let remote = if req.len() >= 8 {
            u32::from_le_bytes([req[4], req[5], req[6], req[7]])
        } else {
            0
        };
        let fail = |st: u8| {
            let mut out = vec![tag, st, 0, 0];
            out.extend_from_slice(&remote.to_le_bytes());
            (rmcp::PAYLOAD_OPEN_RSP, out)
        };
        if req.len() != 32 || remote == 0 {
            return fail(status::ILLEGAL_PARAMETER);
        }
        let role = req[1] & 0x0F;
        if role > privilege::ADMIN {
            return fail(status::INVALID_ROLE);
        }
        // Three 8-byte algorithm payloads: type, 2 reserved, length 8, algorithm.
        let alg = |i: usize, ty: u8| -> Option<u8> {
            let p = &req[8 + i * 8..16 + i * 8];
            (p[0] == ty && p[3] == 8).then_some(p[4] & 0x3F)
        };
        let (Some(a), Some(i), Some(c)) = (alg(0, 0), alg(1, 1), alg(2, 2)) else {
            return fail(status::ILLEGAL_PARAMETER);
        };
        if !matches!(
            a,
            crypto::RAKP_NONE | crypto::RAKP_HMAC_SHA1 | crypto::RAKP_HMAC_SHA256
        ) {
            return fail(status::INVALID_AUTH_ALG);
        }
        if !matches!(
            i,
            crypto::INTEGRITY_NONE
                | crypto::INTEGRITY_HMAC_SHA1_96
                | crypto::INTEGRITY_HMAC_SHA256_128
        ) {
            return fail(status::INVALID_INTEGRITY_ALG);
        }
        if !matches!(c, crypto::CRYPT_NONE | crypto::CRYPT_AES_CBC_128) {
            return fail(status::INVALID_CONF_ALG);
        }
        let Some(suite) = self
            .policy
            .suites()
            .find(|s| s.auth == a && s.integrity == i && s.confidentiality == c)
            .copied()
        else {
            self.note(
                log::Level::Warn,
                format_args!("ipmi: {peer} proposed algorithms {a}/{i}/{c}, which no enabled cipher suite has"
            ));
            return fail(status::NO_CIPHER_MATCH);
        };
        let entry = self.policy.suites().position(|s| s.id == suite.id);
        let limit = entry.map_or(0, |i| self.suite_limit.get(i).copied().unwrap_or(0));
        if limit == 0 {
            self.note(
                log::Level::Warn,
                format_args!(
                    "ipmi: {peer} asked for cipher suite {}, which is marked unused",
                    suite.id
                ),
            );
            return fail(status::NO_CIPHER_MATCH);
        }
        if role > limit {
            self.note(
                log::Level::Warn,
                format_args!("ipmi: {peer} asked for privilege {role} over cipher suite {}, which allows {limit}",
                suite.id
            ));
            return fail(status::UNAUTHORIZED_ROLE);
        }
        self.expire(Instant::now());
        if !self.make_room(peer) {
            self.note(
                log::Level::Warn,
                format_args!(
                    "ipmi: session limit ({} in all, {} per client) reached; refusing {peer}",
                    self.policy.max_sessions,
                    self.per_peer()
                ),
            );
            return fail(status::NO_RESOURCES);
        }
        let id = self.new_id();
        let max_priv = if role == 0 { limit } else { role };
        let s = self.blank(id, remote, true, Stage::Opened { suite, max_priv }, peer);
        self.list.push(s);
        let mut out = vec![tag, status::OK, max_priv, 0];
        out.extend_from_slice(&remote.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 8, a, 0, 0, 0]);
        out.extend_from_slice(&[1, 0, 0, 8, i, 0, 0, 0]);
        out.extend_from_slice(&[2, 0, 0, 8, c, 0, 0, 0]);
        (rmcp::PAYLOAD_OPEN_RSP, out)
    }

    /// Handle RAKP Message 1; `guid` is the BMC's GUID as sent on the wire.
    pub fn rakp1(&mut self, req: &[u8], users: &UserStore, guid: &[u8; 16]) -> Option<SetupReply> {
        if req.len() < 28 {
            return None;
        }
        let tag = req[0];
        let id = u32::from_le_bytes([req[4], req[5], req[6], req[7]]);
        let s = self.get(id)?;
        let (suite, max_priv) = match s.stage {
            Stage::Opened { suite, max_priv } => (suite, max_priv),
            // A repeated RAKP 1 (the console lost our RAKP 2) starts over.
            Stage::Rakp2Sent { suite, .. } => (suite, s.max_priv.max(privilege::USER)),
            _ => return None,
        };
        let remote = s.remote_id;
        let reply = |st: u8, body: &[u8]| {
            let mut out = vec![tag, st, 0, 0];
            out.extend_from_slice(&remote.to_le_bytes());
            out.extend_from_slice(body);
            (rmcp::PAYLOAD_RAKP2, out)
        };
        let mut rm = [0u8; 16];
        rm.copy_from_slice(&req[8..24]);
        let role_byte = req[24];
        let role = role_byte & 0x0F;
        let ulen = req[27] as usize;
        if ulen > MAX_IPMI_NAME || req.len() < 28 + ulen {
            self.close(id);
            return Some(reply(status::ILLEGAL_PARAMETER, &[]));
        }
        let name = &req[28..28 + ulen];
        if role == 0 || role > privilege::ADMIN {
            self.close(id);
            return Some(reply(status::INVALID_ROLE, &[]));
        }
        let user = if name.is_empty() {
            None // null user names are not enabled
        } else {
            users.by_name(name).filter(usable)
        };
        let Some(user) = user else {
            log::warn!(
                "ipmi: RAKP for unknown or disabled user {:?}",
                String::from_utf8_lossy(name)
            );
            self.close(id);
            return Some(reply(status::UNAUTHORIZED_NAME, &[]));
        };
        let limit = user.role.ipmi_privilege().min(max_priv);
        if role > limit {
            log::warn!(
                "ipmi: user {} asked for privilege {role}, allowed {limit}",
                user.name
            );
            self.close(id);
            return Some(reply(status::UNAUTHORIZED_ROLE, &[]));
        }
        let mut rc = [0u8; 16];
        crypto::random(&mut rc);
        let code = match suite.hash() {
            Some(h) => crypto::hmac(
                h,
                &user.password,
                &[
                    &remote.to_le_bytes(),
                    &id.to_le_bytes(),
                    &rm,
                    &rc,
                    guid,
                    &[role_byte, ulen as u8],
                    name,
                ],
            ),
            None => Vec::new(),
        };
        let s = self.get_mut(id)?;
        s.password = user.password.clone();
        s.max_priv = role;
        s.user = Some(user);
        s.name = name.to_vec();
        s.stage = Stage::Rakp2Sent {
            suite,
            rm,
            rc,
            role: role_byte,
        };
        s.last = Instant::now();
        let mut body = rc.to_vec();
        body.extend_from_slice(guid);
        body.extend_from_slice(&code);
        Some(reply(status::OK, &body))
    }

    /// Handle RAKP Message 3: on success the session becomes active.
    pub fn rakp3(&mut self, req: &[u8], guid: &[u8; 16]) -> Option<SetupReply> {
        if req.len() < 8 {
            return None;
        }
        let tag = req[0];
        let id = u32::from_le_bytes([req[4], req[5], req[6], req[7]]);
        let s = self.get(id)?;
        let Stage::Rakp2Sent {
            suite,
            rm,
            rc,
            role,
        } = s.stage.clone()
        else {
            return None;
        };
        let remote = s.remote_id;
        let reply = |st: u8, body: &[u8]| {
            let mut out = vec![tag, st, 0, 0];
            out.extend_from_slice(&remote.to_le_bytes());
            out.extend_from_slice(body);
            (rmcp::PAYLOAD_RAKP4, out)
        };
        if req[1] != status::OK {
            // The console refused our RAKP 2 (typically: wrong password).
            log::warn!(
                "ipmi: console refused RAKP 2 with status {:#04x} (wrong password?)",
                req[1]
            );
            self.close(id);
            return None;
        }
        let name = s.name.clone();
        let password = s.password.clone();
        let Some(h) = suite.hash() else {
            // Cipher suite 0: no keys at all.
            let s = self.get_mut(id)?;
            s.keys = Some(PlusKeys {
                suite,
                k1: Vec::new(),
                aes: [0; 16],
            });
            activate_plus(s);
            return Some(reply(status::OK, &[]));
        };
        let want = crypto::hmac(
            h,
            &password,
            &[&rc, &remote.to_le_bytes(), &[role, name.len() as u8], &name],
        );
        if !crypto::ct_eq(&req[8..], &want) {
            log::warn!(
                "ipmi: RAKP 3 from {} did not verify (wrong password)",
                s.peer
            );
            self.close(id);
            return Some(reply(status::INVALID_ICV, &[]));
        }
        // K_G when the BMC has one, else K_UID (spec 13.31).
        let kg = self.kg.clone().unwrap_or(password);
        let sik = crypto::hmac(h, &kg, &[&rm, &rc, &[role, name.len() as u8], &name]);
        // K1 and K2 are HMACs of 20 bytes of 0x01 / 0x02 (20 for SHA256 too,
        // as ipmitool and BMCs do).
        let k1 = crypto::hmac(h, &sik, &[&[1u8; 20]]);
        let k2 = crypto::hmac(h, &sik, &[&[2u8; 20]]);
        let mut aes = [0u8; 16];
        aes.copy_from_slice(&k2[..16]);
        let icv = crypto::hmac(h, &sik, &[&rm, &id.to_le_bytes(), guid]);
        let s = self.get_mut(id)?;
        s.keys = Some(PlusKeys { suite, k1, aes });
        activate_plus(s);
        Some(reply(status::OK, &icv[..suite.icv_len()]))
    }

    /// Check, replay-filter and decrypt an IPMI payload of an active RMCP+
    /// session; returns the plain message.
    pub fn open_plus(s: &mut Session, p: &rmcp::V20<'_>) -> Option<Vec<u8>> {
        let keys = s.keys.clone()?;
        if let Some(h) = keys.suite.integrity_hash() {
            if !p.authenticated {
                return None;
            }
            let (covered, code) = p.integrity(keys.suite.integrity_len())?;
            let mac = crypto::hmac(h, &keys.k1, &[covered]);
            if !crypto::ct_eq(code, &mac[..code.len()]) {
                return None;
            }
        }
        if keys.suite.confidentiality == crypto::CRYPT_AES_CBC_128 && !p.encrypted {
            return None;
        }
        // Only after the packet proved authentic may it move the window.
        if keys.suite.integrity != crypto::INTEGRITY_NONE && !s.window.accept(p.seq) {
            return None;
        }
        let plain = if p.encrypted {
            if keys.suite.confidentiality != crypto::CRYPT_AES_CBC_128 {
                return None;
            }
            crypto::aes_decrypt(&keys.aes, p.payload)?
        } else {
            p.payload.to_vec()
        };
        s.last = Instant::now();
        Some(plain)
    }

    /// Seal an outgoing payload of an active RMCP+ session into a packet.
    pub fn seal_plus(s: &mut Session, payload_type: u8, payload: &[u8]) -> Vec<u8> {
        let keys = s.keys.clone().expect("active RMCP+ session has keys");
        let seq = s.out_seq;
        s.out_seq = s.out_seq.wrapping_add(1).max(1);
        let (encrypted, body) = if keys.suite.confidentiality == crypto::CRYPT_AES_CBC_128 {
            let mut iv = [0u8; 16];
            crypto::random(&mut iv);
            (true, crypto::aes_encrypt(&keys.aes, &iv, payload))
        } else {
            (false, payload.to_vec())
        };
        match keys.suite.integrity_hash() {
            Some(h) => {
                let n = keys.suite.integrity_len();
                let mac = move |b: &[u8]| crypto::hmac(h, &keys.k1, &[b])[..n].to_vec();
                rmcp::emit_v20(payload_type, encrypted, s.remote_id, seq, &body, Some(&mac))
            }
            None => rmcp::emit_v20(payload_type, encrypted, s.remote_id, seq, &body, None),
        }
    }
}

fn activate_plus(s: &mut Session) {
    s.stage = Stage::Active;
    s.privilege = s.max_priv.min(privilege::USER);
    s.last = Instant::now();
    log::info!(
        "ipmi: RMCP+ session {:#010x} (suite {}) for {} from {}",
        s.id,
        s.keys.as_ref().map_or(0, |k| k.suite.id),
        s.user.as_ref().map_or("?", |u| u.name.as_str()),
        s.peer
    );
}

/// A user who can log in over IPMI at all.
fn usable(u: &User) -> bool {
    u.enabled && u.name.len() <= MAX_IPMI_NAME && u.password.len() <= MAX_IPMI_PASSWORD
}

/// A fixed 16-byte user name field up to its first NUL.
pub fn trim_name(b: &[u8]) -> &[u8] {
    let n = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_refuses_replays_and_far_values() {
        let mut w = SeqWindow::default();
        assert!(!w.accept(0));
        assert!(w.accept(10));
        assert!(!w.accept(10), "replay");
        assert!(w.accept(12));
        assert!(w.accept(11), "late but new");
        assert!(!w.accept(11), "late replay");
        assert!(w.accept(27), "15 ahead");
        assert!(!w.accept(43), "16 ahead");
        assert!(!w.accept(11), "now 16 behind");
        assert!(w.accept(20));
    }
}
