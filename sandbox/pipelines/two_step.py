"""Two steps: a file output passed on as an artifact and, read from the same file, by value.

The consumer's inputs are named differently from the producer's outputs (`table` arrives as
`dataset`, `row_count` as `epochs`), as they usually are.
"""

from kfp import components, dsl
from kfp.components import InputPath, OutputPath

IMAGE = "python:3.10-slim"


def prepare_data(rows: int, table_path: OutputPath("Dataset"), row_count_path: OutputPath(int)) -> None:
    """Write `rows` lines of x,x*x and how many there are."""
    with open(table_path, "w") as table:
        for x in range(rows):
            table.write(f"{x},{x * x}\n")
    with open(row_count_path, "w") as count:
        count.write(str(rows))


def train(dataset_path: InputPath("Dataset"), epochs: int, model_path: OutputPath("Model")) -> None:
    """Fit y = a*x by least squares, `epochs` times for show, and save a."""
    with open(dataset_path) as table:
        pairs = [tuple(map(float, line.split(","))) for line in table]
    slope = 0.0
    for _ in range(epochs):
        slope = sum(x * y for x, y in pairs) / max(sum(x * x for x, _ in pairs), 1.0)
    with open(model_path, "w") as model:
        model.write(f"slope={slope}\n")


prepare_data_op = components.create_component_from_func(prepare_data, base_image=IMAGE)
train_op = components.create_component_from_func(train, base_image=IMAGE)


@dsl.pipeline(
    name="two-step", description="Prepare a table, then train on it for as many epochs as it has rows."
)
def two_step(rows: int = 20) -> None:
    prepared = prepare_data_op(rows=rows)
    train_op(dataset=prepared.outputs["table"], epochs=prepared.outputs["row_count"])


PIPELINE = two_step
