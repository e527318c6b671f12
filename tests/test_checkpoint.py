"""Checkpoints are read safely: tensors and plain containers only, and a file that cannot be read is named, kept."""

from __future__ import annotations

import pytest
import torch

from nf.runs.cache import checkpoint_path
from nf.runs.checkpoint import Checkpointer, UnreadableCheckpoint, load_checkpoint, save_atomically
from nf.runs.status import run_state


class _Planted:
    """An object whose unpickling would run code: it writes a file."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_training_state_round_trips_through_the_safe_loader(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-5, momentum=0.9, foreach=True)
    model(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    state = {
        "config": {"flow": "planar", "length": 2, "final_learning_rate": None},
        "step": 7,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": torch.get_rng_state(),
        "cuda_rng": None,
        "history": [[5, 0.5, 90.1]],
        "running": [1.0, 2.0],
        "order": torch.randperm(10),
        "elapsed": 1.5,
    }
    save_atomically(state, tmp_path / "c.pt")
    for mapped in (False, True):  # read, or mapped from the file (what runs status does)
        loaded = load_checkpoint(tmp_path / "c.pt", mapped=mapped)
        assert loaded["step"] == 7 and loaded["history"] == state["history"]
        assert torch.equal(loaded["order"], state["order"])
        assert loaded["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]


def test_a_planted_checkpoint_runs_no_code_and_is_moved_aside_by_name(tmp_path):
    target, planted = tmp_path / "owned", tmp_path / ".abc.checkpoint.pt"
    torch.save({"step": 3, "payload": _Planted(target)}, planted)
    with pytest.raises(UnreadableCheckpoint, match=r"\.abc\.checkpoint\.pt cannot be read \(UnpicklingError"):
        load_checkpoint(planted)
    with pytest.raises(UnreadableCheckpoint, match=r"cannot be read \(UnpicklingError"):
        load_checkpoint(planted, mapped=True)
    assert not target.exists() and planted.exists()  # nothing ran; reading alone moves nothing
    with pytest.warns(UserWarning, match=r"moved aside to \.abc\.checkpoint\.pt\.unreadable, and this run starts"):
        assert load_checkpoint(planted, move_aside=True) is None
    assert not target.exists() and not planted.exists() and (tmp_path / ".abc.checkpoint.pt.unreadable").exists()


def test_a_damaged_checkpoint_is_kept_aside_and_the_run_starts_over(tmp_path):
    damaged = tmp_path / "c.pt"
    save_atomically({"step": 3, "model": {"w": torch.zeros(1000)}}, damaged)
    damaged.write_bytes(damaged.read_bytes()[:2000])  # cut short, as by a full disk under another writer
    for mapped in (False, True):
        with pytest.raises(UnreadableCheckpoint, match="c.pt cannot be read"):
            load_checkpoint(damaged, mapped=mapped)
    with pytest.warns(UserWarning, match="c.pt cannot be read"):
        assert Checkpointer(damaged).load() is None  # what a trainer does: starts over, the file kept aside
    assert (tmp_path / "c.pt.unreadable").exists()
    assert load_checkpoint(tmp_path / "none.pt") is None


def test_the_status_of_a_run_with_an_unreadable_checkpoint_says_so(tmp_path):
    config = {"energy": "U1", "family": "planar", "length": 2, "updates": 30}
    path = checkpoint_path("toy", config, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    state, detail = run_state("toy", config, tmp_path)
    assert (state, detail) == (
        "interrupted",
        "checkpoint cannot be read: it will be moved aside and the run started over",
    )
    assert path.exists()  # status only reads


def test_a_finished_runs_checkpoint_goes_with_the_temporary_files_of_killed_saves(tmp_path):
    from nf.runs.checkpoint import remove_checkpoint

    checkpoint = tmp_path / ".abc.checkpoint.pt"
    checkpoint.write_bytes(b"state")
    stale = tmp_path / "..abc.checkpoint.pt.x1y2z3.tmp"  # a save killed before its rename (SIGKILL)
    stale.write_bytes(b"half")
    other = tmp_path / "..abd.checkpoint.pt.x1y2z3.tmp"  # another run's save
    other.write_bytes(b"half")
    remove_checkpoint(checkpoint)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]
