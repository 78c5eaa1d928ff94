//! `$metadata` (the CSDL documents and namespaces our resources use, per
//! Redfish DSP0266 8.4), the OData service document, and the CSDL of our
//! OEM extensions, served under [`SCHEMA_PATH`] and referenced from
//! `$metadata` the way real services publish theirs.

use serde_json::{json, Value};

/// The `$metadata` document.
pub const METADATA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ServiceRoot_v1.xml">
    <edmx:Include Namespace="ServiceRoot"/>
    <edmx:Include Namespace="ServiceRoot.v1_5_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ComputerSystemCollection_v1.xml">
    <edmx:Include Namespace="ComputerSystemCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ComputerSystem_v1.xml">
    <edmx:Include Namespace="ComputerSystem"/>
    <edmx:Include Namespace="ComputerSystem.v1_13_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/EthernetInterfaceCollection_v1.xml">
    <edmx:Include Namespace="EthernetInterfaceCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/EthernetInterface_v1.xml">
    <edmx:Include Namespace="EthernetInterface"/>
    <edmx:Include Namespace="EthernetInterface.v1_6_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/IPAddresses_v1.xml">
    <edmx:Include Namespace="IPAddresses"/>
    <edmx:Include Namespace="IPAddresses.v1_1_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ChassisCollection_v1.xml">
    <edmx:Include Namespace="ChassisCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Chassis_v1.xml">
    <edmx:Include Namespace="Chassis"/>
    <edmx:Include Namespace="Chassis.v1_14_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Thermal_v1.xml">
    <edmx:Include Namespace="Thermal"/>
    <edmx:Include Namespace="Thermal.v1_6_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Power_v1.xml">
    <edmx:Include Namespace="Power"/>
    <edmx:Include Namespace="Power.v1_6_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ManagerCollection_v1.xml">
    <edmx:Include Namespace="ManagerCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Manager_v1.xml">
    <edmx:Include Namespace="Manager"/>
    <edmx:Include Namespace="Manager.v1_10_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/VirtualMediaCollection_v1.xml">
    <edmx:Include Namespace="VirtualMediaCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/VirtualMedia_v1.xml">
    <edmx:Include Namespace="VirtualMedia"/>
    <edmx:Include Namespace="VirtualMedia.v1_4_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/SessionService_v1.xml">
    <edmx:Include Namespace="SessionService"/>
    <edmx:Include Namespace="SessionService.v1_1_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/SessionCollection_v1.xml">
    <edmx:Include Namespace="SessionCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Session_v1.xml">
    <edmx:Include Namespace="Session"/>
    <edmx:Include Namespace="Session.v1_5_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/AccountService_v1.xml">
    <edmx:Include Namespace="AccountService"/>
    <edmx:Include Namespace="AccountService.v1_5_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ManagerAccountCollection_v1.xml">
    <edmx:Include Namespace="ManagerAccountCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ManagerAccount_v1.xml">
    <edmx:Include Namespace="ManagerAccount"/>
    <edmx:Include Namespace="ManagerAccount.v1_7_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/RoleCollection_v1.xml">
    <edmx:Include Namespace="RoleCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Role_v1.xml">
    <edmx:Include Namespace="Role"/>
    <edmx:Include Namespace="Role.v1_2_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/TaskService_v1.xml">
    <edmx:Include Namespace="TaskService"/>
    <edmx:Include Namespace="TaskService.v1_1_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/TaskCollection_v1.xml">
    <edmx:Include Namespace="TaskCollection"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Task_v1.xml">
    <edmx:Include Namespace="Task"/>
    <edmx:Include Namespace="Task.v1_4_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/ActionInfo_v1.xml">
    <edmx:Include Namespace="ActionInfo"/>
    <edmx:Include Namespace="ActionInfo.v1_1_2"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Message_v1.xml">
    <edmx:Include Namespace="Message"/>
    <edmx:Include Namespace="Message.v1_1_1"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Resource_v1.xml">
    <edmx:Include Namespace="Resource"/>
    <edmx:Include Namespace="Resource.v1_0_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/RedfishExtensions_v1.xml">
    <edmx:Include Namespace="RedfishExtensions.v1_0_0" Alias="Redfish"/>
  </edmx:Reference>
  <edmx:Reference Uri="/redfish/v1/schemas/HvsimComputerSystem_v1.xml">
    <edmx:Include Namespace="HvsimComputerSystem"/>
    <edmx:Include Namespace="HvsimComputerSystem.v1_0_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="/redfish/v1/schemas/HvsimVirtualMedia_v1.xml">
    <edmx:Include Namespace="HvsimVirtualMedia"/>
    <edmx:Include Namespace="HvsimVirtualMedia.v1_0_0"/>
  </edmx:Reference>
  <edmx:Reference Uri="/redfish/v1/schemas/OpenBMCVirtualMedia_v1.xml">
    <edmx:Include Namespace="OpenBMCVirtualMedia"/>
    <edmx:Include Namespace="OpenBMCVirtualMedia.v1_0_0"/>
  </edmx:Reference>
  <edmx:DataServices>
    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">
      <EntityContainer Name="Service" Extends="ServiceRoot.v1_5_0.ServiceContainer"/>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
