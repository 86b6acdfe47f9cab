"""An exit handler around two steps, with components loaded from a file and from text.

The exit step runs last whether the steps succeed or fail. The file-loaded component is
marked volatile, so the compiler gives it a max_cache_staleness of P0D.
"""

from kfp import components, dsl

# Repository-relative: the compiler records this path in component_ref (scripts/compile_pipelines.py
# runs from the repository root).
fetch_text_op = components.load_component_from_file("sandbox/pipelines/components/fetch-text.yaml")

count_words_op = components.load_component_from_text(
    """
name: Count words
inputs:
- {name: text, type: Text}
outputs:
- {name: words, type: Integer}
implementation:
  container:
    image: busybox:1.36
    command:
    - sh
    - -ec
    - |
      mkdir -p "$(dirname "$1")"
      wc -w < "$0" > "$1"
    - {inputPath: text}
    - {outputPath: words}
"""
)

report_op = components.load_component_from_text(
    """
name: Report
inputs:
- {name: message, type: String}
implementation:
  container:
    image: busybox:1.36
    command: [echo, {inputValue: message}]
"""
)


@dsl.pipeline(name="exit-handler", description="Fetch and count, then always report.")
def exit_handler(source: str = "the sandbox") -> None:
    with dsl.ExitHandler(report_op(message="exit handler: the run is over")):
        fetched = fetch_text_op(source=source)
        count_words_op(text=fetched.outputs["text"])


PIPELINE = exit_handler
