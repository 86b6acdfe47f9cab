"""Raw dsl.ContainerOps (no component spec): file outputs passed on by value, an exit handler."""

from kfp import dsl

IMAGE = "busybox:1.36"
# One word a line, count them, keep the most frequent.
MOST_COMMON_WORD = (
    'echo "$0" | tr " " "\\n" | sort | uniq -c | sort -rn | head -1 | awk \'{print $2}\' > /tmp/word'
)


@dsl.pipeline(
    name="raw-container-ops", description="Find the most common word and store it; always say goodbye."
)
def raw_container_ops(text: str = "the cat and the dog and the bird", store_dir: str = "/tmp/words") -> None:
    goodbye = dsl.ContainerOp(
        name="say-goodbye", image=IMAGE, command=["echo", "goodbye from the exit handler"]
    )
    with dsl.ExitHandler(goodbye):
        common = dsl.ContainerOp(
            name="most-common-word",
            image=IMAGE,
            command=["sh", "-c"],
            arguments=[MOST_COMMON_WORD, text],
            file_outputs={"word": "/tmp/word"},
        )
        dsl.ContainerOp(
            name="store-word",
            image=IMAGE,
            command=["sh", "-c"],
            arguments=['mkdir -p "$1" && echo "$0" > "$1/word"', common.outputs["word"], store_dir],
        )


PIPELINE = raw_container_ops
