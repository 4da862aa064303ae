#!/usr/bin/env python3
"""Interop test: drive soapbridge with zeep, an unmodified third-party SOAP client.

    pip install -r tests/requirements.txt
    python3 tests/interop/zeep_client.py http://127.0.0.1:8080

Expects a bridge started from demo/soapbridge.toml with a FRESH bundled reference backend
(fixtures/reference/product-options.json): the calls below change its state (an option is
added and removed, a voucher is paid), so a second run against the same bridge fails.

zeep is used as any client would use it: the WSDLs (and the listingapi-common.xsd they import)
are loaded from the bridge, and the only set-up is HTTP Basic auth on the requests session.
Exits 0 and prints "zeep interop: N calls OK" when every check passes.
"""

import hashlib
import sys
import time
import traceback

import requests
import zeep
import zeep.exceptions
from zeep.transports import Transport

API_KEY = "NjgEHGeJc6cFqbw6FSUP8NpH3pUhV7ss"
SECRET = "demo-secret-change-me"
ROLE_USER = "demo"
ROLE_PASSWORD = "demo-role-pass"

OPTION_SERVICE = "IndividualProductOptionService"
PAYMENT_SERVICE = "IndividualProductPaymentService"

EXPIRED_TIME = 1597746714261  # the seed document's call: years outside the time window


class Signer:
    """apiKey/sign/time for each call. The bridge refuses a reused (apiKey, sign, time), so
    every call gets a time strictly later than the previous one, even within one millisecond."""

    def __init__(self, api_key, secret):
        self.api_key = api_key
        self.secret = secret
        self.last = 0

    def sign(self, t):
        digest = hashlib.md5((self.api_key + self.secret + str(t)).encode("utf-8")).hexdigest()
        return {"apiKey": self.api_key, "sign": digest, "time": t}

    def fresh(self):
        t = max(int(time.time() * 1000), self.last + 1)
        self.last = t
        return self.sign(t)


class Calls:
    """Counts the SOAP calls and turns a SOAP fault into a failed check."""

    def __init__(self):
        self.count = 0

    def __call__(self, label, operation, **kwargs):
        self.count += 1
        try:
            return operation(**kwargs)
        except zeep.exceptions.Fault as f:
            raise AssertionError(
                f"{label}: SOAP fault {f.code!r}: {f.message!r} (detail: {_detail(f)})"
            ) from None


def _detail(fault):
    if fault.detail is None:
        return None
    from lxml import etree

    return etree.tostring(fault.detail, encoding="unicode")


def check_type(label, value, expected):
    # bool is an int in Python: an int field must not come back as a bool, nor the reverse.
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    assert ok, f"{label}: expected {expected.__name__}, got {type(value).__name__} {value!r}"


def check_close(label, value, expected):
    check_type(label, value, float)
    assert abs(value - expected) < 1e-9, f"{label}: expected {expected!r}, got {value!r}"


def check_success(label, result):
    assert result is not None, f"{label}: no result"
    assert result.ackCode == "success", (
        f"{label}: ackCode {result.ackCode!r}, error {result.error}"
    )
    assert result.error is None, f"{label}: success with an error element: {result.error}"


def check_failure(label, result, error_code):
    assert result is not None, f"{label}: no result"
    assert result.ackCode == "failure", f"{label}: expected ackCode 'failure', got {result}"
    assert result.error is not None, f"{label}: failure without an error element: {result}"
    assert result.error.errorCode == error_code, (
        f"{label}: expected errorCode {error_code!r}, got {result.error.errorCode!r} "
        f"({result.error.message!r})"
    )


def products_of(label, result):
    assert result.products is not None, f"{label}: no products element: {result}"
    products = result.products.product
    check_type(f"{label}: products.product", products, list)
    return products


def options_of(label, product):
    """optionFeatures.optionFeature as a list; zeep reads an empty <optionFeatures/> as None."""
    if product.optionFeatures is None:
        return []
    options = product.optionFeatures.optionFeature
    check_type(f"{label}: optionFeatures.optionFeature", options, list)
    return options


