//! Rendering of Systems, Chassis, Managers and accounts, and the changes
//! PATCH and ComputerSystem.Reset make to the VM model.

use serde_json::{json, Map, Value};

use super::error::{not_found, RedfishError};
use super::Service;
use crate::ipmi::sdr::{self, Reading};
use crate::users::{
    Role, User, UserError, UserStore, MAX_IPMI_NAME, MAX_IPMI_PASSWORD, MAX_NAME, MAX_USERS,
};
use crate::vm::{BootOverride, BootTarget, Power, PowerAction, PowerError, Vm};

/// The reset types ComputerSystem.Reset accepts.
pub const RESET_TYPES: &[&str] = &[
    "On",
    "ForceOff",
    "GracefulShutdown",
    "GracefulRestart",
    "ForceRestart",
    "PowerCycle",
];

/// The reset types `vm` accepts right now: the graceful ones only while its
/// guest agent runs (they are carried out by the agent; without one they
/// are refused, so they are not offered).
pub fn reset_types(vm: &Vm) -> Vec<&'static str> {
    let graceful = vm.tools_running();
    RESET_TYPES
        .iter()
        .copied()
        .filter(|t| graceful || !t.starts_with("Graceful"))
        .collect()
}

/// Boot override targets (Redfish BootSource values) we map to the model.
pub const BOOT_TARGETS: &[&str] = &["None", "Pxe", "Hdd", "Cd", "Usb", "BiosSetup"];

/// The service root.
pub fn service_root(s: &Service) -> Value {
    json!({
        "@odata.id": "/redfish/v1/",
        "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
        "Id": "RootService",
        "Name": "hvsim Redfish Service",
        "RedfishVersion": "1.11.0",
        "UUID": s.uuid,
        "Product": "hvsim",
        "Vendor": "hvsim",
        "Systems": {"@odata.id": "/redfish/v1/Systems"},
        "Chassis": {"@odata.id": "/redfish/v1/Chassis"},
        "Managers": {"@odata.id": "/redfish/v1/Managers"},
        "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
        "AccountService": {"@odata.id": "/redfish/v1/AccountService"},
        "Tasks": {"@odata.id": "/redfish/v1/TaskService"},
        "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}},
    })
}

/// A resource collection.
pub fn collection(id: &str, ty: &str, name: &str, members: impl Iterator<Item = String>) -> Value {
    let m: Vec<Value> = members.map(|p| json!({"@odata.id": p})).collect();
    json!({
        "@odata.id": id,
        "@odata.type": format!("#{ty}.{ty}"),
        "Name": name,
        "Members@odata.count": m.len(),
        "Members": m,
    })
}

fn power_str(vm: &Vm) -> &'static str {
    match vm.power_state() {
        Power::On => "On",
        Power::Off => "Off",
    }
}

fn target_name(t: BootTarget) -> &'static str {
    match t {
        BootTarget::None => "None",
        BootTarget::Pxe => "Pxe",
        BootTarget::Hdd => "Hdd",
        BootTarget::Cd => "Cd",
        BootTarget::Usb => "Usb",
        BootTarget::BiosSetup => "BiosSetup",
    }
}

