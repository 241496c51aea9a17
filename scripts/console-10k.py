#!/usr/bin/env python3
"""Times the operator console with many game nodes: headless chromium through chromedriver
(Debian's chromium and chromium-driver), against a running login node's admin API.

    scripts/console-10k.py ADMIN_ADDR ADMIN_TOKEN EXPECTED_GAME_NODES

Prints one JSON object: the console's load, refresh, search and paging times in ms and the
page's JavaScript heap. Python standard library only; run by scripts/console-10k.sh.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    admin, token, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    port = free_port()
    profile = tempfile.mkdtemp(prefix="login-node-console-10k-")
    driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def call(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)["value"]

    try:
        for _ in range(200):
            try:
                if call("GET", "/status")["ready"]:
                    break
            except OSError:
                time.sleep(0.05)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,860", f"--user-data-dir={profile}"]
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": shutil.which("chromium"), "args": args}}}}
        sid = call("POST", "/session", caps)["sessionId"]
        s = f"/session/{sid}"

        def find(css):
            return call("POST", s + "/element", {"using": "css selector", "value": css})[ELEMENT]

        def js(script):
            return call("POST", s + "/execute/sync", {"script": script, "args": []})

        def js_async(script):
            return call("POST", s + "/execute/async", {"script": script, "args": []})

        def wait(script, what):
            deadline = time.time() + 120
            while not js(script):
                if time.time() > deadline:
                    raise SystemExit(f"timed out waiting for {what}")
                time.sleep(0.02)

        call("POST", s + "/url", {"url": f"http://{admin}/"})
        call("POST", s + f"/element/{find('#token')}/value", {"text": token})
        call("POST", s + f"/element/{find('#signin-button')}/click", {})
        wait("return document.body.dataset.loaded === 'overview'", "the overview")
        t0 = time.time()
        call("POST", s + f"/element/{find('#nav button[data-page=nodes]')}/click", {})
        wait(f"return document.getElementById('nodes-count').textContent.endsWith('of {expected} game nodes')",
             f"{expected} game nodes")
        open_ms = (time.time() - t0) * 1000
        refresh_ms = js_async("const done = arguments[0]; const t = performance.now();"
                              "refreshNodes().then(() => done(performance.now() - t));")
        search_ms = js_async("const done = arguments[0]; const t = performance.now();"
                             "document.getElementById('nodes-search').value = '1234'; state.nodesPage = 0;"
                             "refreshNodes().then(() => done(performance.now() - t));")
        matches = js("return document.getElementById('nodes-count').textContent")
        js("document.getElementById('nodes-search').value = '';")
        page_ms = js_async("const done = arguments[0]; const t = performance.now(); state.nodesPage = 1;"
                           "refreshNodes().then(() => done(performance.now() - t));")
        pages = js("return document.getElementById('nodes-page').textContent")
        rows = js("return document.querySelectorAll('#nodes-body tr').length")
        heap = js("return performance.memory ? performance.memory.usedJSHeapSize : null")
        call("DELETE", s)
        print(json.dumps({
            "game_nodes": expected, "rows_rendered": rows, "pager": pages,
            "open_nodes_page_ms": round(open_ms), "refresh_ms": round(refresh_ms),
            "search_ms": round(search_ms, 1), "search_result": matches,
            "next_page_ms": round(page_ms, 1),
            "js_heap_mib": round(heap / 2**20, 1) if heap else None,
        }))
    finally:
        driver.kill()
        driver.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
