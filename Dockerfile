# syntax=docker/dockerfile:1
# halguru serve in a container: `halguru build` bakes agent projects into /agents on top of this image;
# or mount them there. Build: podman build --format docker -t halguru:latest --build-arg REVISION=$(git rev-parse HEAD) .
# llama-cpp-python is built portably (no -march=native): the image must run on other CPUs than the build
# machine, and native builds crash on some (see DESIGN.md). deploy/wheelhouse puts every locked wheel (llama.cpp
# compiled once on the host, same flags) in deploy/wheels; then --build-arg OFFLINE=1 asks no index at all.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# OFFLINE=1: every wheel comes from deploy/wheels (deploy/wheelhouse fills it), no package index is asked and
# nothing is compiled (no compilers installed)
ARG OFFLINE=
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates \
        $([ -n "$OFFLINE" ] || echo g++ make cmake git python3-dev) && rm -rf /var/lib/apt/lists/*
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/halguru
WORKDIR /src
COPY deploy/wheels /prebuilt
# the pinned dependencies first, in a layer of their own: a change to halguru's code rebuilds only the last,
# small layer. The pip cache mount keeps a compiled llama-cpp-python between builds on this machine.
COPY deploy/requirements.lock /src/
RUN --mount=type=cache,target=/root/.cache/pip /opt/halguru/bin/pip install -q ${OFFLINE:+--no-index} \
        --find-links /prebuilt -r /src/requirements.lock
COPY pyproject.toml README.md ./
COPY halguru halguru
COPY server server
COPY agents-templates agents-templates
# with its dependencies checked against the lock: one that pyproject gained since is installed (or, OFFLINE,
# fails the build: run deploy/lock and deploy/wheelhouse)
RUN --mount=type=cache,target=/root/.cache/pip /opt/halguru/bin/pip install -q ${OFFLINE:+--no-index} \
        --find-links /prebuilt hatchling \
    && /opt/halguru/bin/pip install -q ${OFFLINE:+--no-index} --no-build-isolation --find-links /prebuilt \
        -c /src/requirements.lock . \
    && /opt/halguru/bin/pip uninstall -q -y hatchling pathspec trove-classifiers setuptools pip \
    && find /opt/halguru -name __pycache__ -prune -exec rm -rf {} + \
    && /opt/halguru/bin/python -m compileall -q /opt/halguru/lib >/dev/null

FROM ${BASE_IMAGE}
ARG REVISION=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="halguru" \
      org.opencontainers.image.description="halguru serve: local-first AI agents (REST, OpenAI-compatible API, web chat)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# python3 (the same Debian build the venv was made with), libgomp1 for llama.cpp's threads, tini as PID 1
# (forwards SIGTERM to halguru and reaps MCP servers' and tools' child processes)
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 libgomp1 tini ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* \
    && useradd --create-home --uid 1000 halguru \
    && mkdir -p /agents /home/halguru/.halguru && chown halguru:halguru /home/halguru/.halguru
COPY --from=build /opt/halguru /opt/halguru
ENV PATH=/opt/halguru/bin:$PATH HALGURU_HOME=/home/halguru/.halguru PYTHONUNBUFFERED=1
USER halguru
WORKDIR /home/halguru
EXPOSE 8000
# keys, conversations, runs and traces live in HALGURU_HOME: keep it on a volume so they survive restarts
# (create API keys with `docker exec CONTAINER halguru keys create NAME`)
VOLUME ["/home/halguru/.halguru"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["python3", "-c", \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--"]
CMD ["halguru", "serve", "/agents", "--host", "0.0.0.0", "--port", "8000"]