/// Systems/{vm}.
pub fn system(_s: &Service, vm: &Vm) -> Value {
    let info = crate::vm::show_json(vm);
    let name = &vm.info.name;
    let b = vm.boot_override();
    let enabled = match (b.target, b.persistent) {
        (BootTarget::None, _) => "Disabled",
        (_, true) => "Continuous",
        (_, false) => "Once",
    };
    let on = vm.power_state() == Power::On;
    json!({
        "@odata.id": format!("/redfish/v1/Systems/{name}"),
        "@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem",
        "Id": name,
        "Name": name,
        "SystemType": "Virtual",
        "Manufacturer": "hvsim",
        "Model": "hvsim simulated VMware VM",
        "UUID": info["uuid"],
        "HostName": info["guest"]["hostname"].as_str().unwrap_or(""),
        "PowerState": power_str(vm),
        "Status": {"State": if on { "Enabled" } else { "StandbyOffline" }, "Health": "OK"},
        "MemorySummary": {"TotalSystemMemoryGiB": vm.info.memory_mb as f64 / 1024.0},
        "Boot": {
            "BootSourceOverrideTarget": target_name(b.target),
            "BootSourceOverrideTarget@Redfish.AllowableValues": BOOT_TARGETS,
            "BootSourceOverrideEnabled": enabled,
            "BootSourceOverrideMode": if b.uefi { "UEFI" } else { "Legacy" },
        },
        "EthernetInterfaces": {"@odata.id": format!("/redfish/v1/Systems/{name}/EthernetInterfaces")},
        "VirtualMedia": {"@odata.id": format!("/redfish/v1/Systems/{name}/VirtualMedia")},
        "Links": {
            "Chassis": [{"@odata.id": format!("/redfish/v1/Chassis/{name}")}],
            "ManagedBy": [{"@odata.id": format!("/redfish/v1/Managers/{name}-bmc")}],
        },
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": format!("/redfish/v1/Systems/{name}/Actions/ComputerSystem.Reset"),
                "ResetType@Redfish.AllowableValues": reset_types(vm),
                "@Redfish.ActionInfo": format!("/redfish/v1/Systems/{name}/ResetActionInfo"),
            }
        },
        "Oem": {"Hvsim": {
            "@odata.type": super::metadata::OEM_SYSTEM_TYPE,
            "ToolsStatus": info["tools"]["status"],
            "OSName": info["guest"]["os_name"],
        }},
    })
}

/// Systems/{vm}/ResetActionInfo.
pub fn reset_action_info(vm: &Vm) -> Value {
    json!({
        "@odata.id": format!("/redfish/v1/Systems/{}/ResetActionInfo", vm.info.name),
        "@odata.type": "#ActionInfo.v1_1_2.ActionInfo",
        "Id": "ResetActionInfo",
        "Name": "Reset Action Info",
        "Parameters": [{
            "Name": "ResetType",
            "Required": true,
            "DataType": "String",
            "AllowableValues": reset_types(vm),
        }],
    })
}

