"""pyvmomi scenarios against hvsim's vSphere API, for tests/tests/vsphere.rs.

Usage: vsphere_client.py SCENARIO HOST PORT USER PASSWORD [ARGS...]
Each scenario prints one JSON document on stdout; a failure is an exception
(non-zero exit, traceback on stderr).
"""

import json
import ssl
import sys
import time

from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl


def connect(host, port, user, pwd):
    ctx = ssl._create_unverified_context()
    return SmartConnect(host=host, port=int(port), user=user, pwd=pwd, sslContext=ctx)


def vm_by_name(si, name):
    c = si.RetrieveContent()
    view = c.viewManager.CreateContainerView(c.rootFolder, [vim.VirtualMachine], True)
    try:
        for vm in view.view:
            if vm.name == name:
                return vm
    finally:
        view.Destroy()
    raise SystemExit("no VM named %s" % name)


def describe(vm):
    g = vm.guest
    return {
        "moref": vm._moId,
        "name": vm.name,
        "uuid": vm.config.uuid,
        "instanceUuid": vm.config.instanceUuid,
        "power": str(vm.runtime.powerState),
        "toolsRunningStatus": g.toolsRunningStatus,
        "toolsStatus": str(g.toolsStatus),
        "guestId": g.guestId,
        "guestFullName": g.guestFullName,
        "hostName": g.hostName,
        "ipAddress": g.ipAddress,
        "net": [
            {"mac": n.macAddress, "ips": list(n.ipAddress),
             "prefixes": [a.prefixLength for a in (n.ipConfig.ipAddress if n.ipConfig else [])]}
            for n in g.net
        ],
        "extraConfig": {o.key: o.value for o in vm.config.extraConfig},
        "heartbeat": str(vm.guestHeartbeatStatus),
        "summaryIp": vm.summary.guest.ipAddress,
    }


def inventory(si, args):
    c = si.RetrieveContent()
    view = c.viewManager.CreateContainerView(c.rootFolder, [vim.VirtualMachine], True)
    vms = [describe(vm) for vm in view.view]
    hosts = c.viewManager.CreateContainerView(c.rootFolder, [vim.HostSystem], True).view
    dc = c.rootFolder.childEntity[0]
    out = {
        "about": {"name": c.about.name, "apiType": c.about.apiType,
                  "apiVersion": c.about.apiVersion, "version": c.about.version},
        "datacenter": dc.name,
        "hosts": [h.name for h in hosts],
        "vms": vms,
    }
    si_ = c.searchIndex
    finds = {}
    for vm in vms:
        by_uuid = si_.FindByUuid(None, vm["uuid"], True, False)
        by_iuuid = si_.FindByUuid(None, vm["instanceUuid"], True, True)
        by_path = si_.FindByInventoryPath("ha-datacenter/vm/" + vm["name"])
        by_ip = si_.FindByIp(None, vm["ipAddress"], True) if vm["ipAddress"] else None
        by_dns = si_.FindByDnsName(None, vm["hostName"], True) if vm["hostName"] else None
        finds[vm["name"]] = {
            "uuid": by_uuid and by_uuid.name,
            "instanceUuid": by_iuuid and by_iuuid.name,
            "path": by_path and by_path.name,
            "ip": by_ip and by_ip.name,
            "dns": by_dns and by_dns.name,
        }
    out["find"] = finds
    out["missing"] = si_.FindByUuid(None, "00000000-0000-0000-0000-000000000000", True, False)
    return out


def reconfig(si, args):
    name, key, value = args
    vm = vm_by_name(si, name)
    task = vm.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=key, value=value)]))
    WaitForTask(task)
    return {"state": str(task.info.state), "extraConfig": {o.key: o.value for o in vm.config.extraConfig}}


