"""Every GraphQL document the client sends, in one place.

``tests/test_client_documents.py`` validates each against ``schema.graphql``. Documents are named
operations (the server logs and errors name them) built from three fragments, so every call reads
the same fields of a session, a user or a message.
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

PAGE_INFO_FORWARD = "pageInfo { hasNextPage endCursor }"

# Sessions

CREATE_SESSION = (
    """
mutation CreateSession($input: CreateSessionInput!) {
  createSession(input: $input) { ...SessionFields }
}
"""
    + SESSION_FIELDS
)

GET_SESSION = (
    """
query GetSession($sessionId: String!) {
  session(sessionId: $sessionId) { ...SessionFields }
}
"""
    + SESSION_FIELDS
)

UPDATE_SESSION = (
    """
mutation UpdateSession($input: UpdateSessionInput!) {
  updateSession(input: $input) { ...SessionFields }
}
"""
    + SESSION_FIELDS
)

DELETE_SESSION = """
mutation DeleteSession($sessionId: String!) {
  deleteSession(sessionId: $sessionId) { deleted }
}
"""

LIST_SESSIONS = (
    f"""
query ListSessions($first: Int!, $after: String) {{
  sessions(first: $first, after: $after) {{
    edges {{ cursor node {{ ...SessionFields }} }}
    {PAGE_INFO_FORWARD}
  }}
}}
"""
    + SESSION_FIELDS
)

# Messages (memvault's memories)

ADD_MEMORIES = (
    """
mutation AddMemories($input: AddMemoriesInput!) {
  addMemories(input: $input) {
    session { sessionId }
    memories { ...MessageFields }
  }
}
"""
    + MESSAGE_FIELDS
)

LAST_MEMORIES = (
    """
query LastMemories($sessionId: String!, $last: Int!, $before: String) {
  session(sessionId: $sessionId) {
    memories(last: $last, before: $before) {
      nodes { ...MessageFields }
      pageInfo { hasPreviousPage startCursor }
    }
  }
}
"""
    + MESSAGE_FIELDS
)

MEMORY_SESSION = """
query MemorySession($uuid: String!) {
  memory(uuid: $uuid) { uuid session { sessionId } }
}
"""

UPDATE_MEMORY = (
    """
mutation UpdateMemory($input: UpdateMemoryInput!) {
  updateMemory(input: $input) { ...MessageFields }
}
"""
    + MESSAGE_FIELDS
)

# Users

CREATE_USER = (
    """
mutation CreateUser($input: CreateUserInput!) {
  createUser(input: $input) { ...UserFields }
}
"""
    + USER_FIELDS
)

GET_USER = (
    """
query GetUser($userId: String!) {
  user(userId: $userId) { ...UserFields }
}
"""
    + USER_FIELDS
)

UPDATE_USER = (
    """
mutation UpdateUser($input: UpdateUserInput!) {
  updateUser(input: $input) { ...UserFields }
}
"""
    + USER_FIELDS
)

DELETE_USER = """
mutation DeleteUser($userId: String!) {
  deleteUser(userId: $userId) { deleted }
}
"""

LIST_USERS = (
    f"""
query ListUsers($first: Int!, $after: String) {{
  users(first: $first, after: $after) {{
    edges {{ cursor node {{ ...UserFields }} }}
    {PAGE_INFO_FORWARD}
  }}
}}
"""
    + USER_FIELDS
)

USER_SESSIONS = (
    f"""
query UserSessions($userId: String!, $first: Int!, $after: String) {{
  user(userId: $userId) {{
    sessions(first: $first, after: $after) {{
      edges {{ cursor node {{ ...SessionFields }} }}
      {PAGE_INFO_FORWARD}
    }}
  }}
}}
"""
    + SESSION_FIELDS
)

OPERATIONS: dict[str, str] = {
    "CreateSession": CREATE_SESSION,
    "GetSession": GET_SESSION,
    "UpdateSession": UPDATE_SESSION,
    "DeleteSession": DELETE_SESSION,
    "ListSessions": LIST_SESSIONS,
    "AddMemories": ADD_MEMORIES,
    "LastMemories": LAST_MEMORIES,
    "MemorySession": MEMORY_SESSION,
    "UpdateMemory": UPDATE_MEMORY,
    "CreateUser": CREATE_USER,
    "GetUser": GET_USER,
    "UpdateUser": UPDATE_USER,
    "DeleteUser": DELETE_USER,
    "ListUsers": LIST_USERS,
    "UserSessions": USER_SESSIONS,
}
"""Every document by its operation name: the client sends only these."""