fn nics(vm: &Vm) -> Vec<Value> {
    crate::vm::show_json(vm)["guest"]["nics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn nic_id(mac: &str) -> String {
    mac.chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Systems/{vm}/EthernetInterfaces.
pub fn nic_collection(vm: &Vm) -> Value {
    let base = format!("/redfish/v1/Systems/{}/EthernetInterfaces", vm.info.name);
    collection(
        &base,
        "EthernetInterfaceCollection",
        "Ethernet Interface Collection",
        nics(vm)
            .iter()
            .map(|n| format!("{base}/{}", nic_id(n["mac"].as_str().unwrap_or(""))))
            .collect::<Vec<_>>()
            .into_iter(),
    )
}

fn mask_v4(prefix: u64) -> String {
    let p = prefix.min(32) as u32;
    let m: u32 = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    std::net::Ipv4Addr::from(m).to_string()
}

/// Systems/{vm}/EthernetInterfaces/{id}: addresses as the guest agent reported them.
pub fn nic(vm: &Vm, id: &str) -> Result<Value, RedfishError> {
    let all = nics(vm);
    let n = all
        .iter()
        .find(|n| nic_id(n["mac"].as_str().unwrap_or("")) == id)
        .ok_or_else(|| not_found("EthernetInterface", id))?;
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for ip in n["ips"].as_array().into_iter().flatten() {
        let addr = ip["addr"].as_str().unwrap_or("");
        let prefix = ip["prefix"].as_u64().unwrap_or(0);
        match addr.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => v4.push(json!({
                "Address": addr,
                "SubnetMask": mask_v4(prefix),
                "AddressOrigin": if ip["origin"].as_str() == Some("dhcp") { "DHCP" } else { "Static" },
            })),
            Ok(std::net::IpAddr::V6(a)) => v6.push(json!({
                "Address": addr,
                "PrefixLength": prefix.min(128),
                "AddressOrigin": if a.segments()[0] & 0xffc0 == 0xfe80 { "LinkLocal" } else { "Static" },
            })),
            Err(_) => {}
        }
    }
    let mac = n["mac"].as_str().unwrap_or("").to_ascii_lowercase();
    Ok(json!({
        "@odata.id": format!("/redfish/v1/Systems/{}/EthernetInterfaces/{id}", vm.info.name),
        "@odata.type": "#EthernetInterface.v1_6_0.EthernetInterface",
        "Id": id,
        "Name": format!("Guest NIC {mac}"),
        "MACAddress": mac,
        "PermanentMACAddress": mac,
        "InterfaceEnabled": true,
        "LinkStatus": "LinkUp",
        "Status": {"State": "Enabled", "Health": "OK"},
        "IPv4Addresses": v4,
        "IPv6Addresses": v6,
    }))
}

/// Chassis/{vm}.
pub fn chassis(vm: &Vm) -> Value {
    let name = &vm.info.name;
    json!({
        "@odata.id": format!("/redfish/v1/Chassis/{name}"),
        "@odata.type": "#Chassis.v1_14_0.Chassis",
        "Id": name,
        "Name": format!("Chassis of {name}"),
        "ChassisType": "RackMount",
        "Manufacturer": "hvsim",
        "PowerState": power_str(vm),
        "Status": {"State": "Enabled", "Health": "OK"},
        "Thermal": {"@odata.id": format!("/redfish/v1/Chassis/{name}/Thermal")},
        "Power": {"@odata.id": format!("/redfish/v1/Chassis/{name}/Power")},
        "Links": {
            "ComputerSystems": [{"@odata.id": format!("/redfish/v1/Systems/{name}")}],
            "ManagedBy": [{"@odata.id": format!("/redfish/v1/Managers/{name}-bmc")}],
        },
    })
}

/// Redfish's names for [`sdr::Reading::thresholds`] (LNC, LCR, LNR, UNC,
/// UCR, UNR): the same thresholds IPMI serves, each one present over IPMI
/// present here.
const THRESHOLD_PROPS: [&str; 6] = [
    "LowerThresholdNonCritical",
    "LowerThresholdCritical",
    "LowerThresholdFatal",
    "UpperThresholdNonCritical",
    "UpperThresholdCritical",
    "UpperThresholdFatal",
];

/// A Thermal/Power array member for a sensor: reading under `reading`,
/// its thresholds, status.
fn sensor_member(uri: String, i: usize, r: &Reading, reading: &str) -> Value {
    // Whole-unit sensors (fans: Edm.Int64 in Thermal) as integers.
    let num = |x: f64| {
        if r.decimals == 0 && x.fract() == 0.0 && x.abs() < 1e15 {
            json!(x as i64)
        } else {
            json!(x)
        }
    };
    let mut v = json!({
        "@odata.id": uri,
        "MemberId": i.to_string(),
        "Name": r.name,
        "SensorNumber": r.number,
        reading: r.value.map(num),
        "Status": sensor_status(r),
    });
    for (prop, t) in THRESHOLD_PROPS.iter().zip(r.thresholds) {
        if let Some(t) = t {
            v[*prop] = num(t);
        }
    }
    v
}

fn sensor_status(r: &Reading) -> Value {
    match r.value {
        Some(_) => json!({"State": "Enabled", "Health": "OK"}),
        None => json!({"State": "StandbyOffline"}),
    }
}

/// Chassis/{vm}/Thermal: temperatures and fans from the IPMI sensors.
pub fn thermal(vm: &Vm) -> Value {
    let name = &vm.info.name;
    let base = format!("/redfish/v1/Chassis/{name}/Thermal");
    let rs = sdr::readings(vm);
    let temps: Vec<Value> = rs
        .iter()
        .filter(|r| r.sensor_type == 0x01)
        .enumerate()
        .map(|(i, r)| sensor_member(format!("{base}#/Temperatures/{i}"), i, r, "ReadingCelsius"))
        .collect();
    let fans: Vec<Value> = rs
        .iter()
        .filter(|r| r.sensor_type == 0x04)
        .enumerate()
        .map(|(i, r)| {
            let mut v = sensor_member(format!("{base}#/Fans/{i}"), i, r, "Reading");
            v["ReadingUnits"] = "RPM".into();
            v
        })
        .collect();
    json!({
        "@odata.id": base,
        "@odata.type": "#Thermal.v1_6_0.Thermal",
        "Id": "Thermal",
        "Name": "Thermal",
        "Temperatures": temps,
        "Fans": fans,
    })
}

/// Chassis/{vm}/Power: voltages from the IPMI sensors.
pub fn power(vm: &Vm) -> Value {
    let name = &vm.info.name;
    let base = format!("/redfish/v1/Chassis/{name}/Power");
    let volts: Vec<Value> = sdr::readings(vm)
        .iter()
        .filter(|r| r.sensor_type == 0x02)
        .enumerate()
        .map(|(i, r)| sensor_member(format!("{base}#/Voltages/{i}"), i, r, "ReadingVolts"))
        .collect();
    json!({
        "@odata.id": base,
        "@odata.type": "#Power.v1_6_0.Power",
        "Id": "Power",
        "Name": "Power",
        "Voltages": volts,
    })
}

/// Managers/{vm}-bmc.
pub fn manager(s: &Service, vm: &Vm) -> Value {
    let name = &vm.info.name;
    let mut uuid = vm.info.uuid;
    uuid[15] ^= 0xb3; // the BMC's own UUID, stable and distinct from the VM's
    let _ = s;
    json!({
        "@odata.id": format!("/redfish/v1/Managers/{name}-bmc"),
        "@odata.type": "#Manager.v1_10_0.Manager",
        "Id": format!("{name}-bmc"),
        "Name": format!("BMC of {name}"),
        "ManagerType": "BMC",
        "UUID": crate::config::format_uuid(&uuid),
        "Model": "hvsim BMC",
        "FirmwareVersion": env!("CARGO_PKG_VERSION"),
        "PowerState": "On",
        "Status": {"State": "Enabled", "Health": "OK"},
        "VirtualMedia": {"@odata.id": format!("/redfish/v1/Managers/{name}-bmc/VirtualMedia")},
        "Links": {
            "ManagerForServers": [{"@odata.id": format!("/redfish/v1/Systems/{name}")}],
            "ManagerForChassis": [{"@odata.id": format!("/redfish/v1/Chassis/{name}")}],
        },
    })
}

/// A VirtualMedia collection with the Cd and Usb slots.
pub fn vmedia_collection(base: &str, _vm: &str) -> Value {
    collection(
        base,
        "VirtualMediaCollection",
        "Virtual Media Collection",
        ["Cd", "Usb"].iter().map(|s| format!("{base}/{s}")),
    )
}

/// The account types an account serves: Redfish always, IPMI when its name
/// and password fit IPMI's fields.
pub fn account_types(u: &User) -> Vec<&'static str> {
    let mut t = vec!["Redfish"];
    if u.name.len() <= MAX_IPMI_NAME && u.password.len() <= MAX_IPMI_PASSWORD {
        t.push("IPMI");
    }
    t
}

