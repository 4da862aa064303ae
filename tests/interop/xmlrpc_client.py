#!/usr/bin/env python3
"""Interop test: drive soapbridge's XML-RPC door with Python's standard xmlrpc.client.

    python3 tests/interop/xmlrpc_client.py http://127.0.0.1:8080

Expects a bridge started from demo/soapbridge.toml with FRESH bundled reference backends: the
calls change their state. Covers the signed product-option services, the DİA ERP service and
the Datawiz inventory service. Uses the strict seed account, so every call is signed with a new
time, exactly as a client of the legacy service would do it. ServerProxy is used as is: HTTP
Basic credentials in the URL, methods called as attributes, MultiCall for system.multicall.
Exits 0 and prints "xmlrpc interop: N calls OK" when every check passes.
"""

import hashlib
import sys
import time
import traceback
import xmlrpc.client

API_KEY = "NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss"
SECRET = "demo-secret-change-me"


class Signer:
    """apiKey/sign/time for each call; each time strictly later than the last, as the bridge
    refuses a reused signature. Python cannot send a 13-digit int as an XML-RPC int (it exceeds
    i4), so time travels as a string of digits, which the bridge accepts for xs:long."""

    def __init__(self):
        self.last = 0

    def __call__(self):
        t = max(int(time.time() * 1000), self.last + 1)
        self.last = t
        sign = hashlib.md5((API_KEY + SECRET + str(t)).encode()).hexdigest()
        return API_KEY, sign, str(t)


