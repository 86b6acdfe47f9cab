"""A directory as an output artifact, read by a Python component and by a text-defined one."""

from kfp import components, dsl
from kfp.components import InputPath, OutputPath

IMAGE = "python:3.10-slim"


def write_pages(pages: int, book_path: OutputPath()) -> None:
    """Write one file per page into the directory `book_path`."""
    import os

    os.makedirs(book_path, exist_ok=True)
    for page in range(1, pages + 1):
        with open(os.path.join(book_path, f"page-{page}.txt"), "w") as out:
            out.write(f"page {page}\n")


def count_pages(book_path: InputPath()) -> int:
    """Return how many files the directory holds."""
    import os

    return len(os.listdir(book_path))


write_pages_op = components.create_component_from_func(write_pages, base_image=IMAGE)
count_pages_op = components.create_component_from_func(count_pages, base_image=IMAGE)
list_pages_op = components.load_component_from_text(
    """
name: List pages
inputs:
- {name: book}
outputs:
- {name: listing, type: Text}
implementation:
  container:
    image: busybox:1.36
    command:
    - sh
    - -ec
    - |
      mkdir -p "$(dirname "$1")"
      ls -1 "$0" > "$1"
    - {inputPath: book}
    - {outputPath: listing}
"""
)


@dsl.pipeline(
    name="output-directory", description="Write a directory of pages; count and list them twice over."
)
def output_directory(pages: int = 3) -> None:
    book = write_pages_op(pages=pages)
    count_pages_op(book.outputs["book"])
    list_pages_op(book=book.outputs["book"])
    second = write_pages_op(pages=1)
    list_pages_op(book=second.outputs["book"])


PIPELINE = output_directory