/// AccountService/Accounts/{id}: the IPMI user ID is the account Id.
pub fn account(u: &User) -> Value {
    json!({
        "@odata.id": format!("/redfish/v1/AccountService/Accounts/{}", u.id),
        "@odata.type": "#ManagerAccount.v1_7_0.ManagerAccount",
        "Id": u.id.to_string(),
        "Name": format!("Account {}", u.name),
        "Description": format!("IPMI user ID {}", u.id),
        "UserName": u.name,
        "RoleId": u.role.as_str(),
        "Enabled": u.enabled,
        "Locked": false,
        "Password": null,
        "AccountTypes": account_types(u),
        "Links": {"Role": {"@odata.id": format!("/redfish/v1/AccountService/Roles/{}", u.role.as_str())}},
    })
}

/// AccountService/Roles/{id}.
pub fn role(id: &str) -> Result<Value, RedfishError> {
    let privs: &[&str] = match id {
        "Administrator" => &[
            "Login",
            "ConfigureManager",
            "ConfigureUsers",
            "ConfigureSelf",
            "ConfigureComponents",
        ],
        "Operator" => &["Login", "ConfigureSelf", "ConfigureComponents"],
        "ReadOnly" => &["Login", "ConfigureSelf"],
        _ => return Err(not_found("Role", id)),
    };
    Ok(json!({
        "@odata.id": format!("/redfish/v1/AccountService/Roles/{id}"),
        "@odata.type": "#Role.v1_2_0.Role",
        "Id": id,
        "Name": format!("{id} role"),
        "RoleId": id,
        "IsPredefined": true,
        "AssignedPrivileges": privs,
    }))
}