def power(si, args):
    name, op = args
    vm = vm_by_name(si, name)
    try:
        if op == "off":
            WaitForTask(vm.PowerOffVM_Task())
        elif op == "on":
            WaitForTask(vm.PowerOnVM_Task())
        elif op == "reset":
            WaitForTask(vm.ResetVM_Task())
        elif op == "shutdown":
            vm.ShutdownGuest()
        elif op == "reboot":
            vm.RebootGuest()
        else:
            raise SystemExit("unknown op " + op)
    except vmodl.MethodFault as e:
        return {"fault": type(e).__name__.split(".")[-1], "msg": e.msg, "power": str(vm.runtime.powerState)}
    return {"fault": None, "power": str(vm.runtime.powerState)}


def wait_ip(si, args):
    """Wait with a property filter (WaitForUpdatesEx) until the VM reports ip."""
    name, ip, timeout = args[0], args[1], float(args[2])
    vm = vm_by_name(si, name)
    pc = si.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=["guest.net"])])
    flt = pc.CreateFilter(spec, True)
    version, rounds, seen, started = "", 0, [], time.time()
    try:
        while time.time() - started < timeout:
            upd = pc.WaitForUpdatesEx(version, vmodl.query.PropertyCollector.WaitOptions(maxWaitSeconds=5))
            if upd is None:
                continue
            version = upd.version
            rounds += 1
            for fs in upd.filterSet:
                for ou in fs.objectSet:
                    for ch in ou.changeSet or []:
                        nets = ch.val or []
                        seen = [a for n in nets for a in n.ipAddress]
            if rounds == 1:
                # The test adds the address once the first report is in.
                sys.stderr.write("ready %s\n" % " ".join(seen))
                sys.stderr.flush()
            if ip in seen:
                return {"found": True, "rounds": rounds, "ips": seen}
        return {"found": False, "rounds": rounds, "ips": seen}
    finally:
        flt.Destroy()


def faults(si, args):
    host, port = args
    out = {}
    try:
        connect(host, port, "admin", "wrong-password")
        out["wrong_password"] = None
    except vim.fault.InvalidLogin:
        out["wrong_password"] = "InvalidLogin"
    # The same stub without a session: every call needs a login.
    from pyVmomi import SoapStubAdapter
    stub = SoapStubAdapter(host=host, port=int(port), version=si._stub.version,
                           sslContext=ssl._create_unverified_context())
    anon = vim.ServiceInstance("ServiceInstance", stub)
    content = anon.RetrieveContent()
    try:
        content.rootFolder.childEntity
        out["unauthenticated"] = None
    except vim.fault.NotAuthenticated:
        out["unauthenticated"] = "NotAuthenticated"
    try:
        vim.VirtualMachine("999", si._stub).name
        out["missing_vm"] = None
    except vmodl.fault.ManagedObjectNotFound:
        out["missing_vm"] = "ManagedObjectNotFound"
    return out


def snapshot(si, args):
    name, snap, quiesce = args[0], args[1], args[2] == "quiesce"
    vm = vm_by_name(si, name)
    fault = None
    try:
        WaitForTask(vm.CreateSnapshot_Task(name=snap, description="from pyvmomi", memory=False, quiesce=quiesce))
    except vmodl.MethodFault as e:
        fault = {"type": type(e).__name__.split(".")[-1], "msg": e.msg}
    info = vm.snapshot
    names, quiesced = [], []

    def walk(trees):
        for t in trees:
            names.append(t.name)
            quiesced.append(t.quiesced)
            walk(t.childSnapshotList)
    if info:
        walk(info.rootSnapshotList)
    current = None
    if info and info.currentSnapshot:
        current = [n for n, t in zip(names, names)][-1]
    return {"fault": fault, "snapshots": names, "quiesced": quiesced, "current": current}


