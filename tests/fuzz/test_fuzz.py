"""Hypothesis-mutated pods through the CLI into real MLMD, each batch in a child process.

Bounded for CI (a few batches); `python -m bench fuzz --pods 5000` is the long run.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.campaign import run_batch
from tests.fuzz.mutations import Mutation, mutations

BATCH = st.lists(mutations(), min_size=4, max_size=8)
CHILD_RUNS = settings(
    max_examples=4,
    deadline=None,
    database=None,
    # A failing example already names every mutation of its batch; shrinking would rerun
    # child processes for many minutes.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


@CHILD_RUNS
@given(batch=BATCH, seed=st.integers(0, 10**6))
def test_mutated_pods_never_abort_mlmd_and_clean_pods_converge(
    tmp_path: Path, batch: list[Mutation], seed: int
) -> None:
    result = run_batch(tmp_path, batch, clean=3, seed=seed)
    assert result.failures == [], "\n".join([*result.failures, *(m.where for m in batch)])


@settings(CHILD_RUNS, max_examples=2)
@given(batch=BATCH, seed=st.integers(0, 10**6))
def test_through_the_grpc_server_the_server_stays_up(
    tmp_path: Path, batch: list[Mutation], seed: int
) -> None:
    result = run_batch(tmp_path, batch, clean=2, seed=seed, grpc=True)
    assert not result.server_died
    assert result.failures == [], "\n".join([*result.failures, *(m.where for m in batch)])