fn type_err(v: &Value, prop: &str) -> RedfishError {
    RedfishError::new(400, "PropertyValueTypeError", &[&v.to_string(), prop])
}

/// PATCH Systems/{vm}: the Boot override (the state IPMI bootdev sets).
pub fn patch_system(vm: &Vm, body: &Map<String, Value>) -> Result<(), RedfishError> {
    if body.is_empty() {
        return Err(RedfishError::new(400, "NoOperation", &[]));
    }
    let mut b: BootOverride = vm.boot_override();
    for (k, v) in body {
        match k.as_str() {
            "Boot" => {
                let obj = v.as_object().ok_or_else(|| type_err(v, "Boot"))?;
                let mut enabled = None;
                for (bk, bv) in obj {
                    let s = bv.as_str().ok_or_else(|| type_err(bv, bk))?;
                    let bad = || RedfishError::new(400, "PropertyValueNotInList", &[s, bk]);
                    match bk.as_str() {
                        "BootSourceOverrideTarget" => {
                            b.target = match s {
                                "None" => BootTarget::None,
                                "Pxe" => BootTarget::Pxe,
                                "Hdd" => BootTarget::Hdd,
                                "Cd" => BootTarget::Cd,
                                "Usb" => BootTarget::Usb,
                                "BiosSetup" => BootTarget::BiosSetup,
                                _ => return Err(bad()),
                            }
                        }
                        "BootSourceOverrideEnabled" => {
                            enabled = Some(match s {
                                "Disabled" => None,
                                "Once" => Some(false),
                                "Continuous" => Some(true),
                                _ => return Err(bad()),
                            })
                        }
                        "BootSourceOverrideMode" => {
                            b.uefi = match s {
                                "UEFI" => true,
                                "Legacy" => false,
                                _ => return Err(bad()),
                            }
                        }
                        "BootSourceOverrideTarget@Redfish.AllowableValues" => {
                            return Err(RedfishError::new(400, "PropertyNotWritable", &[bk]))
                        }
                        _ => return Err(RedfishError::new(400, "PropertyUnknown", &[bk])),
                    }
                }
                match enabled {
                    Some(None) => b.target = BootTarget::None,
                    Some(Some(p)) => b.persistent = p,
                    None => {}
                }
            }
            "PowerState" | "Id" | "Name" | "UUID" | "HostName" | "Status" | "SystemType"
            | "Manufacturer" | "Model" | "MemorySummary" | "EthernetInterfaces" | "Links"
            | "Actions" | "VirtualMedia" | "@odata.id" | "@odata.type" | "Oem" => {
                return Err(RedfishError::new(400, "PropertyNotWritable", &[k]))
            }
            _ => return Err(RedfishError::new(400, "PropertyUnknown", &[k])),
        }
    }
    vm.set_boot_override(b);
    log::info!("{}: boot override {:?} set over Redfish", vm.info.name, b);
    Ok(())
}

/// ComputerSystem.Reset.
pub fn reset(vm: &Vm, body: &Map<String, Value>) -> Result<(), RedfishError> {
    const ACTION: &str = "ComputerSystem.Reset";
    let mut rt = None;
    for (k, v) in body {
        match k.as_str() {
            "ResetType" => {
                rt = Some(v.as_str().ok_or_else(|| {
                    RedfishError::new(
                        400,
                        "ActionParameterValueTypeError",
                        &[&v.to_string(), k, ACTION],
                    )
                })?)
            }
            _ => {
                return Err(RedfishError::new(
                    400,
                    "ActionParameterUnknown",
                    &[ACTION, k],
                ))
            }
        }
    }
    let rt =
        rt.ok_or_else(|| RedfishError::new(400, "ActionParameterMissing", &[ACTION, "ResetType"]))?;
    let action = match rt {
        "On" => PowerAction::On,
        "ForceOff" => PowerAction::Off,
        "GracefulShutdown" => PowerAction::SoftOff,
        "GracefulRestart" => PowerAction::SoftReboot,
        "ForceRestart" => PowerAction::Reset,
        "PowerCycle" => PowerAction::Cycle,
        _ => {
            return Err(RedfishError::new(
                400,
                "ActionParameterValueNotInList",
                &[rt, "ResetType", ACTION],
            ))
        }
    };
    vm.power(action, "redfish").map_err(|e| match e {
        PowerError::PoweredOff(_) => RedfishError::new(409, "ResourceInStandby", &[]),
        PowerError::InProgress(_) => RedfishError::new(409, "ResourceInUse", &[]),
        PowerError::NoAgent(_) => RedfishError::general(
            409,
            &format!(
                "{rt} needs the guest agent, and no guest agent (vm-agent or VMware Tools) runs in {}: nothing was changed. Start the guest agent, or use ForceOff/ForceRestart.",
                vm.info.name
            ),
        ),
    })
}