def guestops(si, args):
    """Guest operations as Invoke-VMScript and govc guest.run do them."""
    import urllib.request
    name, user, pwd, workdir = args
    vm = vm_by_name(si, name)
    gom = si.content.guestOperationsManager
    pm, fm, am = gom.processManager, gom.fileManager, gom.authManager
    creds = vim.vm.guest.NamePasswordAuthentication(username=user, password=pwd)
    out = {}
    try:
        am.ValidateCredentialsInGuest(vm, vim.vm.guest.NamePasswordAuthentication(username=user, password="wrong"))
        out["wrong_password"] = None
    except vim.fault.InvalidGuestLogin:
        out["wrong_password"] = "InvalidGuestLogin"
    am.ValidateCredentialsInGuest(vm, creds)
    ctx = ssl._create_unverified_context()
    host = "127.0.0.1:%s" % si._stub.host.split(":")[-1]

    def at_host(url):
        # ESXi answers https://*:443/...: the client's own address goes in
        # place of "*:443" (as govmomi does).
        from urllib.parse import urlsplit, urlunsplit
        u = urlsplit(url)
        assert u.hostname == "*", url
        return urlunsplit(u._replace(netloc=host))

    def put(path, data):
        url = fm.InitiateFileTransferToGuest(vm, creds, path, vim.vm.guest.FileManager.PosixFileAttributes(permissions=0o640), len(data), True)
        req = urllib.request.Request(at_host(url), data=data, method="PUT")
        return urllib.request.urlopen(req, context=ctx).status

    def get(path):
        info = fm.InitiateFileTransferFromGuest(vm, creds, path)
        with urllib.request.urlopen(at_host(info.url), context=ctx) as r:
            return r.read(), info.size, info.attributes.permissions

    sub = workdir + "/vsphere"
    fm.MakeDirectoryInGuest(vm, creds, sub + "/a/b", True)
    src = fm.CreateTemporaryFileInGuest(vm, creds, "in-", ".txt", sub)
    out["put_status"] = put(src, b"hello from pyvmomi\n" * 1000)
    dst = sub + "/out.txt"
    spec = vim.vm.guest.ProcessManager.ProgramSpec(
        programPath="/bin/sh",
        arguments="-c 'tr a-z A-Z < %s > %s; echo $GREETING >> %s; exit 3'" % (src, dst, dst),
        workingDirectory=sub, envVariables=["GREETING=hi-there"])
    pid = pm.StartProgramInGuest(vm, creds, spec)
    for _ in range(200):
        procs = pm.ListProcessesInGuest(vm, creds, [pid])
        if procs and procs[0].endTime:
            break
        time.sleep(0.1)
    out["exit_code"] = procs[0].exitCode
    out["owner"] = procs[0].owner
    data, size, perm = get(dst)
    out["output"] = data.decode()[:40]
    out["output_len"] = len(data)
    out["size"] = size
    out["src_mode"] = oct(get(src)[2] & 0o777)
    listing = fm.ListFilesInGuest(vm, creds, sub, 0, 100, None)
    out["files"] = sorted((f.path, f.type) for f in listing.files if f.path not in (".", ".."))
    out["env_home"] = pm.ReadEnvironmentVariableInGuest(vm, creds, ["HOME"])
    try:
        fm.DeleteFileInGuest(vm, creds, sub + "/no-such-file")
        out["missing"] = None
    except vim.fault.FileNotFound:
        out["missing"] = "FileNotFound"
    fm.DeleteFileInGuest(vm, creds, dst)
    fm.DeleteDirectoryInGuest(vm, creds, sub, True)
    try:
        pm.TerminateProcessInGuest(vm, creds, 999999)
        out["kill_missing"] = None
    except vim.fault.GuestProcessNotFound:
        out["kill_missing"] = "GuestProcessNotFound"
    return out


def customize(si, args):
    """CustomizeVM_Task with a Linux spec, as a clone with a spec does."""
    name, mac = args
    vm = vm_by_name(si, name)
    c = vim.vm.customization
    spec = c.Specification(
        options=c.LinuxOptions(),
        identity=c.LinuxPrep(hostName=c.FixedName(name="web2"), domain="example.test",
                             timeZone="Europe/Berlin", hwClockUTC=True),
        globalIPSettings=c.GlobalIPSettings(dnsServerList=["192.0.2.53"], dnsSuffixList=["example.test"]),
        nicSettingMap=[c.AdapterMapping(macAddress=mac, adapter=c.IPSettings(
            ip=c.FixedIp(ipAddress="192.0.2.20"), subnetMask="255.255.255.0", gateway=["192.0.2.1"]))])
    task = vm.CustomizeVM_Task(spec)
    WaitForTask(task)
    bad = None
    try:
        WaitForTask(vm.CustomizeVM_Task(c.Specification(
            identity=c.LinuxPrep(hostName=c.PrefixNameGenerator(base="web"), domain="x"),
            globalIPSettings=c.GlobalIPSettings())))
    except vmodl.MethodFault as e:
        bad = type(e).__name__.split(".")[-1]
    return {"state": str(task.info.state), "unsupported_spec": bad}


