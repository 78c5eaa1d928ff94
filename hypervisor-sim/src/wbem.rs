//! The WBEM service as `esxcli system wbem get|set` manages it on ESXi:
//! whether CIM (CIM-XML on HTTP and HTTPS) and WS-Management run, their
//! ports, authentication model, keep-alive, log level and TLS protocols.
//!
//! Settings start from the config (`[cim]`, `[wsman]`); `hvsim wbem set`
//! changes them on a running serve through the control socket, keeps them
//! in `<state_dir>/wbem.json` (they win over the config on the next start)
//! and applies them at once: listeners are closed (with their connections)
//! and opened again with the new settings, no restart of hvsim.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cim::{self, CimHandler, CimStartError, Service, UserAuth};
use crate::config::Config;
use crate::control::Inventory;
use crate::http::tls::{self, TlsProtocol};
use crate::http::{self, Authenticator, Handler, HttpConfig, HttpLimits, Listener};
use crate::users::UserStore;
use crate::wsman::WsmanHandler;

/// Default TLS protocols: TLS 1.2 only, what `esxcli system wbem get`
/// reports as "Enabled System SSL Protocols" on ESXi 6.7 to 8.0 U2 (where
/// TLS 1.0 and 1.1 are off by default; VMware KB 2151279 describes
/// changing sfcb's protocols).
pub const DEFAULT_SSL_PROTOCOLS: &str = "tlsv1.2";
/// Default seconds an idle keep-alive connection stays open.
pub const DEFAULT_KEEPALIVE_TIMEOUT: u64 = 60;
/// Default requests per connection (0: unlimited).
pub const DEFAULT_KEEPALIVE_MAX_REQUESTS: u64 = 0;
/// Default log level of the CIM and WS-Management services.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// The authentication models (esxcli: `password`; `certificate` needs
/// client certificates, which hvsim does not check).
pub const AUTH_MODELS: [&str; 1] = ["password"];

/// The settings `hvsim wbem get` shows and `set` changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// CIM (and WS-Management) on at all.
    pub enabled: bool,
    /// WS-Management on (when `enabled`).
    pub wsman: bool,
    /// CIM-XML over HTTPS listen address ("" = off).
    pub https: String,
    /// CIM-XML over HTTP listen address ("" = off).
    pub http: String,
    /// WS-Management listen address ("" = off).
    pub wsman_listen: String,
    /// Authentication model.
    pub auth_model: String,
    /// Idle seconds before a keep-alive connection is closed.
    pub keepalive_timeout: u64,
    /// Requests per connection (0: unlimited).
    pub keepalive_max_requests: u64,
    /// debug, info, warning or error.
    pub log_level: String,
    /// TLS protocols of the HTTPS listeners (`tlsv1.2,tlsv1.3`).
    pub ssl_protocols: String,
}

