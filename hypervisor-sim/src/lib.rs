//! hvsim: a simulated VMware host.
//!
//! * [`config`]: the TOML configuration.
//! * [`store`]: persistent state (SQLite).
//! * [`vm`]: the VM model every service reads and changes; [`vmlog`]: its
//!   `vmware.log`.
//! * [`device`]: the backdoor device, a pure state machine.
//! * [`rpci`]: the RPCI commands the host answers.
//! * [`socket`]: the socket frontend (register frames from guest programs).
//! * [`control`]: the control socket behind `hvsim vm ...`.
//! * [`snapshot`]: snapshots, quiesced through the guest's vmbackup.
//! * [`customize`]: guest customization (deployPkg packages, state reports).
//! * [`exec`]: the trap frontend behind `hvsim exec` (ptrace, x86_64 Linux);
//!   [`console`]: the serial console of `hvsim exec --console`.
//! * [`vsock`]: TCLO over vsock, the push channel for programs under `hvsim exec`;
//!   [`rpci_vsock`]: RPCI over vsock, their request channel.
//! * [`http`]: the HTTP/1.1 (and HTTPS) server layer of the host services.
//! * [`cim`]: the embedded CIM-XML provider; [`wsman`]: WS-Management over it;
//!   [`wbem`]: the CIM service settings (`hvsim wbem get|set`).
//! * [`redfish`]: the Redfish service; [`media`] and [`nbd`]: virtual media.
//! * [`guestops`]: guest operations (run programs, move files) through the
//!   guest tools' VIX handler and HGFS server.
//! * [`budget`]: the descriptor budget (connection caps, accept back-off);
//!   [`ratelimit`]: bounds on guest-controlled log output; [`logfile`]: the
//!   size-rotated log file.
//! * [`serve`]: wiring it all together.

pub mod budget;
pub mod cim;
pub mod clipboard;
pub mod config;
pub mod console;
pub mod control;
pub mod customize;
pub mod demo;
pub mod device;
pub mod exec;
pub mod guestops;
pub mod http;
pub mod ipmi;
pub mod logfile;
pub mod media;
pub mod namespace;
pub mod nbd;
pub mod ratelimit;
pub mod redfish;
pub mod rpci;
pub mod rpci_vsock;
pub mod serve;
pub mod snapshot;
pub mod socket;
pub mod store;
pub mod users;
pub mod vm;
pub mod vmhost;
pub mod vmlog;
pub mod vsock;
pub mod vsphere;
pub mod wbem;
pub mod webui;
pub mod wsman;
