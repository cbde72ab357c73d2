"""The native async Python client: queries, mutations, actions and live subscriptions
over Convex's WebSocket sync protocol, with reconnects that lose no mutation::

    from syncline.client import Client

    async with Client("http://127.0.0.1:3210") as client:
        await client.mutation("counter:increment")
        async with client.subscribe("counter:get") as values:
            async for value in values:
                print(value)
"""

from syncline.client._client import Client, ClientState
from syncline.client._errors import ClientError, ConnectionLostError, FunctionError
from syncline.client._presence import Presence
from syncline.client._subscription import Subscription

__all__ = [
    "Client",
    "ClientError",
    "ClientState",
    "ConnectionLostError",
    "FunctionError",
    "Presence",
    "Subscription",
]
