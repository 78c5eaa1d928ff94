"""Drive hvsim's BMC with pyghmi (the IPMI library of OpenStack Ironic and
VirtualBMC). Usage: pyghmi_client.py PORT USER PASSWORD OP [ARGS...];
prints one JSON document on stdout, exits 1 with the error on stderr.

OPs: power-state, power ON|OFF|RESET|BOOT, bootdev-set DEV PERSIST,
bootdev-get, sensors, sel, inventory, users, user-create UID NAME PASSWORD
PRIV, user-password UID PASSWORD, user-delete UID, sol WANT TYPED ECHO.
"""

import json
import os
import sys
import time

from pyghmi.ipmi import command, console


def connect(port, user, password):
    # PYGHMI_PRIV: the privilege level to ask for (pyghmi asks for
    # Administrator by default).
    priv = os.environ.get("PYGHMI_PRIV")
    return command.Command(bmc="127.0.0.1", userid=user, password=password,
                           port=int(port), keepalive=False,
                           privlevel=int(priv) if priv else None)


def sol(port, user, password, want, typed, echo):
    """Open a SOL console, wait for WANT (if any), type TYPED, wait for
    ECHO. Returns what was seen."""
    out = bytearray()
    errors = []

    def handler(data):
        if isinstance(data, dict):
            errors.append(data)
        elif isinstance(data, bytes):
            out.extend(data)
        else:
            out.extend(str(data).encode())

    con = console.Console(bmc="127.0.0.1", userid=user, password=password,
                          iohandler=handler, port=int(port))

    def wait_for(s, t=20.0):
        end = time.time() + t
        while time.time() < end:
            console.Console.wait_for_rsp(0.2)
            if errors:
                return False
            if s.encode() in out:
                return True
        return False

    seen = True
    if want:
        seen = wait_for(want)
    else:
        # Let the activation finish.
        deadline = time.time() + 3
        while time.time() < deadline and not errors:
            console.Console.wait_for_rsp(0.2)
    con.send_data(typed + "\r")
    echoed = wait_for(echo)
    con.close()
    return {"seen": seen, "echoed": echoed, "errors": [str(e) for e in errors],
            "output": out.decode("utf-8", "replace")}


def main(argv):
    port, user, password, op = argv[1:5]
    args = argv[5:]
    if op == "sol":
        return sol(port, user, password, *args)
    c = connect(port, user, password)
    try:
        return run(c, op, args)
    finally:
        # Close the session (pyghmi keeps it otherwise until it times out).
        c.ipmi_session.logout()


def run(c, op, args):
    if op == "power-state":
        return c.get_power()
    if op == "power":
        return c.set_power(args[0].lower(), wait=True)
    if op == "bootdev-set":
        return c.set_bootdev(args[0], persist=args[1] == "true")
    if op == "bootdev-get":
        return c.get_bootdev()
    if op == "sensors":
        return [{"name": r.name, "value": r.value, "units": r.units,
                 "states": list(r.states), "health": r.health}
                for r in c.get_sensor_data()]
    if op == "sel":
        return list(c.get_event_log())
    if op == "inventory":
        return {name: info for name, info in c.get_inventory()}
    if op == "users":
        return {str(uid): {"name": u.get("name"),
                           "privilege": u.get("access", {}).get("privilege_level")}
                for uid, u in c.get_users().items()}
    if op == "user-create":
        uid, name, pw, priv = args
        return c.create_user(int(uid), name, pw, privilege_level=priv)
    if op == "user-password":
        return c.set_user_password(int(args[0]), password=args[1])
    if op == "user-delete":
        return c.user_delete(int(args[0]))
    raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    try:
        result = main(sys.argv)
    except Exception as e:  # report any pyghmi error to the test
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result, default=str))
