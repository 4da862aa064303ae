#!/usr/bin/env python3
"""Interop test: Python's xmlrpc.client reads a large result that the bridge sends while it
writes it (chunked, without a Content-Length), and a MultiCall of large results, whose answer
the bridge sends while it makes the calls.

    python3 tests/interop/xmlrpc_large.py http://127.0.0.1:8080 N

Expects a bridge whose product-options backend answers getOptionFeaturesInfo with N generated
products (product i: id 1000 + i, title "Ürün i <&>", two options). ServerProxy is used as is;
every product must come back, in order, typed, alone and in each of a MultiCall's three results.
Exits 0 and prints
"xmlrpc large result: N products OK" when every check passes.
"""

import sys
import xmlrpc.client

from large_answer import check_products, main_of
from xmlrpc_client import Signer


def run(base, n):
    server = xmlrpc.client.ServerProxy(base.replace("http://", "http://demo:demo-role-pass@") + "/RPC2")
    signed = Signer()
    r = server.IndividualProductOptionService.getOptionFeaturesInfo(*signed(), [587300354], "en")
    assert r["ackCode"] == "success", r
    check_products("getOptionFeaturesInfo (large)", r["productCount"], r["products"], n,
                   lambda p, name: p[name], lambda p: p["optionFeatures"])
    multi = xmlrpc.client.MultiCall(server)
    for _ in range(3):
        multi.IndividualProductOptionService.getOptionFeaturesInfo(*signed(), [587300354], "en")
    results = list(multi())
    assert len(results) == 3, len(results)
    for i, r in enumerate(results):
        assert r["ackCode"] == "success", r
        check_products(f"getOptionFeaturesInfo (multicall {i})", r["productCount"], r["products"],
                       n, lambda p, name: p[name], lambda p: p["optionFeatures"])
    return n


if __name__ == "__main__":
    sys.exit(main_of(sys.argv, run, "xmlrpc large result"))
