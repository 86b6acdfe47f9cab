"""Fan out over five static items, three at a time, then fan in through a shared volume.

Each iteration makes a sample and passes it to a second step as an artifact; that step
writes a line count to the volume the pipeline created, and the last step sums them.
"""

from kfp import components, dsl
from kfp.components import InputPath, OutputPath

IMAGE = "python:3.10-slim"
REGIONS = [
    {"region": "north", "rows": 10},
    {"region": "east", "rows": 20},
    {"region": "south", "rows": 30},
    {"region": "west", "rows": 40},
    {"region": "centre", "rows": 50},
]


def sample(region: str, rows: int, sample_path: OutputPath("CSV")) -> None:
    """Write `rows` lines for one region."""
    with open(sample_path, "w") as out:
        for i in range(rows):
            out.write(f"{region},{i}\n")


def count_rows(region: str, sample_path: InputPath("CSV"), counts_dir: str) -> int:
    """Count the sample's lines, note the count on the shared volume, and return it."""
    import os

    with open(sample_path) as rows:
        count = sum(1 for _ in rows)
    os.makedirs(counts_dir, exist_ok=True)
    with open(os.path.join(counts_dir, region), "w") as note:
        note.write(str(count))
    return count


def total_rows(counts_dir: str, total_path: OutputPath("JsonObject")) -> None:
    """Sum the counts every iteration left on the shared volume."""
    import json
    import os

    counts = {}
    for name in os.listdir(counts_dir):
        with open(os.path.join(counts_dir, name)) as note:
            counts[name] = int(note.read())
    with open(total_path, "w") as out:
        json.dump({"regions": counts, "total": sum(counts.values())}, out)


sample_op = components.create_component_from_func(sample, base_image=IMAGE)
count_rows_op = components.create_component_from_func(count_rows, base_image=IMAGE)
total_rows_op = components.create_component_from_func(total_rows, base_image=IMAGE)


@dsl.pipeline(name="fan-out-fan-in", description="Five iterations, three at a time, summed through a volume.")
def fan_out_fan_in(counts_subdir: str = "counts") -> None:
    scratch = dsl.VolumeOp(name="scratch", resource_name="scratch", size="1Gi", modes=dsl.VOLUME_MODE_RWO)
    counts_dir = f"/mnt/scratch/{dsl.RUN_ID_PLACEHOLDER}/{counts_subdir}"
    counted = []
    with dsl.ParallelFor(REGIONS, parallelism=3) as item:
        made = sample_op(region=item.region, rows=item.rows)
        counted.append(
            count_rows_op(
                region=item.region, sample=made.outputs["sample"], counts_dir=counts_dir
            ).add_pvolumes({"/mnt/scratch": scratch.volume})
        )
    total_rows_op(counts_dir=counts_dir).add_pvolumes({"/mnt/scratch": scratch.volume}).after(*counted)


PIPELINE = fan_out_fan_in
