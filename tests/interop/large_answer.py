"""What the large-answer interop scripts share (`zeep_large.py`, `xmlrpc_large.py`,
`suds_client.py`): their command line, and the check of the generated products."""

import sys
import traceback


def main_of(argv, run, label):
    """Runs `run(base_url, n)` for `argv` = [script, BASE_URL, N]; prints
    "<label>: N products OK" and returns 0 when every check passes."""
    if len(argv) != 3:
        print(f"usage: {argv[0]} BASE_URL N", file=sys.stderr)
        return 2
    try:
        n = run(argv[1].rstrip("/"), int(argv[2]))
    except AssertionError as e:
        print(f"{label} FAILED: {e}", file=sys.stderr)
        return 1
    except Exception:
        print(f"{label} FAILED with an exception:", file=sys.stderr)
        traceback.print_exc()
        return 1
    print(f"{label}: {n} products OK")
    return 0


def check_products(label, count, products, n, field, options_of):
    """The answer's `count` and `products` are the N generated ones (product i: id 1000 + i,
    title "Ürün i <&>", two options, the second at 12.5), in order and typed; `field(p, name)`
    reads a product's or an option's field, `options_of(p)` a product's options."""
    assert count == n, f"{label}: productCount {count!r} != {n}"
    assert len(products) == n, f"{label}: {len(products)} products, expected {n}"
    for i, p in enumerate(products):
        pid = field(p, "productId")
        assert isinstance(pid, int) and not isinstance(pid, bool), f"{label}: productId {pid!r}"
        assert pid == 1000 + i, f"{label}: product {i} has id {pid!r}"
        title = field(p, "productTitle")
        assert title == f"Ürün {i} <&>", f"{label}: product {i}: {title!r}"
        options = options_of(p)
        assert len(options) == 2, f"{label}: product {i}: {options}"
        price = field(options[1], "price")
        assert isinstance(price, float) and abs(price - 12.5) < 1e-9, f"{label}: product {i} price {price!r}"
