"""Great Expectations' Data Docs without the internet.

GX writes each page with about ten stylesheets and scripts from CDNs (Bootstrap, jQuery, bootstrap-table,
Font Awesome, Vega) and its logo from S3. Production databases live where those do not load: the page then
waits on each request and shows an unstyled, half-working table, and every open of it tells the CDNs that
someone looked at a validation. The content itself (suite, expectations, observed values, status) is in the
HTML: this removes every external stylesheet, script and image and puts a small stylesheet of our own in
their place, so a page opened from disk loads nothing from anywhere and reads well. Links a reader clicks
(GX's documentation) stay links.
"""

from __future__ import annotations

import re
from pathlib import Path

EXTERNAL = re.compile(
    r"<link\b[^>]*\bhref=\"https?://[^\"]*\"[^>]*>"             # stylesheets
    r"|<script\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>"  # scripts
    r"|<img\b[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>",              # the logo
    re.IGNORECASE)

STYLE = """<style>/* airmigrate: Data Docs offline (no CDN) */
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:0 auto;max-width:1200px;
padding:0 16px}a{color:#0b5cad}table{border-collapse:collapse;width:100%;margin:8px 0 16px}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;margin:12px 0}.collapse{display:block}
.navbar,.fixed-top{position:static}.text-danger{color:#b42318}.text-success{color:#1a7f37}
.col-md-2,.col-md-10,.col-12{display:block}</style>"""


def make_offline(folder: Path) -> int:
    """Rewrite every HTML page under `folder` (GX's Data Docs site) to load nothing external; returns how many
    references were removed. Idempotent: a page already rewritten is left as it is."""
    removed = 0
    for page in Path(folder).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new, count = EXTERNAL.subn("", text)
        if count:
            if "airmigrate: Data Docs offline" not in new:
                new = new.replace("</head>", STYLE + "</head>", 1) if "</head>" in new else STYLE + new
            page.write_text(new, encoding="utf-8")
            removed += count
    return removed


def external_references(folder: Path) -> list[str]:
    """What a page under `folder` would still load from elsewhere (for tests and checks): [] when offline."""
    return [f"{page.name}: {match.group(0)[:120]}" for page in Path(folder).rglob("*.html")
            for match in EXTERNAL.finditer(page.read_text(encoding="utf-8"))]
