"""A step retried on failure, a step with a deadline, and a deadline for the whole run."""

from kfp import dsl

IMAGE = "python:3.10-alpine"


@dsl.pipeline(
    name="retries-and-timeouts", description="One flaky step with retries, one slow step with a deadline."
)
def retries_and_timeouts() -> None:
    dsl.ContainerOp(
        name="flaky-step",
        image=IMAGE,
        command=["python", "-c"],
        arguments=["import random, sys; sys.exit(random.choice([0, 1]))"],
    ).set_retry(3, policy="OnFailure")
    dsl.ContainerOp(
        name="slow-step",
        image=IMAGE,
        command=["python", "-c"],
        arguments=["import random, time; time.sleep(random.uniform(0, 20))"],
    ).set_timeout(15)


PIPELINE = retries_and_timeouts
PIPELINE_CONF = dsl.PipelineConf().set_timeout(120)
