#!/usr/bin/env python3
"""Interop test: drive soapbridge with suds (suds-community), the older Python SOAP client that
integrations written before zeep still use.

    python3 tests/interop/suds_client.py http://127.0.0.1:8080
    python3 tests/interop/suds_client.py http://127.0.0.1:8080 large N

The first form expects a bridge started from demo/soapbridge.toml with a FRESH bundled
reference backend (a voucher is paid). suds loads the WSDLs (and the schema they import) from
the bridge with HTTP Basic as its only set-up, and calls the option and payment services: the
answers must come back typed as the WSDL says, a business failure as ackCode "failure" with its
code, and an operation-level fault as suds' WebFault with the bridge's text.

The second form expects a bridge whose product-options backend answers getOptionFeaturesInfo
with N generated products (as `zeep_large.py` describes), sent while it is written (chunked):
every product must come back in order and typed.
Exits 0 and prints "suds interop: N calls OK" (or "suds large answer: N products OK").
"""

import sys
import traceback

from suds import WebFault
from suds.client import Client

from large_answer import check_products
from zeep_client import API_KEY, EXPIRED_TIME, OPTION_SERVICE, PAYMENT_SERVICE, ROLE_PASSWORD, \
    ROLE_USER, SECRET, Signer, check_close, check_type


def client(base_url, service):
    return Client(f"{base_url}/listingapi/ws/{service}?wsdl", username=ROLE_USER,
                  password=ROLE_PASSWORD, cache=None, timeout=30)


def check_success(label, r):
    assert r is not None, f"{label}: no result"
    assert r.ackCode == "success", f"{label}: ackCode {r.ackCode!r}, error {getattr(r, 'error', None)}"
    assert getattr(r, "error", None) is None, f"{label}: success with an error element: {r.error}"


def check_failure(label, r, code):
    assert r.ackCode == "failure", f"{label}: expected ackCode 'failure', got {r}"
    assert r.error.errorCode == code, f"{label}: expected errorCode {code!r}, got {r.error.errorCode!r}"


def products_of(label, r):
    products = r.products.product
    check_type(f"{label}: products.product", products, list)
    return products


def run(base_url):
    option = client(base_url, OPTION_SERVICE).service
    payment = client(base_url, PAYMENT_SERVICE).service
    signer = Signer(API_KEY, SECRET)
    n = 0

    label = "getOptionFeaturesInfo"
    r = option.getOptionFeaturesInfo(**signer.fresh(), productIds={"item": [587300354]}, lang="en")
    n += 1
    check_success(label, r)
    products = products_of(label, r)
    assert len(products) == 1, f"{label}: {products}"
    p = products[0]
    check_type(f"{label}: productId", p.productId, int)
    assert p.productId == 587300354, f"{label}: productId {p.productId!r}"
    assert p.productTitle == "Kırmızı Deri Cüzdan", f"{label}: productTitle {p.productTitle!r}"
    o = p.optionFeatures.optionFeature[0]
    check_type(f"{label}: optionId", o.optionId, int)
    check_close(f"{label}: price", o.price, 0.01)
    assert o.paid is False, f"{label}: paid {o.paid!r}"

    label = "calculateOptionsPrice"
    r = option.calculateOptionsPrice(**signer.fresh(), productIds={"item": [587300354, 587300355]}, lang="en")
    n += 1
    check_success(label, r)
    check_close(f"{label}: price", r.price, 0.02)
    assert r.payRequired is True, f"{label}: payRequired {r.payRequired!r}"
    assert r.productCount == 2, f"{label}: productCount {r.productCount!r}"
    voucher = str(r.paymentVoucher)
    assert voucher.startswith("FT-"), f"{label}: paymentVoucher {voucher!r}"

    card = dict(paymentVoucher=voucher, ccOwnerName="Ayşe", ccOwnerSurname="Yılmaz",
                ccNumber="4111111111111111", cvv="123", expireMonth="12", expireYear="2099")
    label = "payPrice"
    r = option.payPrice(**signer.fresh(), **card, lang="en")
    n += 1
    check_success(label, r)
    check_close(f"{label}: price", r.price, 0.02)

    label = "payPrice (again)"
    r = option.payPrice(**signer.fresh(), **card, lang="en")
    n += 1
    check_failure(label, r, "VOUCHER_ALREADY_PAID")

    label = "Payment calculateOptionsPrice (expired time)"
    r = payment.calculateOptionsPrice(**signer.sign(EXPIRED_TIME),
                                      productIds={"item": [587300354, 587300355]}, lang="tr")
    n += 1
    check_failure(label, r, "TIME_EXPIRED")
    assert "çok eski" in r.error.message, f"{label}: message {r.error.message!r}"

    # A product list the bridge cannot read as the WSDL says (not an integer): a SOAP fault
    # from the bridge, which suds raises as WebFault with the bridge's text.
    label = "calculateOptionsPrice (not an integer)"
    n += 1
    try:
        r = option.calculateOptionsPrice(**signer.fresh(), productIds={"item": ["twelve"]}, lang="en")
    except WebFault as f:
        text = str(f.fault.faultstring)
        assert "twelve" in text or "item" in text, f"{label}: the fault does not say what is wrong: {text!r}"
    else:
        raise AssertionError(f"{label}: answered instead of a fault: {r}")
    return f"suds interop: {n} calls OK"


def run_large(base_url, n):
    option = client(base_url, OPTION_SERVICE).service
    label = "getOptionFeaturesInfo (large)"
    r = option.getOptionFeaturesInfo(**Signer(API_KEY, SECRET).fresh(), productIds={"item": [587300354]},
                                     lang="en")
    check_success(label, r)
    check_products(label, r.productCount, products_of(label, r), n, getattr,
                   lambda p: p.optionFeatures.optionFeature)
    return f"suds large answer: {n} products OK"


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "large"):
        print(f"usage: {argv[0]} BASE_URL [large N]", file=sys.stderr)
        return 2
    base_url = argv[1].rstrip("/")
    try:
        print(run_large(base_url, int(argv[3])) if len(argv) == 4 else run(base_url))
    except AssertionError as e:
        print(f"suds interop FAILED: {e}", file=sys.stderr)
        return 1
    except Exception:
        print("suds interop FAILED with an exception:", file=sys.stderr)
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
