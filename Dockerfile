# halguru serve in a container. llama-cpp-python is built portably (no -march=native): the image
# must run on other CPUs than the build machine, and native builds crash on some (see DESIGN.md).
FROM python:3.11-slim AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY halguru halguru
COPY server server
COPY agents-templates agents-templates
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* && useradd --create-home halguru
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER halguru
ENV HALGURU_HOME=/home/halguru/.halguru
EXPOSE 8000
STOPSIGNAL SIGTERM
# Mount agent projects at /agents; create API keys with `docker exec CONTAINER halguru keys create NAME`
# (keep HALGURU_HOME on a volume so keys and traces survive restarts).
VOLUME ["/home/halguru/.halguru"]
CMD ["halguru", "serve", "/agents", "--host", "0.0.0.0", "--port", "8000"]
