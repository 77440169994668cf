"""The ONNX export acts like the SB3 policy it came from; the registered model runs on it."""

import json
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import onnx
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.distributions import StateDependentNoiseDistribution

from tests.support.markets import make_synthetic_market
from training import policy_model
from training.actions import target_weights
from training.config import TrainConfig
from training.env import PerpPortfolioEnv
from training.env_config import EnvConfig
from training.observation import FeatureNormalizer, ObservationScaling, PortfolioState
from training.onnx_export import (
    ACTIONS,
    OBSERVATIONS,
    OPSET,
    TARGET_WEIGHTS,
    OnnxPolicy,
    export_policy,
    onnx_policy,
)
from training.policy_model import (
    ONNX_BACKEND,
    SB3_BACKEND,
    PolicySpec,
    load_policy,
    log_policy,
    pip_requirements,
)
from training.train import TrainedPolicy, train_end_timestamp, train_policy

pytestmark = pytest.mark.slow

N_OBS = 1_000
ENV = EnvConfig(window=8, episode_length=64, max_leverage=3.0, gross_leverage_cap=4.5)
"""The gross cap binds where the actions' absolute sum exceeds 1.5."""
OUTPUT_GAIN = {"PPO": 40.0, "SAC": 20.0}
"""Factor on the trained actor's output layer (a 256-step policy acts near 0)."""


@pytest.fixture(scope="module")
def market():
    return make_synthetic_market(n_assets=3, n_bars=1_200, seed=5)


def _train(market, algorithm: str) -> TrainedPolicy:
    config = TrainConfig(
        algorithm=algorithm,
        total_timesteps=256,
        seed=1,
        n_envs=2,
        n_steps=64,
        batch_size=64,
        feature_columns=("f0", "f1", "f2", "f3"),
        env=ENV,
    )
    trained = train_policy(market.slice(0, 800), config)
    policy = trained.algorithm.policy
    output = policy.get_submodule("actor.mu" if algorithm == "SAC" else "action_net")
    assert isinstance(output, torch.nn.Linear)
    with torch.no_grad():  # actions large enough for the gross cap (and PPO's clip) to bind
        output.weight.mul_(OUTPUT_GAIN[algorithm])
        output.bias.mul_(OUTPUT_GAIN[algorithm])
    return trained


@pytest.fixture(scope="module")
def trained(market):
    return {algorithm: _train(market, algorithm) for algorithm in ("PPO", "SAC")}


@pytest.fixture(scope="module")
def observations(market, trained) -> np.ndarray:
    """1,000 observations at random bars with random account states (B = 1,000)."""
    builder = trained["PPO"].builder
    rng = np.random.default_rng(7)
    n = market.n_assets
    t = rng.integers(builder.window - 1, market.n_bars, N_OBS)
    portfolio = PortfolioState(
        weights=rng.uniform(-3, 3, (N_OBS, n)),
        unrealized_pnl=rng.normal(0, 0.05, (N_OBS, n)),
        entry_basis=rng.normal(0, 3e-4, (N_OBS, n)),
        equity_ratio=rng.uniform(0.5, 2.0, N_OBS),
        margin_ratio=rng.uniform(0, 1, N_OBS),
        distance_to_liquidation=rng.uniform(0, 1, N_OBS),
        hours_to_funding=rng.integers(0, 8, (N_OBS, n)).astype(float),
    )
    return builder.build_batch(builder.normalize(market.features), t, portfolio)


def _scaling(observations: np.ndarray) -> ObservationScaling:
    """Statistics of a shifted half of the observations: the scaling changes every entry."""
    sample = observations[::2].astype(np.float64)
    return ObservationScaling(mean=sample.mean(0) + 0.3, var=sample.var(0) * 2.0, clip=5.0)


@pytest.mark.parametrize("scaled", [False, True], ids=["raw", "scaled"])
@pytest.mark.parametrize("algorithm", ["PPO", "SAC"])
def test_onnx_matches_the_sb3_policy_on_1000_observations(trained, observations, algorithm, scaled):
    policy = trained[algorithm]
    if scaled:
        policy = replace(policy, scaling=_scaling(observations))
    expected_actions = policy.act(observations)
    expected_weights = target_weights(expected_actions, ENV)
    actions, weights = onnx_policy(policy).run(observations)
    np.testing.assert_allclose(actions, expected_actions, rtol=0, atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights, rtol=0, atol=1e-5)
    assert actions.shape == weights.shape == (N_OBS, 3)
    # the comparison covers the gross cap binding, and (PPO) raw actions beyond the clip
    gross = np.abs(weights).sum(-1)
    binding = np.abs(expected_actions).sum(-1) * ENV.max_leverage > ENV.gross_leverage_cap
    assert 0.2 < binding.mean() < 1.0
    np.testing.assert_allclose(gross[binding], ENV.gross_leverage_cap, rtol=1e-9)
    if algorithm == "PPO":
        assert (np.abs(expected_actions) == 1.0).mean() > 0.05


def test_the_graph_maps_actions_around_an_equal_weight_baseline(trained, observations):
    policy = trained["PPO"]
    env = replace(ENV, action_baseline="equal_weight")
    shifted = replace(policy, config=replace(policy.config, env=env))
    actions, weights = onnx_policy(shifted).run(observations)
    np.testing.assert_allclose(weights, target_weights(policy.act(observations), env), atol=1e-5)
    assert np.abs(weights - onnx_policy(policy).run(observations)[1]).max() > 0.1


