"""An install from a wheel works away from the checkout: the BPF programs ship
as data files (<prefix>/share/pytracekit/bpf) and the loader finds them."""
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import ROOT


def _committed() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [name for name in out.stdout.decode().split("\0") if name]


def _copy_sources(dest):
    """The committed files only (a build in the checkout would leave build/ there)."""
    for name in _committed():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(ROOT / name):
            continue
        shutil.copy2(ROOT / name, target)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    _copy_sources(src)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(src)], check=True,
                   capture_output=True)
    [built] = out.glob("pytracekit-*.whl")
    return built


def test_the_wheel_carries_every_bpf_program(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.rsplit("/", 1)[1] for n in names if "/data/share/pytracekit/bpf/" in n}
    in_checkout = {n.split("/", 1)[1] for n in _committed()
                   if n.startswith("bpf/") and n.endswith((".c", ".h"))}
    assert shipped == in_checkout


@pytest.mark.root
def test_an_installed_wheel_compiles_and_loads_away_from_the_checkout(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    # The dependencies (click, pyroute2, ...) from the project's venv, appended to
    # sys.path without running its .pth files (which would add the checkout).
    site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTRACEKIT_BPF_DIR")}
    where = subprocess.run([str(python), "-c", "import pytracekit.engine.loader as l; "
                            "print(l.__file__); print(l.BPF_DIR)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert where[0].startswith(str(venv)) and where[1] == str(venv / "share/pytracekit/bpf")
    res = subprocess.run([str(venv / "bin" / "pytracekit"), "funccount", "--dry-run",
                          "t:sched:sched_switch"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "count_0" in res.stdout
