"""regctl's Python API.

    from regctl import Client

    client = Client("https://regctl.example.com", token)   # a registry served by `regctl serve`
    client = Client.local()                                 # this machine's registry (REGCTL_* settings)
    version = client.register("resnet", "models/resnet")
    final = client.wait(version.jobs[0])
    client.fetch("resnet@prod", "resnet.pt")

    regctl.register_module("tiny", model, inputs=[...], dims={...})   # an nn.Module from a script

Both clients have the same methods and return the same typed records (`regctl.registry.entities`).
Importing this package is cheap: it loads neither SQLAlchemy, Celery nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Client", "LocalClient", "RegistryClient", "register_module"]

if TYPE_CHECKING:
    from regctl.client import RegistryClient
    from regctl.local import LocalClient
    from regctl.remote import Client


def __getattr__(name: str) -> Any:
    if name == "Client":
        from regctl.remote import Client

        return Client
    if name == "LocalClient":
        from regctl.local import LocalClient

        return LocalClient
    if name == "register_module":
        from regctl.from_python import register_module

        return register_module
    if name == "RegistryClient":
        from regctl.client import RegistryClient

        return RegistryClient
    raise AttributeError(f"module 'regctl' has no attribute {name!r}")