/// The Redfish error for a refused account change.
pub fn user_error(e: UserError) -> RedfishError {
    match e {
        UserError::NameTaken(n) => {
            RedfishError::new(409, "ResourceAlreadyExists", &["ManagerAccount", "UserName", &n])
        }
        UserError::PasswordTooLong => {
            RedfishError::new(400, "StringValueTooLong", &["******", &MAX_IPMI_PASSWORD.to_string()])
                .explain(format!(
                    "Passwords are at most {MAX_IPMI_PASSWORD} bytes: accounts are shared with IPMI, whose Set User Password carries no more."
                ))
        }
        UserError::BadName => RedfishError::new(400, "PropertyValueFormatError", &["", "UserName"])
            .explain(format!(
                "User names are 1-{MAX_NAME} printable characters without ':' (at most {MAX_IPMI_NAME} bytes to log in over IPMI too)."
            )),
        UserError::Full => RedfishError::new(409, "CreateLimitReachedForResource", &[]).explain(
            format!(
                "Accounts are the BMC's IPMI users: user IDs 2-{MAX_USERS} are all in use; delete an account first."
            ),
        ),
        UserError::NoSuchUser(id) => not_found("ManagerAccount", &id.to_string()),
        e @ (UserError::Config { .. } | UserError::Store(_)) => {
            RedfishError::general(500, &e.to_string())
        }
    }
}

/// The properties of a POST or PATCH to an account, checked.
#[derive(Debug, Default)]
pub struct AccountChange {
    /// New user name.
    pub name: Option<String>,
    /// New password.
    pub password: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// Enabled or not.
    pub enabled: Option<bool>,
}

/// Parse an account body: UserName, Password, RoleId, Enabled; the rest of
/// ManagerAccount is read-only here, anything else unknown.
pub fn parse_account(body: &Map<String, Value>) -> Result<AccountChange, RedfishError> {
    let mut c = AccountChange::default();
    for (k, v) in body {
        match k.as_str() {
            "UserName" => {
                let n = v.as_str().ok_or_else(|| type_err(v, k))?;
                if n.is_empty() || n.len() > MAX_NAME || n.chars().any(|c| c.is_control() || c == ':')
                {
                    return Err(user_error(UserError::BadName));
                }
                c.name = Some(n.to_string());
            }
            "Password" => {
                let p = v.as_str().ok_or_else(|| type_err(v, k))?;
                if p.is_empty() {
                    return Err(
                        RedfishError::new(400, "PropertyValueFormatError", &["******", k])
                            .explain(format!("Passwords are 1 to {MAX_IPMI_PASSWORD} bytes long.")),
                    );
                }
                if p.len() > MAX_IPMI_PASSWORD {
                    return Err(user_error(UserError::PasswordTooLong));
                }
                c.password = Some(p.to_string());
            }
            "RoleId" => {
                let r = v.as_str().ok_or_else(|| type_err(v, k))?;
                c.role = Some(match r {
                    "Administrator" => Role::Administrator,
                    "Operator" => Role::Operator,
                    "ReadOnly" => Role::ReadOnly,
                    _ => return Err(RedfishError::new(400, "PropertyValueNotInList", &[r, k])),
                });
            }
            "Enabled" => c.enabled = Some(v.as_bool().ok_or_else(|| type_err(v, k))?),
            "AccountTypes" => {
                return Err(RedfishError::new(400, "PropertyNotWritable", &[k]).explain(
                    "Every account serves Redfish, and IPMI when its name and password fit IPMI's fields.",
                ))
            }
            "Id" | "Name" | "Description" | "Locked" | "Links" | "@odata.id"
            | "@odata.type" => return Err(RedfishError::new(400, "PropertyNotWritable", &[k])),
            _ => return Err(RedfishError::new(400, "PropertyUnknown", &[k])),
        }
    }
    Ok(c)
}

