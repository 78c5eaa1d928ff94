"""pypsrp's WS-Management client against hvsim's WS-Management service,
driven by tests/tests/wsman.rs.

Usage: wsman_client.py SCENARIO HOST PORT USER PASSWORD CAFILE [ARGS...]
Prints one JSON document on stdout; an error the scenario did not expect is
an exception (non-zero exit, traceback on stderr).
"""

import json
import sys
import xml.etree.ElementTree as ET

from pypsrp.exceptions import AuthenticationError, WSManFaultError
from pypsrp.wsman import NAMESPACES, SelectorSet, WSMan

DMTF = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
WSEN = NAMESPACES["wsen"]
WSMAN = NAMESPACES["wsman"]
WSA = NAMESPACES["wsa"]
WSMB = "http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd"


def client(host, port, user, password, cafile, **kw):
    return WSMan(
        host,
        port=int(port),
        username=user,
        password=password,
        ssl=True,
        path="wsman",
        auth="basic",
        cert_validation=cafile,
        no_proxy=True,
        **kw,
    )


def enumerate_body(max_elements=None, mode=None, filt=None):
    e = ET.Element("{%s}Enumerate" % WSEN)
    ET.SubElement(e, "{%s}OptimizeEnumeration" % WSMAN)
    if max_elements is not None:
        ET.SubElement(e, "{%s}MaxElements" % WSMAN).text = str(max_elements)
    if mode:
        ET.SubElement(e, "{%s}EnumerationMode" % WSMAN).text = mode
    if filt is not None:
        e.append(filt)
    return e


def enumerate_all(c, uri, **kw):
    """Enumerate (optimized) then Pull one item at a time: the items and
    the number of pulls."""
    body = c.enumerate(uri, enumerate_body(**kw))
    resp = body.find("wsen:EnumerateResponse", NAMESPACES)
    items = list(resp.find("wsman:Items", NAMESPACES))
    ctx = resp.find("wsen:EnumerationContext", NAMESPACES)
    pulls = 0
    while resp.find("wsman:EndOfSequence", NAMESPACES) is None and resp.find("wsen:EndOfSequence", NAMESPACES) is None:
        pull = ET.Element("{%s}Pull" % WSEN)
        ET.SubElement(pull, "{%s}EnumerationContext" % WSEN).text = ctx.text
        ET.SubElement(pull, "{%s}MaxElements" % WSEN).text = "1"
        resp = c.pull(uri, pull).find("wsen:PullResponse", NAMESPACES)
        pulls += 1
        items.extend(resp.find("wsen:Items", NAMESPACES))
        ctx = resp.find("wsen:EnumerationContext", NAMESPACES)
    return items, pulls


def prop(item, name):
    for child in item:
        if child.tag.endswith("}" + name):
            return child.text
    return None


def fault(fn):
    try:
        fn()
    except WSManFaultError as e:
        return e.code
    return None


def selectors(**kw):
    s = SelectorSet()
    for k, v in kw.items():
        s.add_option(k, v)
    return s


