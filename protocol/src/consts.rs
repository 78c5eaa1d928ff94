//! Every magic number of the backdoor and the GuestRPC message layer, in one place.
//!
//! Source of the facts: open-vm-tools `lib/include/backdoor_def.h` and
//! `lib/include/guest_msg_def.h`.

/// Value the guest loads into eax; the host echoes it in ebx for GETVERSION.
pub const BDOOR_MAGIC: u32 = 0x564D_5868;
/// Low-bandwidth port: `in eax, dx` with dx = this.
pub const BDOOR_PORT: u16 = 0x5658;
/// High-bandwidth port: `rep outsb` / `rep insb` with dx = this.
pub const BDOORHB_PORT: u16 = 0x5659;
/// What eax holds after an unknown command, as on real hosts.
pub const BDOOR_UNKNOWN: u32 = 0xFFFF_FFFF;

/// Low-bandwidth backdoor commands (ecx low 16 bits).
pub mod cmd {
    /// Processor speed in MHz (eax).
    pub const GETMHZ: u16 = 1;
    /// Clipboard: host selection length.
    pub const GETSELLENGTH: u16 = 6;
    /// Clipboard: next 4 bytes of the host selection.
    pub const GETNEXTPIECE: u16 = 7;
    /// Clipboard: guest selection length.
    pub const SETSELLENGTH: u16 = 8;
    /// Clipboard: next 4 bytes of the guest selection.
    pub const SETNEXTPIECE: u16 = 9;
    /// Backdoor version: eax = 6, ebx = magic, ecx = VMX type.
    pub const GETVERSION: u16 = 10;
    /// One 32-bit word of a removable device's `RD_Info` (name[32], u32
    /// uid, Bool enabled): ebx = id << 16 | byte offset; eax = 1 and the
    /// word in ebx, or eax = 0 past the last device.
    pub const GETDEVICELISTELEMENT: u16 = 11;
    /// Connect (ebx bit 31 set) or disconnect device `ebx & 0xffff`;
    /// eax = 1 when done.
    pub const TOGGLEDEVICE: u16 = 12;
    /// GUI and tools option bits ([`super::gui_option`]) in eax.
    pub const GETGUIOPTIONS: u16 = 13;
    /// Set the option bits the guest may change (ebx).
    pub const SETGUIOPTIONS: u16 = 14;
    /// Virtual hardware version in eax.
    pub const GETHWVERSION: u16 = 17;
    /// Host time (deprecated by GETTIMEFULL): seconds in eax (all ones on
    /// overflow), microseconds in ebx, max lag in ecx.
    pub const GETTIME: u16 = 23;
    /// BIOS UUID in eax, ebx, ecx, edx.
    pub const GETUUID: u16 = 19;
    /// Memory size in MiB (eax).
    pub const GETMEMSIZE: u16 = 20;
    /// GuestRPC message channel; subcommand in ecx high 16 bits.
    pub const MESSAGE: u16 = 30;
    /// TSC and APIC frequencies in Hz (ebx:eax, ecx:...)
    pub const GETHZ: u16 = 45;
    /// Host time: seconds in esi:edx, microseconds in ebx, max lag in ecx.
    pub const GETTIMEFULL: u16 = 46;
    /// GETTIMEFULL plus the guest's time lag in microseconds in edi.
    pub const GETTIMEFULL_WITH_LAG: u16 = 55;
    /// Virtual CPU feature bits.
    pub const GET_VCPU_INFO: u16 = 68;
    /// Host build number.
    pub const GETBUILDNUM: u16 = 100;
}

/// Option bits of GETGUIOPTIONS (open-vm-tools' tclodefs.h `VMWARE_GUI_*`).
pub mod gui_option {
    /// Copy and paste between host and guest.
    pub const EXCHANGE_SELECTIONS: u32 = 0x010;
    /// Periodic time synchronization with the host (`synctime`).
    pub const SYNC_TIME: u32 = 0x400;
}

/// Backdoor version reported by GETVERSION in eax.
pub const BDOOR_VERSION: u32 = 6;

