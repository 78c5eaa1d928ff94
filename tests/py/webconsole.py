#!/usr/bin/env python3
"""Drive hvsim's web console in headless Chromium with Selenium.

A small line protocol so one browser session serves a whole test: the test
(tests/tests/webconsole.rs) writes one JSON command per line on stdin, this
script answers one JSON line on stdout: {"ok": true, "result": ...} or
{"ok": false, "error": "..."}. On a failed command a screenshot
`fail-N.png` is saved too.

usage: webconsole.py BASE_URL SCREENSHOT_DIR
"""

import json
import os
import sys
import time
import traceback

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE = sys.argv[1].rstrip("/")
SHOTS = sys.argv[2]
os.makedirs(SHOTS, exist_ok=True)


def browser():
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--ignore-certificate-errors", "--window-size=1280,1600",
              "--disable-gpu", "--no-first-run", "--disable-extensions"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    o.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    drv = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
    return webdriver.Chrome(service=Service(executable_path=drv), options=o)


D = browser()
D.set_script_timeout(60)


def el(css, timeout=10):
    return WebDriverWait(D, timeout).until(
        lambda d: d.find_element(By.CSS_SELECTOR, css))


def wait_text(css, contains, timeout=15, absent=False):
    """Wait until the element's text contains (or, absent, lacks) a string;
    returns the text."""
    last = [""]

    def check(d):
        try:
            t = d.find_element(By.CSS_SELECTOR, css).text
        except Exception:  # not (yet) on the page, or replaced meanwhile
            return False
        last[0] = t
        return (contains not in t) if absent else (contains in t)

    try:
        WebDriverWait(D, timeout, poll_frequency=0.05).until(check)
    except TimeoutException:
        raise AssertionError(f"{css}: {'still has' if absent else 'no'} {contains!r} "
                             f"after {timeout}s; text is {last[0]!r}")
    return last[0]


def cmd_open(c):
    D.get(BASE + c["path"])
    return D.current_url


def cmd_login(c):
    el("#username").clear()
    el("#username").send_keys(c["user"])
    el("#password").clear()
    el("#password").send_keys(c["password"])
    el("#login-button").click()
    return wait_text("#who", c["user"])


def cmd_screenshot(c):
    time.sleep(0.2)  # let the last render land
    p = os.path.join(SHOTS, c["name"] + ".png")
    D.save_screenshot(p)
    return p


def cmd_wait_text(c):
    return wait_text(c["css"], c["contains"], c.get("timeout", 15), c.get("absent", False))


def cmd_text(c):
    return el(c["css"]).text


def cmd_attr(c):
    return el(c["css"]).get_attribute(c["name"])


def cmd_click(c):
    e = el(c["css"])
    if c.get("force"):
        # What a user could do with the developer tools: enable the
        # disabled button; the server must still refuse.
        D.execute_script("arguments[0].disabled = false;", e)
    e.click()
    return True


def cmd_select(c):
    Select(el(c["css"])).select_by_value(c["value"])
    return True


def cmd_type(c):
    e = el(c["css"])
    if c.get("click", True):
        e.click()
    e.send_keys(c["text"])
    return True


def cmd_file(c):
    el(c["css"]).send_keys(c["path"])
    return True


def cmd_js(c):
    """Run an async script; `done` is its callback."""
    return D.execute_async_script(
        "const done = arguments[arguments.length - 1];" + c["script"], *c.get("args", []))


def cmd_fetch(c):
    return D.execute_async_script("""
        const [method, path, headers, body] = arguments;
        const done = arguments[arguments.length - 1];
        fetch(path, {method, headers, body, credentials: 'same-origin'})
          .then(async r => done({status: r.status, body: await r.text()}))
          .catch(e => done({status: 0, body: String(e)}));
    """, c.get("method", "GET"), c["path"], c.get("headers", {}), c.get("body"))


def cmd_ws_probe(c):
    """Open a WebSocket with these subprotocols; report whether it opened,
    the text messages it got and how it closed (wait_close: wait for the
    server to close it; else close it at once)."""
    return D.execute_async_script("""
        const [path, protocols, waitClose] = arguments;
        const done = arguments[arguments.length - 1];
        const ws = new WebSocket('wss://' + location.host + path, protocols);
        let opened = false;
        const texts = [];
        ws.onopen = () => { opened = true; if (!waitClose) ws.close(1000, 'probe'); };
        ws.onmessage = e => { if (typeof e.data === 'string') texts.push(e.data); };
        ws.onclose = e => done({opened, texts, code: e.code, reason: e.reason});
        setTimeout(() => ws.close(1000, 'probe timeout'), 10000);
    """, c["path"], c.get("protocols", []), c.get("wait_close", False))


def cmd_xsrf(c):
    """The XSRF-TOKEN cookie's value, as the page reads it."""
    return D.execute_script(
        "const m = document.cookie.match(/(?:^|;\\s*)XSRF-TOKEN=([^;]*)/);"
        "return m ? decodeURIComponent(m[1]) : null;")


def cmd_cookies(c):
    return {k["name"]: {"httpOnly": k.get("httpOnly"), "secure": k.get("secure")}
            for k in D.get_cookies()}


def cmd_new_window(c):
    D.switch_to.new_window("tab")
    D.get(BASE + c["path"])
    return D.current_window_handle


def cmd_close_window(c):
    D.close()
    D.switch_to.window(D.window_handles[0])
    return len(D.window_handles)


def cmd_window(c):
    D.switch_to.window(D.window_handles[c["index"]])
    return D.current_url


def cmd_logs(c):
    """The page's console messages so far (for failure reports)."""
    return [f"{m.get('level')} {m.get('message')}" for m in D.get_log("browser")]


def cmd_delete_cookies(c):
    D.delete_all_cookies()
    D.execute_script("sessionStorage.clear();")
    return True


COMMANDS = {k[4:]: v for k, v in globals().items() if k.startswith("cmd_")}


def main():
    failures = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        c = json.loads(line)
        if c["op"] == "quit":
            break
        try:
            out = {"ok": True, "result": COMMANDS[c["op"]](c)}
        except Exception as e:  # every failure goes back to the test
            failures += 1
            shot = os.path.join(SHOTS, f"fail-{failures}.png")
            try:
                D.save_screenshot(shot)
            except Exception:
                shot = None
            msg = f"{type(e).__name__}: {e}".strip()
            if not isinstance(e, AssertionError):
                msg += "\n" + traceback.format_exc(limit=3)
            out = {"ok": False, "error": msg, "screenshot": shot}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    D.quit()


if __name__ == "__main__":
    try:
        main()
    finally:
        try:
            D.quit()
        except Exception:
            pass
