"""Pod-level settings: a sidecar, resources, a secret as environment, a node selector,
a DNS config, and a whole-run limit of one pod at a time."""

from kfp import components, dsl
from kubernetes import client as k8s

IMAGE = "python:3.10-slim"


def ping(url: str) -> None:
    """Fetch a URL from the sidecar beside this step."""
    import time
    import urllib.request

    for _ in range(30):
        try:
            print(urllib.request.urlopen(url, timeout=2).read()[:100])
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"{url} never answered")


def show_secret_length() -> None:
    """Print the length of the token the secret provides (never the token)."""
    import os

    print(len(os.environ.get("API_TOKEN", "")))


ping_op = components.create_component_from_func(ping, base_image=IMAGE)
show_secret_length_op = components.create_component_from_func(show_secret_length, base_image=IMAGE)


@dsl.pipeline(name="pod-settings", description="A sidecar, resources, a secret, and one pod at a time.")
def pod_settings() -> None:
    server = dsl.Sidecar(name="web", image="nginx:1.25-alpine", command=["nginx", "-g", "daemon off;"])
    ping_op("http://localhost:80/").add_sidecar(server).set_cpu_request("100m").set_memory_limit("256Mi")
    (
        show_secret_length_op()
        .add_env_variable(
            k8s.V1EnvVar(
                name="API_TOKEN",
                value_from=k8s.V1EnvVarSource(
                    secret_key_ref=k8s.V1SecretKeySelector(name="api", key="token")
                ),
            )
        )
        .add_node_selector_constraint("kubernetes.io/os", "linux")
    )


PIPELINE = pod_settings
PIPELINE_CONF = dsl.PipelineConf().set_parallelism(1)
PIPELINE_CONF.set_dns_config(
    k8s.V1PodDNSConfig(nameservers=["1.1.1.1"], options=[k8s.V1PodDNSConfigOption(name="ndots", value="2")])
)
