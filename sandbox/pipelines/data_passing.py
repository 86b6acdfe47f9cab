"""Every way a value reaches a step: from a constant, a pipeline parameter or a step's output,
taken by value or as a file."""

from kfp import components, dsl
from kfp.components import InputPath, OutputPath

IMAGE = "python:3.10-slim"


def produce(text_path: OutputPath()) -> str:
    """Write a file and return a value."""
    with open(text_path, "w") as out:
        out.write("produced as a file")
    return "produced as a value"


def take_value(value: str) -> None:
    """Print a value it was given."""
    print(value)


def take_file(text_path: InputPath()) -> None:
    """Print the file it was given."""
    with open(text_path) as text:
        print(text.read())


produce_op = components.create_component_from_func(produce, base_image=IMAGE)
take_value_op = components.create_component_from_func(take_value, base_image=IMAGE)
take_file_op = components.create_component_from_func(take_file, base_image=IMAGE)


@dsl.pipeline(
    name="data-passing", description="Constants, parameters and outputs, each by value and by file."
)
def data_passing(message: str = "from a pipeline parameter") -> None:
    produced = produce_op()
    take_value_op("from a constant")
    take_file_op("from a constant")
    take_value_op(message)
    take_file_op(message)
    take_value_op(produced.outputs["Output"])
    take_file_op(produced.outputs["Output"])
    take_value_op(produced.outputs["text"])
    take_file_op(produced.outputs["text"])


PIPELINE = data_passing