def inventory(c, args):
    vm_uuid = args[0]
    out = {}
    cs = c.get(
        DMTF + "CIM_ComputerSystem",
        selector_set=selectors(CreationClassName="CIM_ComputerSystem", Name=vm_uuid),
    )
    inst = cs[0]
    out["get_class"] = inst.tag
    out["get_name"] = prop(inst, "ElementName")
    items, pulls = enumerate_all(c, DMTF + "CIM_IPProtocolEndpoint", max_elements=1)
    out["ips"] = sorted(prop(i, "IPv4Address") or prop(i, "IPv6Address") for i in items)
    out["pulls"] = pulls
    # EnumerateObjectAndEPR: each item is an instance and its address.
    items, _ = enumerate_all(c, DMTF + "CIM_IPProtocolEndpoint", max_elements=10, mode="EnumerateObjectAndEPR")
    out["epr_uris"] = sorted(
        {i.find("wsa:EndpointReference/wsa:ReferenceParameters/wsman:ResourceURI", NAMESPACES).text for i in items}
    )
    # The association filter from the VM to its endpoints (DSP0227).
    f = ET.Element("{%s}Filter" % WSMAN, Dialect="http://schemas.dmtf.org/wbem/wsman/1/cimbinding/associationFilter")
    a = ET.SubElement(f, "{%s}AssociatedInstances" % WSMB)
    o = ET.SubElement(a, "{%s}Object" % WSMB)
    ET.SubElement(o, "{%s}Address" % WSA).text = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
    rp = ET.SubElement(o, "{%s}ReferenceParameters" % WSA)
    ET.SubElement(rp, "{%s}ResourceURI" % WSMAN).text = DMTF + "CIM_ComputerSystem"
    ss = ET.SubElement(rp, "{%s}SelectorSet" % WSMAN)
    for k, v in (("CreationClassName", "CIM_ComputerSystem"), ("Name", vm_uuid)):
        ET.SubElement(ss, "{%s}Selector" % WSMAN, Name=k).text = v
    ET.SubElement(a, "{%s}ResultClassName" % WSMB).text = "CIM_IPProtocolEndpoint"
    items, _ = enumerate_all(c, "http://schemas.dmtf.org/wbem/wscim/1/*", max_elements=10, filt=f)
    out["assoc"] = sorted(prop(i, "ElementName") for i in items)
    # WQL.
    w = ET.Element("{%s}Filter" % WSMAN, Dialect="http://schemas.microsoft.com/wbem/wsman/1/WQL")
    w.text = "SELECT ElementName FROM CIM_IPProtocolEndpoint WHERE PrefixLength = 64"
    items, _ = enumerate_all(c, DMTF + "CIM_IPProtocolEndpoint", max_elements=10, filt=w)
    out["wql"] = [prop(i, "ElementName") for i in items]
    out["wql_props"] = sorted({ch.tag.split("}")[1] for i in items for ch in i})
    # Release of an open context, then a pull on it.
    body = c.enumerate(DMTF + "CIM_IPProtocolEndpoint", enumerate_body(max_elements=1))
    ctx = body.find("wsen:EnumerateResponse/wsen:EnumerationContext", NAMESPACES).text
    rel = ET.Element("{%s}Release" % WSEN)
    ET.SubElement(rel, "{%s}EnumerationContext" % WSEN).text = ctx
    c.invoke("http://schemas.xmlsoap.org/ws/2004/09/enumeration/Release", DMTF + "CIM_IPProtocolEndpoint", rel)
    pull = ET.Element("{%s}Pull" % WSEN)
    ET.SubElement(pull, "{%s}EnumerationContext" % WSEN).text = ctx
    out["pull_released"] = fault(lambda: c.pull(DMTF + "CIM_IPProtocolEndpoint", pull))
    # Faults.
    out["unknown_class"] = fault(lambda: c.get(DMTF + "CIM_NoSuchClass", selector_set=selectors(Name="x")))
    out["missing_key"] = fault(lambda: c.get(DMTF + "CIM_ComputerSystem", selector_set=selectors(Name=vm_uuid)))
    out["no_instance"] = fault(
        lambda: c.get(
            DMTF + "CIM_ComputerSystem",
            selector_set=selectors(CreationClassName="CIM_ComputerSystem", Name="nope"),
        )
    )
    out["delete"] = fault(
        lambda: c.delete(
            DMTF + "CIM_ComputerSystem",
            selector_set=selectors(CreationClassName="CIM_ComputerSystem", Name=vm_uuid),
        )
    )
    return out


def envelope_limit(c, args):
    host, port, user, password, cafile = args[:5]
    out = {}
    small = client(host, port, user, password, cafile, max_envelope_size=4096)
    out["below_minimum"] = fault(lambda: small.enumerate(DMTF + "CIM_ComputerSystem", enumerate_body(max_elements=5)))
    # At 8192 bytes, fewer than the 100 requested fit: the rest is pulled.
    tight = client(host, port, user, password, cafile, max_envelope_size=8192)
    body = tight.enumerate(DMTF + "CIM_ManagedElement", enumerate_body(max_elements=100))
    items = body.find("wsen:EnumerateResponse/wsman:Items", NAMESPACES)
    out["first_batch"] = len(list(items))
    return out


def invoke(c, args):
    vm_uuid = args[0]
    inp = ET.Element("{%s}RequestStateChange_INPUT" % (DMTF + "CIM_ComputerSystem"))
    ET.SubElement(inp, "{%s}RequestedState" % (DMTF + "CIM_ComputerSystem")).text = "3"
    sel = selectors(CreationClassName="CIM_ComputerSystem", Name=vm_uuid)
    try:
        r = c.invoke(
            DMTF + "CIM_ComputerSystem/RequestStateChange", DMTF + "CIM_ComputerSystem", inp, selector_set=sel
        )
    except WSManFaultError as e:
        return {"fault": e.code}
    rv = r.find("s:Body", NAMESPACES)[0]
    return {"output": rv.tag, "return": prop(rv, "ReturnValue")}


def wrong_password(c, args):
    try:
        c.get(DMTF + "CIM_ComputerSystem", selector_set=selectors(Name="x"))
    except AuthenticationError:
        return {"auth": "refused"}
    return {"auth": "accepted"}


def main():
    scenario, host, port, user, password, cafile = sys.argv[1:7]
    args = sys.argv[7:]
    c = client(host, port, user, password, cafile)
    if scenario == "envelope_limit":
        args = [host, port, user, password, cafile] + args
    out = {
        "inventory": inventory,
        "envelope_limit": envelope_limit,
        "invoke": invoke,
        "wrong_password": wrong_password,
    }[scenario](c, args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
