"""Inputs and outputs whose names the compiler must sanitise, and the outputs the KFP UI reads.

Names with spaces, dots, capitals and punctuation become template, parameter and path names
by different rules; `mlpipeline-ui-metadata` and `mlpipeline-metrics` keep their bare names.
"""

from kfp import components, dsl
from kfp.components import OutputPath

IMAGE = "python:3.10-slim"

summarise_op = components.load_component_from_text(
    """
name: Summarise Table (v2.1)
inputs:
- {name: Input Table, type: CSV}
- {name: min.rows, type: Integer, default: '1'}
- {name: Run Label, type: String}
outputs:
- {name: Filtered Table, type: CSV}
- {name: row-count, type: Integer}
- {name: Mixed_Case Output, type: String}
- {name: MLPipeline UI metadata, type: UI_metadata}
- {name: MLPipeline Metrics, type: Metrics}
implementation:
  container:
    image: python:3.10-slim
    command:
    - python3
    - -c
    - |
      import json, os, sys
      table, min_rows, label, filtered, count, mixed, ui, metrics = sys.argv[1:]
      rows = open(table).read().splitlines()
      kept = rows if len(rows) >= int(min_rows) else []
      for path in (filtered, count, mixed, ui, metrics):
          os.makedirs(os.path.dirname(path), exist_ok=True)
      open(filtered, "w").write("\\n".join(kept))
      open(count, "w").write(str(len(kept)))
      open(mixed, "w").write(label)
      markdown = {"type": "markdown", "storage": "inline", "source": "# " + label}
      json.dump({"outputs": [markdown]}, open(ui, "w"))
      json.dump({"metrics": [{"name": "rows-kept", "numberValue": len(kept)}]}, open(metrics, "w"))
    - {inputPath: Input Table}
    - {inputValue: min.rows}
    - {inputValue: Run Label}
    - {outputPath: Filtered Table}
    - {outputPath: row-count}
    - {outputPath: Mixed_Case Output}
    - {outputPath: MLPipeline UI metadata}
    - {outputPath: MLPipeline Metrics}
"""
)


def make_table(rows: int, table_path: OutputPath("CSV")) -> None:
    """Write a table of `rows` numbered rows."""
    with open(table_path, "w") as out:
        out.write("\n".join(f"row {i}" for i in range(rows)))


def report(
    row_count: int,
    mlpipeline_ui_metadata_path: OutputPath("UI_metadata"),
    mlpipeline_metrics_path: OutputPath("Metrics"),
) -> None:
    """Show the row count in the KFP UI, as markdown and as a metric."""
    import json

    with open(mlpipeline_ui_metadata_path, "w") as ui:
        json.dump({"outputs": [{"type": "markdown", "storage": "inline", "source": f"{row_count} rows"}]}, ui)
    with open(mlpipeline_metrics_path, "w") as metrics:
        json.dump({"metrics": [{"name": "row-count", "numberValue": row_count}]}, metrics)


make_table_op = components.create_component_from_func(make_table, base_image=IMAGE)
report_op = components.create_component_from_func(report, base_image=IMAGE)


@dsl.pipeline(
    name="Odd Names & UI outputs", description="Names the compiler sanitises; outputs the UI shows."
)
def odd_names(rows: int = 4, run_label: str = "Run #1 (odd names)") -> None:
    table = make_table_op(rows=rows).set_display_name("Make the TABLE")
    summary = summarise_op(
        input_table=table.outputs["table"],
        min_rows=2,
        run_label=f"{run_label}: {dsl.EXECUTION_ID_PLACEHOLDER}",
    )
    report_op(row_count=summary.outputs["row_count"])


PIPELINE = odd_names