"#;

/// Where the OEM schema documents are served (readable without
/// credentials, like `$metadata`, which references them).
pub const SCHEMA_PATH: &str = "/redfish/v1/schemas";

/// `@odata.type` of `Oem.Hvsim` in ComputerSystem.
pub const OEM_SYSTEM_TYPE: &str = "#HvsimComputerSystem.v1_0_0.HvsimComputerSystem";
/// `@odata.type` of `Oem.Hvsim` in VirtualMedia.
pub const OEM_VMEDIA_TYPE: &str = "#HvsimVirtualMedia.v1_0_0.HvsimVirtualMedia";

/// One read-only property of an OEM object: (name, Edm type, nullable,
/// description).
type Prop = (&'static str, &'static str, bool, &'static str);

const SYSTEM_PROPS: &[Prop] = &[
    (
        "ToolsStatus",
        "Edm.String",
        false,
        "Whether the guest agent (vm-agent or VMware Tools) is running: running or not-running.",
    ),
    (
        "OSName",
        "Edm.String",
        true,
        "The guest operating system as the guest agent reported it.",
    ),
];

const VMEDIA_PROPS: &[Prop] = &[
    (
        "NbdExport",
        "Edm.String",
        false,
        "The NBD export name of the inserted medium (VM/SLOT).",
    ),
    (
        "NbdUri",
        "Edm.String",
        true,
        "The nbd:// URI of the export, when the NBD server listens.",
    ),
    (
        "SizeBytes",
        "Edm.Int64",
        false,
        "The size of the image in bytes.",
    ),
    (
        "ReadOnly",
        "Edm.Boolean",
        false,
        "Whether the export refuses writes.",
    ),
    (
        "InsertedAt",
        "Edm.DateTimeOffset",
        false,
        "When the medium was inserted.",
    ),
    (
        "IdleSeconds",
        "Edm.Int64",
        false,
        "Seconds since the last NBD request for the medium.",
    ),
    (
        "InactivityTimeoutSeconds",
        "Edm.Int64",
        false,
        "The medium is ejected after this many idle seconds.",
    ),
    ("Reads", "Edm.Int64", false, "NBD read requests served."),
    ("BytesRead", "Edm.Int64", false, "Bytes read over NBD."),
    ("Writes", "Edm.Int64", false, "NBD write requests served."),
    (
        "BytesWritten",
        "Edm.Int64",
        false,
        "Bytes written over NBD.",
    ),
    (
        "NbdConnections",
        "Edm.Int64",
        false,
        "Open NBD connections to the export.",
    ),
];

const OPENBMC_VMEDIA_PROPS: &[Prop] = &[(
    "WebSocketEndpoint",
    "Edm.String",
    false,
    "The path of the WebSocket over which a client serves the image of this proxy-mode slot as an NBD server.",
)];

/// The CSDL document of one OEM extension: an unversioned namespace and
/// `NAME.v1_0_0` with the complex type `NAME` derived from
/// `Resource.OemObject`.
fn oem_csdl(name: &str, description: &str, props: &[Prop]) -> String {
    oem_csdl_typed(name, name, "hvsim", description, props)
}

/// [`oem_csdl`] with the complex type named `ty` and owned by `owner`.
fn oem_csdl_typed(name: &str, ty: &str, owner: &str, description: &str, props: &[Prop]) -> String {
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">
  <edmx:Reference Uri="http://docs.oasis-open.org/odata/odata/v4.0/errata03/csd01/complete/vocabularies/Org.OData.Core.V1.xml">
    <edmx:Include Namespace="Org.OData.Core.V1" Alias="OData"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/RedfishExtensions_v1.xml">
    <edmx:Include Namespace="RedfishExtensions.v1_0_0" Alias="Redfish"/>
  </edmx:Reference>
  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/Resource_v1.xml">
    <edmx:Include Namespace="Resource"/>
  </edmx:Reference>
  <edmx:DataServices>
"#,
    );
    x += &format!(
        r#"    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="{name}">
      <Annotation Term="Redfish.OwningEntity" String="{owner}"/>
    </Schema>
    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="{name}.v1_0_0">
      <Annotation Term="Redfish.OwningEntity" String="{owner}"/>
      <Annotation Term="Redfish.Release" String="1.0"/>
      <ComplexType Name="{ty}" BaseType="Resource.OemObject">
        <Annotation Term="OData.AdditionalProperties" Bool="false"/>
        <Annotation Term="OData.Description" String="{description}"/>
        <Annotation Term="OData.LongDescription" String="{description}"/>
"#
    );
    for (prop, ty, nullable, desc) in props {
        let n = if *nullable {
            ""
        } else {
            r#" Nullable="false""#
        };
        x += &format!(
            r#"        <Property Name="{prop}" Type="{ty}"{n}>
          <Annotation Term="OData.Permissions" EnumMember="OData.Permission/Read"/>
          <Annotation Term="OData.Description" String="{desc}"/>
          <Annotation Term="OData.LongDescription" String="{desc}"/>
        </Property>
"#
        );
    }
    x += "      </ComplexType>\n    </Schema>\n  </edmx:DataServices>\n</edmx:Edmx>\n";
    x
}

