"""Loops over items known only at run time: a step's JSON list output, and a pipeline parameter.

The lists hold strings, numbers and records; loops over records read the records' fields,
and one loop body passes an artifact between its two steps.
"""

from kfp import components, dsl
from kfp.components import InputPath, OutputPath

IMAGE = "python:3.10-slim"


def list_words() -> list:
    """Return some words."""
    return ["apple", "banana", "cherry"]


def list_ints() -> list:
    """Return some numbers."""
    return [3, 1, 4]


def list_records() -> list:
    """Return records with a shape and a size."""
    return [{"shape": "cube", "size": 1}, {"shape": "sphere", "size": 100}]


def echo(value: str) -> None:
    """Print the value."""
    print(value)


def repeat(word: str, times: int, repeated_path: OutputPath("Text")) -> None:
    """Write the word `times` times."""
    with open(repeated_path, "w") as out:
        out.write(" ".join([word] * times))


def measure(text_path: InputPath("Text"), label: str) -> int:
    """Return the length of the text."""
    with open(text_path) as text:
        length = len(text.read())
    print(label, length)
    return length


list_words_op = components.create_component_from_func(list_words, base_image=IMAGE)
list_ints_op = components.create_component_from_func(list_ints, base_image=IMAGE)
list_records_op = components.create_component_from_func(list_records, base_image=IMAGE)
echo_op = components.create_component_from_func(echo, base_image=IMAGE)
repeat_op = components.create_component_from_func(repeat, base_image=IMAGE)
measure_op = components.create_component_from_func(measure, base_image=IMAGE)


@dsl.pipeline(name="parallel-for", description="ParallelFor over step outputs and over a pipeline parameter.")
def parallel_for(colours: str = '["red", "green", "blue"]', times: int = 2) -> None:
    words = list_words_op()
    with dsl.ParallelFor(words.output) as word:
        repeated = repeat_op(word=word, times=times)
        measure_op(text=repeated.outputs["repeated"], label=word)
    numbers = list_ints_op()
    with dsl.ParallelFor(numbers.output, parallelism=2) as number:
        echo_op(number)
    records = list_records_op()
    with dsl.ParallelFor(records.output) as record:
        echo_op(record.shape)
        echo_op(record.size)
    with dsl.ParallelFor(colours) as colour:
        echo_op(colour)


PIPELINE = parallel_for
