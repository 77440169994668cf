import dagster as dg

from orchestration.definitions import build_definitions

EXPECTED_GROUPS = {
    "raw/ohlcv": "ingestion",
    "raw/funding_rates": "ingestion",
    "marts/fct_features": "features",
    "trained_policy": "training",
    "policy_evaluation": "evaluation",
    "champion_model": "promotion",
    "day_one_champion": "promotion",
    "serving_cycle": "serving",
}


def test_every_named_asset_exists_in_its_group(project_home):
    graph = build_definitions("test").resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    for asset, group in EXPECTED_GROUPS.items():
        assert groups.get(asset) == group, f"{asset} should be in group {group}"


def test_every_dependency_resolves_to_a_defined_asset(project_home):
    graph = build_definitions("test").resolve_asset_graph()
    defined = set(graph.get_all_asset_keys())
    for key in defined:
        node = graph.get(key)
        if node.is_external:
            continue
        dangling = set(node.parent_keys) - {k for k in defined if not graph.get(k).is_external}
        assert not dangling, f"{key.to_user_string()} depends on undefined {dangling}"


def test_quality_check_is_blocking_on_the_feature_mart(project_home):
    graph = build_definitions("test").resolve_asset_graph()
    check_key = dg.AssetCheckKey(
        dg.AssetKey(["marts", "fct_features"]), "feature_mart_expectations_check"
    )
    assert check_key in graph.asset_check_keys
    assert graph.get_check_spec(check_key).blocking


def test_jobs_schedules_and_sensor_exist(project_home):
    defs = build_definitions("test")
    for job in ("ingest_features_job", "retraining_job", "serving_job", "serving_cycle_job"):
        assert defs.resolve_job_def(job) is not None
    hourly = defs.resolve_schedule_def("hourly_ingestion_schedule")
    weekly = defs.resolve_schedule_def("weekly_retraining_schedule")
    assert hourly.cron_schedule == "5 * * * *" and hourly.job_name == "ingest_features_job"
    assert weekly.cron_schedule == "0 3 * * 1" and weekly.job_name == "retraining_job"
    assert defs.resolve_sensor_def("new_champion_sensor").job_name == "serving_job"
    serving = defs.resolve_schedule_def("hourly_serving_schedule")
    assert serving.cron_schedule == "2 * * * *" and serving.job_name == "serving_cycle_job"
    cycle = defs.resolve_job_def("serving_cycle_job")
    assert {"serving_cycle", "marts/fct_features", "raw/ohlcv"} <= {
        key.to_user_string() for key in cycle.asset_layer.selected_asset_keys
    }


def test_module_level_defs_is_the_code_location():
    from orchestration import definitions

    assert isinstance(definitions.defs, dg.Definitions)


def test_serving_is_downstream_of_the_champion_in_the_lineage(project_home):
    graph = build_definitions("test").resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("serving_cycle")).parent_keys}
    assert {"champion_model", "day_one_champion", "marts/fct_features"} <= parents
    evaluation = graph.get(dg.AssetKey("policy_evaluation")).parent_keys
    assert dg.AssetKey("day_one_champion") in evaluation
