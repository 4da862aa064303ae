#!/usr/bin/env python3
"""Interop test: drive soapbridge's winstrom door with python-abraflexi, the Python client
ABRA Flexi integrations use, unmodified.

    pip install -r tests/requirements.txt
    python3 tests/interop/abraflexi_client.py http://127.0.0.1:8080

Expects a bridge started from demo/soapbridge.toml with a FRESH bundled flexi reference backend
(fixtures/reference/flexi.json): the calls below create, change and delete a price-list item
and recalculate a bill of materials.

The library is used as its README shows: options with url, company, user and password (HTTP
Basic), or a session from its login() (X-authSessionId). One object per call, because the
library keeps order, limit, detail and filter on the object for every later request.
Exits 0 and prints "abraflexi interop: N calls OK" when every check passes.
"""

import sys
import traceback

from python_abraflexi import ReadOnly, ReadWrite
from python_abraflexi.exceptions import (AbraFlexiException, AuthenticationException,
                                        NotFoundException)

BASE = sys.argv[1].rstrip("/")
USER, PASSWORD = "winstrom", "winstrom-pass"


def opts(evidence, **extra):
    return {"url": BASE, "company": "demo", "user": USER, "password": PASSWORD,
            "evidence": evidence, "timeout": 10, **extra}


calls = 0


def check(what, cond, detail=""):
    if not cond:
        raise AssertionError(f"{what}: {detail}")


def step(f):
    """Runs a check as soon as it is defined, in file order; the first failure ends the run."""
    global calls
    try:
        f()
    except Exception:
        print(f"FAILED  {f.__name__}")
        traceback.print_exc()
        sys.exit(1)
    calls += 1
    print(f"ok  {f.__name__}")


created = {}


@step
def list_with_order_limit_and_detail():
    o = ReadOnly(None, opts("cenik"))
    o.set_order("cenaZakl", "D")
    o.set_limit(3)
    o.set_start(0)
    o.set_detail("custom:id,kod,cenaZakl")
    o.set_add_row_count()
    rows = o.get_all_from_abraflexi()
    check("three rows", isinstance(rows, list) and len(rows) == 3, rows)
    check("only the properties asked for", all(set(r) <= {"id", "kod", "cenaZakl"} for r in rows), rows)
    prices = [float(r["cenaZakl"]) for r in rows]
    check("ordered by price, highest first", prices == sorted(prices, reverse=True), prices)
    check("row count of the whole evidence", int(o.row_count) >= 10, o.row_count)


@step
def list_the_next_page_in_name_order():
    first = ReadOnly(None, opts("cenik"))
    first.set_order("nazev", "A")
    first.set_limit(2)
    first.set_detail("summary")
    page1 = first.get_all_from_abraflexi()
    second = ReadOnly(None, opts("cenik"))
    second.set_order("nazev", "A")
    second.set_limit(2)
    second.set_start(2)
    second.set_detail("summary")
    page2 = second.get_all_from_abraflexi()
    names = [r["nazev"] for r in page1 + page2]
    check("four names", len(names) == 4, names)
    check("in order across pages", names == sorted(names), names)
    check("summary has no prices", all("cenaZakl" not in r for r in page1), page1)


@step
def properties():
    props = ReadOnly(None, opts("cenik")).get_properties()
    names = [p["propertyName"] for p in props["properties"]["property"]]
    check("configured properties", names[:3] == ["id", "kod", "nazev"], names)
    kod = next(p for p in props["properties"]["property"] if p["propertyName"] == "kod")
    check("label and type", kod["name"] == "Zkratka" and kod["type"] == "string", kod)


@step
def create():
    o = ReadWrite(None, opts("cenik"))
    o.insert_to_abraflexi({"kod": "PYFLEXI-1", "nazev": "Python item", "nakupCena": "8.00",
                           "cenaZakl": "10.50", "mj1": "ks"})
    check("an id", isinstance(o.last_inserted_id, int) and o.last_inserted_id > 0, o.last_inserted_id)
    created["id"] = o.last_inserted_id


@step
def update():
    o = ReadWrite(None, opts("cenik"))
    result = o.update({"id": created["id"], "nazev": "Python item, renamed"})
    check("a result for the record", result and str(result[0]["id"]) == str(created["id"]), result)


@step
def read_by_code():
    o = ReadOnly("code:PYFLEXI-1", opts("cenik"))
    data = o.get_data()
    check("the renamed record", data.get("nazev") == "Python item, renamed", data)


@step
def action_on_a_record_by_url():
    o = ReadWrite("123", opts("kusovnik", autoload=False))
    result = o.perform_action("prepocti-prodejni-cenu")
    check("the bill's result", result and str(result[0]["id"]) == "123", result)


@step
def filter():
    o = ReadOnly(None, opts("cenik", filter="kod begins 'PYFLEXI'", detail="custom:id,kod"))
    rows = o.get_all_from_abraflexi()
    check("the created record only", [r["kod"] for r in rows] == ["PYFLEXI-1"], rows)


@step
def a_bad_filter_is_an_error():
    o = ReadOnly(None, opts("cenik", filter="kod begins"))
    try:
        o.get_all_from_abraflexi()
    except AbraFlexiException as e:
        check("HTTP 400 with the position", "400" in str(e), str(e))
        return
    raise AssertionError("a bad filter was accepted")


@step
def a_session_from_login():
    o = ReadOnly(None, opts("cenik"))
    check("logged in", o.login(USER, PASSWORD) is True)
    token = o.auth_session_id
    # A client holding only the session: no user, no password.
    s = ReadOnly(None, {"url": BASE, "company": "demo", "authSessionId": token,
                        "evidence": "cenik", "timeout": 10})
    s.set_limit(1)
    s.set_detail("id")
    rows = s.get_all_from_abraflexi()
    check("reads with the session", len(rows) == 1 and set(rows[0]) == {"id"}, rows)
    check("logged out", o.logout(USER) is not False)
    try:
        ReadOnly(None, {"url": BASE, "company": "demo", "authSessionId": token,
                        "evidence": "cenik", "timeout": 10}).get_all_from_abraflexi()
    except AuthenticationException:
        return
    raise AssertionError("the session still worked after logout")


@step
def delete():
    ok = ReadWrite(None, opts("cenik")).delete(created["id"])
    check("deleted", ok is True, ok)
    try:
        ReadOnly("code:PYFLEXI-1", opts("cenik"))
    except NotFoundException:
        return
    raise AssertionError("the record is still there")


print(f"abraflexi interop: {calls} calls OK")