/// Whether, with user `id` changed to `role`/`enabled` (or deleted: `None`),
/// no enabled Administrator would be left to manage the accounts.
pub fn orphans_accounts(users: &UserStore, id: u8, after: Option<(Role, bool)>) -> bool {
    let admin = |r: Role, e: bool| r == Role::Administrator && e;
    let others = users
        .list()
        .iter()
        .any(|u| u.id != id && admin(u.role, u.enabled));
    let this = after.is_some_and(|(r, e)| admin(r, e));
    let before = users.by_id(id).is_some_and(|u| admin(u.role, u.enabled));
    before && !others && !this
}

fn last_admin() -> RedfishError {
    RedfishError::new(409, "ResourceInUse", &[])
        .explain("This is the last enabled Administrator account: create or enable another first.")
}

/// POST AccountService/Accounts: UserName, Password and RoleId required,
/// Enabled optional (true). The lowest free IPMI user ID becomes its Id.
pub fn create_account(users: &UserStore, body: &Map<String, Value>) -> Result<User, RedfishError> {
    let c = parse_account(body)?;
    let name = c
        .name
        .ok_or_else(|| RedfishError::new(400, "PropertyMissing", &["UserName"]))?;
    let password = c
        .password
        .ok_or_else(|| RedfishError::new(400, "PropertyMissing", &["Password"]))?;
    let role = c
        .role
        .ok_or_else(|| RedfishError::new(400, "PropertyMissing", &["RoleId"]))?;
    users
        .create(
            None,
            &name,
            password.as_bytes(),
            role,
            c.enabled.unwrap_or(true),
        )
        .map_err(user_error)
}

/// PATCH AccountService/Accounts/{id}. Administrators may change UserName,
/// Password, RoleId and Enabled; others (ConfigureSelf) only their own
/// Password. Everything is checked before anything changes.
pub fn patch_account(
    users: &UserStore,
    u: &User,
    body: &Map<String, Value>,
    admin: bool,
) -> Result<(), RedfishError> {
    if body.is_empty() {
        return Err(RedfishError::new(400, "NoOperation", &[]));
    }
    let c = parse_account(body)?;
    if !admin && (c.name.is_some() || c.role.is_some() || c.enabled.is_some()) {
        return Err(RedfishError::new(403, "InsufficientPrivilege", &[])
            .explain("Without ConfigureUsers an account may change only its own Password."));
    }
    if let Some(n) = &c.name {
        if let Some(other) = users.by_name(n.as_bytes()).filter(|o| o.id != u.id) {
            return Err(RedfishError::new(
                409,
                "PropertyValueResourceConflict",
                &[
                    "UserName",
                    n,
                    &format!("/redfish/v1/AccountService/Accounts/{}", other.id),
                ],
            ));
        }
    }
    let after = (c.role.unwrap_or(u.role), c.enabled.unwrap_or(u.enabled));
    if orphans_accounts(users, u.id, Some(after)) {
        return Err(last_admin());
    }
    if let Some(n) = &c.name {
        users.rename(u.id, n).map_err(user_error)?;
        log::info!("redfish: account {} renamed to {n:?}", u.id);
    }
    if let Some(p) = c.password {
        users.set_password(u.id, p.as_bytes()).map_err(user_error)?;
        log::info!("redfish: password of account {} changed", u.id);
    }
    if let Some(r) = c.role {
        users.set_role(u.id, r).map_err(user_error)?;
        log::info!("redfish: account {} is now {}", u.id, r.as_str());
    }
    if let Some(e) = c.enabled {
        users.set_enabled(u.id, e).map_err(user_error)?;
        log::info!("redfish: account {} enabled={e}", u.id);
    }
    Ok(())
}

/// DELETE AccountService/Accounts/{id} (not the last enabled Administrator).
pub fn delete_account(users: &UserStore, id: u8) -> Result<(), RedfishError> {
    if users.by_id(id).is_none() {
        return Err(not_found("ManagerAccount", &id.to_string()));
    }
    if orphans_accounts(users, id, None) {
        return Err(last_admin());
    }
    users.delete(id).map_err(user_error)
}
