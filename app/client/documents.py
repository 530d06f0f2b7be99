"""Every GraphQL document the client sends, in one place.

``tests/client/test_client_documents.py`` validates each against ``schema.graphql``. Documents
are named operations (the server logs and errors name them) built from three fragments, so every
call reads the same fields of a session, a user or a message.
"""

from __future__ import annotations

SESSION_FIELDS = """
fragment SessionFields on Session {
  id sessionId userId metadata memoryCount createdAt updatedAt
}
"""

USER_FIELDS = """
fragment UserFields on User {
  id userId email firstName lastName metadata createdAt updatedAt
}
"""

MESSAGE_FIELDS = """
fragment MessageFields on Memory {
  uuid seq role roleType content metadata tokenCount createdAt updatedAt
}
"""

# Sessions and users are created, read, changed, deleted and listed by documents of one shape,
# written here once for an "Item" and made for each by ``_documents_of``.
ITEM_DOCUMENTS = {
    "CreateItem": """
mutation CreateItem($input: CreateItemInput!) {
  createItem(input: $input) { ...ItemFields }
}
""",
    "GetItem": """
query GetItem($itemId: String!) {
  item(itemId: $itemId) { ...ItemFields }
}
""",
    "UpdateItem": """
mutation UpdateItem($input: UpdateItemInput!) {
  updateItem(input: $input) { ...ItemFields }
}
""",
    "DeleteItem": """
mutation DeleteItem($itemId: String!) {
  deleteItem(itemId: $itemId) { deleted }
}
""",
    "ListItems": """
query ListItems($first: Int!, $after: String) {
  items(first: $first, after: $after) {
    edges { cursor node { ...ItemFields } }
    pageInfo { hasNextPage endCursor }
  }
}
""",
}


def _documents_of(type_name: str, fragment: str) -> dict[str, str]:
    """``ITEM_DOCUMENTS`` for ``type_name`` (Session or User), with its fields' ``fragment``."""

    def made(text: str) -> str:
        return text.replace("Item", type_name).replace("item", type_name.lower())

    return {
        made(name): made(text) + (fragment if "...ItemFields" in text else "")
        for name, text in ITEM_DOCUMENTS.items()
    }


# Messages (memvault's memories)

ADD_MEMORIES = """
mutation AddMemories($input: AddMemoriesInput!) {
  addMemories(input: $input) {
    session { sessionId }
    memories { ...MessageFields }
  }
}
"""

LAST_MEMORIES = """
query LastMemories($sessionId: String!, $last: Int!, $before: String) {
  session(sessionId: $sessionId) {
    memories(last: $last, before: $before) {
      nodes { ...MessageFields }
      pageInfo { hasPreviousPage startCursor }
    }
  }
}
"""

SEARCH_MEMORIES = """
query SearchMemories($query: String!, $filter: MemorySearchFilter, $first: Int, $after: String) {
  searchMemories(query: $query, filter: $filter, first: $first, after: $after) {
    edges { score node { ...MessageFields session { sessionId } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

MEMORY_SESSION = """
query MemorySession($uuid: String!) {
  memory(uuid: $uuid) { uuid session { sessionId } }
}
"""

UPDATE_MEMORY = """
mutation UpdateMemory($input: UpdateMemoryInput!) {
  updateMemory(input: $input) { ...MessageFields }
}
"""

USER_SESSIONS = """
query UserSessions($userId: String!, $first: Int!, $after: String) {
  user(userId: $userId) {
    sessions(first: $first, after: $after) {
      edges { cursor node { ...SessionFields } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""

OPERATIONS: dict[str, str] = {
    **_documents_of("Session", SESSION_FIELDS),
    "AddMemories": ADD_MEMORIES + MESSAGE_FIELDS,
    "LastMemories": LAST_MEMORIES + MESSAGE_FIELDS,
    "MemorySession": MEMORY_SESSION,
    "SearchMemories": SEARCH_MEMORIES + MESSAGE_FIELDS,
    "UpdateMemory": UPDATE_MEMORY + MESSAGE_FIELDS,
    **_documents_of("User", USER_FIELDS),
    "UserSessions": USER_SESSIONS + SESSION_FIELDS,
}
"""Every document by its operation name: the client sends only these."""
