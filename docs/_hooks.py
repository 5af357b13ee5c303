"""MkDocs hooks for the API reference (named in mkdocs.yml; not a page).

pyisolate's docstrings use reStructuredText roles (``:class:`Runtime```), which
read well in the source and in ``help()``; Markdown renders them as
":class:" followed by code. This hook drops the role, and a leading ``~``
(Sphinx's "show the last component") keeps only the last name.
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):(<code>)(~?)([^<]*)(</code>)")


def _strip(match: re.Match[str]) -> str:
    open_tag, tilde, name, close_tag = match.groups()
    if tilde:
        name = name.rpartition(".")[2]
    return f"{open_tag}{name}{close_tag}"


def on_page_content(html: str, **_kwargs: Any) -> str:
    return _ROLE.sub(_strip, html)
