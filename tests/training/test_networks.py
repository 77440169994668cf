"""The EIIE per-asset encoder and policy: layout, equivariance, other universes, SB3, ONNX."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.distributions import (
    DiagGaussianDistribution,
    StateDependentNoiseDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

from tests.support.markets import make_synthetic_market
from training.config import TrainConfig
from training.env_config import EnvConfig
from training.networks import (
    EIIEPolicy,
    PerAssetEncoder,
    TemporalConv,
    n_parameters,
    policy_kwargs_for,
)
from training.observation import FeatureNormalizer, ObservationBuilder, PortfolioState
from training.vec_env import BatchedPerpPortfolioVecEnv

WINDOW, N_FEATURES, N_ASSETS = 8, 4, 3
LOG_STD_INIT = -1.0


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread, as training uses (small nets are slower with more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def observation_space(n_assets: int) -> gym.spaces.Box:
    """Observation space of ``n_assets`` assets at the tests' window and features."""
    dim = WINDOW * n_assets * N_FEATURES + 4 * n_assets + 3
    return gym.spaces.Box(-10.0, 10.0, (dim,), np.float32)


def make_policy(
    name: str, n_assets: int, sde: bool = False, **encoder_kwargs: Any
) -> ActorCriticPolicy:
    """A standalone policy of network ``name`` for ``n_assets`` assets (squashed gSDE if
    ``sde``)."""
    policy, kwargs = policy_kwargs_for(
        name, n_assets, WINDOW, N_FEATURES, encoder_kwargs=encoder_kwargs
    )
    policy_class = policy if isinstance(policy, type) else ActorCriticPolicy
    action_space = gym.spaces.Box(-1.0, 1.0, (n_assets,), np.float32)
    return policy_class(
        observation_space(n_assets),
        action_space,
        lambda _: 3e-4,
        log_std_init=LOG_STD_INIT,
        use_sde=sde,
        squash_output=sde,
        **kwargs,
    )


def randomize(policy: nn.Module, seed: int = 0) -> None:
    """Large random weights, so actions differ clearly between assets."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def observations(
    features: np.ndarray, portfolio: PortfolioState, t: np.ndarray, window: int = WINDOW
) -> np.ndarray:
    """(B, D) observations of the real builder from raw (T, N, F) features."""
    normalizer = FeatureNormalizer(mean=np.zeros(features.shape[2]), std=np.ones(features.shape[2]))
    names = [f"f{j}" for j in range(features.shape[2])]
    builder = ObservationBuilder(names, features.shape[1], window, normalizer)
    return builder.build_batch(builder.normalize(features), t, portfolio)


def random_inputs(
    n_assets: int, batch: int = 16, seed: int = 1
) -> tuple[np.ndarray, PortfolioState, np.ndarray]:
    """Raw features, a batched portfolio state and decision bars."""
    rng = np.random.default_rng(seed)
    features = rng.normal(0.0, 1.0, (40, n_assets, N_FEATURES))
    portfolio = PortfolioState(
        weights=rng.uniform(-1, 1, (batch, n_assets)),
        unrealized_pnl=rng.normal(0, 0.02, (batch, n_assets)),
        entry_basis=rng.normal(0, 0.003, (batch, n_assets)),
        equity_ratio=rng.uniform(0.8, 1.2, batch),
        margin_ratio=rng.uniform(0, 0.5, batch),
        distance_to_liquidation=rng.uniform(0, 1, batch),
        hours_to_funding=rng.integers(0, 8, (batch, n_assets)).astype(float),
    )
    return features, portfolio, rng.integers(WINDOW - 1, 40, batch)


def permuted(portfolio: PortfolioState, perm: list[int]) -> PortfolioState:
    """The same accounts with their assets reordered by ``perm``."""
    return PortfolioState(
        weights=portfolio.weights[:, perm],
        unrealized_pnl=portfolio.unrealized_pnl[:, perm],
        entry_basis=portfolio.entry_basis[:, perm],
        equity_ratio=portfolio.equity_ratio,
        margin_ratio=portfolio.margin_ratio,
        distance_to_liquidation=portfolio.distance_to_liquidation,
        hours_to_funding=portfolio.hours_to_funding[:, perm],
    )


def act(policy: ActorCriticPolicy, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic actions (B, N) and values (B,)."""
    with torch.no_grad():
        actions, values, _ = policy(torch.as_tensor(obs), deterministic=True)
    return actions.numpy(), values.numpy()[:, 0]


