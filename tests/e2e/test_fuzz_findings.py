"""What the fuzzers found (tests/fuzz), replayed as a user would meet it.

Under `make check` opsnctl carries ASan: a leak or a sanitizer report on
its stderr fails these tests.
"""
import os

SANITIZER = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
             "runtime error:")


def clean(r):
    for marker in SANITIZER:
        assert marker not in r.stderr, r.stderr


def test_tariff_file_with_two_errors_names_the_first(controller, workdir):
    # fuzz_tariff: the second error's message replaced (and leaked) the
    # first while inih reported the first one's line.
    path = os.path.join(workdir, "bad.ini")
    with open(path, "w") as f:
        f.write("[tariff]\nnom = standard\n[planets]\nmars = 1\n")
    r = controller.opsnctl("tariff", "add", "--file", path, check=False)
    assert r.returncode != 0
    assert ":2: [tariff]: unknown key 'nom'" in r.stderr, r.stderr
    clean(r)
