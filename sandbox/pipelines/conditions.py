"""Coin flips deciding which steps run: an if/else pair and conditions nested two deep.

Exactly one of the two top-level branches runs; the nested branch needs a second and a
third flip to agree with the message it prints.
"""

from kfp import components, dsl

IMAGE = "python:3.10-slim"


def flip_coin() -> str:
    """Return heads or tails, at random."""
    import random

    return random.choice(["heads", "tails"])


def announce(message: str) -> None:
    """Print the message."""
    print(message)


flip_coin_op = components.create_component_from_func(flip_coin, base_image=IMAGE)
announce_op = components.create_component_from_func(announce, base_image=IMAGE)


@dsl.pipeline(name="conditions", description="An if/else on a coin flip, and conditions nested inside it.")
def conditions() -> None:
    first = flip_coin_op()
    second = flip_coin_op()
    with dsl.Condition(first.output == "heads"):
        announce_op("the first coin came up heads")
        with dsl.Condition(second.output == "heads"):
            third = flip_coin_op()
            with dsl.Condition(third.output == "tails"):
                announce_op("heads, heads, then tails")
    with dsl.Condition(first.output == "tails"):
        announce_op("the first coin came up tails")


PIPELINE = conditions
