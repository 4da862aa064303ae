#!/usr/bin/env python3
"""Interop test: zeep reads a large answer that the bridge sends while it writes it.

    python3 tests/interop/zeep_large.py http://127.0.0.1:8080 N

Expects a bridge whose product-options backend answers getOptionFeaturesInfo with N generated
products (product i: id 1000 + i, title "Ürün i <&>", two options), large enough that the bridge
streams the answer (chunked, without a Content-Length), and then with such an answer whose
product near the end has a title that is not a string. zeep loads the WSDL from the bridge and
calls the operation as any client would; every product of the first answer must come back, in
order, typed; the second answer, broken off by the bridge, must fail in zeep.
Exits 0 and prints "zeep large answer: N products OK" when every check passes.
"""

import sys

import requests
import zeep
from zeep.transports import Transport

from large_answer import check_products, main_of
from zeep_client import API_KEY, OPTION_SERVICE, ROLE_PASSWORD, ROLE_USER, SECRET, Calls, \
    Signer, check_success, options_of, products_of


def run(base_url, n):
    session = requests.Session()
    session.auth = (ROLE_USER, ROLE_PASSWORD)
    client = zeep.Client(
        wsdl=f"{base_url}/listingapi/ws/{OPTION_SERVICE}?wsdl", transport=Transport(session=session)
    )
    label = "getOptionFeaturesInfo (large)"
    r = Calls()(label, client.service.getOptionFeaturesInfo,
                **Signer(API_KEY, SECRET).fresh(), productIds={"item": [587300354]}, lang="en")
    check_success(label, r)
    products = products_of(label, r)
    check_products(label, r.productCount, products, n, getattr, lambda p: options_of(label, p))
    # The backend's next answer has a title deep in its list that no xsd:string carries: the
    # bridge has begun sending by then, so it breaks the answer off, and zeep must fail on it
    # rather than take the products before it for the whole answer.
    label = "getOptionFeaturesInfo (large, broken late)"
    try:
        r = client.service.getOptionFeaturesInfo(
            **Signer(API_KEY, SECRET).fresh(), productIds={"item": [587300354]}, lang="en")
    except requests.exceptions.ChunkedEncodingError:
        pass
    else:
        raise AssertionError(f"{label}: zeep took a broken answer for a whole one: {r!r:.300}")
    return len(products)


if __name__ == "__main__":
    sys.exit(main_of(sys.argv, run, "zeep large answer"))
