"""The report's data rendered twice with Jinja2 (which Airflow ships): self-contained HTML (inline CSS and SVG,
no external file, autoescaped) and a Markdown twin."""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATES = Path(__file__).parent / "templates"
URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE)
PASSWORD_SETTING = re.compile(r"(\bpassword\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def human_bytes(value, signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = ("+" if value > 0 else "-" if value < 0 else "") if signed else ("-" if value < 0 else "")
    size = float(abs(value))
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{sign}{size:,.0f} {unit}" if unit == "B" else f"{sign}{size:,.1f} {unit}"
        size /= 1024
    return str(value)


def md_cell(value) -> str:
    """Text for a Markdown table cell or paragraph: no raw HTML, no cell breaks, one line. Underscores stay
    (identifiers are full of them; GitHub's Markdown does not emphasise inside words)."""
    text = "" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("*", "\\*")
    return "<br>".join(line for line in text.splitlines()) if "\n" in text else text


def md_code(value) -> str:
    """Text inside a `code span`: no backtick may end it early."""
    return ("" if value is None else str(value)).replace("`", "'").replace("\n", " ").replace("|", "\\|")


def md_fence(value, lang: str = "") -> str:
    """A fenced code block whose fence is longer than any backtick run inside."""
    text = "" if value is None else str(value).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _environment(html: bool) -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=html, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(bytes=human_bytes, md=md_cell, code=md_code, fence=md_fence)
    return env


def mask(text: str, secrets: tuple[str | None, ...] = ()) -> str:
    """No credentials in a report: a connection URL's password and the given secrets become ***."""
    text = URL_PASSWORD.sub(r"\1***@", text)
    text = PASSWORD_SETTING.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


def render_html(data: dict, secrets: tuple[str | None, ...] = ()) -> str:
    return mask(_environment(True).get_template("report.html.j2").render(r=data), secrets)


def render_markdown(data: dict, secrets: tuple[str | None, ...] = ()) -> str:
    text = _environment(False).get_template("report.md.j2").render(r=data)
    return mask(re.sub(r"\n{3,}", "\n\n", text), secrets)


def render_named(template: str, data: dict, html: bool, secrets: tuple[str | None, ...] = ()) -> str:
    """Another report's template (the imported run's) with the same filters, escaping and masking."""
    text = _environment(html).get_template(template).render(r=data)
    return mask(text if html else re.sub(r"\n{3,}", "\n\n", text), secrets)