def test_the_graph_scales_the_raw_observation(trained, observations):
    policy = trained["PPO"]
    scaling = _scaling(observations)
    scaled = onnx_policy(replace(policy, scaling=scaling))
    np.testing.assert_allclose(
        scaled.act(observations), onnx_policy(policy).act(scaling.apply(observations)), atol=1e-6
    )
    assert np.abs(scaled.act(observations) - onnx_policy(policy).act(observations)).max() > 0.1


def test_the_graph_takes_any_batch_and_one_observation(trained, observations):
    exported = onnx_policy(trained["SAC"])
    one = exported.target_weights(observations[3])
    assert one.shape == (1, 3) and one.dtype == np.float64
    np.testing.assert_array_equal(one[0], exported.target_weights(observations[:5])[3])
    np.testing.assert_array_equal(exported.act(observations[:7]), exported.run(observations[:7])[0])


def test_the_exported_model_is_valid_onnx_with_named_dynamic_io(trained, tmp_path):
    path = tmp_path / "policy.onnx"
    data = export_policy(trained["PPO"].algorithm, ENV, path=path)
    assert path.read_bytes() == data
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET
    assert [i.name for i in model.graph.input] == [OBSERVATIONS]
    assert [o.name for o in model.graph.output] == [ACTIONS, TARGET_WEIGHTS]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"


def _registry(tmp_path) -> str:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return mlflow.create_experiment("onnx", artifact_location=(tmp_path / "a").as_uri())


def _spec(market, policy: TrainedPolicy) -> PolicySpec:
    return PolicySpec(
        algorithm=policy.config.algorithm,
        symbols=market.symbols,
        venue="synthetic",
        timeframe="1h",
        env_config=ENV,
        builder=policy.builder,
        train_end=train_end_timestamp(market.slice(0, 800)),
    )


def test_the_registered_model_runs_on_onnxruntime_with_its_scaling(
    market, trained, observations, tmp_path
):
    scaling = _scaling(observations)
    policy = replace(trained["PPO"], scaling=scaling)
    with mlflow.start_run(experiment_id=_registry(tmp_path)):
        log_policy(policy.algorithm, _spec(market, policy), "onnx-policy", scaling=scaling)
    loaded = load_policy("models:/onnx-policy/1")
    assert loaded.backend == ONNX_BACKEND
    assert loaded.scaling is not None
    np.testing.assert_array_equal(loaded.scaling.mean, scaling.mean)
    expected = policy.act(observations)
    np.testing.assert_allclose(loaded.act(observations), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        loaded.predict(None, observations), target_weights(expected, ENV), rtol=0, atol=1e-5
    )
    # the same version without its ONNX graph acts through SB3 and the shipped scaling
    loaded.onnx = None
    assert loaded.backend == SB3_BACKEND
    np.testing.assert_allclose(loaded.act(observations), expected, rtol=0, atol=1e-12)
    assert any(r.startswith("onnxruntime==") for r in pip_requirements())


def test_a_version_without_an_onnx_artifact_loads_on_sb3(market, trained, observations, tmp_path):
    policy = trained["SAC"]
    spec = _spec(market, policy)
    policy.algorithm.save(tmp_path / "policy.zip")
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    with mlflow.start_run(experiment_id=_registry(tmp_path)):
        log_policy(policy.algorithm, spec, "policy")
        mlflow.pyfunc.log_model(  # a version logged before the ONNX export existed
            name="older",
            python_model=str(Path(policy_model.__file__).with_name("policy_model_entry.py")),
            artifacts={"policy": str(tmp_path / "policy.zip"), "spec": str(tmp_path / "spec.json")},
            pip_requirements=pip_requirements(),
            registered_model_name="policy",
        )
    current, older = load_policy("models:/policy/1"), load_policy("models:/policy/2")
    assert (current.backend, older.backend) == (ONNX_BACKEND, SB3_BACKEND)
    np.testing.assert_allclose(
        current.predict(None, observations), older.predict(None, observations), rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(older.act(observations), policy.act(observations), atol=1e-12)


@pytest.mark.parametrize("squash", [False, True], ids=["gsde", "gsde-squashed"])
def test_a_policy_without_a_plain_gaussian_is_traced_through_its_forward(
    market, observations, squash
):
    env = PerpPortfolioEnv(market, ENV, FeatureNormalizer.fit(market.features[:800]))
    model = PPO("MlpPolicy", env, use_sde=True, policy_kwargs={"squash_output": squash}, seed=0)
    assert isinstance(model.policy.action_dist, StateDependentNoiseDistribution)
    output = model.policy.get_submodule("action_net")
    assert isinstance(output, torch.nn.Linear)
    with torch.no_grad():
        output.weight.mul_(40.0)
    expected = model.predict(observations, deterministic=True)[0].astype(np.float64)
    actions, weights = OnnxPolicy(export_policy(model, ENV)).run(observations)
    np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(weights, target_weights(expected, ENV), rtol=0, atol=1e-5)
    assert np.abs(expected).max() > 0.5
