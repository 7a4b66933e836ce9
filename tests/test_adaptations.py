"""Which seed of a recommended cell the registry's `candidate` alias points at."""

from tasktune.adaptations import candidate_version
from tests.evaluation.synthetic import correctness, make_result


def _seed(seed: int, version: int, best: float, interpolated: float | None = None):
    r = make_result("finetune_prompt", "tiny-llama", correctness(10, []), seed=seed)
    r.info.route_config.update(
        {"registry_version": version, "selected_on": "accuracy", "best_dev": {"accuracy": best}}
    )
    if interpolated is not None:  # WiSE-FT: the stored weights are the interpolated ones
        r.info.route_config["interpolated_dev"] = {"accuracy": interpolated}
    return r


def test_the_seed_with_the_best_dev_score_of_its_stored_weights_is_the_candidate():
    cell = ("finetune_prompt", "tiny-llama", "few")
    assert candidate_version([_seed(13, 1, 0.8), _seed(21, 2, 0.9)], *cell) == 2
    # Seed 21's best step was higher, but after interpolation seed 13's stored weights score better.
    assert candidate_version([_seed(13, 1, 0.8, 0.85), _seed(21, 2, 0.9, 0.7)], *cell) == 1
    assert candidate_version([_seed(13, 1, 0.8), _seed(21, 2, 0.8)], *cell) == 1  # a tie: the first seed
    assert candidate_version([_seed(13, 1, 0.8)], "lora", "tiny-llama", "few") is None
