"""Input artifacts whose content is a constant or a pipeline parameter (Argo `raw` artifacts)."""

from kfp import components, dsl
from kfp.components import InputPath

IMAGE = "busybox:1.36"


def word_count(text_path: InputPath()) -> int:
    """Return the number of words in the file."""
    return len(open(text_path).read().split())


word_count_op = components.create_component_from_func(word_count, base_image="python:3.10-slim")


@dsl.pipeline(name="raw-artifact-values", description="Constants and parameters handed to steps as files.")
def raw_artifact_values(poem: str = "so much depends upon a red wheel barrow") -> None:
    dsl.ContainerOp(
        name="cat-constant",
        image=IMAGE,
        command=["cat", "/tmp/inputs/constant/data"],
        artifact_argument_paths=[
            dsl.InputArgumentPath(argument="a constant, as a file", path="/tmp/inputs/constant/data")
        ],
    )
    dsl.ContainerOp(
        name="cat-parameter",
        image=IMAGE,
        command=["cat", "/tmp/inputs/poem/data"],
        artifact_argument_paths=[dsl.InputArgumentPath(argument=poem, path="/tmp/inputs/poem/data")],
    )
    word_count_op("one two three four")
    word_count_op(poem)


PIPELINE = raw_artifact_values