def find_product(label, result, product_id):
    for p in products_of(label, result):
        check_type(f"{label}: productId", p.productId, int)
        if p.productId == product_id:
            return p
    raise AssertionError(f"{label}: product {product_id} missing from {result}")


def check_option(label, option, option_id, duration, price, paid):
    check_type(f"{label}: optionId", option.optionId, int)
    check_type(f"{label}: optionName", option.optionName, str)
    check_type(f"{label}: duration", option.duration, int)
    check_type(f"{label}: paid", option.paid, bool)
    assert option.optionId == option_id, f"{label}: optionId {option.optionId!r} != {option_id}"
    assert option.duration == duration, f"{label}: duration {option.duration!r} != {duration}"
    check_close(f"{label}: price", option.price, price)
    assert option.paid is paid, f"{label}: paid {option.paid!r} != {paid}"


def cart_items(product_id, options):
    return {
        "productOptions": {
            "productOption": [
                {
                    "productId": product_id,
                    "productFeatureType": {"optionFeatureType": options},
                }
            ]
        }
    }


def run(base_url):
    session = requests.Session()
    session.auth = (ROLE_USER, ROLE_PASSWORD)
    transport = Transport(session=session)

    option_client = zeep.Client(
        wsdl=f"{base_url}/listingapi/ws/{OPTION_SERVICE}?wsdl", transport=transport
    )
    payment_client = zeep.Client(
        wsdl=f"{base_url}/listingapi/ws/{PAYMENT_SERVICE}?wsdl", transport=transport
    )
    option = option_client.service
    payment = payment_client.service
    option12 = option_client.bind(OPTION_SERVICE, f"{OPTION_SERVICE}Soap12Port")

    signer = Signer(API_KEY, SECRET)
    call = Calls()

    # --- getOptionFeaturesInfo: one product, which must still come back as lists -------------
    label = "getOptionFeaturesInfo"
    r = call(label, option.getOptionFeaturesInfo,
             **signer.fresh(), productIds={"item": [587300354]}, lang="en")
    check_success(label, r)
    check_type(f"{label}: productCount", r.productCount, int)
    assert r.productCount == 1, f"{label}: productCount {r.productCount!r} != 1"
    products = products_of(label, r)
    assert len(products) == 1, f"{label}: expected one product, got {products}"
    p = products[0]
    check_type(f"{label}: productId", p.productId, int)
    assert p.productId == 587300354, f"{label}: productId {p.productId!r}"
    assert p.productTitle == "Kırmızı Deri Cüzdan", f"{label}: productTitle {p.productTitle!r}"
    options = options_of(label, p)
    assert len(options) == 1, f"{label}: expected one option, got {options}"
    check_option(label, options[0], option_id=1, duration=7, price=0.01, paid=False)
    assert options[0].optionName == "Kalın yazı", f"{label}: optionName {options[0].optionName!r}"

    # --- addOptionsToCart: Facebook ad package, 30 days, on a product without options ---------
    label = "addOptionsToCart"
    r = call(label, option.addOptionsToCart,
             **signer.fresh(),
             productsOptionFeature=cart_items(587300358, [{"optionId": 4, "duration": 30}]),
             lang="en")
    check_success(label, r)
    p = find_product(label, r, 587300358)
    added = [o for o in options_of(label, p) if o.optionId == 4]
    assert len(added) == 1, f"{label}: option 4 not on product 587300358: {p}"
    check_option(label, added[0], option_id=4, duration=30, price=99.90, paid=False)

    # --- removeOptionsFromCart: take it off again ---------------------------------------------
    label = "removeOptionsFromCart"
    r = call(label, option.removeOptionsFromCart,
             **signer.fresh(),
             productsOptionFeature=cart_items(587300358, [{"optionId": 4}]),
             lang="en")
    check_success(label, r)
    p = find_product(label, r, 587300358)
    left = [o.optionId for o in options_of(label, p)]
    assert 4 not in left, f"{label}: option 4 still on product 587300358: {p}"

    # --- calculateOptionsPrice: the unpaid options of two products ----------------------------
    label = "calculateOptionsPrice"
    r = call(label, option.calculateOptionsPrice,
             **signer.fresh(), productIds={"item": [587300354, 587300355]}, lang="en")
    check_success(label, r)
    check_close(f"{label}: price", r.price, 0.02)
    check_type(f"{label}: payRequired", r.payRequired, bool)
    assert r.payRequired is True, f"{label}: payRequired {r.payRequired!r}"
    check_type(f"{label}: productCount", r.productCount, int)
    assert r.productCount == 2, f"{label}: productCount {r.productCount!r} != 2"
    check_type(f"{label}: paymentVoucher", r.paymentVoucher, str)
    assert r.paymentVoucher.startswith("FT-"), f"{label}: paymentVoucher {r.paymentVoucher!r}"
    voucher = r.paymentVoucher

    card = {
        "paymentVoucher": voucher,
        "ccOwnerName": "Ayşe",
        "ccOwnerSurname": "Yılmaz",
        "ccNumber": "4111111111111111",
        "cvv": "123",
        "expireMonth": "12",
        "expireYear": "2099",
    }

    # --- payPrice: pay the voucher ------------------------------------------------------------
    label = "payPrice"
    r = call(label, option.payPrice, **signer.fresh(), **card, lang="en")
    check_success(label, r)
    assert r.paymentVoucher == voucher, f"{label}: paymentVoucher {r.paymentVoucher!r} != {voucher!r}"
    check_close(f"{label}: price", r.price, 0.02)
    check_type(f"{label}: paymentId", r.paymentId, str)
    assert r.cardNumber is None or r.cardNumber.endswith("1111"), f"{label}: cardNumber {r.cardNumber!r}"

    # --- payPrice again: a voucher is paid once -----------------------------------------------
    label = "payPrice (again)"
    r = call(label, option.payPrice, **signer.fresh(), **card, lang="en")
    check_failure(label, r, "VOUCHER_ALREADY_PAID")

    # --- Payment service: nothing to pay on a product without options -------------------------
    label = "Payment calculateOptionsPrice"
    r = call(label, payment.calculateOptionsPrice,
             **signer.fresh(), productIds={"item": [587300357]}, lang="en")
    check_success(label, r)
    check_close(f"{label}: price", r.price, 0.0)
    check_type(f"{label}: payRequired", r.payRequired, bool)
    assert r.payRequired is False, f"{label}: payRequired {r.payRequired!r}"

    # --- Payment service: a correctly signed call with a time long past, in Turkish -----------
    label = "Payment calculateOptionsPrice (expired time)"
    r = call(label, payment.calculateOptionsPrice,
             **signer.sign(EXPIRED_TIME), productIds={"item": [587300354, 587300355]}, lang="tr")
    check_failure(label, r, "TIME_EXPIRED")
    check_type(f"{label}: error.message", r.error.message, str)
    assert "çok eski" in r.error.message, f"{label}: message {r.error.message!r}"

    # --- SOAP 1.2 port: an already paid product -----------------------------------------------
    label = "SOAP 1.2 calculateOptionsPrice"
    r = call(label, option12.calculateOptionsPrice,
             **signer.fresh(), productIds={"item": [587300356]}, lang="en")
    check_success(label, r)
    check_type(f"{label}: payRequired", r.payRequired, bool)
    assert r.payRequired is False, f"{label}: payRequired {r.payRequired!r}"

    return call.count


def main(argv):
    if len(argv) != 2:
        print(f"usage: {argv[0]} BASE_URL   (e.g. http://127.0.0.1:8080)", file=sys.stderr)
        return 2
    base_url = argv[1].rstrip("/")
    try:
        n = run(base_url)
    except AssertionError as e:
        print(f"zeep interop FAILED: {e}", file=sys.stderr)
        return 1
    except Exception:
        print("zeep interop FAILED with an exception:", file=sys.stderr)
        traceback.print_exc()
        return 1
    print(f"zeep interop: {n} calls OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
