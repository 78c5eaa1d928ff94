"""pywbem scenarios against hvsim's CIM provider, driven by tests/tests/cim.rs.

Usage: cim_client.py SCENARIO URL USER PASSWORD [ARGS...]
Prints one JSON document on stdout; a CIM or HTTP error the scenario did not
expect is an exception (non-zero exit, traceback on stderr).
"""

import json
import sys
import threading
import time

import pywbem


def conn(url, user, password, **kw):
    return pywbem.WBEMConnection(url, (user, password), default_namespace="root/cimv2", timeout=20, **kw)


def vm_path(c, name):
    for p in c.EnumerateInstances("CIM_ComputerSystem"):
        if p["ElementName"] == name and p["Caption"] == "Virtual machine":
            return p.path
    raise SystemExit(f"no VM {name}")


def inventory(c, args):
    vm = args[0]
    out = {}
    out["systems"] = sorted(i["ElementName"] for i in c.EnumerateInstances("CIM_ComputerSystem"))
    path = vm_path(c, vm)
    out["ips"] = sorted(
        (i["IPv4Address"] or i["IPv6Address"], int(i["PrefixLength"]))
        for i in c.Associators(path, AssocClass="CIM_HostedAccessPoint", ResultClass="CIM_IPProtocolEndpoint")
    )
    out["hostname"] = [i["Hostname"] for i in c.Associators(path, ResultClass="CIM_DNSProtocolEndpoint")]
    ports = c.Associators(path, AssocClass="CIM_SystemDevice", ResultRole="PartComponent")
    out["macs"] = [p["PermanentAddress"] for p in ports]
    out["port_ips"] = sorted(
        i["ElementName"] for p in ports for i in c.Associators(p.path, AssocClass="CIM_PortImplementsEndpoint")
    )
    os_ = c.Associators(path, AssocClass="CIM_InstalledOS")
    out["os"] = [(o["Caption"], int(o["OSType"])) for o in os_]
    out["running_os"] = len(c.ReferenceNames(path, ResultClass="CIM_RunningOS"))
    out["tools"] = [(t["ToolsStatus"], t["VersionString"]) for t in c.Associators(path, ResultClass="HVSIM_GuestTools")]
    out["pull_ips"] = sorted(i["ElementName"] for i in c.IterEnumerateInstances("CIM_IPProtocolEndpoint", MaxObjectCount=1))
    out["pull_paths"] = len(list(c.IterEnumerateInstancePaths("CIM_ManagedElement", MaxObjectCount=2)))
    out["pull_assoc"] = sorted(
        i.classname for i in c.IterAssociatorInstances(path, AssocClass="CIM_HostedAccessPoint", MaxObjectCount=1)
    )
    out["pull_refs"] = len(list(c.IterReferenceInstances(path, MaxObjectCount=1)))
    out["query"] = [
        i["ElementName"]
        for i in c.ExecQuery("WQL", f"SELECT ElementName, Name FROM CIM_ComputerSystem WHERE ElementName = '{vm}'")
    ]
    # Pull errors.
    try:
        c.PullInstancesWithPath(("no-such-context", "root/cimv2"), MaxObjectCount=1)
        out["bad_context"] = None
    except pywbem.CIMError as e:
        out["bad_context"] = e.status_code_name
    try:
        c.OpenEnumerateInstances("CIM_ComputerSystem", FilterQueryLanguage="DMTF:FQL", FilterQuery="x")
        out["fql"] = None
    except pywbem.CIMError as e:
        out["fql"] = e.status_code_name
    cl = c.GetClass("CIM_IPProtocolEndpoint", LocalOnly=False, IncludeQualifiers=True, IncludeClassOrigin=True)
    out["class"] = {
        "superclass": cl.superclass,
        "key_names": sorted(n for n, p in cl.properties.items() if "Key" in p.qualifiers),
        "name_origin": cl.properties["Name"].class_origin,
        "methods": list(cl.methods),
    }
    out["subclasses"] = sorted(c.EnumerateClassNames(ClassName="CIM_ProtocolEndpoint", DeepInheritance=True))
    srv = pywbem.WBEMServer(c)
    out["interop"] = srv.interop_ns
    out["namespaces"] = sorted(srv.namespaces)
    out["brand"] = srv.brand
    out["profiles"] = sorted(f'{p["RegisteredName"]} {p["RegisteredVersion"]}' for p in srv.profiles)
    vs = srv.get_selected_profiles("DMTF", "Virtual System")[0]
    out["vs_central"] = sorted(p.keybindings["Name"] for p in srv.get_central_instances(vs.path))
    ipi = srv.get_selected_profiles("DMTF", "IP Interface")[0]
    out["ip_central"] = len(srv.get_central_instances(ipi.path))
    return out


