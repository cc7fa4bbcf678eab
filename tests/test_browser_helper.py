"""The shared headless-Chromium helper (tests/_support/browser.py) sees what a page does.

Page checks of span_tree.html and the compare report rely on it; these tests prove it reports
console errors, uncaught exceptions and network fetches, and stays quiet on a clean page.
"""

from tests._support.browser import load_page


def _page(tmp_path, body: str) -> str:
    path = tmp_path / "page.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")
    return str(path)


def test_clean_page_has_no_errors_and_evaluates(tmp_path):
    page = _page(tmp_path, "<div class='bar'>a</div><div class='bar'>b</div>"
                           "<script>document.title = 'ready';</script>")
    report = load_page(page, wait_for="document.title === 'ready'",
                       evaluate={"bars": "document.querySelectorAll('.bar').length"})
    assert report.loaded and report.ready
    assert report.errors == []
    assert report.external_requests == []
    assert report.values["bars"] == 2


def test_console_error_and_uncaught_exception_are_reported(tmp_path):
    page = _page(tmp_path, "<script>console.error('broken thing'); undefinedFunction();</script>")
    report = load_page(page)
    assert any("broken thing" in e for e in report.errors)
    assert any("undefinedFunction" in e for e in report.errors)


def test_network_fetch_is_reported(tmp_path):
    page = _page(tmp_path, "<script src='https://cdn.example.com/lib.js'></script>")
    report = load_page(page)
    assert report.external_requests == ["https://cdn.example.com/lib.js"]
