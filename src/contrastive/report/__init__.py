"""The run report: one self-contained HTML file, and a short Markdown summary for KFP.

`build_report(summary, path)` writes a single HTML page that opens with no network: every
figure is a base64 PNG data URI, the CSS is inline, there is no script, no font and no link to
any other host (a Content-Security-Policy meta tag forbids loading anything but data: images).
Every string taken from the summary is HTML-escaped.

The summary is the dict written by the pipeline's compare step (`method_summary` builds its
per-method entries). Only `methods` and `dataset` are expected; every other field may be
missing and its section then says so instead of failing.

    layout.py       the page, its sections and the Markdown summary
    plots.py        matplotlib figures as PNG data URIs
    formatting.py   numbers and text as the page shows them; reading the summary defensively
"""

from contrastive.report.formatting import method_summary
from contrastive.report.layout import SEED_REFERENCES, SeedReference, build_report, render_markdown

__all__ = ["SEED_REFERENCES", "SeedReference", "build_report", "method_summary", "render_markdown"]