/// A `hvsim wbem set` request: the settings to change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    /// `--enable`.
    pub enable: Option<bool>,
    /// `--wsman`.
    pub wsman: Option<bool>,
    /// `--port`: the CIM-XML HTTPS port.
    pub port: Option<u16>,
    /// `--http-port`: the CIM-XML HTTP port.
    pub http_port: Option<u16>,
    /// `--auth-model`.
    pub auth_model: Option<String>,
    /// `--keepalive-timeout`.
    pub keepalive_timeout: Option<u64>,
    /// `--keepalive-max-requests`.
    pub keepalive_max_requests: Option<u64>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--ssl-protocols`.
    pub ssl_protocols: Option<String>,
}

/// The log levels, most verbose first, with the `log` level they admit.
const LEVELS: [(&str, log::LevelFilter); 4] = [
    ("debug", log::LevelFilter::Debug),
    ("info", log::LevelFilter::Info),
    ("warning", log::LevelFilter::Warn),
    ("error", log::LevelFilter::Error),
];

fn level_index(name: &str) -> Option<usize> {
    let n = name.trim().to_ascii_lowercase();
    let n = if n == "warn" { "warning".into() } else { n };
    LEVELS.iter().position(|(l, _)| *l == n)
}

/// The current level of the CIM and WS-Management log lines (an index
/// into [`LEVELS`]).
static LEVEL: AtomicUsize = AtomicUsize::new(1);

/// Log targets the WBEM log level governs.
const TARGETS: [&str; 3] = ["hvsim::cim", "hvsim::wsman", "hvsim::http"];

/// A logger that applies the WBEM log level to the CIM, WS-Management and
/// HTTP layers' records on top of its inner logger's filter.
#[derive(Debug)]
pub struct LevelLogger<L> {
    inner: L,
}

impl<L: log::Log> log::Log for LevelLogger<L> {
    fn enabled(&self, m: &log::Metadata) -> bool {
        self.inner.enabled(m) && wbem_allows(m)
    }
    fn log(&self, r: &log::Record) {
        if wbem_allows(r.metadata()) {
            self.inner.log(r);
        }
    }
    fn flush(&self) {
        self.inner.flush();
    }
}

fn wbem_allows(m: &log::Metadata) -> bool {
    if !TARGETS.iter().any(|t| m.target().starts_with(t)) {
        return true;
    }
    m.level() <= LEVELS[LEVEL.load(Ordering::Relaxed).min(3)].1
}

/// Install `inner` (whose own filter is `max`) wrapped in a
/// [`LevelLogger`] as the process logger.
pub fn install_logger<L: log::Log + 'static>(
    inner: L,
    max: log::LevelFilter,
) -> Result<(), log::SetLoggerError> {
    log::set_boxed_logger(Box::new(LevelLogger { inner }))?;
    log::set_max_level(max);
    Ok(())
}

fn set_address_port(addr: &str, port: u16) -> String {
    let host = match addr.parse::<SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => addr
            .rsplit_once(':')
            .map_or("127.0.0.1".to_string(), |(h, _)| h.to_string()),
    };
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Settings {
    /// The settings the config gives.
    pub fn from_config(cfg: &Config) -> Settings {
        let c = &cfg.cim;
        Settings {
            enabled: c.enabled != Some(false),
            wsman: cfg.wsman.enabled != Some(false),
            https: c.https.clone().unwrap_or_else(|| cim::DEFAULT_HTTPS.into()),
            http: c.http.clone().unwrap_or_else(|| cim::DEFAULT_HTTP.into()),
            wsman_listen: cfg
                .wsman
                .listen
                .clone()
                .unwrap_or_else(|| crate::wsman::DEFAULT_LISTEN.into()),
            auth_model: c.auth_model.clone().unwrap_or_else(|| "password".into()),
            keepalive_timeout: c.keepalive_timeout.unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT),
            keepalive_max_requests: c
                .keepalive_max_requests
                .unwrap_or(DEFAULT_KEEPALIVE_MAX_REQUESTS),
            log_level: c
                .log_level
                .clone()
                .unwrap_or_else(|| DEFAULT_LOG_LEVEL.into()),
            ssl_protocols: c
                .ssl_protocols
                .clone()
                .unwrap_or_else(|| DEFAULT_SSL_PROTOCOLS.into()),
        }
    }

    /// Check every value; the protocols in canonical form.
    pub fn validate(&mut self) -> Result<(), String> {
        if !AUTH_MODELS.contains(&self.auth_model.as_str()) {
            return Err(format!(
                "auth model {:?} is not supported: use password (Basic authentication against [[user]])",
                self.auth_model
            ));
        }
        let li = level_index(&self.log_level).ok_or_else(|| {
            format!(
                "log level {:?}: use debug, info, warning or error",
                self.log_level
            )
        })?;
        self.log_level = LEVELS[li].0.to_string();
        self.ssl_protocols = tls::protocols_text(&tls::parse_protocols(&self.ssl_protocols)?);
        if self.keepalive_timeout == 0 || self.keepalive_timeout > 3600 {
            return Err("keep-alive timeout must be 1 to 3600 seconds".into());
        }
        for (what, a) in [
            ("CIM HTTPS", &self.https),
            ("CIM HTTP", &self.http),
            ("WS-Management", &self.wsman_listen),
        ] {
            if !a.is_empty() && a.parse::<SocketAddr>().is_err() && !a.contains(':') {
                return Err(format!("{what} listen address {a:?} is not HOST:PORT"));
            }
        }
        Ok(())
    }

    /// Apply `c` to a copy of these settings.
    pub fn with(&self, c: &Changes) -> Result<Settings, String> {
        let mut s = self.clone();
        if let Some(v) = c.enable {
            s.enabled = v;
        }
        if let Some(v) = c.wsman {
            s.wsman = v;
        }
        if let Some(p) = c.port {
            s.https = set_address_port(&s.https, p);
        }
        if let Some(p) = c.http_port {
            s.http = set_address_port(&s.http, p);
        }
        if let Some(v) = &c.auth_model {
            s.auth_model = v.trim().to_ascii_lowercase();
        }
        if let Some(v) = c.keepalive_timeout {
            s.keepalive_timeout = v;
        }
        if let Some(v) = c.keepalive_max_requests {
            s.keepalive_max_requests = v;
        }
        if let Some(v) = &c.log_level {
            s.log_level = v.clone();
        }
        if let Some(v) = &c.ssl_protocols {
            s.ssl_protocols = v.clone();
        }
        s.validate()?;
        Ok(s)
    }
}

/// The fixed parts: what the config says and settings cannot change.
struct Fixed {
    cert: tls::CertPaths,
    http_local_only: bool,
    max_request: usize,
    /// Whether the listen addresses came from the config (a busy default
    /// port is only a warning).
    explicit: [bool; 3],
}

#[derive(Default)]
struct Running {
    http: Option<Listener>,
    https: Option<Listener>,
    wsman: Option<Listener>,
}

/// The WBEM service: its settings and listeners.
pub struct Wbem {
    /// The CIM provider behind both protocols.
    pub service: Arc<Service>,
    users: Arc<UserStore>,
    fixed: Fixed,
    state_file: PathBuf,
    state: Mutex<(Settings, Running)>,
}

impl std::fmt::Debug for Wbem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wbem")
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

fn bind(addr: &str, explicit: bool) -> Result<Option<std::net::TcpListener>, CimStartError> {
    match http::bind(addr) {
        Ok(l) => Ok(Some(l)),
        Err(source) if !explicit => {
            // A default port in use (another hvsim, a real sfcb) must not
            // stop the simulator; a configured one must.
            log::warn!("cim: not listening on default {addr}: {source}");
            Ok(None)
        }
        Err(source) => Err(CimStartError::Bind {
            addr: addr.into(),
            source,
        }),
    }
}

impl Wbem {
    /// Set up the service from `cfg` and the settings kept in `state_dir`,
    /// and open the listeners they ask for.
    pub fn start(
        cfg: &Config,
        inventory: Inventory,
        state_dir: &Path,
        users: Arc<UserStore>,
    ) -> Result<Arc<Wbem>, CimStartError> {
        let state_file = state_dir.join("wbem.json");
        let mut settings = Settings::from_config(cfg);
        let mut from_state = false;
        if let Ok(text) = std::fs::read(&state_file) {
            match serde_json::from_slice::<Settings>(&text) {
                Ok(s) => {
                    settings = s;
                    from_state = true;
                }
                Err(e) => log::warn!(
                    "cim: ignoring {} ({e}); using the config's settings",
                    state_file.display()
                ),
            }
        }
        settings.validate().map_err(|msg| CimStartError::Settings {
            origin: if from_state {
                state_file.display().to_string()
            } else {
                cfg.origin.display().to_string()
            },
            msg,
        })?;
        let cert = match (&cfg.cim.certificate, &cfg.cim.key) {
            (Some(cert), Some(key)) => tls::CertPaths {
                cert: cfg.resolve(cert),
                key: cfg.resolve(key),
            },
            _ => tls::ensure_self_signed(
                &state_dir.join("cim"),
                "server",
                &[
                    "localhost".into(),
                    "127.0.0.1".into(),
                    "::1".into(),
                    cim::host_name(),
                ],
            )?,
        };
        cim::tune_allocator();
        let service = Service::new(inventory, cim::host_name());
        if users.list().is_empty() {
            log::warn!("cim: no [[user]] configured: CIM requests are not authenticated");
        }
        let w = Arc::new(Wbem {
            service,
            users,
            fixed: Fixed {
                cert,
                http_local_only: cfg.cim.http_local_only.unwrap_or(true),
                max_request: cfg.cim.max_request.unwrap_or(cim::DEFAULT_MAX_REQUEST),
                explicit: [
                    from_state || cfg.cim.http.is_some(),
                    from_state || cfg.cim.https.is_some(),
                    from_state || cfg.wsman.listen.is_some(),
                ],
            },
            state_file,
            state: Mutex::new((settings.clone(), Running::default())),
        });
        let running = w.open(&settings)?;
        w.lock().1 = running;
        Ok(w)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Settings, Running)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open the listeners `s` asks for.
    fn open(&self, s: &Settings) -> Result<Running, CimStartError> {
        LEVEL.store(level_index(&s.log_level).unwrap_or(1), Ordering::Relaxed);
        let mut r = Running::default();
        if !s.enabled {
            log::info!("cim: the WBEM service is disabled");
            return Ok(r);
        }
        let auth: Option<Arc<dyn Authenticator>> = (!self.users.list().is_empty())
            .then(|| Arc::new(UserAuth::new(self.users.clone())) as Arc<dyn Authenticator>);
        let base = HttpConfig {
            limits: HttpLimits {
                max_body: self.fixed.max_request,
                idle_timeout: Duration::from_secs(s.keepalive_timeout),
                max_requests: s.keepalive_max_requests as usize,
                ..HttpLimits::default()
            },
            auth,
            realm: "hvsim CIM".into(),
            local_only: false,
            name: "cim-http".into(),
        };
        let protocols = tls::parse_protocols(&s.ssl_protocols).unwrap_or(vec![TlsProtocol::Tls12]);
        let tls_cfg = || tls::server_config_with(&self.fixed.cert, &protocols);
        let cim: Arc<dyn Handler> = Arc::new(CimHandler {
            svc: self.service.clone(),
        });
        let thread = CimStartError::Thread;
        if !s.http.is_empty() {
            if let Some(l) = bind(&s.http, self.fixed.explicit[0])? {
                let hc = HttpConfig {
                    local_only: self.fixed.http_local_only,
                    ..base.clone()
                };
                let l = Listener::start(l, None, hc, cim.clone()).map_err(thread)?;
                log::info!("cim: CIM-XML over HTTP on {}", l.local_addr());
                r.http = Some(l);
            }
        }
        if !s.https.is_empty() {
            if let Some(l) = bind(&s.https, self.fixed.explicit[1])? {
                let hc = HttpConfig {
                    name: "cim-https".into(),
                    ..base.clone()
                };
                let l = Listener::start(l, Some(tls_cfg()?), hc, cim).map_err(thread)?;
                log::info!(
                    "cim: CIM-XML over HTTPS on {} (certificate {}, {})",
                    l.local_addr(),
                    self.fixed.cert.cert.display(),
                    s.ssl_protocols
                );
                r.https = Some(l);
            }
        }
        if s.wsman && !s.wsman_listen.is_empty() {
            if let Some(l) = bind(&s.wsman_listen, self.fixed.explicit[2])? {
                let hc = HttpConfig {
                    realm: "hvsim WS-Management".into(),
                    name: "wsman".into(),
                    ..base
                };
                let h: Arc<dyn Handler> = Arc::new(WsmanHandler::new(self.service.clone()));
                let l = Listener::start(l, Some(tls_cfg()?), hc, h).map_err(thread)?;
                log::info!(
                    "wsman: WS-Management over HTTPS on {}/wsman ({})",
                    l.local_addr(),
                    s.ssl_protocols
                );
                r.wsman = Some(l);
            }
        }
        Ok(r)
    }

    /// The bound CIM-XML HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.lock().1.http.as_ref().map(Listener::local_addr)
    }

    /// The bound CIM-XML HTTPS address.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.lock().1.https.as_ref().map(Listener::local_addr)
    }

    /// The bound WS-Management address.
    pub fn wsman_addr(&self) -> Option<SocketAddr> {
        self.lock().1.wsman.as_ref().map(Listener::local_addr)
    }

    /// What `hvsim wbem get` shows: the `esxcli system wbem get` fields
    /// (under their esxcli names) plus hvsim's addresses.
    pub fn get(&self) -> Value {
        let g = self.lock();
        report(&g.0, &g.1)
    }

    /// Apply `c`: validate, reopen the listeners (unless only the log
    /// level changes), keep the settings. On a listener that cannot open,
    /// the previous settings are restored.
    pub fn set(&self, c: &Changes) -> Result<Value, String> {
        let mut g = self.lock();
        let new = g.0.with(c)?;
        let same_listeners = Settings {
            log_level: g.0.log_level.clone(),
            ..new.clone()
        } == g.0;
        let opened = if same_listeners {
            // Only the log level: the listeners stay as they are.
            LEVEL.store(level_index(&new.log_level).unwrap_or(1), Ordering::Relaxed);
            Ok(std::mem::take(&mut g.1))
        } else {
            // Close first: a listener may move to a port the old one
            // holds, and the TLS settings of a kept port change too.
            drop(std::mem::take(&mut g.1));
            self.open(&new)
        };
        match opened {
            Ok(r) => {
                g.1 = r;
                g.0 = new;
                let text = serde_json::to_vec_pretty(&g.0).map_err(|e| e.to_string())?;
                let tmp = self.state_file.with_extension("json.tmp");
                std::fs::write(&tmp, text)
                    .and_then(|()| std::fs::rename(&tmp, &self.state_file))
                    .map_err(|e| {
                        format!(
                            "cannot keep the settings in {}: {e}",
                            self.state_file.display()
                        )
                    })?;
                log::info!(
                    "cim: WBEM settings changed: {}",
                    serde_json::to_string(c).unwrap_or_default()
                );
                Ok(report(&g.0, &g.1))
            }
            Err(e) => {
                let back = self.open(&g.0).unwrap_or_default();
                g.1 = back;
                Err(format!("{e}; the previous settings stay in effect"))
            }
        }
    }
}

fn report(s: &Settings, r: &Running) -> Value {
    let pid = std::process::id();
    let running_cim = r.http.is_some() || r.https.is_some();
    let port = |l: &Option<Listener>, configured: &str| {
        l.as_ref()
            .map(|l| l.local_addr().port())
            .or_else(|| configured.rsplit(':').next().and_then(|p| p.parse().ok()))
    };
    let addr = |l: &Option<Listener>| l.as_ref().map(|l| l.local_addr().to_string());
    json!({
        "Authorization Model": s.auth_model,
        "CIMObject Manager PID": if running_cim { pid } else { 0 },
        "Enabled": s.enabled,
        "Enabled Running SSL Protocols": if r.https.is_some() || r.wsman.is_some() { s.ssl_protocols.clone() } else { String::new() },
        "Enabled System SSL Protocols": s.ssl_protocols,
        "HTTP Port": port(&r.http, &s.http),
        "KeepAlive Max Requests": s.keepalive_max_requests,
        "KeepAlive Timeout": s.keepalive_timeout,
        "Loglevel": s.log_level,
        "Port": port(&r.https, &s.https),
        "Service Location Protocol PID": 0,
        "Service Location Protocol State": false,
        "WSManagement PID": if r.wsman.is_some() { pid } else { 0 },
        "WSManagement Port": port(&r.wsman, &s.wsman_listen),
        "WSManagement Service": s.wsman,
        "addresses": {
            "http": addr(&r.http),
            "https": addr(&r.https),
            "wsman": addr(&r.wsman),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        let mut s = Settings::from_config(&Config::load(None).unwrap());
        s.validate().unwrap();
        s
    }

    #[test]
    fn defaults_are_esxi_like() {
        let s = base();
        assert!(s.enabled && s.wsman);
        assert_eq!(s.ssl_protocols, "tlsv1.2");
        assert_eq!(s.auth_model, "password");
        assert_eq!(s.https, "127.0.0.1:5989");
        assert_eq!(s.wsman_listen, "127.0.0.1:5986");
    }

    #[test]
    fn changes_apply_and_validate() {
        let s = base();
        let n = s
            .with(&Changes {
                port: Some(6989),
                http_port: Some(6988),
                ssl_protocols: Some("TLSv1.3, tlsv1.2".into()),
                log_level: Some("WARN".into()),
                enable: Some(false),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(n.https, "127.0.0.1:6989");
        assert_eq!(n.http, "127.0.0.1:6988");
        assert_eq!(n.ssl_protocols, "tlsv1.2,tlsv1.3");
        assert_eq!(n.log_level, "warning");
        assert!(!n.enabled);
        for bad in [
            Changes {
                auth_model: Some("certificate".into()),
                ..Default::default()
            },
            Changes {
                ssl_protocols: Some("tlsv1.1".into()),
                ..Default::default()
            },
            Changes {
                log_level: Some("loud".into()),
                ..Default::default()
            },
            Changes {
                keepalive_timeout: Some(0),
                ..Default::default()
            },
        ] {
            assert!(s.with(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(set_address_port("[::1]:5989", 1), "[::1]:1");
    }
}
