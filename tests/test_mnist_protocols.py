"""MNIST protocols, learning-rate schedule, flow step size, per-image scores and paired differences (tiny budgets)."""

from __future__ import annotations

import pytest
import torch

from nf.experiments.comparisons import paired_difference, per_image
from nf.experiments.mnist import fit_mnist, full_config, learning_rate_at, mnist_config, mnist_optimizer
from nf.models.dlgm import DLGM, Maxout
from nf.runs.cache import REPO_ROOT, config_hash, list_runs

TINY = dict(flow="planar", length=2, updates=30, anneal_updates=10, eval_every=10, eval_samples=4)


@pytest.fixture(autouse=True)
def float32_default():
    torch.set_default_dtype(torch.float32)


def test_later_keys_at_their_defaults_leave_the_config_and_its_key_unchanged():
    """Configs of runs cached before the protocol keys existed hash as they did (read from results/, not recomputed)."""
    quick = [r for r in list_runs("mnist", REPO_ROOT / "results") if "protocol" not in r.config]
    assert quick, "the committed quick-protocol runs are missing"
    run = quick[0]
    assert config_hash("mnist", mnist_config(**run.config)) == run.key
    explicit = mnist_config(**run.config, protocol="quick", final_learning_rate=None, flow_lr_scale=1.0)
    assert config_hash("mnist", explicit) == run.key
    assert "protocol" in mnist_config(protocol="validation")


def test_a_model_without_a_flow_ignores_the_flow_step_size():
    assert mnist_config(flow="none", length=0, flow_lr_scale=0.1) == mnist_config(flow="none", length=0)
    assert mnist_config(flow_lr_scale=0.1)["flow_lr_scale"] == 0.1


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"protocol": "train"}, "unknown protocol 'train'"),
        ({"final_learning_rate": 0.0}, "final_learning_rate must be a positive number, got 0.0"),
        ({"flow_lr_scale": "fast"}, "flow_lr_scale must be a positive number, got 'fast'"),
    ],
)
def test_bad_protocol_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        mnist_config(**overrides)


def test_learning_rate_decays_exponentially_to_its_final_value():
    config = mnist_config(updates=100, anneal_updates=10, learning_rate=1e-3, final_learning_rate=1e-5)
    assert learning_rate_at(config, 0) == pytest.approx(1e-3)
    assert learning_rate_at(config, 50) == pytest.approx(1e-4)
    assert learning_rate_at(config, 100) == pytest.approx(1e-5)
    assert learning_rate_at(mnist_config(updates=100, anneal_updates=10), 70) == mnist_config()["learning_rate"]


def test_flow_parameters_form_their_own_group_with_the_scaled_step():
    model = DLGM("planar", 3, latent=4, hidden=8)
    optimizer = mnist_optimizer(model, full_config(mnist_config(flow_lr_scale=0.1, learning_rate=1e-3)))
    rest, flow = optimizer.param_groups
    assert flow["lr"] == pytest.approx(1e-4) and rest["lr"] == pytest.approx(1e-3)
    assert {id(p) for p in flow["params"]} == {id(p) for p in model.flow_head.parameters()}
    assert len(rest["params"]) + len(flow["params"]) == len(list(model.parameters()))


def test_split_head_keeps_the_initial_weights_of_one_linear_head():
    torch.manual_seed(0)
    model = DLGM("planar", 3, latent=4, hidden=8)
    torch.manual_seed(0)
    Maxout(784, 8)
    head = torch.nn.Linear(8, 2 * 4 + model.flow.n_params)
    decoder = torch.nn.Sequential(Maxout(4, 8), torch.nn.Linear(8, 784))
    weight = torch.cat([model.posterior_head.weight, model.flow_head.weight])
    torch.testing.assert_close(weight, head.weight, rtol=0, atol=0)
    torch.testing.assert_close(model.decoder[1].weight, decoder[1].weight, rtol=0, atol=0)


@pytest.mark.slow
def test_validation_protocol_never_reads_the_test_set(mnist_available, tmp_path, monkeypatch):
    import nf.experiments.data

    real = nf.experiments.data.load_mnist_pixels

    def train_only(split="train", *args, **kwargs):
        assert split == "train", "the validation protocol read the test set"
        return real(split, *args, **kwargs)

    monkeypatch.setattr(nf.experiments.data, "load_mnist_pixels", train_only)
    run = fit_mnist(tmp_path, **TINY, protocol="validation", final_learning_rate=1e-4, flow_lr_scale=0.1)
    m = run.load_json("metrics.json")
    assert [len(row) for row in m["history"]] == [5, 5, 5]  # update, beta, train F, validation F, validation -ln p
    scores = per_image(run)
    assert scores["nll"].shape == (10_000,)
    assert m["validation_nll"] == pytest.approx(scores["nll"].mean().item(), rel=1e-6)
    assert m["validation_kl"] == pytest.approx((scores["bound"] - scores["nll"]).mean().item(), rel=1e-5)
    assert not any(key.startswith("test_") for key in m)


