"""MkDocs hook: links from the docs to files outside ``docs/`` (for the built site).

The pages link to runnable files beside them (``../../examples/order_pipeline.py``,
``../benchmarks/README.md``). On GitHub those links work as they are; the built
site has no such files, so there they point at the repository when
``MAGEFLOW_REPO_URL`` is set (``https://github.com/<owner>/<repo>``) and
otherwise become the file's path in code form, without a link.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import Any

_LINK = re.compile(r"\[([^\]]+)\]\(((?:\.\./)+[^)#\s]+)(#[^)\s]*)?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    base = os.environ.get("MAGEFLOW_REPO_URL", "").rstrip("/")
    here = posixpath.dirname(page.file.src_uri)

    def fix(match: re.Match[str]) -> str:
        text, rel, anchor = match.group(1), match.group(2), match.group(3) or ""
        target = posixpath.normpath(posixpath.join("docs", here, rel))
        if target.startswith("docs/"):
            return match.group(0)  # inside the site: MkDocs resolves it
        if base:
            return f"[{text}]({base}/blob/main/{target}{anchor})"
        shown = text if text.startswith("`") else f"`{target}`"
        return f"{shown} (repository file `{target}`)" if shown != f"`{target}`" else shown

    return _LINK.sub(fix, markdown)
