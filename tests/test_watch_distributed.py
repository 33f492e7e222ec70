"""watch inside torch.distributed with real processes on gloo: FSDP2 (`fully_shard`,
DTensor parameters) trains undisturbed, with the unsharded names and global
norms (checked against DTensor's own `full_tensor()`)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch.distributed.fsdp")

SCRIPT = Path(__file__).parent / "scripts" / "fsdp_watch.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fsdp2_two_gloo_processes(tmp_path: Path) -> None:
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip("this torch has no FSDP2")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), str(_port()), str(out)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        res = json.loads(Path(f"{out}.{rank}").read_text())
        assert res["steps"] == [1, 3] and res["alerts"] == []
        assert set(res["grad"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}  # the names before sharding
        for ours, truth in [*res["grad"].values(), *res["weight"].values()]:
            assert ours == pytest.approx(truth, rel=1e-5)
        assert all(r > 0 for r in res["ratio"].values())
