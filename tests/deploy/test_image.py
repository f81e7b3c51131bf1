"""deploy/dagster/Dockerfile, the image the Dagster values name: the cloud image (the root Dockerfile)
with the code location on top. It cannot be built here, so check that the two images' files alone load
the code location, and that it starts what the values say."""

import json
import re
import shutil
import subprocess
import sys
import tomllib

from tests.cloud.test_dockerfile import INSTRUCTIONS as BASE_INSTRUCTIONS
from tests.cloud.test_dockerfile import copied as copied_by_the_base
from tests.conftest import REPO
from tests.deploy import chart

DOCKERFILE = (REPO / "deploy" / "dagster" / "Dockerfile").read_text()
INSTRUCTIONS = [line.strip() for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines()]
INSTRUCTIONS = [line for line in INSTRUCTIONS if line and not line.startswith("#")]


def copied() -> list[str]:
    return [source for line in INSTRUCTIONS if line.startswith("COPY ") for source in line.split()[1:-1]]


def test_the_image_is_the_cloud_image_and_installs_no_package_of_its_own():
    """One locked environment for both images: the Dagster image starts FROM the root one."""
    assert INSTRUCTIONS[:2] == ["ARG BASE=keel:latest", "FROM ${BASE}"]
    assert "RUN uv sync --frozen --no-dev" in BASE_INSTRUCTIONS
    assert not any(re.search(r"\b(pip|uv)\b", line) for line in INSTRUCTIONS)
    assert not set(copied()) & set(copied_by_the_base()), "the Dagster image copies again what its base has"


def test_the_run_launcher_is_a_main_dependency():
    """The K8sRunLauncher and the run worker load from this image, which has no dev group."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(dep.startswith("dagster-k8s==") for dep in dependencies)


def test_every_copied_path_exists_and_is_in_the_build_context():
    ignored = (REPO / "deploy" / "dagster" / "Dockerfile.dockerignore").read_text().splitlines()
    for source in copied():
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert f"!{source}" in ignored, f"Dockerfile.dockerignore leaves {source} out of the build context"


def test_the_default_command_is_the_code_server_the_values_start():
    (cmd,) = [line for line in INSTRUCTIONS if line.startswith("CMD ")]
    command = json.loads(cmd[len("CMD ") :])
    assert command[:3] == ["dagster", "code-server", "start"]
    args = chart.user_deployment(chart.load_values())["codeServerArgs"]
    module = command[command.index("-m") + 1]
    assert module == args[args.index("--module-name") + 1]
    assert command[command.index("--location-name") + 1] == args[args.index("--location-name") + 1]


def test_the_code_location_loads_from_the_copied_files_alone(tmp_path):
    """As in the image: only the files both Dockerfiles copy in the working directory (plus the locked packages)."""
    image = tmp_path / "opt" / "keel"
    image.mkdir(parents=True)
    for source in copied_by_the_base() + copied():
        if source in {"pyproject.toml", "uv.lock"}:
            continue  # the base's locked packages: this interpreter's
        if source.endswith("/"):
            shutil.copytree(REPO / source, image / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (image / source).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / source, image / source)
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(image)!r}); from orchestration.definitions import defs; "
            "import orchestration.definitions as d; print(d.__file__); "
            "print(sorted(job.name for job in defs.jobs))",
        ],
        cwd=image,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    module_file, jobs = proc.stdout.strip().splitlines()[-2:]
    assert module_file.startswith(str(image))
    assert "nightly_scoring" in jobs
