"""Drives NetMoE's dashboard in headless Chromium (Debian's chromium,
through Playwright's DevTools-protocol driver from PyPI).

Usage: dashboard.py BASE_URL API_KEY SCREENSHOT.png [SPKI_SHA256_HEX]
With an https BASE_URL, SPKI_SHA256_HEX is the SHA-256 of the server
certificate's public key: Chromium accepts that key and no other (the
certificate is the cluster CA's, which Chromium's own store does not hold).
Loads the page, waits for the live cluster table, sends the prompt from
the page, and checks the streamed answer, the request's routing and its
cost chart appear; saves a full-page screenshot. Exits non-zero on the
first failed check.
"""

import base64
import json
import shutil
import sys
import time

from playwright.sync_api import sync_playwright

base, key, shot = sys.argv[1], sys.argv[2], sys.argv[3]
pin = sys.argv[4] if len(sys.argv) > 4 else None
chromium = shutil.which("chromium") or shutil.which("chromium-browser")


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}", file=sys.stderr)


check(chromium is not None, "Debian's chromium is installed")
out = {}
with sync_playwright() as p:
    args = ["--no-sandbox"]
    if pin:
        spki = base64.b64encode(bytes.fromhex(pin)).decode()
        args.append(f"--ignore-certificate-errors-spki-list={spki}")
    browser = p.chromium.launch(executable_path=chromium, args=args)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/#key={key}")
    page.wait_for_function("document.querySelectorAll('#nodes tbody tr').length >= 3", timeout=30000)
    if base.startswith("https://"):
        check(page.evaluate("location.protocol") == "https:", "the page came over HTTPS")
        check(page.evaluate("window.isSecureContext"), "the page is a secure context")
    rows = page.locator("#nodes tbody tr").all_inner_texts()
    check(all("yes" in r for r in rows), f"the live cluster shows every node live: {rows}")
    check(page.locator("#curve polyline").count() == 2, "the training curve is drawn")

    t0 = time.monotonic()
    page.click("#send")
    page.wait_for_function("document.querySelector('#answer').textContent.trim().length > 0", timeout=60000)
    out["first_text_s"] = time.monotonic() - t0
    page.wait_for_function("document.querySelector('#answer').dataset.done === '1'", timeout=120000)
    out["done_s"] = time.monotonic() - t0
    answer = page.inner_text("#answer")
    check(len(answer.split()) >= 10, f"the streamed answer appears: {answer[:80]!r}...")
    routing = page.locator("#routing tbody tr").all_inner_texts()
    check(len(routing) >= 2, f"the request's routing appears: {routing}")
    check(all("·" in r for r in routing), "each segment names its node and expert")
    bars = page.locator("#cost-chart rect").count()
    check(bars == 3 * len(routing), f"the cost chart has three bars per segment ({bars})")
    page.wait_for_function("document.querySelectorAll('#recent tbody tr').length >= 1", timeout=10000)
    check(not errors, f"no script errors: {errors}")
    page.screenshot(path=shot, full_page=True)
    browser.close()
print(json.dumps(out))