/// VMX product types reported by GETVERSION in ecx.
pub mod vmx_type {
    /// Unknown product.
    pub const UNSET: u32 = 0;
    /// Workstation / Fusion.
    pub const EXPRESS: u32 = 1;
    /// ESX / ESXi.
    pub const SCALABLE_SERVER: u32 = 2;
}

/// GuestRPC message subcommands (ecx high 16 bits of MESSAGE).
pub mod msg_type {
    /// Open a channel; ebx = protocol | flags.
    pub const OPEN: u16 = 0;
    /// Guest announces the size of the message it will send (ebx).
    pub const SENDSIZE: u16 = 1;
    /// Guest sends 4 bytes of its message (ebx).
    pub const SENDPAYLOAD: u16 = 2;
    /// Guest asks for the size of the host's pending message.
    pub const RECVSIZE: u16 = 3;
    /// Guest asks for the next 4 bytes of the host's message.
    pub const RECVPAYLOAD: u16 = 4;
    /// Guest acknowledges (ebx = status) the host's whole message.
    pub const RECVSTATUS: u16 = 5;
    /// Close the channel.
    pub const CLOSE: u16 = 6;
}

/// Status bits the host returns in ecx high 16 (LB) or ebx high 16 (HB).
pub mod status {
    /// The operation succeeded.
    pub const SUCCESS: u16 = 0x0001;
    /// A message is waiting for the guest (RECVSIZE).
    pub const DORECV: u16 = 0x0002;
    /// The channel was closed by the host.
    pub const CLOSED: u16 = 0x0004;
    /// The host removed the message before the guest received it.
    pub const UNSENT: u16 = 0x0008;
    /// A checkpoint happened: redo the whole send or receive.
    pub const CPT: u16 = 0x0010;
    /// The VM is powering off.
    pub const POWEROFF: u16 = 0x0020;
    /// The operation timed out.
    pub const TIMEOUT: u16 = 0x0040;
    /// The high-bandwidth port may be used for this transfer.
    pub const HB: u16 = 0x0080;
}

/// GuestRPC protocols, passed to OPEN in ebx.
pub mod proto {
    /// "RPCI": guest asks, host answers.
    pub const RPCI: u32 = 0x4943_5052;
    /// "TCLO": host commands, guest polls and replies.
    pub const TCLO: u32 = 0x4F4C_4354;
}

/// OPEN flag asking the host for cookies (esi/edi) that authenticate later calls.
pub const GUESTMSG_FLAG_COOKIE: u32 = 0x8000_0000;
/// Channels a real host allows per VM (`GUESTMSG_MAX_CHANNEL`).
pub const GUESTMSG_MAX_CHANNEL: usize = 128;
/// Largest guest-to-host message a real host accepts (`GUESTMSG_MAX_IN_SIZE`).
pub const GUESTMSG_MAX_IN_SIZE: usize = 64 * 1024;
/// HB sub-command for message data, ebx low 16 on port 0x5659.
pub const BDOORHB_CMD_MESSAGE: u16 = 0;

/// GuestInfo keys of `SetGuestInfo  KEY VALUE` (open-vm-tools `guestInfo.h`).
pub mod guestinfo_key {
    /// Host name.
    pub const DNS_NAME: u32 = 1;
    /// Legacy IP address list.
    pub const IPADDRESS: u32 = 2;
    /// Legacy disk free space.
    pub const DISK_FREE_SPACE: u32 = 3;
    /// Tools build number.
    pub const BUILD_NUMBER: u32 = 4;
    /// Full OS name ("Debian GNU/Linux 12 (bookworm)").
    pub const OS_NAME_FULL: u32 = 5;
    /// Short OS name ("debian12-64").
    pub const OS_NAME: u32 = 6;
    /// Uptime in hundredths of a second.
    pub const UPTIME: u32 = 7;
    /// Memory.
    pub const MEMORY: u32 = 8;
    /// NIC info, version 2 (XDR).
    pub const IPADDRESS_V2: u32 = 9;
    /// NIC info, version 3 (XDR).
    pub const IPADDRESS_V3: u32 = 10;
    /// Detailed OS data.
    pub const OS_DETAILED: u32 = 11;
}
