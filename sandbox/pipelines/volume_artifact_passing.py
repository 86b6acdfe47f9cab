"""Artifacts passed through a Kubernetes volume instead of the artifact store.

With the pipeline's data passing method set to a volume, a consumer mounts the producer's
output from the volume; only the UI outputs and logs still go to the artifact repository.
"""

from kfp import components, dsl
from kfp.components import InputPath, OutputPath
from kfp.dsl import data_passing_methods
from kubernetes import client as k8s

IMAGE = "python:3.10-slim"


def make_numbers(count: int, numbers_path: OutputPath("Text")) -> None:
    """Write the numbers 1..count, one a line."""
    with open(numbers_path, "w") as out:
        out.write("\n".join(str(i) for i in range(1, count + 1)))


def add_up(
    numbers_path: InputPath("Text"),
    total_path: OutputPath("Integer"),
    mlpipeline_ui_metadata_path: OutputPath("UI_metadata"),
    mlpipeline_metrics_path: OutputPath("Metrics"),
) -> None:
    """Sum the numbers and show the total in the KFP UI."""
    import json

    with open(numbers_path) as numbers:
        total = sum(int(line) for line in numbers)
    with open(total_path, "w") as out:
        out.write(str(total))
    with open(mlpipeline_ui_metadata_path, "w") as ui:
        json.dump({"outputs": [{"type": "markdown", "storage": "inline", "source": f"total: {total}"}]}, ui)
    with open(mlpipeline_metrics_path, "w") as metrics:
        json.dump({"metrics": [{"name": "total", "numberValue": total}]}, metrics)


def show_total(total_path: InputPath("Integer")) -> None:
    """Print the total."""
    with open(total_path) as total:
        print(total.read())


make_numbers_op = components.create_component_from_func(make_numbers, base_image=IMAGE)
add_up_op = components.create_component_from_func(add_up, base_image=IMAGE)
show_total_op = components.create_component_from_func(show_total, base_image=IMAGE)


@dsl.pipeline(
    name="volume-artifact-passing", description="Producer and consumers share files through a volume."
)
def volume_artifact_passing(count: int = 10) -> None:
    numbers = make_numbers_op(count=count)
    total = add_up_op(numbers=numbers.outputs["numbers"])
    show_total_op(total.outputs["total"])


PIPELINE = volume_artifact_passing
PIPELINE_CONF = dsl.PipelineConf()
PIPELINE_CONF.data_passing_method = data_passing_methods.KubernetesVolume(
    volume=k8s.V1Volume(
        name="data",
        persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="artifact-data"),
    ),
    path_prefix="artifact_data/",
)