def std_and_log_prob(
    policy: ActorCriticPolicy, obs: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(B, N) standard deviations of the policy's Gaussian and (B,) log probabilities."""
    with torch.no_grad():
        dist = policy.get_distribution(torch.as_tensor(obs))
        assert isinstance(dist, DiagGaussianDistribution | StateDependentNoiseDistribution)
        std = dist.distribution.stddev.numpy()
        return std, dist.log_prob(torch.as_tensor(actions)).numpy()


def test_encoder_unpacks_each_asset_from_the_observation_layout() -> None:
    features, portfolio, t = random_inputs(N_ASSETS)
    obs = observations(features, portfolio, t)
    encoder = PerAssetEncoder(observation_space(N_ASSETS), N_ASSETS, WINDOW, N_FEATURES)
    windows, entries = encoder.per_asset_inputs(torch.as_tensor(obs))
    assert windows.shape == (16, N_ASSETS, WINDOW, N_FEATURES)
    assert entries.shape == (16, N_ASSETS, 7)
    b, i = 5, 2
    expected_window = features[t[b] - WINDOW + 1 : t[b] + 1, i, :]
    np.testing.assert_allclose(windows[b, i].numpy(), expected_window, rtol=1e-6)
    expected_entries = [
        portfolio.weights[b, i],
        portfolio.unrealized_pnl[b, i],
        100 * portfolio.entry_basis[b, i],
        portfolio.hours_to_funding[b, i] / 8,
        np.log(np.asarray(portfolio.equity_ratio)[b]),
        np.asarray(portfolio.margin_ratio)[b],
        np.asarray(portfolio.distance_to_liquidation)[b],
    ]
    np.testing.assert_allclose(entries[b, i].numpy(), expected_entries, rtol=1e-5, atol=1e-7)


def test_the_temporal_convolution_is_conv1d() -> None:
    conv = nn.Conv1d(N_FEATURES, 5, 3)
    temporal = TemporalConv(N_FEATURES, WINDOW, 5, 3)
    with torch.no_grad():
        temporal.linear.weight.copy_(conv.weight.permute(0, 2, 1).reshape(5, -1))
        temporal.linear.bias.copy_(conv.state_dict()["bias"])
        windows = torch.randn(7, WINDOW, N_FEATURES)
        expected = conv(windows.transpose(1, 2)).transpose(1, 2).flatten(1)
        np.testing.assert_allclose(temporal(windows).numpy(), expected.numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("sde", "encoder_kwargs"), [(False, {}), (False, {"conv_channels": 0}), (True, {})]
)
def test_permuting_the_assets_permutes_embeddings_and_actions_and_keeps_the_value(
    sde: bool, encoder_kwargs: dict[str, Any]
) -> None:
    perm = [2, 0, 1]
    features, portfolio, t = random_inputs(N_ASSETS)
    obs = observations(features, portfolio, t)
    obs_perm = observations(features[:, perm], permuted(portfolio, perm), t)
    policy = make_policy("eiie", N_ASSETS, sde, **encoder_kwargs)
    randomize(policy)
    encoder = policy.features_extractor
    assert isinstance(encoder, PerAssetEncoder)
    with torch.no_grad():
        emb = encoder.embed(torch.as_tensor(obs)).numpy()
        emb_perm = encoder.embed(torch.as_tensor(obs_perm)).numpy()
    np.testing.assert_allclose(emb_perm, emb[:, perm], atol=1e-6)
    actions, values = act(policy, obs)
    actions_perm, values_perm = act(policy, obs_perm)
    assert np.ptp(actions, axis=1).min() > 1e-2  # the assets' actions do differ
    np.testing.assert_allclose(actions_perm, actions[:, perm], atol=1e-6)
    np.testing.assert_allclose(values_perm, values, atol=1e-6)
    assert np.ptp(values) > 1e-2
    assert policy.log_std.shape == ((64, 1) if sde else (1,))  # shared by every asset
    sample = actions * 0.9  # the whole action distribution permutes, not only its mean
    std, log_prob = std_and_log_prob(policy, obs, sample)
    std_perm, log_prob_perm = std_and_log_prob(policy, obs_perm, sample[:, perm])
    assert np.ptp(std, axis=1).min() > 0 if sde else np.ptp(std) == 0
    np.testing.assert_allclose(std_perm, std[:, perm], rtol=1e-5)
    np.testing.assert_allclose(log_prob_perm, log_prob, rtol=1e-5, atol=1e-4)

    mlp = make_policy("mlp", N_ASSETS)  # the flat MLP is not equivariant
    randomize(mlp)
    mlp_actions, _ = act(mlp, obs)
    mlp_actions_perm, _ = act(mlp, obs_perm)
    assert np.abs(mlp_actions_perm - mlp_actions[:, perm]).max() > 1e-2


def test_parameter_count_does_not_depend_on_the_number_of_assets() -> None:
    counts = {n: n_parameters(make_policy("eiie", n)) for n in (2, 3, 7)}
    assert len(set(counts.values())) == 1
    sde_counts = {n: n_parameters(make_policy("eiie", n, sde=True)) for n in (2, 7)}
    assert sde_counts == {2: counts[2] + 63, 7: counts[2] + 63}  # log std (64, 1) for (1,)
    # W=8, F=4: conv 3*4*8+8, head (8*6+7)*64+64 + 64*16+16, actor 32*64+64 + 64+1,
    # critic 16*64+64 + 64+1, log std 1
    assert counts[3] == 104 + 3584 + 1040 + 2112 + 65 + 1088 + 65 + 1
    mlp_counts = [n_parameters(make_policy("mlp", n)) for n in (2, 3)]
    assert mlp_counts[1] > mlp_counts[0]


def test_policy_kwargs_for_names_and_shape_checks() -> None:
    policy, kwargs = policy_kwargs_for("mlp", N_ASSETS, WINDOW, N_FEATURES)
    assert policy == "MlpPolicy" and kwargs == {"net_arch": list(TrainConfig().net_arch)}
    policy, kwargs = policy_kwargs_for("eiie", N_ASSETS, WINDOW, N_FEATURES, net_arch=(32, 16))
    assert policy is EIIEPolicy and kwargs["net_arch"] == {"pi": [32, 16], "vf": [32, 16]}
    assert kwargs["features_extractor_kwargs"]["n_assets"] == N_ASSETS
    with pytest.raises(ValueError, match="policy name"):
        policy_kwargs_for("cnn", N_ASSETS, WINDOW, N_FEATURES)
    with pytest.raises(ValueError, match="is not"):
        PerAssetEncoder(observation_space(N_ASSETS), N_ASSETS + 1, WINDOW, N_FEATURES)


@pytest.fixture(scope="module")
def trained() -> tuple[PPO, dict[str, torch.Tensor]]:
    """PPO with the EIIE policy after 3,072 steps on three synthetic assets, and its initial
    parameters."""
    market = make_synthetic_market(n_assets=N_ASSETS, n_features=N_FEATURES)
    env = BatchedPerpPortfolioVecEnv(market, EnvConfig(window=WINDOW), n_envs=4)
    env.seed(0)
    policy, kwargs = policy_kwargs_for("eiie", N_ASSETS, WINDOW, N_FEATURES)
    model = PPO(
        policy,
        env,
        n_steps=128,
        batch_size=128,
        seed=0,
        device="cpu",
        policy_kwargs={**kwargs, "log_std_init": LOG_STD_INIT},
    )
    initial = {k: v.clone() for k, v in model.policy.state_dict().items()}
    return model.learn(total_timesteps=3_072), initial


def test_ppo_trains_every_part_of_the_eiie_policy(
    trained: tuple[PPO, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    trained_ppo, initial = trained
    for name, value in trained_ppo.policy.state_dict().items():
        assert not torch.equal(value, initial[name]), f"{name} did not change"
        assert torch.isfinite(value).all()
    assert trained_ppo.num_timesteps == 3_072
    env = trained_ppo.get_env()
    assert env is not None
    obs = env.reset()
    assert isinstance(obs, np.ndarray)
    actions, _ = trained_ppo.predict(obs, deterministic=True)
    assert actions.shape == (4, N_ASSETS) and np.isfinite(actions).all()
    with pytest.raises(ValueError, match="[Oo]bservation"):  # SB3's shape check
        trained_ppo.predict(obs[:, :-1], deterministic=True)
    trained_ppo.save(tmp_path / "eiie")
    loaded = PPO.load(tmp_path / "eiie", device="cpu")
    assert isinstance(loaded.policy, EIIEPolicy)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)


def test_a2c_trains_with_the_eiie_policy() -> None:
    market = make_synthetic_market(n_assets=N_ASSETS, n_features=N_FEATURES)
    env = BatchedPerpPortfolioVecEnv(market, EnvConfig(window=WINDOW), n_envs=4)
    policy, kwargs = policy_kwargs_for("eiie", N_ASSETS, WINDOW, N_FEATURES)
    model = A2C(policy, env, n_steps=8, seed=0, device="cpu", policy_kwargs=kwargs)
    name = "action_net.linear.weight"
    before = model.policy.state_dict()[name].clone()
    model.learn(total_timesteps=512)
    assert not torch.equal(model.policy.state_dict()[name], before)
    assert torch.isfinite(model.policy.log_std).all()


def test_ppo_explores_with_squashed_per_asset_gsde() -> None:
    market = make_synthetic_market(n_assets=N_ASSETS, n_features=N_FEATURES)
    env = BatchedPerpPortfolioVecEnv(market, EnvConfig(window=WINDOW), n_envs=4)
    policy, kwargs = policy_kwargs_for("eiie", N_ASSETS, WINDOW, N_FEATURES)
    model = PPO(
        policy,
        env,
        n_steps=64,
        batch_size=128,
        use_sde=True,
        seed=0,
        device="cpu",
        policy_kwargs={**kwargs, "squash_output": True, "log_std_init": LOG_STD_INIT},
    )
    before = model.policy.log_std.detach().clone()
    model.learn(total_timesteps=512)
    assert not torch.equal(model.policy.log_std, before)
    obs = env.reset()
    assert isinstance(obs, np.ndarray)
    model.policy.reset_noise(4)
    sampled, _ = model.predict(obs)
    assert sampled.shape == (4, N_ASSETS) and np.abs(sampled).max() < 1.0
    sampled_again, _ = model.predict(obs)
    np.testing.assert_array_equal(sampled_again, sampled)  # gSDE: noise fixed until resampled
    deterministic, _ = model.predict(obs, deterministic=True)
    assert np.abs(sampled - deterministic).max() > 1e-4


def test_a_policy_trained_on_three_assets_acts_on_five_and_on_six(
    trained: tuple[PPO, dict[str, torch.Tensor]],
) -> None:
    trained_ppo = trained[0]
    state = trained_ppo.policy.state_dict()
    five = make_policy("eiie", 5)
    five.load_state_dict(state)  # strict: every name and shape matches
    market = make_synthetic_market(n_assets=5, n_features=N_FEATURES, seed=3)
    env = BatchedPerpPortfolioVecEnv(market, EnvConfig(window=WINDOW), n_envs=2)
    obs = env.reset()
    assert isinstance(obs, np.ndarray)
    actions, values = act(five, obs)
    assert actions.shape == (2, 5) and values.shape == (2,) and np.isfinite(actions).all()

    # six assets = the three, each twice: same mean context, so the same actions and value
    three = trained_ppo.policy
    six = make_policy("eiie", 6)
    six.load_state_dict(state)
    features, portfolio, t = random_inputs(N_ASSETS)
    twice = [0, 1, 2, 0, 1, 2]
    actions3, values3 = act(three, observations(features, portfolio, t))
    actions6, values6 = act(six, observations(features[:, twice], permuted(portfolio, twice), t))
    np.testing.assert_allclose(actions6, actions3[:, twice], atol=1e-6)
    np.testing.assert_allclose(values6, values3, atol=1e-6)
    assert np.ptp(actions3, axis=1).max() > 1e-4


class DeterministicActor(nn.Module):
    """What an ONNX export traces: observations -> deterministic actions."""

    def __init__(self, policy: ActorCriticPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions of ``obs``."""
        return self.policy(obs, deterministic=True)[0]


@pytest.mark.parametrize("sde", [False, True])
def test_the_deterministic_actor_exports_to_onnx(sde: bool, tmp_path: Path) -> None:
    policy = make_policy("eiie", N_ASSETS, sde)
    randomize(policy, seed=4)
    features, portfolio, t = random_inputs(N_ASSETS, batch=64, seed=5)
    obs = observations(features, portfolio, t)
    path = tmp_path / "actor.onnx"
    torch.onnx.export(
        DeterministicActor(policy).eval(),
        (torch.as_tensor(obs[:1]),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["obs"],
        output_names=["actions"],
        dynamic_axes={"obs": {0: "batch"}, "actions": {0: "batch"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_actions = session.run(None, {"obs": obs})[0]
    torch_actions, _ = act(policy, obs)
    assert onnx_actions.shape == (64, N_ASSETS)
    np.testing.assert_allclose(onnx_actions, torch_actions, atol=1e-5)
