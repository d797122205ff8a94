"""torchrun sharding: the helpers, and `evaluate` / `index` on 2 gloo CPU processes equal one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kgzsl.utils.distributed import DistContext, all_ranks_agree, broadcast_object, close_distributed, gather_objects, \
    gather_tensors, shard_indices


def torchrun(args: list[str], cache: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS`` (a free port is picked), one thread per rank."""
    env = dict(os.environ, OMP_NUM_THREADS="1", KGZSL_CACHE=str(cache), HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_indices_cover_every_item_exactly_once(world):
    for n in range(11):
        shares = [shard_indices(n, DistContext(rank=r, world_size=world)) for r in range(world)]
        assert sorted(i for s in shares for i in s) == list(range(n))  # disjoint and complete: no padding
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_helpers_without_torchrun_are_identities():
    ctx = DistContext()
    t = torch.arange(6).reshape(3, 2)
    assert gather_objects({"a": 1}, ctx) == [{"a": 1}] and broadcast_object([1, 2], ctx) == [1, 2]
    assert all_ranks_agree([1, 2], ctx)
    close_distributed(ctx)  # nothing to leave
    (got,) = gather_tensors(t, ctx)
    assert torch.equal(got, t)


GATHER_SCRIPT = r"""
import json, sys, torch
from kgzsl.utils.distributed import all_ranks_agree, broadcast_object, close_distributed, gather_tensors, init_distributed

ctx = init_distributed("cpu")
rows = [5, 0][ctx.rank]  # unequal shares, one of them empty
feats = torch.arange(rows * 3, dtype=torch.float32).reshape(rows, 3) + 100 * ctx.rank
got = gather_tensors(feats, ctx, chunk_bytes=24)  # two rows per round: three rounds
ok = gather_tensors(torch.tensor([True, False, True, True, False][:rows], dtype=torch.bool), ctx)
try:
    gather_tensors(torch.zeros(2, 3 + ctx.rank), ctx)
    error = None
except ValueError as exc:
    error = str(exc)
todo = broadcast_object([7, 8] if ctx.is_main else None, ctx)
out = {"rank": ctx.rank, "todo": todo, "error": error is not None,
       "agree": [all_ranks_agree(["a", "b"], ctx), all_ranks_agree(["a", ctx.rank], ctx)]}
if got is not None:
    out.update(feats=[g.tolist() for g in got], ok=[o.tolist() for o in ok], dtype=str(ok[0].dtype))
sys.stdout.write(json.dumps(out) + "\n")  # one write: the two ranks share the pipe
close_distributed(ctx)  # else gloo may abort at exit
"""


def test_gather_tensors_of_unequal_sizes_across_two_processes(tmp_path):
    script = tmp_path / "gather.py"
    script.write_text(GATHER_SCRIPT)
    done = torchrun([str(script)], tmp_path / "cache")
    outs = sorted((json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")),
                  key=lambda o: o["rank"])
    assert [o["rank"] for o in outs] == [0, 1]
    assert all(o["todo"] == [7, 8] and o["error"] for o in outs)  # the mismatch is refused on every rank
    assert all(o["agree"] == [True, False] for o in outs)
    assert "feats" not in outs[1]  # only rank 0 receives
    assert outs[0]["feats"] == [torch.arange(15.0).reshape(5, 3).tolist(), []]
    assert outs[0]["ok"] == [[True, False, True, True, False], []] and outs[0]["dtype"] == "torch.bool"


# ---------------------------------------------------------------- evaluate and index end to end

UNSEEN = ["n02121620", "n02084071", "n02958343"]  # cat, dog, car: 21K classes of the tiny graph
SEEN = ["n02123045"]  # tabby: an ImageNet-1k class


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory) -> tuple[Path, Path]:
    """7 files over 4 wnid folders (6 images and 1 unreadable), and a split file of the unseen classes."""
    import skimage

    data = Path(os.path.dirname(skimage.__file__)) / "data"
    photos = [Image.open(data / name).convert("RGB") for name in ("chelsea.png", "coffee.png", "astronaut.png")]
    root = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(0)
    for c, (wnid, count) in enumerate(zip(UNSEEN + SEEN, [2, 2, 1, 1])):
        (root / wnid).mkdir()
        for i in range(count):
            photo = photos[(c + i) % 3]
            x, y = rng.integers(0, 40, 2)
            photo.crop((x, y, photo.width - 40 + x, photo.height - 40 + y)).resize((72, 56)).save(
                root / wnid / f"{i}.jpg", quality=90)
    (root / UNSEEN[0] / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    split = root.parent / "odd-split.txt"
    split.write_text("\n".join(UNSEEN) + "\n")
    return root, split


@pytest.mark.slow
def test_evaluate_under_torchrun_equals_one_process(tiny_run, odd_folder, tmp_path, capsys, monkeypatch):
    from kgzsl.cli import main

    root, split = odd_folder
    val = tmp_path / "val"
    shutil.copytree(root, val)  # another folder: choosing gamma on the test folder itself is refused
    args = ["-q", "evaluate", str(tiny_run), "--data", str(root), "--split", str(split), "--generalized",
            "--val", str(val), "--json", "--device", "cpu"]
    monkeypatch.setenv("KGZSL_CACHE", str(tmp_path / "one"))
    assert main(args) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["n_images"] == 6 and one["generalized"] is True

    done = torchrun(["-m", "kgzsl", *args], tmp_path / "two")
    assert json.loads(done.stdout) == one  # rank 0 printed the same result, rank 1 nothing
    assert "broken.jpg" in done.stderr  # the rank that read it warned
    # each rank cached its own share of each class (3 classes each) of each folder (test and validation)
    assert len(list((tmp_path / "two" / "features").glob("*.safetensors"))) == 12


@pytest.mark.slow
def test_index_under_torchrun_equals_one_process(tiny_run, odd_folder, tmp_path):
    from kgzsl.inference.classifier import ZeroShotClassifier
    from kgzsl.tasks.search import _read_index, build_index

    root, _ = odd_folder
    clf = ZeroShotClassifier.load(tiny_run, device="cpu")
    stats = build_index(clf.backbone, root, tmp_path / "one.index", progress=False)
    assert stats == {"images": 6, "new": 6, "reused": 0, "removed": 0, "failed": 1}

    args = ["-m", "kgzsl", "-q", "index", str(tiny_run), str(root), "--out", str(tmp_path / "two.index"),
            "--device", "cpu", "--no-progress", "--workers", "1", "--batch-size", "2"]
    done = torchrun(args, tmp_path / "cache")
    assert done.stdout.strip().splitlines() == [f"index {tmp_path / 'two.index'}: 6 images (6 new, 0 unchanged, "
                                                "0 removed, 1 unreadable)"]
    files_one, feats_one, _ = _read_index(tmp_path / "one.index")
    files_two, feats_two, _ = _read_index(tmp_path / "two.index")
    assert files_two == files_one
    torch.testing.assert_close(feats_two, feats_one, atol=1e-5, rtol=1e-5)
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 2  # one feature shard per rank
