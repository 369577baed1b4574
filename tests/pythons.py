"""The CPython interpreters installed here for the Python-frames tests:
Debian's /usr/bin/python3.11 and pyenv's builds under `$(pyenv root)/versions`.
A missing one is a skip with the reason, never a pass."""
from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess

import pytest

DEBIAN_PY311 = "/usr/bin/python3.11"


def pyenv_root() -> str:
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))


@functools.lru_cache(maxsize=None)
def pyenv_install(minor: int) -> tuple[str, str] | None:
    """(python executable, file carrying the DWARF) of the newest pyenv 3.<minor>.*."""
    found = sorted(glob.glob(f"{pyenv_root()}/versions/3.{minor}.*"),
                   key=lambda p: [int(x) for x in re.findall(r"\d+", os.path.basename(p))])
    found = [p for p in found if re.fullmatch(rf"3\.{minor}\.\d+", os.path.basename(p))]
    if not found:
        return None
    root = found[-1]
    exe = f"{root}/bin/python3.{minor}"
    libs = glob.glob(f"{root}/lib/libpython3.{minor}*.so.1.0")
    return (exe, libs[0] if libs else exe) if os.path.exists(exe) else None


def need_pyenv(minor: int) -> tuple[str, str]:
    inst = pyenv_install(minor)
    if inst is None:
        pytest.skip(f"no pyenv CPython 3.{minor} under {pyenv_root()}/versions")
    return inst


def need_python(name: str) -> str:
    """An interpreter by test id: "debian-3.11" or "pyenv-3.X"; skips when absent."""
    if name == "debian-3.11":
        if not os.path.exists(DEBIAN_PY311):
            pytest.skip(f"{DEBIAN_PY311} is not installed")
        return DEBIAN_PY311
    return need_pyenv(int(name.split(".")[1]))[0]


INTERPRETERS = ["debian-3.11"] + [f"pyenv-3.{m}" for m in range(8, 14)]
