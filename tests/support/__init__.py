"""Helpers shared by the test layers (fixtures live in tests/conftest.py).

- ``graphql``: ``GraphQLClient`` and ``snapshot`` (everything stored, to prove nothing changed);
- ``documents``: GraphQL documents, factories through the API, checks of what is stored;
- ``commands``: counting the database commands the app sends, or holding one back;
- ``asgi``: the app in process with its lifespan running;
- ``server``: the one live-server harness (``memvault serve`` processes) and a dropping proxy;
- ``merge_oracle``: the RFC 7396 oracle and the RFC's examples;
- ``readme``: the repository root and the README's fenced blocks.
- ``npm_live``: the pinned npm packages of the README's browser example, which
  ``live_client.mjs`` runs in Node.
"""
