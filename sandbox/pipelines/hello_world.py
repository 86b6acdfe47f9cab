"""One step with one constant input and one returned output: the smallest pipeline."""

from kfp import components, dsl

IMAGE = "python:3.10-slim"


def greet(name: str) -> str:
    """Print a greeting and return it."""
    message = f"Hello, {name}!"
    print(message)
    return message


greet_op = components.create_component_from_func(greet, base_image=IMAGE)


@dsl.pipeline(name="hello-world", description="A single step that greets the sandbox.")
def hello_world() -> None:
    greet_op("sandbox")


PIPELINE = hello_world
