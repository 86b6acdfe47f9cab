"""Volumes and Kubernetes resources as steps: a claim, a snapshot of it, a claim restored from
the snapshot, and a ConfigMap made by a ResourceOp whose fields later steps read."""

from kfp import dsl
from kubernetes import client as k8s

IMAGE = "busybox:1.36"


def settings_map() -> k8s.V1ConfigMap:
    """The ConfigMap the resource step creates."""
    return k8s.V1ConfigMap(
        api_version="v1",
        kind="ConfigMap",
        metadata=k8s.V1ObjectMeta(generate_name="run-settings-"),
        data={"greeting": "hello from a ConfigMap"},
    )


@dsl.pipeline(name="volumes", description="Write to a new volume, snapshot it, and read a restored copy.")
def volumes(size: str = "1Gi") -> None:
    claim = dsl.VolumeOp(name="data-volume", resource_name="data", size=size, modes=dsl.VOLUME_MODE_RWO)
    writer = dsl.ContainerOp(
        name="write-file",
        image=IMAGE,
        command=["sh", "-c", "echo written > /data/file && sync"],
        pvolumes={"/data": claim.volume},
    )
    snapshot = dsl.VolumeSnapshotOp(name="snapshot", resource_name="data-snapshot", volume=writer.pvolume)
    restored = dsl.VolumeOp(
        name="restored-volume",
        resource_name="restored",
        data_source=snapshot.snapshot,
        size=snapshot.outputs["size"],
    )
    settings = dsl.ResourceOp(
        name="settings",
        k8s_resource=settings_map(),
        attribute_outputs={"map-name": "{.metadata.name}"},
    )
    dsl.ContainerOp(
        name="read-file",
        image=IMAGE,
        command=["sh", "-c", 'cat /restored/file && echo "settings in $0"', settings.outputs["map-name"]],
        pvolumes={"/restored": restored.volume},
    )


PIPELINE = volumes
