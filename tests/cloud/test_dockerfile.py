"""The image the cloud backends run: it cannot be built here, so check what it names and copies.

- it installs exactly the lock (`uv sync --frozen --no-dev`, the Makefile's uv version);
- every entry point a backend runs (`MODULE = "ml.x"` in assets/) is a module the image copies, and
  starts (`--help`) from nothing but the copied files, as it would in the image;
- it has no entry point wrapper, so the command each platform passes is what runs.
"""

import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
INSTRUCTIONS = [line.strip() for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines()]
INSTRUCTIONS = [line for line in INSTRUCTIONS if line and not line.startswith("#")]


def copied() -> list[str]:
    """Sources of the COPY instructions, in order."""
    return [source for line in INSTRUCTIONS if line.startswith("COPY ") for source in line.split()[1:-1]]


def entry_points() -> list[str]:
    """The `ml` modules the assets ask a compute backend to run."""
    modules = set()
    for path in (REPO / "assets").glob("*.py"):
        modules |= set(re.findall(r'^MODULE\s*=\s*"(ml\.[a-z_]+)"', path.read_text(), flags=re.MULTILINE))
    return sorted(modules)


def test_the_image_installs_the_lock_and_nothing_else():
    assert INSTRUCTIONS[0] == "FROM python:3.11-slim"
    makefile_uv = re.search(r"^UV_VERSION := (\S+)", (REPO / "Makefile").read_text(), flags=re.MULTILINE).group(1)
    assert f"RUN pip install --no-cache-dir uv=={makefile_uv}" in INSTRUCTIONS
    sync = INSTRUCTIONS.index("RUN uv sync --frozen --no-dev")
    assert INSTRUCTIONS.index("COPY pyproject.toml uv.lock ./") < sync  # the lock is in place before the sync
    assert not any(re.search(r"\b(pip|uv pip) install\b(?!.*uv==)", line) for line in INSTRUCTIONS)


def test_every_copied_path_exists_and_is_in_the_build_context():
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    for source in copied():
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert f"!{source}" in ignored, f".dockerignore leaves {source} out of the build context"


def test_the_backends_entry_points_are_in_the_image():
    modules = entry_points()
    assert "ml.train" in modules
    for module in modules:
        path = REPO / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{module} (run by a backend) has no file {path.relative_to(REPO)}"
        assert any(path.relative_to(REPO).as_posix().startswith(source) for source in copied()), module
        assert 'if __name__ == "__main__":' in path.read_text(), f"{module} cannot run as `python -m {module}`"


@pytest.mark.parametrize("module", entry_points())
def test_each_entry_point_starts_from_the_copied_files_alone(module, tmp_path):
    """As in the image: only the COPY'd files on PYTHONPATH (plus the locked packages)."""
    image = tmp_path / "opt" / "keel"
    for source in copied():
        if source.endswith("/"):
            shutil.copytree(REPO / source, image / source, ignore=shutil.ignore_patterns("__pycache__"))
        elif source not in {"pyproject.toml", "uv.lock"}:
            image.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / source, image / source)
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys, runpy; sys.path.insert(0, {str(image)!r}); "
            f"sys.argv = [{module!r}, '--help']; runpy.run_module({module!r}, run_name='__main__')",
        ],
        cwd=image,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"python -m {module}" in proc.stdout


def test_no_entry_point_wrapper_overrides_the_platforms_command():
    assert "ENTRYPOINT []" in INSTRUCTIONS
    assert [line for line in INSTRUCTIONS if line.startswith("ENTRYPOINT")] == ["ENTRYPOINT []"]
    assert 'CMD ["python", "-m", "ml.train", "--help"]' in INSTRUCTIONS
