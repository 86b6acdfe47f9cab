"""RBAC-restricted access to the sandbox API emulator, from the rendered manifests.

For any test that wants to run the controller with exactly the rights the manifests give
it (e.g. the DR suite)::

    from tests.deploy.rbac import restricted_kubeconfig
    kubeconfig = restricted_kubeconfig(cluster.api, tmp_path / "sa.kubeconfig")
    ...                      # run the controller with kubeconfig=str(kubeconfig)
    assert cluster.api.denied == []

``overlay`` picks the rendered overlay (``kfp-dropin``, ``standalone``, ``multi-user``);
``edit`` can change the rendered objects first (e.g. drop a rule, to show a test is live).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sandbox.apiserver import ApiServer
from tests.deploy import manifests
from tests.deploy.manifests import Obj


def restricted_kubeconfig(
    api: ApiServer,
    path: Path,
    overlay: str = "kfp-dropin",
    edit: Callable[[list[Obj]], None] | None = None,
) -> Path:
    """Load the overlay's rendered RBAC into ``api`` (enforcing it) and write a kubeconfig
    for its ServiceAccount (``system:serviceaccount:<namespace>:kfp-metadata-reconciler``)."""
    objs = manifests.objects(overlay)
    if edit is not None:
        edit(objs)
    loaded = api.load_rbac(manifests.rbac_text(objs))
    assert loaded >= 4, f"only {loaded} RBAC objects loaded from {overlay}"
    namespace = manifests.deployment(objs)["metadata"]["namespace"]
    return api.write_kubeconfig(path, user=manifests.service_account_user(objs), namespace=namespace)


def controller_env(overlay: str, **overrides: str) -> dict[str, str]:
    """The rendered Deployment's environment (fieldRefs resolved) plus ``overrides``.

    Typical overrides point it at the sandbox: ``KFPMR_KUBECONFIG``, ``KFPMR_MLMD_URL``
    (wins over the manifests' METADATA_GRPC_SERVICE_HOST), ``KFPMR_HEALTH_PORT="0"``, and
    shorter periods.
    """
    env = manifests.container_env(manifests.objects(overlay))
    env.update(overrides)
    return env