def errors(c, args):
    out = {}

    def code(f):
        try:
            f()
            return None
        except pywbem.CIMError as e:
            return e.status_code_name

    vm = vm_path(c, args[0])
    out["no_instance"] = code(lambda: c.GetInstance(pywbem.CIMInstanceName(
        "CIM_ComputerSystem", {"CreationClassName": "CIM_ComputerSystem", "Name": "nope"})))
    out["no_class"] = code(lambda: c.EnumerateInstances("CIM_NoSuchClass"))
    out["no_class_get"] = code(lambda: c.GetClass("CIM_NoSuchClass"))
    out["no_namespace"] = code(lambda: c.EnumerateInstances("CIM_ComputerSystem", namespace="root/nope"))
    out["bad_query"] = code(lambda: c.ExecQuery("WQL", "SELECT FROM"))
    out["cql"] = code(lambda: c.ExecQuery("DMTF:CQL", "SELECT * FROM CIM_ComputerSystem"))
    out["no_method"] = code(lambda: c.InvokeMethod("Explode", vm))
    out["modify"] = code(lambda: c.ModifyInstance(c.GetInstance(vm)))
    out["graceful_without_agent"] = code(lambda: c.InvokeMethod("RequestStateChange", vm, RequestedState=pywbem.Uint16(4)))
    return out


def power(c, args):
    vm = vm_path(c, args[0])
    rc, _ = c.InvokeMethod("RequestStateChange", vm, RequestedState=pywbem.Uint16(int(args[1])))
    return {"rc": int(rc), "enabled": int(c.GetInstance(vm)["EnabledState"])}


def readonly(c, args):
    vm = vm_path(c, args[0])
    try:
        c.InvokeMethod("RequestStateChange", vm, RequestedState=pywbem.Uint16(3))
        return {"error": None}
    except pywbem.CIMError as e:
        return {"error": e.status_code_name}


def https(url, user, password, args):
    c = conn(url, user, password, ca_certs=args[0])
    names = sorted(i["ElementName"] for i in c.EnumerateInstances("CIM_ComputerSystem"))
    bad = conn(url, user, password + "x", ca_certs=args[0])
    try:
        bad.EnumerateInstanceNames("CIM_ComputerSystem")
        refused = None
    except pywbem.AuthError as e:
        refused = "AuthError"
    return {"systems": names, "wrong_password": refused}


def indication(c, args):
    vm_name, port = args[0], int(args[1])
    got = []
    done = threading.Event()

    def cb(ind, host):
        got.append(ind)
        done.set()

    lst = pywbem.WBEMListener("127.0.0.1", http_port=port)
    lst.add_callback(cb)
    lst.start()
    try:
        ns = "root/interop"
        f = pywbem.CIMInstance("CIM_IndicationFilter", {
            "Name": "test-filter",
            "Query": "SELECT * FROM CIM_InstModification WHERE SourceInstance ISA CIM_ComputerSystem",
            "QueryLanguage": "WQL",
            "SourceNamespaces": ["root/cimv2"],
        })
        fp = c.CreateInstance(f, namespace=ns)
        d = pywbem.CIMInstance("CIM_ListenerDestinationCIMXML", {
            "Name": "test-dest",
            "Destination": f"http://127.0.0.1:{port}",
            "PersistenceType": pywbem.Uint16(3),
        })
        dp = c.CreateInstance(d, namespace=ns)
        s = pywbem.CIMInstance("CIM_IndicationSubscription", {"Filter": fp, "Handler": dp})
        sp = c.CreateInstance(s, namespace=ns)
        subs = len(c.EnumerateInstanceNames("CIM_IndicationSubscription", namespace=ns))
        try:
            c.DeleteInstance(fp)
            in_use = None
        except pywbem.CIMError as e:
            in_use = e.status_code_name
        vm = vm_path(c, vm_name)
        c.InvokeMethod("RequestStateChange", vm, RequestedState=pywbem.Uint16(3))
        done.wait(15)
        c.DeleteInstance(sp)
        c.DeleteInstance(dp)
        c.DeleteInstance(fp)
        left = len(c.EnumerateInstanceNames("CIM_IndicationFilter", namespace=ns))
    finally:
        lst.stop()
    ind = got[0] if got else None
    src = ind["SourceInstance"] if ind else None
    prev = ind["PreviousInstance"] if ind else None
    return {
        "subscriptions": subs,
        "filter_in_use": in_use,
        "class": ind.classname if ind else None,
        "source_class": src.classname if src is not None else None,
        "source_name": src["ElementName"] if src is not None else None,
        "enabled_now": int(src["EnabledState"]) if src is not None else None,
        "enabled_before": int(prev["EnabledState"]) if prev is not None else None,
        "filters_left": left,
    }


def main():
    scenario, url, user, password, *args = sys.argv[1:]
    if scenario == "https":
        out = https(url, user, password, args)
    else:
        c = conn(url, user, password)
        out = {"inventory": inventory, "errors": errors, "power": power, "readonly": readonly,
               "indication": indication}[scenario](c, args)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