@pytest.mark.slow
def test_watching_the_validation_set_does_not_change_the_run(mnist_available, tmp_path):
    often = fit_mnist(tmp_path, **{**TINY, "eval_every": 10}, protocol="validation").load_json("metrics.json")
    rarely = fit_mnist(tmp_path, **{**TINY, "eval_every": 30}, protocol="validation").load_json("metrics.json")
    assert often["validation_nll"] == rarely["validation_nll"]
    assert often["history"][-1][2:] != rarely["history"][-1][2:]  # different logging intervals, same training


@pytest.mark.slow
def test_test_protocol_is_scored_on_the_test_set_and_pairs_with_its_twin(mnist_available, tmp_path):
    diagonal = fit_mnist(tmp_path, **{**TINY, "flow": "none", "length": 0}, protocol="test")
    planar = fit_mnist(tmp_path, **TINY, protocol="test")
    assert [len(row) for row in diagonal.load_json("metrics.json")["history"]] == [3, 3, 3]
    d, se = paired_difference(diagonal, planar)
    a, b = per_image(diagonal)["nll"], per_image(planar)["nll"]
    assert d == pytest.approx((b - a).mean().item())
    assert se == pytest.approx(((b - a).std() / 100).item())
    kl, _ = paired_difference(diagonal, planar, "kl")
    m = [r.load_json("metrics.json") for r in (diagonal, planar)]
    assert kl == pytest.approx(m[1]["test_kl"] - m[0]["test_kl"], abs=1e-4)
    validation = fit_mnist(tmp_path, **TINY, protocol="validation")
    with pytest.raises(ValueError, match="scored on different images"):
        paired_difference(diagonal, validation)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_the_all_at_once_optimisers_step_like_the_tensor_by_tensor_ones(optimizer):
    """``make_optimizer`` (fused Adam, foreach RMSprop) against PyTorch's per-tensor loop, in float64."""
    torch.manual_seed(0)
    model = DLGM("nice-perm", 3).double()
    twin = DLGM("nice-perm", 3).double()
    twin.load_state_dict(model.state_dict())
    start = [p.detach().clone() for p in model.parameters()]
    rate = 1e-3 if optimizer == "adam" else 1e-5  # each recipe's own rate (RMSprop diverges at 1e-3)
    config = {"optimizer": optimizer, "learning_rate": rate, "momentum": 0.9, "flow_lr_scale": 0.1}
    fast = mnist_optimizer(model, config)
    groups = [{"params": g["params"], "lr": g["lr"]} for g in mnist_optimizer(twin, config).param_groups]
    kind = torch.optim.Adam if optimizer == "adam" else torch.optim.RMSprop
    loop = kind(groups, foreach=False, **({} if optimizer == "adam" else {"momentum": 0.9}))
    x = torch.bernoulli(torch.rand(20, 784, generator=torch.Generator().manual_seed(0))).double()
    for step in range(20):
        for m, opt in ((model, fast), (twin, loop)):
            torch.manual_seed(step)
            opt.zero_grad()
            m.free_energy(x).mean().backward()
            opt.step()
    assert fast.defaults["fused" if optimizer == "adam" else "foreach"]
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)
    assert all((a - b).abs().max() > 0 for a, b in zip(model.parameters(), start))  # every tensor was stepped


def test_a_resumed_run_keeps_stepping_all_tensors_at_once(tmp_path):
    """A checkpoint saved by a tensor-by-tensor optimiser resumes into the fused one (its saved flags are ignored)."""
    from nf.experiments.training import make_optimizer, resume, training_state
    from nf.runs.checkpoint import Checkpointer

    model = DLGM("planar", 2, latent=4, hidden=8)
    config = {"optimizer": "adam", "learning_rate": 1e-3}
    old = torch.optim.Adam([{"params": list(model.parameters()), "lr": 1e-3}], foreach=False)
    model.free_energy(torch.rand(5, 784).round()).mean().backward()
    old.step()
    checkpointer = Checkpointer(tmp_path / "run.pt")
    checkpointer.save(training_state(config, 1, model, old, [], 0.0))
    optimizer = make_optimizer([{"params": list(model.parameters()), "scale": 1.0}], config)
    assert resume(checkpointer, config, model, optimizer) is not None
    assert [(g["fused"], g["foreach"]) for g in optimizer.param_groups] == [(True, None)]
    assert optimizer.state_dict()["state"][0]["step"].item() == 1  # the saved moments and step count were loaded
