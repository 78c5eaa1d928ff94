"""One graceful power request through sushy (Redfish) or pywbem (CIM-XML),
driven by tests/tests/soft_power.rs.

Usage: soft_power.py sushy BASE_URL USER PASSWORD RESET_TYPE
       soft_power.py cim URL USER PASSWORD VM_NAME REQUESTED_STATE
Prints one JSON document: whether the client reported success, the error it
reported, and what the service offers (sushy's allowed reset values, CIM's
AvailableRequestedStates).
"""

import json
import sys
import warnings


def sushy_request(base, user, password, reset_type):
    import sushy

    warnings.simplefilter("ignore")
    c = sushy.Sushy(base + "/redfish/v1", username=user, password=password, verify=False)
    s = c.get_system("/redfish/v1/Systems/vm0")
    allowed = sorted(str(getattr(v, "value", v)) for v in s.get_allowed_reset_system_values())
    out = {"allowed": allowed}
    try:
        value = sushy.ResetType(reset_type) if hasattr(sushy, "ResetType") else reset_type
        s.reset_system(value)
        out.update(ok=True, error=None)
    except sushy.exceptions.SushyError as e:
        out.update(ok=False, error=str(e), status=getattr(e, "status_code", None))
    return out


def cim_request(url, user, password, vm, state):
    import pywbem

    c = pywbem.WBEMConnection(url, (user, password), default_namespace="root/cimv2", timeout=20)
    inst = next(
        i
        for i in c.EnumerateInstances("CIM_ComputerSystem")
        if i["ElementName"] == vm and i["Caption"] == "Virtual machine"
    )
    out = {"available": [int(x) for x in inst["AvailableRequestedStates"]]}
    try:
        rc, _ = c.InvokeMethod("RequestStateChange", inst.path, RequestedState=pywbem.Uint16(int(state)))
        out.update(ok=int(rc) == 0, rc=int(rc), error=None)
    except pywbem.CIMError as e:
        out.update(ok=False, rc=None, error=e.status_description, code=e.status_code)
    return out


def main():
    kind = sys.argv[1]
    if kind == "sushy":
        out = sushy_request(*sys.argv[2:6])
    elif kind == "cim":
        out = cim_request(*sys.argv[2:7])
    else:
        raise SystemExit(f"unknown client {kind}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