def read_props(si, vm, paths):
    """One RetrievePropertiesEx of `paths` of `vm`: {path: value}."""
    pc = si.content.propertyCollector
    spec = vmodl.query.PropertyCollector.FilterSpec(
        objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm)],
        propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=paths)])
    res = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
    return {p.name: p.val for o in res.objects for p in o.propSet}


def readback(si, args):
    """Change properties and read each back at once with RetrievePropertiesEx,
    while another session keeps reading every VM (so cached renderings are
    in use and rebuilt concurrently): every read must see the change."""
    import threading
    name, rounds, host, port, user, pwd = args[0], int(args[1]), args[2], args[3], args[4], args[5]
    vm = vm_by_name(si, name)
    stop = threading.Event()
    reads = [0]

    def hammer():
        other = connect(host, port, user, pwd)
        c = other.RetrieveContent()
        view = c.viewManager.CreateContainerView(c.rootFolder, [vim.VirtualMachine], True)
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(
                obj=view, skip=True, selectSet=[vmodl.query.PropertyCollector.TraversalSpec(
                    name="v", type=vim.view.ContainerView, path="view", skip=False)])],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(
                type=vim.VirtualMachine, pathSet=["config.extraConfig", "runtime.powerState", "snapshot"])])
        while not stop.is_set():
            c.propertyCollector.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
            reads[0] += 1
        Disconnect(other)

    t = threading.Thread(target=hammer)
    t.start()
    stale = []
    try:
        for i in range(rounds):
            # A guest variable (the VM's data) on even rounds, a key kept
            # by the API only (hvsim's own data) on odd ones.
            key = "guestinfo.round" if i % 2 == 0 else "hvsim.round"
            WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(
                extraConfig=[vim.option.OptionValue(key=key, value=str(i))])))
            got = {o.key: o.value for o in read_props(si, vm, ["config.extraConfig"])["config.extraConfig"]}
            if got.get(key) != str(i):
                stale.append(["extraConfig", key, i, got.get(key)])
            if i % 4 == 1:
                WaitForTask(vm.PowerOffVM_Task())
                want = "poweredOff"
            elif i % 4 == 3:
                WaitForTask(vm.PowerOnVM_Task())
                want = "poweredOn"
            else:
                want = None
            if want:
                got = str(read_props(si, vm, ["runtime.powerState"])["runtime.powerState"])
                if got != want:
                    stale.append(["powerState", i, got])
            if i % 5 == 0:
                WaitForTask(vm.CreateSnapshot_Task(name="r%d" % i, description="", memory=False, quiesce=False))
                snap = read_props(si, vm, ["snapshot"]).get("snapshot")
                cur = snap and [t.name for t in walk_trees(snap.rootSnapshotList) if t.snapshot == snap.currentSnapshot]
                if cur != ["r%d" % i]:
                    stale.append(["snapshot", i, cur])
    finally:
        stop.set()
        t.join()
    return {"rounds": rounds, "stale": stale, "background_reads": reads[0]}


def walk_trees(trees):
    for t in trees:
        yield t
        yield from walk_trees(t.childSnapshotList)


SCENARIOS = {"readback": readback, "customize": customize, "guestops": guestops, "snapshot": snapshot, "inventory": inventory, "reconfig": reconfig, "power": power,
             "wait-ip": wait_ip, "faults": faults}

if __name__ == "__main__":
    scenario, host, port, user, pwd = sys.argv[1:6]
    si = connect(host, port, user, pwd)
    try:
        args = sys.argv[6:] if scenario != "faults" else [host, port]
        if scenario == "readback":
            args = args + [host, port, user, pwd]
        print(json.dumps(SCENARIOS[scenario](si, args)))
    finally:
        Disconnect(si)