def main(base):
    server = xmlrpc.client.ServerProxy(
        base.replace("http://", "http://demo:demo-role-pass@") + "/RPC2"
    )
    signed = Signer()
    calls = 0

    def check(cond, what):
        if not cond:
            raise AssertionError(what)

    methods = server.system.listMethods()
    calls += 1
    for svc in ("IndividualProductOptionService", "IndividualProductPaymentService"):
        for op in ("calculateOptionsPrice", "getOptionFeaturesInfo", "addOptionsToCart",
                   "removeOptionsFromCart", "payPrice"):
            check(f"{svc}.{op}" in methods, f"{svc}.{op} listed")
    for m in ("system.multicall", "system.methodHelp", "system.methodSignature"):
        check(m in methods, f"{m} listed")

    sig = server.system.methodSignature("IndividualProductOptionService.calculateOptionsPrice")
    calls += 1
    check(sig == [["struct", "string", "string", "i8", "array", "string"]], f"signature {sig}")
    helptext = server.system.methodHelp("IndividualProductOptionService.payPrice")
    calls += 1
    check("paymentVoucher" in helptext, "methodHelp names the parameters")

    opt = server.IndividualProductOptionService
    pay = server.IndividualProductPaymentService

    info = opt.getOptionFeaturesInfo(*signed(), [587300354, 587300356], "en")
    calls += 1
    check(info["ackCode"] == "success", info)
    check(isinstance(info["productCount"], int) and info["productCount"] == 2, info)
    first = info["products"][0]
    check(isinstance(first["optionFeatures"], list), "one-item arrays stay arrays")
    check(isinstance(first["optionFeatures"][0]["price"], float), "price is a double")
    check(isinstance(first["optionFeatures"][0]["paid"], bool), "paid is a boolean")

    # A struct keyed by part names, nested arrays of structs.
    added = opt.addOptionsToCart({
        **dict(zip(("apiKey", "sign", "time"), signed())),
        "productsOptionFeature": {"productOptions": [
            {"productId": 587300357, "productFeatureType": [{"optionId": 3, "duration": 7}]}]},
        "lang": "tr",
    })
    calls += 1
    check(added["ackCode"] == "success", added)

    removed = opt.removeOptionsFromCart(*signed(), {"productOptions": [
        {"productId": 587300357, "productFeatureType": [{"optionId": 3}]}]}, "en")
    calls += 1
    check(removed["ackCode"] == "success", removed)

    price = opt.calculateOptionsPrice(*signed(), [587300354, 587300355], "tr")
    calls += 1
    check(price["ackCode"] == "success" and price["payRequired"] is True, price)
    check(isinstance(price["price"], float) and abs(price["price"] - 0.02) < 1e-9, price)
    voucher = price["paymentVoucher"]

    paid = pay.payPrice(*signed(), voucher, "Ayşe", "Yılmaz", "4111111111111111", "123", 12, 2099, "en")
    calls += 1
    check(paid["paymentVoucher"] == voucher, paid)
    check(paid["cardNumber"].endswith("1111") and "4111111111111111" not in str(paid), paid)

    # Failures are faults with the profile's errorId and text in the caller's language.
    try:
        pay.payPrice(*signed(), voucher, "Ayşe", "Yılmaz", "4111111111111111", "123", 12, 2099, "tr")
        raise AssertionError("a second payment must fail")
    except xmlrpc.client.Fault as f:
        calls += 1
        check(f.faultCode == 2008 and "daha önce ödenmiş" in f.faultString, f)
    try:
        key, _, t = signed()
        opt.calculateOptionsPrice(key, "0" * 32, t, [587300354], "en")
        raise AssertionError("a bad signature must fail")
    except xmlrpc.client.Fault as f:
        calls += 1
        check(f.faultCode == 1001 and "sign" in f.faultString, f)
    try:
        opt.nope()
        raise AssertionError("an unknown method must fail")
    except xmlrpc.client.Fault as f:
        calls += 1
        check(f.faultCode == -32601, f)

    # system.multicall: each call answered on its own.
    multi = xmlrpc.client.MultiCall(server)
    multi.IndividualProductPaymentService.getOptionFeaturesInfo(*signed(), [587300358], "tr")
    multi.IndividualProductPaymentService.calculateOptionsPrice(API_KEY, "bad", signed()[2], [1], "en")
    multi.system.listMethods()
    results = multi()
    calls += 1
    check(results[0]["ackCode"] == "success", "first multicall result")
    try:
        results[1]
        raise AssertionError("the second multicall entry must be a fault")
    except xmlrpc.client.Fault as f:
        check(f.faultCode == 1001, f)
    check("system.multicall" in results[2], "third multicall result")

    # Wrong Basic credentials: a fault, not an HTTP error.
    bad = xmlrpc.client.ServerProxy(base.replace("http://", "http://demo:wrong@") + "/RPC2")
    try:
        bad.IndividualProductOptionService.calculateOptionsPrice(*signed(), [1], "en")
        raise AssertionError("wrong credentials must fail")
    except xmlrpc.client.Fault as f:
        calls += 1
        check(f.faultCode == 1000, f)

    # The DİA ERP and Datawiz inventory services: dates, decimals and lookups over XML-RPC.
    erp = xmlrpc.client.ServerProxy(base.replace("http://", "http://erp:erp-pass@") + "/RPC2")
    note = erp.DiaErpService.gts_notlar_ekle({
        "_key_scf_carikart": {"carikartkodu": "0000008"},
        "konu": "XML-RPC notu", "harcananzaman": "15.00", "harcananzamanturu": "D",
        "tarih": xmlrpc.client.DateTime("20240502T00:00:00"),
    })
    calls += 1
    check(isinstance(note["key"], int) and note["key"] >= 330389, note)
    check("«2024-05-02» tarihli «Görev Notu»" in note["message"], note)
    try:
        erp.DiaErpService.scf_carikart_ekle({"carikartkodu": "X9", "unvan": "A",
                                             "_key_sis_ozelkod2": {"kod": "WS003"}})
        raise AssertionError("a lookup matching two records must fail")
    except xmlrpc.client.Fault as f:
        calls += 1
        check(f.faultCode == 2102 and "Birden fazla kayıt" in f.faultString, f)

    inv = xmlrpc.client.ServerProxy(base.replace("http://", "http://inventory:inventory-pass@") + "/RPC2")
    page = inv.InventoryService.listInventory({"page": 1, "pageSize": 2, "ordering": "date"})
    calls += 1
    check(page["count"] == 11 and page["hasNext"] is True and len(page["records"]) == 2, page)
    first = page["records"][0]
    check(isinstance(first["date"], xmlrpc.client.DateTime) and first["date"].value == "20160607T00:00:00", first)
    check(isinstance(first["qty"], float), first)
    up = inv.InventoryService.uploadInventory([
        {"date": xmlrpc.client.DateTime("20240601T00:00:00"), "shopId": "1", "productId": "P0009",
         "qty": 2.5, "originalPrice": "4.0000"},
        {"date": "2024-06-01", "shopId": "99", "productId": "P0010", "qty": 1},
    ])
    calls += 1
    check(up["ok"] == 1 and up["failed"] == 1, up)
    check(up["results"][1]["errors"][0]["field"] == "shop_id", up)

    print(f"xmlrpc interop: {calls} calls OK")


if __name__ == "__main__":
    try:
        main(sys.argv[1].rstrip("/"))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
