"""Packaging: ``python -m build`` makes an sdist and a wheel that install and work in a clean venv.

What a user gets from ``pip install stochgrad`` is checked, not the development checkout:

* the source tree is copied as a fresh clone would have it (no build outputs, no git-ignored
  ``stochgrad/backends`` symlink), then ``python -m build --no-isolation`` makes the sdist and,
  from the unpacked sdist, the wheel (so a file missing from the sdist breaks the wheel too);
* the wheel holds the package, its backends, ``grammar.lark``, ``py.typed`` and the LICENSE; its
  metadata carries the SPDX license and the version of ``stochgrad.__version__``;
* the sdist holds the tests, examples and benchmarks the tests run, README, LICENSE, CHANGELOG;
* a clean ``python -m venv`` (no system site-packages, so no torch, jax or autograd) gets the
  wheel and its core dependencies only; there ``import stochgrad`` imports no framework, ``sg.plan``
  prints a plan, and the ``stochgrad`` console script runs.

The core dependencies come from a wheelhouse (``$STOCHGRAD_WHEELHOUSE``, default
``~/.cache/stochgrad/wheelhouse``), filled by ``pip download`` of the versions installed here the
first time and offline afterwards.  Without network on that first run the venv test is skipped
(it fails under $CI).  Marked ``packaging``: ``-m "not packaging"`` leaves it out.  About 10-25 s.
"""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[1]
# What a fresh clone lacks: build outputs, caches, the development symlink stochgrad/backends.
_NOT_IN_A_CLONE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                         "*.pyc", ".hypothesis", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                                         "*.png", "site")
SMOKE = """
import sys
import stochgrad as sg
frameworks = sorted(m for m in ("torch", "jax", "autograd", "scipy") if m in sys.modules)
assert not frameworks, f"import stochgrad imported {frameworks}"
assert sg.__file__.startswith(sys.prefix), f"stochgrad imported from {sg.__file__}, not the venv {sys.prefix}"
p = sg.plan("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 0.5, "sigma": 1.0})
print(p)
print("ESTIMATORS", sorted(n.estimator for n in p.nodes))
"""


def _copy_clone(dst: Path) -> Path:
    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(_NOT_IN_A_CLONE(folder, names))
        return skipped | {n for n in names if os.path.islink(os.path.join(folder, n))}
    shutil.copytree(ROOT, dst, ignore=ignore)
    return dst


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """(sdist, wheel) built from a clean copy of the source tree."""
    pytest.importorskip("build", reason="the build package is in the test extra")
    tmp = tmp_path_factory.mktemp("packaging")
    src = _copy_clone(tmp / "src")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp / "dist"), str(src)], cwd=tmp)
    sdists, wheels = sorted((tmp / "dist").glob("*.tar.gz")), sorted((tmp / "dist").glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in (tmp / "dist").iterdir())
    return sdists[0], wheels[0]


def _wheel_metadata(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return HeaderParser().parsestr(z.read(name).decode())


def test_wheel_contents(dists):
    with zipfile.ZipFile(dists[1]) as z:
        names = set(z.namelist())
    for backend in sorted(p.name for p in (ROOT / "backends").glob("*.py")):
        assert f"stochgrad/backends/{backend}" in names, backend
    for path in ("stochgrad/__init__.py", "stochgrad/grammar.lark", "stochgrad/py.typed",
                 "stochgrad/testing/__init__.py", "stochgrad/estimators/__init__.py", "stochgrad/program/__init__.py"):
        assert path in names, path
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(names)
    assert not any(n.startswith(("tests/", "examples/", "benchmarks/", "backends/")) for n in names)
    # every package of the source tree is in the wheel (a new subpackage left out of [tool.setuptools])
    for init in (ROOT / "stochgrad").rglob("__init__.py"):
        rel = init.relative_to(ROOT).as_posix()
        if not rel.startswith("stochgrad/backends/"):
            assert rel in names, f"{rel} is not in the wheel: add its package to [tool.setuptools] packages"


def test_wheel_metadata_license(dists):
    meta = _wheel_metadata(dists[1])
    assert meta["Name"] == "stochgrad"
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_wheel_version_is_single_sourced(dists):
    import stochgrad

    version = getattr(stochgrad, "__version__", None)
    if version is None:
        pytest.skip("stochgrad.__version__ is not defined in this checkout: nothing to compare the wheel's version to")
    assert _wheel_metadata(dists[1])["Version"] == version
    assert dists[1].name.startswith(f"stochgrad-{version}-")


def test_sdist_contents(dists):
    with tarfile.open(dists[0]) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for path in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in", "stochgrad/grammar.lark",
                 "stochgrad/py.typed", "backends/torch.py", "tests/conftest.py", "tests/test_packaging.py"):
        assert path in names, path
    tracked_tests = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("*.py")}
    assert tracked_tests <= names, sorted(tracked_tests - names)
    assert not any("__pycache__" in n for n in names)


#: the core's declared dependencies (pyproject's ``dependencies``), with their own dependencies:
#: what a clean install of the wheel must bring, and all it may bring
CORE = ("numpy", "lark", "rich")


def _wheelhouse() -> Path:
    """Wheels of the core dependencies at their installed versions (and what they need), downloaded once."""
    house = Path(os.environ.get("STOCHGRAD_WHEELHOUSE") or Path.home() / ".cache" / "stochgrad" / "wheelhouse")
    house.mkdir(parents=True, exist_ok=True)
    pins = [f"{d}=={importlib.metadata.version(d)}" for d in CORE]
    stamp = house / ("ready-" + "-".join(pins).replace("=", ""))
    if not stamp.exists():
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:",
                               "--dest", str(house), *pins], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            message = f"cannot download {pins} into {house}:\n{proc.stderr[-2000:]}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        stamp.touch()
    return house


def test_core_dependencies_are_the_declared_ones():
    """CORE above is pyproject's dependency list: a new core dependency must reach the clean-venv check."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0].lower() for d in declared}
    assert names == set(CORE), (names, CORE)


def test_wheel_installs_and_runs_in_a_clean_venv(dists, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    # the host's pip installs into the venv (pip --python): no pip bootstrap in the venv, no index
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-index",
          "--find-links", str(_wheelhouse()), str(dists[1])])
    out = _run([str(py), "-c", SMOKE], cwd=tmp_path).stdout
    assert "ESTIMATORS ['pathwise']" in out, out
    assert "Normal" in out and "pathwise" in out.split("ESTIMATORS")[0], out  # the plan's own text
    script = venv / "bin" / "stochgrad"
    assert script.exists(), "the stochgrad console script was not installed"
    shown = _run([str(script), "plan", "E[z**2, z ~ Normal(mu, sigma)]"], cwd=tmp_path).stdout
    assert "pathwise" in shown, shown
    if "--version" in _run([str(script), "--help"], cwd=tmp_path).stdout:
        version = _run([str(script), "--version"], cwd=tmp_path)
        assert _wheel_metadata(dists[1])["Version"] in version.stdout + version.stderr