/// The OEM schema document `file` (as `$metadata` names it), if ours.
pub fn oem_schema(file: &str) -> Option<String> {
    match file {
        "HvsimComputerSystem_v1.xml" => Some(oem_csdl(
            "HvsimComputerSystem",
            "hvsim's extension of ComputerSystem: the guest agent's view of the VM.",
            SYSTEM_PROPS,
        )),
        "HvsimVirtualMedia_v1.xml" => Some(oem_csdl(
            "HvsimVirtualMedia",
            "hvsim's extension of VirtualMedia: the NBD export of the inserted medium and its traffic.",
            VMEDIA_PROPS,
        )),
        // OpenBMC's extension of VirtualMedia for proxy-mode slots (bmcweb
        // names the type this way); the document is ours, describing the
        // one property we serve.
        "OpenBMCVirtualMedia_v1.xml" => Some(oem_csdl_typed(
            "OpenBMCVirtualMedia",
            "VirtualMedia",
            "OpenBMC",
            "OpenBMC's extension of VirtualMedia: where a proxy-mode slot's WebSocket is.",
            OPENBMC_VMEDIA_PROPS,
        )),
        _ => None,
    }
}

/// `/redfish/v1/odata`.
pub fn service_document() -> Value {
    let entry = |name: &str, url: &str| json!({"name": name, "kind": "Singleton", "url": url});
    json!({
        "@odata.context": "/redfish/v1/$metadata",
        "value": [
            entry("Service", "/redfish/v1/"),
            entry("Systems", "/redfish/v1/Systems"),
            entry("Chassis", "/redfish/v1/Chassis"),
            entry("Managers", "/redfish/v1/Managers"),
            entry("SessionService", "/redfish/v1/SessionService"),
            entry("AccountService", "/redfish/v1/AccountService"),
            entry("TaskService", "/redfish/v1/TaskService"),
        ]
    })
}
