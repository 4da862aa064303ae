#!/usr/bin/env python3
"""Throughput where users run it: the bridge, the reference backend, a bare pass-through proxy
and the load generator (oha) as separate processes on this machine.

    python3 bench/separate.py                 # requests and answers of 1 KB, 100 KB, 1 MB, 10 MB
    BENCH_SECS=5 BENCH_ROUNDS=3 python3 bench/separate.py 1k 100k      # large requests only
    python3 bench/separate.py answer-1k answer-10m                      # large answers only
    python3 bench/separate.py in-flight     # 64 clients of 1 MB requests, bodies in flight bounded or not
    python3 bench/separate.py xmlrpc        # 1 MB XML-RPC requests (an array of ids) on /RPC2
    python3 bench/separate.py winstrom      # 1 MB Flexi lists (cenik.xml?limit=0) on the winstrom door
    python3 bench/separate.py multicall     # system.multicall of 8 large getOptionFeaturesInfo results (19.5 MB)
    python3 bench/separate.py telemetry     # the cost of metrics and logs

Both paths call the same reference backend with the same product ids: the proxy is given the
JSON body and forwards it as it is; the bridge is given the SOAP envelope (signed by the demo's
fixture account) and converts it. Large requests are calculateOptionsPrice with N product ids
(a small answer); large answers are getOptionFeaturesInfo for N distinct products (a small
request for each product's options and prices, an answer of about 600 bytes of SOAP per
product), whose route the benchmark points at the reference backend's POST search (the GET
would not hold that many ids in its URL); the backend is given that many generated products. Rounds alternate between the paths, so
that drift on the machine falls on both. Every answer is checked: all statuses must be the
expected one, and the bridge's /metrics must count exactly as many successful calls as oha sent.
Printed per size: requests/s, p50, p99, CPU time per call and RSS of the serving process, and
the ratios the targets are stated in. Each large size (1 MB, 10 MB) is served by a freshly
started bridge, whose peak RSS is checked against its own idle RSS: memory that the allocator
kept after earlier sizes (64 connections of 100 KB) is not the large size's
(`BENCH_FRESH=0` serves every size from one bridge). `BENCH_BRIDGE_THREADS=N` gives the bridge
N worker threads (the backend and the proxy keep one per core).
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
SECS = int(os.environ.get("BENCH_SECS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
FRESH = os.environ.get("BENCH_FRESH", "1") != "0"
# The bridge's worker threads (`TOKIO_WORKER_THREADS` for the bridge only; default: one per core).
BRIDGE_THREADS = ({"TOKIO_WORKER_THREADS": os.environ["BENCH_BRIDGE_THREADS"]}
                  if os.environ.get("BENCH_BRIDGE_THREADS") else {})
# Generated price items behind the winstrom lists: about 1 MB of Flexi XML.
WINSTROM_ITEMS = 5_000
SIZES = {"1k": 1_000, "100k": 100_000, "1m": 1_000_000, "10m": 10_000_000}
PRODUCT = "587300354"
NS = "https://product.option.individual.ws.listingapi.gg.com"
FIXTURE_AUTH = "fixture:fixture-pass"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, what):
    for _ in range(400):
        if proc.poll() is not None:
            sys.exit(f"{what} exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def sign(time_ms):
    out = subprocess.run(
        ["target/release/soapbridge", "sign", "--api-key", "fixtureKey0000000000000000000000",
         "--secret", "fixture-secret", "--time", str(time_ms)],
        check=True, capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.split())["sign"]


def envelope(n, time_ms, signature, operation="calculateOptionsPrice", ids=None):
    items = "".join(f"<item>{i}</item>" for i in ids) if ids is not None else f"<item>{PRODUCT}</item>" * n
    return (f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns:prod="{NS}"><soapenv:Body><prod:{operation}><apiKey>fixtureKey0000000000000000000000</apiKey>'
            f'<sign>{signature}</sign><time>{time_ms}</time><productIds>{items}</productIds><lang>en</lang>'
            f'</prod:{operation}></soapenv:Body></soapenv:Envelope>')


# Generated products for large answers: ids from here on, two options each (one unpaid, one
# paid with an expiry), titles of a realistic length with a non-ASCII letter.
FIRST_GENERATED = 600_000_000
ANSWER_PRODUCTS = 20_000


def backend_data(work):
    """The reference seed data with ANSWER_PRODUCTS generated products added."""
    with open("fixtures/reference/product-options.json") as f:
        data = json.load(f)
    for i in range(ANSWER_PRODUCTS):
        data["products"].append({
            "product_id": FIRST_GENERATED + i, "title": f"Ürün {i} — el yapımı seramik vazo",
            "options": [{"option_id": 1, "duration_days": 7},
                        {"option_id": 3, "duration_days": 30, "paid": True, "expires_at": "2026-12-31"}]})
    path = os.path.join(work, "product-options.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def products_for(size, service_url, time_ms, signature):
    """Generated products in a getOptionFeaturesInfo answer of about `size` bytes (measured with
    one call of one product and one of a hundred)."""
    def answer(n):
        body = envelope(n, time_ms, signature, "getOptionFeaturesInfo",
                        list(range(FIRST_GENERATED, FIRST_GENERATED + n))).encode()
        req = urllib.request.Request(service_url, data=body, headers={
            "Content-Type": "text/xml; charset=utf-8",
            "Authorization": "Basic " + base64.b64encode(FIXTURE_AUTH.encode()).decode()})
        return len(urllib.request.urlopen(req, timeout=30).read())
    one, hundred = answer(1), answer(100)
    per = (hundred - one) / 99
    n = max(1, round((size - one) / per) + 1)
    if n > ANSWER_PRODUCTS:
        sys.exit(f"an answer of {size} bytes needs {n} products; the backend has {ANSWER_PRODUCTS}")
    return n


def items_for(size):
    """Product ids in a SOAP request of about `size` bytes."""
    base = len(envelope(0, 1, "0" * 32))
    return max(1, (size - base) // len(f"<item>{PRODUCT}</item>"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_busy():
    """(busy, total) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def rss_mb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def counts(bridge_port, operation="calculateOptionsPrice"):
    """Calls of `operation` the bridge answered: (successes, all)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{bridge_port}/metrics", timeout=10).read().decode()
    ok = total = 0
    for line in text.splitlines():
        if line.startswith("soapbridge_calls_total{") and f'operation="{operation}"' in line:
            n = int(float(line.rsplit(" ", 1)[1]))
            total += n
            ok += n if 'outcome="success"' in line else 0
    return ok, total


def oha(url, body_file, content_type, auth, connections, expect_status):
    """`body_file` POSTed as `content_type`, or (None) a GET."""
    send = ["-m", "POST", "-T", content_type, "-D", body_file] if body_file else []
    cmd = ["oha", "-z", f"{SECS}s", "-c", str(connections), *send, "--no-tui", "--output-format", "json", url]
    if auth:
        cmd[1:1] = ["-a", auth]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    codes = {int(k): v for k, v in r.get("statusCodeDistribution", {}).items()}
    errors = r.get("errorDistribution", {})
    # Requests cut off by the end of the run are not answers; anything else must be expected.
    errors = {k: v for k, v in errors.items() if "aborted due to deadline" not in k}
    bad = {k: v for k, v in codes.items() if k != expect_status}
    if bad or errors:
        sys.exit(f"{url}: unexpected answers: statuses {bad}, errors {errors}")
    n = codes.get(expect_status, 0)
    return {"requests": n, "rps": n / SECS, "p50": r["latencyPercentiles"]["p50"],
            "p99": r["latencyPercentiles"]["p99"], "answer_bytes": r["summary"].get("sizePerRequest") or 0}


def start_bridge(work, backend_port, name, metrics, env, edits=()):
    """The bridge binary on the demo configuration, calling the reference backend at
    `backend_port`, with each (old, new) of `edits` replaced; returns (process, port)."""
    port = free_port()
    with open("demo/soapbridge.toml") as f:
        config = f.read()
    config = config.replace('base_url = "http://127.0.0.1:8081"', f'base_url = "http://127.0.0.1:{backend_port}"')
    config = config.replace('url = "sqlite:../var/soapbridge.db"', f'url = "sqlite:{work}/{name}.db"')
    config = config.replace("max_body_bytes = 1048576", "max_body_bytes = 33554432")
    config = config.replace("request_timeout_ms = 60000", "request_timeout_ms = 120000")
    config = config.replace("[server]\n", f"[server]\nmetrics = {'true' if metrics else 'false'}\n", 1)
    # Large answers: the product list through the backend's POST search instead of the GET.
    get_route = 'method = "GET"\npath = "/v1/products/option-features"\nquery = { product_id = "$.productIds.item" }'
    assert get_route in config, "the demo's getOptionFeaturesInfo route changed: update the benchmark"
    config = config.replace(get_route, 'method = "POST"\npath = "/v1/products/option-features:search"\n'
                                       'body = { product_ids = "$.productIds.item" }')
    for old, new in edits:
        assert old in config, f"the demo configuration has no {old!r}: update the benchmark"
        config = config.replace(old, new)
    cfg_path = os.path.join(ROOT, "demo", f".bench-{os.getpid()}-{name}.toml")
    with open(cfg_path, "w") as f:
        f.write(config)
    proc = subprocess.Popen(["target/release/soapbridge", "serve", "--config", cfg_path, "--listen",
                             f"127.0.0.1:{port}"], env={**os.environ, **env, **BRIDGE_THREADS},
                            stderr=subprocess.DEVNULL)
    wait_port(port, proc, f"the bridge ({name})")
    os.remove(cfg_path)
    return proc, port


def telemetry(work, backend_port, procs):
    """Telemetry's cost, as deployed: one bridge with metrics and a JSON log line per call at
    info (written to /dev/null: the formatting and the write are paid), one with
    `server.metrics = false` and logs at warn; 1 KB calls, alternating rounds."""
    json_logs = {"SOAPBRIDGE_LOG_FORMAT": "json"}
    on, on_port = start_bridge(work, backend_port, "on", True, {**json_logs, "SOAPBRIDGE_LOG": "info"})
    procs.append(on)
    spans, spans_port = start_bridge(work, backend_port, "spans", True,
                                     {**json_logs, "SOAPBRIDGE_LOG": "info,soapbridge::access=off"})
    procs.append(spans)
    metrics, metrics_port = start_bridge(work, backend_port, "metrics", True, {"SOAPBRIDGE_LOG": "warn"})
    procs.append(metrics)
    off, off_port = start_bridge(work, backend_port, "off", False, {"SOAPBRIDGE_LOG": "warn"})
    procs.append(off)
    now = int(time.time() * 1000)
    body = os.path.join(work, "1k.xml")
    with open(body, "w") as f:
        f.write(envelope(items_for(1_000), now, sign(now)))
    url = "http://127.0.0.1:{}/listingapi/ws/IndividualProductOptionService"
    order = ["on", "spans", "metrics", "off"]
    acc = {k: [0, [], [], 0.0] for k in order}
    procs_by = {"on": (on, on_port), "spans": (spans, spans_port), "metrics": (metrics, metrics_port),
                "off": (off, off_port)}
    for rnd in range(ROUNDS):
        for which in order[rnd % 4:] + order[:rnd % 4]:
            proc, port = procs_by[which]
            cpu0 = cpu_seconds(proc.pid)
            r = oha(url.format(port), body, "text/xml; charset=utf-8", FIXTURE_AUTH, CONNECTIONS, 200)
            a = acc[which]
            a[0] += r["requests"]
            a[1].append(r["p50"])
            a[2].append(r["p99"])
            a[3] += cpu_seconds(proc.pid) - cpu0
    print(f"telemetry, 1 KB calculateOptionsPrice, {CONNECTIONS} connections, {ROUNDS} alternating rounds of {SECS} s")
    print("| bridge | requests/s | p50 | p99 | CPU per call |")
    print("|---|---|---|---|---|")
    rows = {}
    for which, label in (("on", "metrics, tracing at info and a JSON access line per call"),
                         ("spans", "metrics and tracing at info (request id and user per call), access lines off"),
                         ("metrics", "metrics, logs at warn"),
                         ("off", "server.metrics = false, logs at warn")):
        a = acc[which]
        rows[which] = a[0] / (SECS * ROUNDS)
        print(f"| {label} | {rows[which]:.0f} | {sorted(a[1])[len(a[1]) // 2] * 1000:.2f} ms | {max(a[2]) * 1000:.2f} ms | {a[3] * 1000 / max(1, a[0]):.3f} ms |")
    for which, what in (("metrics", "metrics"), ("spans", "metrics and tracing (info)"),
                        ("on", "with a JSON access line per call as well")):
        share = rows[which] / rows["off"]
        print(f"{what} = {share * 100:.1f}% of off (within 5%: {'met' if share >= 0.95 else 'NOT met'})")


def in_flight(work, backend_port, procs):
    """`server.max_body_bytes_in_flight` under load: 1 MB requests from 64 connections (16 times
    what the sizes above send at once) to a bridge without the bound and to one bounded at 32
    MiB (the benchmark's `max_body_bytes`, so 32 such bodies), alternating rounds. Each bridge's
    peak RSS is its own process's; every answer must be a 200 (a body waits for room within
    `body_timeout_ms` rather than being refused)."""
    key = "max_body_bytes_in_flight = 268435456"
    bridges = {}
    for name, bound in (("unbounded", 0), ("bounded", 32 * 1024 * 1024)):
        proc, port = start_bridge(work, backend_port, name, True, {"SOAPBRIDGE_LOG": "warn"},
                                  [(key, f"max_body_bytes_in_flight = {bound}")])
        procs.append(proc)
        bridges[name] = (proc, port, bound)
    time.sleep(0.5)
    now = int(time.time() * 1000)
    body = os.path.join(work, "1m.xml")
    with open(body, "w") as f:
        f.write(envelope(items_for(1_000_000), now, sign(now)))
    acc = {k: {"requests": 0, "p99": [], "cpu": 0.0, "idle": rss_mb(p.pid, "VmRSS:")}
           for k, (p, _, _) in bridges.items()}
    for rnd in range(ROUNDS):
        order = ["unbounded", "bounded"] if rnd % 2 == 0 else ["bounded", "unbounded"]
        for name in order:
            proc, port, _ = bridges[name]
            url = f"http://127.0.0.1:{port}/listingapi/ws/IndividualProductOptionService"
            cpu0 = cpu_seconds(proc.pid)
            r = oha(url, body, "text/xml; charset=utf-8", FIXTURE_AUTH, CONNECTIONS, 200)
            a = acc[name]
            a["requests"] += r["requests"]
            a["p99"].append(r["p99"])
            a["cpu"] += cpu_seconds(proc.pid) - cpu0
    print(f"1 MB calculateOptionsPrice requests, {CONNECTIONS} connections, {ROUNDS} alternating rounds of {SECS} s")
    print("| max_body_bytes_in_flight | answers/s (all 200) | p99 | CPU per call | idle RSS | peak RSS |")
    print("|---|---|---|---|---|---|")
    for name, (proc, _, bound) in bridges.items():
        a = acc[name]
        print(f"| {bound or '0 (no bound)'} | {a['requests'] / (SECS * ROUNDS):.0f} | {max(a['p99']) * 1000:.0f} ms | "
              f"{a['cpu'] * 1000 / max(1, a['requests']):.1f} ms | {a['idle']:.0f} MB | {rss_mb(proc.pid, 'VmHWM:'):.0f} MB |")


def xmlrpc_large(work, backend_port, procs):
    """1 MB XML-RPC requests: calculateOptionsPrice on /RPC2 with an array of ids, from 4
    connections, to a freshly started bridge, alternating with the proxy given the same ids as
    JSON. Every call must be a success (an XML-RPC fault is an HTTP 200: the bridge's /metrics
    must count as many successful calls as oha sent). Peak RSS against idle + 4x the messages
    in flight, as for the SOAP sizes."""
    bridge, port = start_bridge(work, backend_port, "xmlrpc", True, {"SOAPBRIDGE_LOG": "warn"})
    procs.append(bridge)
    proxy_port = free_port()
    proxy = subprocess.Popen(["target/release/soapbridge-reference", "--kind", "proxy", "--upstream",
                              f"http://127.0.0.1:{backend_port}", "--listen", f"127.0.0.1:{proxy_port}"],
                             stderr=subprocess.DEVNULL)
    procs.append(proxy)
    wait_port(proxy_port, proxy, "the proxy")
    time.sleep(0.5)
    idle = rss_mb(bridge.pid, "VmRSS:")
    with open("fixtures/xmlrpc/option/calculateOptionsPrice.xml") as f:
        template = f.read()
    two = "<value><int>587300354</int></value>\n<value><int>587300355</int></value>\n"
    assert two in template, "the XML-RPC fixture changed: update the benchmark"
    item = f"<value><int>{PRODUCT}</int></value>\n"
    n = (1_000_000 - len(template) + len(two)) // len(item)
    paths = {"bridge": os.path.join(work, "rpc-1m.xml"), "proxy": os.path.join(work, "rpc-1m.json")}
    with open(paths["bridge"], "w") as f:
        f.write(template.replace(two, item * n))
    with open(paths["proxy"], "w") as f:
        f.write(json.dumps({"product_ids": [int(PRODUCT)] * n}, separators=(",", ":")))
    size = os.path.getsize(paths["bridge"])
    runs = {
        "bridge": lambda conns: oha(f"http://127.0.0.1:{port}/RPC2", paths["bridge"], "text/xml", FIXTURE_AUTH,
                                    conns, 200),
        "proxy": lambda conns: oha(f"http://127.0.0.1:{proxy_port}/v1/vouchers", paths["proxy"], "application/json",
                                   None, conns, 201),
    }
    alternate_large("xmlrpc-1m", f"calculateOptionsPrice on /RPC2, {n} ids; XML-RPC request {size:,} B",
                    bridge, port, proxy, runs, "calculateOptionsPrice", size, idle)


def winstrom_large(work, procs):
    """About 1 MB Flexi lists: `cenik.xml?limit=0` on the winstrom door over the records of a
    flexi reference backend given WINSTROM_ITEMS generated price items, from 4 connections, to a
    freshly started bridge, alternating with the proxy asked the backend's search as JSON. Every
    answer must be a 200 and a success on the bridge's /metrics. Peak RSS against idle + 4x the
    messages in flight (the larger of the backend's JSON and the Flexi XML), as for the SOAP
    sizes."""
    with open("fixtures/reference/flexi.json") as f:
        data = json.load(f)
    items = data["tenants"]["demo"]["price_items"]
    first = max(i["id"] for i in items) + 1
    for k in range(WINSTROM_ITEMS):
        items.append({"id": first + k, "code": f"GEN-{k:06d}", "name": f"Generovaná položka {k} — dubové dřevo",
                      "purchase_price": f"{k % 997}.50", "sale_price": f"{k % 1999}.90",
                      "ext_ids": [f"SHOP:{100000 + k}"]})
    data_file = os.path.join(work, "flexi.json")
    with open(data_file, "w") as f:
        json.dump(data, f)
    flexi_port, proxy_port = free_port(), free_port()
    flexi = subprocess.Popen(["target/release/soapbridge-reference", "--kind", "flexi", "--data", data_file,
                              "--listen", f"127.0.0.1:{flexi_port}"], stderr=subprocess.DEVNULL)
    procs.append(flexi)
    wait_port(flexi_port, flexi, "the flexi reference backend")
    proxy = subprocess.Popen(["target/release/soapbridge-reference", "--kind", "proxy", "--upstream",
                              f"http://127.0.0.1:{flexi_port}", "--listen", f"127.0.0.1:{proxy_port}"],
                             stderr=subprocess.DEVNULL)
    procs.append(proxy)
    wait_port(proxy_port, proxy, "the proxy")
    # Its flexi backend is this one (its product-options backend, unused here, run()'s).
    bridge, port = start_bridge(work, free_port(), "winstrom", True, {"SOAPBRIDGE_LOG": "warn"},
                                [('base_url = "http://127.0.0.1:8084"', f'base_url = "http://127.0.0.1:{flexi_port}"')])
    procs.append(bridge)
    time.sleep(0.5)
    idle = rss_mb(bridge.pid, "VmRSS:")
    user = "winstrom:winstrom-pass"
    url = f"http://127.0.0.1:{port}/c/demo/cenik.xml?limit=0"
    search, search_url = os.path.join(work, "search.json"), f"http://127.0.0.1:{proxy_port}/v1/demo/price-items:search"
    with open(search, "w") as f:
        json.dump({"filter": None, "start": 0, "limit": 0, "count": False}, f)
    auth = {"Authorization": "Basic " + base64.b64encode(user.encode()).decode()}
    with urllib.request.urlopen(urllib.request.Request(url, headers=auth), timeout=60) as r:
        flexi_bytes = len(r.read())
    with open(search, "rb") as f, urllib.request.urlopen(urllib.request.Request(
            search_url, data=f.read(), headers={"Content-Type": "application/json"}), timeout=60) as r:
        json_bytes = len(r.read())
    runs = {
        "bridge": lambda conns: oha(url, None, None, user, conns, 200),
        "proxy": lambda conns: oha(search_url, search, "application/json", None, conns, 200),
    }
    alternate_large("winstrom-1m", f"cenik.xml?limit=0, {len(items)} records; Flexi XML answer {flexi_bytes:,} B, "
                    f"the backend's JSON {json_bytes:,} B", bridge, port, proxy, runs, "cenik.list",
                    max(flexi_bytes, json_bytes), idle)


MULTICALL_CALLS, MULTICALL_IDS = 8, 2_000


def multicall_large(work, backend_port, procs):
    """A system.multicall of MULTICALL_CALLS getOptionFeaturesInfo calls of MULTICALL_IDS
    generated products each (about 19.5 MB of answer) on /RPC2, from 2 connections, to a freshly
    started bridge. Every call of every multicall must be a success on the bridge's /metrics.
    There is no pass-through path to compare with (a multicall is many backend calls), so it
    prints the bridge's figures and its peak RSS against idle + 4x the answers in flight."""
    bridge, port = start_bridge(work, backend_port, "multicall", True, {"SOAPBRIDGE_LOG": "warn"})
    procs.append(bridge)
    time.sleep(0.5)
    idle = rss_mb(bridge.pid, "VmRSS:")
    now = int(time.time() * 1000)
    ids = "".join(f"<value><int>{FIRST_GENERATED + i}</int></value>" for i in range(MULTICALL_IDS))
    entry = ("<value><struct><member><name>methodName</name><value><string>"
             "IndividualProductOptionService.getOptionFeaturesInfo</string></value></member>"
             "<member><name>params</name><value><array><data>"
             f"<value><string>fixtureKey0000000000000000000000</string></value>"
             f"<value><string>{sign(now)}</string></value><value><string>{now}</string></value>"
             f"<value><array><data>{ids}</data></array></value><value><string>en</string></value>"
             "</data></array></value></member></struct></value>")
    body = ("<?xml version='1.0'?><methodCall><methodName>system.multicall</methodName><params><param>"
            f"<value><array><data>{entry * MULTICALL_CALLS}</data></array></value></param></params></methodCall>")
    path = os.path.join(work, "multicall.xml")
    with open(path, "w") as f:
        f.write(body)
    auth = {"Authorization": "Basic " + base64.b64encode(FIXTURE_AUTH.encode()).decode(),
            "Content-Type": "text/xml"}
    url = f"http://127.0.0.1:{port}/RPC2"
    # One multicall alone first: its answer is checked, and when its first bytes came.
    t0 = time.monotonic()
    with urllib.request.urlopen(urllib.request.Request(url, data=body.encode(), headers=auth), timeout=120) as r:
        first = r.read(1)
        t_first = time.monotonic() - t0
        answer = first + r.read()
    t_whole = time.monotonic() - t0
    if b"faultCode" in answer:
        sys.exit(f"multicall: a call failed: {answer[:2000]!r}")
    conns, operation = 2, "getOptionFeaturesInfo"
    before, cpu0 = counts(port, operation), cpu_seconds(bridge.pid)
    r = oha(url, path, "text/xml", FIXTURE_AUTH, conns, 200)
    cpu = cpu_seconds(bridge.pid) - cpu0
    after = counts(port, operation)
    ok, total = after[0] - before[0], after[1] - before[1]
    if ok != total or not 0 <= ok - r["requests"] * MULTICALL_CALLS <= conns * MULTICALL_CALLS:
        sys.exit(f"multicall: {total - ok} calls were not successes; oha got {r['requests']} answers, "
                 f"the bridge answered {ok} calls")
    peak = rss_mb(bridge.pid, "VmHWM:")
    limit = idle + 4 * conns * len(answer) / 1e6
    print(f"multicall: {MULTICALL_CALLS} x getOptionFeaturesInfo of {MULTICALL_IDS} ids in one system.multicall; "
          f"request {len(body):,} B, answer {len(answer):,} B; {conns} connections, {SECS} s")
    print(f"- alone: its answer's first byte after {t_first * 1000:.0f} ms, the whole after {t_whole * 1000:.0f} ms")
    print(f"| bridge | {r['requests'] / SECS:.1f} multicalls/s | p99 {r['p99'] * 1000:.0f} ms | "
          f"CPU {cpu * 1000 / max(1, r['requests']):.1f} ms per multicall |")
    print(f"- multicall: bridge peak RSS {peak:.0f} MB with {conns} answers of {len(answer) / 1e6:.1f} MB in flight "
          f"(<= idle {idle:.0f} MB + 4x the answers in flight = {limit:.0f} MB: {'met' if peak <= limit else 'NOT met'}); "
          f"+{peak - idle:.0f} MB over idle")


def alternate_large(name, what, bridge, port, proxy, runs, operation, size, idle, conns=4):
    """Alternating rounds of `runs` (the bridge's and the proxy's load, given the connections)
    with messages of `size` bytes; every call of the bridge's must be counted a success of
    `operation` on its /metrics. Prints the figures and the memory target."""
    acc = {k: {"requests": 0, "p99": [], "cpu": 0.0} for k in ("proxy", "bridge")}
    for rnd in range(ROUNDS):
        for which in (("proxy", "bridge") if rnd % 2 == 0 else ("bridge", "proxy")):
            proc = bridge if which == "bridge" else proxy
            before = counts(port, operation) if which == "bridge" else (0, 0)
            cpu0 = cpu_seconds(proc.pid)
            r = runs[which](conns)
            acc[which]["cpu"] += cpu_seconds(proc.pid) - cpu0
            acc[which]["requests"] += r["requests"]
            acc[which]["p99"].append(r["p99"])
            if which == "bridge":
                after = counts(port, operation)
                ok, total = after[0] - before[0], after[1] - before[1]
                # As for the SOAP sizes: every call succeeded, and oha saw all of them but those
                # still in flight when its time ran out (at most one per connection).
                if ok != total or not 0 <= ok - r["requests"] <= conns:
                    sys.exit(f"{name}: {total - ok} calls were not successes; oha got "
                             f"{r['requests']} answers, the bridge answered {ok}")
    peak = rss_mb(bridge.pid, "VmHWM:")
    limit = idle + 4 * conns * size / 1e6
    print(f"{name}: {what}; {conns} connections, {ROUNDS} alternating rounds of {SECS} s")
    print("| path | requests/s | p99 | CPU per call |")
    print("|---|---|---|---|")
    for k, a in acc.items():
        print(f"| {k} | {a['requests'] / (SECS * ROUNDS):.0f} | {max(a['p99']) * 1000:.2f} ms | "
              f"{a['cpu'] * 1000 / max(1, a['requests']):.3f} ms |")
    ratio = acc["bridge"]["requests"] / max(1, acc["proxy"]["requests"])
    print(f"bridge/proxy: throughput {ratio:.2f}")
    print(f"- {name}: bridge peak RSS {peak:.0f} MB with {conns} calls of {size / 1e6:.1f} MB in flight "
          f"(<= idle {idle:.0f} MB + 4x the messages in flight = {limit:.0f} MB: {'met' if peak <= limit else 'NOT met'}); "
          f"+{peak - idle:.0f} MB over idle")


def main():
    args = sys.argv[1:]
    if args == ["telemetry"]:
        return run(telemetry_only=True)
    if args == ["in-flight"]:
        return run(in_flight_only=True)
    if args == ["xmlrpc"]:
        return run(xmlrpc_only=True)
    if args == ["winstrom"]:
        return run(winstrom_only=True)
    if args == ["multicall"]:
        return run(multicall_only=True)
    return run(sizes=args or list(SIZES) + [f"answer-{s}" for s in SIZES])


def run(sizes=(), telemetry_only=False, in_flight_only=False, xmlrpc_only=False, winstrom_only=False,
        multicall_only=False):
    if shutil.which("oha") is None:
        print("== installing oha (cargo install oha --locked)", flush=True)
        subprocess.run(["cargo", "install", "oha", "--locked"], check=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "soapbridge", "-p",
                    "soapbridge-reference"], check=True)
    work = tempfile.mkdtemp(prefix="soapbridge-separate-")
    procs = []
    try:
        backend_port, proxy_port = free_port(), free_port()
        backend = subprocess.Popen(["target/release/soapbridge-reference", "--kind", "product-options",
                                    "--data", backend_data(work), "--listen", f"127.0.0.1:{backend_port}"],
                                   stderr=subprocess.DEVNULL)
        procs.append(backend)
        wait_port(backend_port, backend, "the reference backend")
        if telemetry_only:
            return telemetry(work, backend_port, procs)
        if in_flight_only:
            return in_flight(work, backend_port, procs)
        if xmlrpc_only:
            return xmlrpc_large(work, backend_port, procs)
        if winstrom_only:
            return winstrom_large(work, procs)
        if multicall_only:
            return multicall_large(work, backend_port, procs)
        proxy = subprocess.Popen(["target/release/soapbridge-reference", "--kind", "proxy", "--upstream",
                                  f"http://127.0.0.1:{backend_port}", "--listen", f"127.0.0.1:{proxy_port}"],
                                 stderr=subprocess.DEVNULL)
        procs.append(proxy)
        wait_port(proxy_port, proxy, "the proxy")
        bridge, bridge_port = start_bridge(work, backend_port, "bridge", True, {"SOAPBRIDGE_LOG": "warn"})
        procs.append(bridge)
        print(f"bridge, backend, proxy and oha as separate processes; {os.cpu_count()} cores; "
              f"{SECS} s per round, {ROUNDS} alternating rounds per path")
        results = {}
        idle_mb = rss_mb(bridge.pid, "VmRSS:")
        now = int(time.time() * 1000)
        signature = sign(now)
        service_url = f"http://127.0.0.1:{bridge_port}/listingapi/ws/IndividualProductOptionService"
        for size in sizes:
            answers = size.startswith("answer-")
            target = SIZES[size.removeprefix("answer-")]
            if target > 100_000 and FRESH:
                # A large size's memory is measured on a bridge that has served nothing else:
                # what earlier sizes left the allocator holding is not this size's (BENCH_FRESH=0
                # keeps one bridge for every size, as a long-lived process mixing sizes is).
                bridge.send_signal(signal.SIGTERM)
                bridge.wait(30)
                procs.remove(bridge)
                bridge, bridge_port = start_bridge(work, backend_port, "bridge", True, {"SOAPBRIDGE_LOG": "warn"})
                procs.append(bridge)
                service_url = f"http://127.0.0.1:{bridge_port}/listingapi/ws/IndividualProductOptionService"
                time.sleep(0.5)
                idle_mb = rss_mb(bridge.pid, "VmRSS:")
            if answers:
                operation, proxy_path, proxy_status = "getOptionFeaturesInfo", "/v1/products/option-features:search", 200
                n = products_for(target, service_url, now, signature)
                ids = list(range(FIRST_GENERATED, FIRST_GENERATED + n))
                soap_body = envelope(n, now, signature, operation, ids)
                json_body = json.dumps({"product_ids": ids}, separators=(",", ":"))
            else:
                operation, proxy_path, proxy_status = "calculateOptionsPrice", "/v1/vouchers", 201
                n = items_for(target)
                soap_body = envelope(n, now, signature)
                json_body = json.dumps({"product_ids": [int(PRODUCT)] * n}, separators=(",", ":"))
            soap_file, json_file = os.path.join(work, f"{size}.xml"), os.path.join(work, f"{size}.json")
            with open(soap_file, "w") as f:
                f.write(soap_body)
            with open(json_file, "w") as f:
                f.write(json_body)
            # Large messages: fewer connections, so that what is in flight stays bounded.
            conns = CONNECTIONS if target <= 100_000 else max(2, CONNECTIONS // (16 if target <= 1_000_000 else 64))
            paths = {
                "proxy": (f"http://127.0.0.1:{proxy_port}{proxy_path}", json_file, "application/json", None,
                          proxy_status, proxy),
                "bridge": (service_url, soap_file, "text/xml; charset=utf-8", FIXTURE_AUTH, 200, bridge),
            }
            # Peak RSS per size: the kernel's high-water mark is reset before the size's rounds,
            # once the allocator has had time to give back what the last size freed (mimalloc
            # keeps freed pages for a second before it returns them).
            time.sleep(1.5)
            counts(bridge_port)
            # What the earlier sizes left the bridge holding (mimalloc returns freed pages only
            # when it is next used): printed beside the peak, not counted against the target.
            before_mb = rss_mb(bridge.pid, "VmRSS:")
            for proc in (proxy, bridge):
                with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
                    f.write("5")
            acc = {p: {"requests": 0, "p50": [], "p99": [], "cpu": 0.0, "backend_cpu": 0.0, "busy": [0, 0],
                       "answer_bytes": 0} for p in paths}
            for rnd in range(ROUNDS):
                order = ["proxy", "bridge"] if rnd % 2 == 0 else ["bridge", "proxy"]
                for p in order:
                    url, body, ct, auth, status, proc = paths[p]
                    before = counts(bridge_port, operation) if p == "bridge" else (0, 0)
                    cpu0, backend0, busy0 = cpu_seconds(proc.pid), cpu_seconds(backend.pid), machine_busy()
                    r = oha(url, body, ct, auth, conns, status)
                    cpu = cpu_seconds(proc.pid) - cpu0
                    backend_cpu = cpu_seconds(backend.pid) - backend0
                    busy1 = machine_busy()
                    if p == "bridge":
                        after = counts(bridge_port, operation)
                        ok, total = after[0] - before[0], after[1] - before[1]
                        # Every call the bridge answered succeeded; oha saw all of them but those
                        # still in flight when its time ran out (at most one per connection).
                        if ok != total or not 0 <= ok - r["requests"] <= conns:
                            sys.exit(f"bridge: {total - ok} calls were not successes; oha got {r['requests']} answers 200, the bridge answered {ok}")
                    a = acc[p]
                    a["requests"] += r["requests"]
                    a["p50"].append(r["p50"])
                    a["p99"].append(r["p99"])
                    a["cpu"] += cpu
                    a["backend_cpu"] += backend_cpu
                    a["busy"][0] += busy1[0] - busy0[0]
                    a["busy"][1] += busy1[1] - busy0[1]
                    a["answer_bytes"] = max(a["answer_bytes"], r["answer_bytes"])
            results[size] = {
                "items": n, "soap_bytes": len(soap_body), "json_bytes": len(json_body), "connections": conns,
                "soap_answer_bytes": acc["bridge"]["answer_bytes"], "json_answer_bytes": acc["proxy"]["answer_bytes"],
                "bridge_rss_before_mb": before_mb, "bridge_idle_mb": idle_mb,
                **{p: {"rps": a["requests"] / (SECS * ROUNDS),
                       "p50_ms": sorted(a["p50"])[len(a["p50"]) // 2] * 1000,
                       "p99_ms": max(a["p99"]) * 1000,
                       "cpu_ms_per_call": a["cpu"] * 1000 / max(1, a["requests"]),
                       "backend_cpu_ms_per_call": a["backend_cpu"] * 1000 / max(1, a["requests"]),
                       "machine_busy": a["busy"][0] / max(1, a["busy"][1]),
                       "rss_mb": rss_mb(paths[p][5].pid, "VmRSS:"),
                       "hwm_mb": rss_mb(paths[p][5].pid, "VmHWM:")} for p, a in acc.items()},
            }
            r = results[size]
            print(f"\n{size}: {operation}, {n} product ids; SOAP request {len(soap_body):,} B, answer {r['soap_answer_bytes']:,} B; "
                  f"JSON request {len(json_body):,} B, answer {r['json_answer_bytes']:,} B; {conns} connections", flush=True)
            print("| path | requests/s | p50 | p99 | CPU per call | backend CPU per call | machine busy | RSS (peak) |")
            print("|---|---|---|---|---|---|---|---|")
            for p in paths:
                x = r[p]
                print(f"| {p} | {x['rps']:.0f} | {x['p50_ms']:.2f} ms | {x['p99_ms']:.2f} ms | {x['cpu_ms_per_call']:.3f} ms | "
                      f"{x['backend_cpu_ms_per_call']:.3f} ms | {x['machine_busy'] * 100:.0f}% | {x['rss_mb']:.1f} MB ({x['hwm_mb']:.1f} MB) |")
            print(f"bridge/proxy: throughput {r['bridge']['rps'] / r['proxy']['rps']:.2f}, p99 {r['bridge']['p99_ms'] / r['proxy']['p99_ms']:.2f}x")
        print("\nTargets (ratios in this run):")
        for size in ("1k", "100k", "answer-1k", "answer-100k"):
            if size in results:
                ratio = results[size]["bridge"]["rps"] / results[size]["proxy"]["rps"]
                p99 = results[size]["bridge"]["p99_ms"] / results[size]["proxy"]["p99_ms"]
                print(f"- {size}: bridge/pass-through {ratio:.2f} (>= 0.80: {'met' if ratio >= 0.8 else 'NOT met'}); "
                      f"p99 {p99:.2f}x the pass-through's (<= 2x: {'met' if p99 <= 2 else 'NOT met'})")
        for small, large, field in (("1k", "100k", "soap_bytes"), ("answer-1k", "answer-100k", "soap_answer_bytes")):
            if small in results and large in results:
                bps = lambda s: results[s]["bridge"]["rps"] * results[s][field]
                share = bps(large) / bps(small)
                print(f"- byte throughput at {large} = {share:.1f}x that at {small} (>= 0.5: {'met' if share >= 0.5 else 'NOT met'})")
        big = [s for s in ("1m", "10m", "answer-1m", "answer-10m") if s in results]
        for s in big:
            r = results[s]
            per_call_mb = max(r["soap_bytes"], r["soap_answer_bytes"]) / 1e6
            limit = r["bridge_idle_mb"] + 4 * per_call_mb * r["connections"]
            print(f"- {s}: bridge peak RSS {r['bridge']['hwm_mb']:.0f} MB with {r['connections']} calls of {per_call_mb:.1f} MB in flight "
                  f"(<= idle {r['bridge_idle_mb']:.0f} MB + 4x the messages in flight = {limit:.0f} MB: {'met' if r['bridge']['hwm_mb'] <= limit else 'NOT met'}); "
                  f"CPU per call {r['bridge']['cpu_ms_per_call']:.1f} ms; RSS before this size's rounds {r['bridge_rss_before_mb']:.0f} MB, "
                  f"peak {r['bridge']['hwm_mb'] - r['bridge_rss_before_mb']:+.0f} MB over it")
        with open(os.path.join(ROOT, "target", "separate-bench.json"), "w") as f:
            json.dump(results, f, indent=1)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
