# The image every cloud backend runs the `ml` entry points in (SageMaker, Vertex AI, Azure ML).
# The backends pass the command (`python -m ml.train --features URI ...`), so the image sets no
# entry point of its own. Dependencies come from uv.lock exactly, as on a laptop and in CI.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/keel/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

WORKDIR /opt/keel

# LightGBM needs OpenMP at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

# The same uv as the Makefile; the locked environment without the dev group (tests, emulators).
RUN pip install --no-cache-dir uv==0.13.8
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev

# Only the framework-free core and the parameters: the entry points need nothing else.
COPY ml/ ml/
COPY params.yaml ./

ENV PATH=/opt/keel/.venv/bin:$PATH \
    PYTHONPATH=/opt/keel

# No wrapper: each platform passes the command (SageMaker ContainerEntrypoint, Vertex command,
# Azure ML command). Run with no command, the image shows the training entry point's usage.
ENTRYPOINT []
CMD ["python", "-m", "ml.train", "--help"]
