"""The diagonal Gaussian base density against torch.distributions."""

from __future__ import annotations

import torch

from nf.models.distributions import DiagonalGaussian


def test_log_prob_matches_torch_normal():
    loc, log_scale = torch.randn(5, 3), torch.randn(5, 3)
    z = torch.randn(4, 5, 3)
    expected = torch.distributions.Normal(loc, log_scale.exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(DiagonalGaussian(loc, log_scale).log_prob(z), expected)


def test_rsample_shape_moments_and_gradient():
    loc = torch.tensor([1.0, -2.0], requires_grad=True)
    log_scale = torch.tensor([0.0, -1.0], requires_grad=True)
    q = DiagonalGaussian(loc, log_scale)
    z = q.rsample((200_000,), generator=torch.Generator().manual_seed(0))
    assert z.shape == (200_000, 2)
    torch.testing.assert_close(z.mean(0), loc.detach(), atol=0.01, rtol=0)
    torch.testing.assert_close(z.std(0), log_scale.detach().exp(), atol=0.01, rtol=0)
    z.sum().backward()
    assert loc.grad is not None and log_scale.grad is not None


def test_entropy_matches_monte_carlo():
    q = DiagonalGaussian(torch.zeros(3), torch.tensor([0.1, -0.3, 0.7]))
    z = q.rsample((400_000,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(-q.log_prob(z).mean(), q.entropy(), atol=0.01, rtol=0)


def test_standard_normal():
    q = DiagonalGaussian.standard(2)
    torch.testing.assert_close(q.log_prob(torch.zeros(2)), -torch.log(torch.tensor(2 * torch.pi)))
