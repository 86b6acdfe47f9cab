"""Recursion: a graph component that trains, evaluates, and calls itself while the error is high."""

from kfp import components, dsl
from kfp.components import InputPath, OutputPath

IMAGE = "python:3.10-slim"


def make_dataset(rows: int, dataset_path: OutputPath("CSV")) -> None:
    """Write `rows` noisy points of y = 3x."""
    import random

    with open(dataset_path, "w") as out:
        for x in range(rows):
            out.write(f"{x},{3 * x + random.gauss(0, 1)}\n")


def fit(dataset_path: InputPath("CSV"), model_path: OutputPath("Model")) -> None:
    """Fit the slope of y = a*x on a random half of the points."""
    import random

    with open(dataset_path) as table:
        points = [tuple(map(float, line.split(","))) for line in table]
    half = random.sample(points, max(1, len(points) // 2))
    slope = sum(x * y for x, y in half) / max(sum(x * x for x, _ in half), 1.0)
    with open(model_path, "w") as out:
        out.write(str(slope))


def evaluate(
    dataset_path: InputPath("CSV"), model_path: InputPath("Model"), error_path: OutputPath(float)
) -> None:
    """Write the model's mean squared error over all points."""
    with open(model_path) as model:
        slope = float(model.read())
    with open(dataset_path) as table:
        points = [tuple(map(float, line.split(","))) for line in table]
    with open(error_path, "w") as out:
        out.write(str(sum((y - slope * x) ** 2 for x, y in points) / len(points)))


make_dataset_op = components.create_component_from_func(make_dataset, base_image=IMAGE)
fit_op = components.create_component_from_func(fit, base_image=IMAGE)
evaluate_op = components.create_component_from_func(evaluate, base_image=IMAGE)


@dsl.graph_component
def train_until_low_error(dataset: dsl.PipelineParam) -> None:
    model = fit_op(dataset=dataset)
    evaluation = evaluate_op(dataset=dataset, model=model.outputs["model"])
    with dsl.Condition(evaluation.outputs["error"] > 0.01):
        train_until_low_error(dataset)


@dsl.pipeline(name="train-until-good", description="Train again and again until the error is small.")
def train_until_good(rows: int = 50) -> None:
    data = make_dataset_op(rows=rows)
    train_until_low_error(data.outputs["dataset"])


PIPELINE = train_until_good
