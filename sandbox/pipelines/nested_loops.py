"""Static loops: records, a loop inside a loop, and a limit on how many iterations run at once."""

from kfp import components, dsl

IMAGE = "python:3.10-slim"


def show(label: str, value: str) -> None:
    """Print a label and a value."""
    print(f"{label}: {value}")


show_op = components.create_component_from_func(show, base_image=IMAGE)


@dsl.pipeline(
    name="nested-loops", description="A loop over records, one at a time, with a loop over numbers inside."
)
def nested_loops(greeting: str = "hello") -> None:
    with dsl.ParallelFor([{"a": 1, "b": 2}, {"a": 10, "b": 20}], parallelism=1) as outer:
        show_op("a", outer.a)
        with dsl.ParallelFor([100, 200, 300]) as inner:
            show_op(outer.b, inner)
    show_op("greeting", greeting)


PIPELINE = nested_loops
