"""Ten steps in a row, each reading the previous step's file: the pipeline the benchmarks scale.

Two steps change the caching defaults: one opts out, one accepts cached results up to a day old.
"""

from kfp import components, dsl
from kfp.components import InputPath, OutputPath

IMAGE = "python:3.10-slim"


def start(seed: int, numbers_path: OutputPath("Text")) -> None:
    """Write the first number of the sequence."""
    with open(numbers_path, "w") as numbers:
        numbers.write(f"{seed}\n")


def extend(previous_path: InputPath("Text"), step: int, numbers_path: OutputPath("Text")) -> None:
    """Copy the sequence and append its last number times `step`."""
    with open(previous_path) as previous:
        lines = previous.read().split()
    lines.append(str(int(lines[-1]) * step))
    with open(numbers_path, "w") as numbers:
        numbers.write("\n".join(lines) + "\n")


start_op = components.create_component_from_func(start, base_image=IMAGE)
extend_op = components.create_component_from_func(extend, base_image=IMAGE)


@dsl.pipeline(name="chain10", description="Ten steps, each passing a file to the next.")
def chain10(seed: int = 1) -> None:
    task = start_op(seed=seed)
    for step in range(2, 11):
        task = extend_op(previous=task.outputs["numbers"], step=step)
        if step == 4:
            task.set_caching_options(False)
        if step == 7:
            task.execution_options.caching_strategy.max_cache_staleness = "P1D"


PIPELINE = chain10
