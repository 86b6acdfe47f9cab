"""Steps that other metadata writers own: one labelled as TFX, one annotated as a KFP v2 component.

The KFP v1 metadata writer leaves both alone, and so must the reconciler; the plain step
between them is recorded as usual.
"""

from kfp import components, dsl
from kfp.components import OutputPath

IMAGE = "python:3.10-slim"


def make_examples(examples_path: OutputPath("Examples")) -> None:
    """Write a few examples."""
    with open(examples_path, "w") as out:
        out.write("feature,label\n1,0\n2,1\n")


def note(message: str) -> None:
    """Print a note."""
    print(message)


make_examples_op = components.create_component_from_func(make_examples, base_image=IMAGE)
note_op = components.create_component_from_func(note, base_image=IMAGE)


@dsl.pipeline(
    name="tfx-and-v2-steps", description="A TFX-labelled step, a v2-annotated step and a plain one."
)
def tfx_and_v2_steps() -> None:
    tfx_like = make_examples_op()
    # The compiler keeps an SDK type the op already has, so this step stays `tfx`.
    tfx_like.add_pod_label("pipelines.kubeflow.org/pipeline-sdk-type", "tfx")
    v2_like = note_op("a step recorded by the KFP v2 launcher, not by a v1 writer")
    v2_like.add_pod_annotation("pipelines.kubeflow.org/v2_component", "true")
    note_op("a plain KFP v1 step").after(tfx_like, v2_like)


PIPELINE = tfx_and_v2_steps
