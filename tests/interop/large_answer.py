"""The command line of the large-answer interop scripts (`zeep_large.py`, `xmlrpc_large.py`)."""

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
