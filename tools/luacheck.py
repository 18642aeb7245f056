"""Lint the store's Lua scripts with luacheck, as Redis runs them.

Each script is written out expanded (generated header + includes + body) into
a temporary directory, so luacheck sees every name it uses defined; the
config is the repository's ``.luacheckrc``. Exit code is luacheck's; 127 when
luacheck is not installed (Debian: ``apt-get install lua-check``).

    uv run python tools/luacheck.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mageflow._store.scripts import SCRIPTS

ROOT = Path(__file__).resolve().parents[1]


def lint() -> subprocess.CompletedProcess[str]:
    exe = shutil.which("luacheck")
    if exe is None:
        return subprocess.CompletedProcess(["luacheck"], 127, "", "luacheck is not installed\n")
    with tempfile.TemporaryDirectory(prefix="mageflow-lua-") as tmp:
        for name, script in SCRIPTS.items():
            (Path(tmp) / f"{name}.lua").write_text(script.source, encoding="utf-8")
        return subprocess.run(
            [exe, "--config", str(ROOT / ".luacheckrc"), "--no-color", "--codes", "."],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )


def main() -> int:
    done = lint()
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
