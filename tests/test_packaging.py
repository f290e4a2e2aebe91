"""Packaging and installation: the wheel built from pyproject.toml (offline, isolated build), the
refusals of scripts/setup_venv.sh and scripts/install_plugin.sh, and install_plugin.sh run for
real in a fresh virtual environment that has only a CPU torch (and pip): torch stays as it was."""
import email
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from importlib import metadata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP_VENV = os.path.join(ROOT, "scripts", "setup_venv.sh")
INSTALL_PLUGIN = os.path.join(ROOT, "scripts", "install_plugin.sh")
FAIRSEQ = ("fairseq-fixed", "0.12.3.1")
CONFIGS = sorted(os.listdir(os.path.join(ROOT, "memsizer_fairseq", "tools", "recipes", "configs")))


def clean_env(**extra):
    """This environment without the test venv's own activation."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    return dict(env, OMP_NUM_THREADS="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)


def run(command, timeout=120, cwd=None, **env):
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=clean_env(**env), timeout=timeout, cwd=cwd)


def default_torch():
    """The CPU torch that setup_venv.sh pins (torch==X+cpu)."""
    found = re.search(r'^DEFAULT_TORCH="(torch==[^"]+\+cpu)"$', open(SETUP_VENV).read(), re.M)
    assert found, "setup_venv.sh pins no CPU torch"
    return found.group(1)


def test_wheel_builds_offline_and_ships_the_recipe_configs(tmp_path):
    src = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside the sources
    shutil.copytree(os.path.join(ROOT, "memsizer_fairseq"), src / "memsizer_fairseq",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), src)
    # build isolation on: pyproject's build-system requires come from the package registries
    proc = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                str(tmp_path / "dist"), str(src)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DEPRECATION" not in proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").iterdir()
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = email.message_from_string(
            zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    assert CONFIGS and all(f"memsizer_fairseq/tools/recipes/configs/{c}" in names for c in CONFIGS)
    assert "memsizer_fairseq/models/__init__.py" in names
    assert not [n for n in names if n.startswith("tests/")]
    requires = [r.split(";")[0].split()[0] for r in info.get_all("Requires-Dist")]
    assert not {"torch", "fairseq", "fairseq-fixed", "torchaudio", "triton"} & set(requires)
    assert {"sacrebleu>=2.0", "sentencepiece", "rouge-score"} <= set(requires)
    assert set(info.get_all("Provides-Extra")) == {"tools", "cuda", "test"}


def test_setup_venv_refuses_an_interpreter_without_a_cpu_torch_wheel(tmp_path):
    # an interpreter reporting 3.99 to the version probe; anything else marks it as misused
    fake = tmp_path / "bin" / "python3.99"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nif [ "$1" = -c ]; then echo 3.99; exit 0; fi\n'
                    'touch "$(dirname "$0")/misused"; exit 3\n')
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    start = time.monotonic()
    proc = run(["bash", SETUP_VENV], timeout=30, PYTHON=str(fake), MEMSIZER_VENV=str(venv))
    assert time.monotonic() - start < 10
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "3.99" in lines[0] and "3.11" in lines[0] and "not supported" in lines[0]
    assert proc.stdout == ""
    assert not venv.exists() and not (fake.parent / "misused").exists()


def test_install_plugin_refuses_without_torch(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    proc = run(["bash", INSTALL_PLUGIN, str(venv / "bin" / "python")], timeout=30)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "torch is not importable" in lines[0], proc.stderr
    assert not list(venv.glob("lib/python*/site-packages/*fairseq*"))


def fairseq_wheel_env(tmp_path):
    """Spares the fresh environment fairseq's 3-minute build: pip's wheel cache holds the wheel
    that setup_venv.sh built, and pip takes it from there by itself. If the cache lacks it,
    the wheel is put together from the project's venv, where that build is installed, and pip
    finds it through PIP_FIND_LINKS (beside the configured find-links)."""
    listed = run([sys.executable, "-m", "pip", "cache", "list", "fairseq_fixed",
                  "--format=abspath"], timeout=60)
    if f"fairseq_fixed-{FAIRSEQ[1]}-" in listed.stdout:
        return {}
    links = tmp_path / "wheels"
    links.mkdir()
    repack_installed(FAIRSEQ[0], links)
    configured = run([sys.executable, "-m", "pip", "config", "get", "global.find-links"])
    return {"PIP_FIND_LINKS": " ".join(
        [*(configured.stdout.split() if configured.returncode == 0 else []), str(links)])}


def repack_installed(name, out_dir):
    """A wheel of an installed distribution, from the files its RECORD lists (scripts outside
    site-packages are left to the installer, which writes them from entry_points.txt)."""
    import base64
    import hashlib

    dist = metadata.distribution(name)
    info_dir = next(str(f).split("/")[0] for f in dist.files if ".dist-info/" in str(f))
    tag = email.message_from_string(dist.read_text("WHEEL")).get_all("Tag")[0]
    wheel = os.path.join(out_dir, f"{name.replace('-', '_')}-{dist.version}-{tag}.whl")
    skip = {f"{info_dir}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in dist.files:
            path = str(file)
            if path.startswith("..") or "__pycache__" in path or path in skip:
                continue
            data = open(dist.locate_file(file), "rb").read()
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return wheel


def link_installed(names, folder):
    """Symbolic links in ``folder`` to the named distributions of this interpreter and to
    everything they require: ``folder`` on another interpreter's path gives it these packages as
    they are installed here (for pip too), as a system or conda site folder would."""
    from packaging.requirements import Requirement

    folder.mkdir()
    todo, seen = list(names), set()
    while todo:
        dist = metadata.distribution(todo.pop())
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for requirement in map(Requirement, dist.requires or []):
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        for top in {str(f).split("/")[0] for f in dist.files} - {"..", "__pycache__"}:
            if not (folder / top).exists():
                (folder / top).symlink_to(dist.locate_file(top))
    return seen


def test_install_plugin_into_a_fresh_environment_keeps_its_torch(tmp_path):
    """A new virtual environment whose torch (the CPU build of the project's .venv, with what it
    requires) and pip lie in another folder on its path, linked in: install_plugin.sh installs
    everything else into the environment and leaves that torch alone."""
    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        linked = link_installed(["torch", "pip"], tmp_path / "user-site")
        assert {"torch", "pip", "sympy"} <= linked
        (site,) = venv.glob("lib/python*/site-packages")
        (site / "user-site.pth").write_text(f"{tmp_path / 'user-site'}\n")
        probe = [python, "-c", "import torch; print(torch.__version__, torch.__file__)"]
        before = run(probe, cwd=str(tmp_path)).stdout
        assert before.split()[0] == default_torch().split("==")[1]  # the CPU build

        start = time.monotonic()
        proc = run(["bash", INSTALL_PLUGIN, python], timeout=900, cwd=str(tmp_path),
                   PIP_NO_COMPILE="1",
                   **fairseq_wheel_env(tmp_path))
        print(f"install_plugin.sh took {time.monotonic() - start:.0f} s")
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        assert "DEPRECATION" not in proc.stdout + proc.stderr  # no setup.py develop
        assert "ready: torch" in proc.stderr

        assert run(probe, cwd=str(tmp_path)).stdout == before
        # away from the checkout, so that only the installation can provide the plugin
        check = run([python, "-c", "import fairseq, memsizer_fairseq, tensorboardX; "
                     "from importlib.metadata import version; "
                     "print(version('fairseq-fixed'), memsizer_fairseq.__file__)"],
                    cwd=str(tmp_path))
        assert check.returncode == 0, check.stderr[-3000:]
        assert check.stdout.split() == [FAIRSEQ[1], os.path.join(ROOT, "memsizer_fairseq",
                                                                 "__init__.py")]
        # the plugin's pinned needs, installed into the environment itself; not the test tools
        # or the CUDA kernels
        installed = {p.name.lower() for p in site.iterdir()}
        assert any(n.startswith("sacrebleu-") for n in installed)
        assert any(n.startswith("matplotlib-") for n in installed)
        listed = run([python, "-m", "pip", "list", "--format=freeze"]).stdout.lower()
        assert "sacrebleu==" in listed and "matplotlib==" in listed
        assert "triton" not in listed and "pytest" not in listed
    finally:
        shutil.rmtree(venv, ignore_errors=True)
