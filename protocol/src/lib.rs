//! Wire formats of the VMware backdoor and the GuestRPC message layer.
//!
//! Pure data and state machines: no I/O and no unsafe code, so both the guest
//! runtime and the simulated host build on it, and fuzzers can drive it.
//!
//! * [`consts`]: command numbers, status bits, protocols, limits.
//! * [`Regs`]: the register file of one backdoor instruction.
//! * [`frame`]: the socket frontend's register frames.
//! * [`guest`]: the guest side of a message channel over a [`guest::Backdoor`].
//! * [`host`]: the host side of the message channels of one VM.
//! * [`rpc`]: RPCI and TCLO framing.
//! * [`gueststats`]: guest memory statistics (`SetGuestInfo  8`).
//! * [`nicinfo`]: guest NIC information (XDR, nicinfo.x version 3), over [`xdr`].
//! * [`datamap`]: DataMap serialization and the TCLO-over-vsock packets.
//! * [`vmbackup`]: quiesced snapshots (start options XDR, progress events).
//! * [`deploypkg`]: guest customization packages and their state reports;
//!   [`custcfg`]: the customization specification inside them.
//! * [`vix`]: VIX guest-operation messages (`Vix_1_Relayed_Command`).
//! * [`hgfs`]: HGFS packets that move file data for guest operations.
//! * [`appinfo`]: the guest's applications (`guestinfo.appInfo`, JSON v1).

#![forbid(unsafe_code)]

pub mod appinfo;
pub mod consts;
pub mod custcfg;
pub mod datamap;
pub mod deploypkg;
pub mod frame;
pub mod guest;
pub mod guestlib;
pub mod gueststats;
pub mod hgfs;
pub mod host;
pub mod nicinfo;
pub mod regs;
pub mod rpc;
pub mod vix;
pub mod vmbackup;
pub mod xdr;

pub use consts::*;
pub use regs::Regs;
